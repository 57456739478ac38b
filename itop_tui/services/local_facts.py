"""Facts of this machine, read through psutil and platform.

Gives the same keys, units and filters as the remote discovery command
(:mod:`itop_tui.domain.facts`), so a local host and an SSH host compare.
Blocking: call it in a thread from async code.
"""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from itop_tui.domain.facts import (
    IGNORED_FSTYPES,
    MAX_ADDRESSES,
    MAX_FILESYSTEMS,
    empty_facts,
    parse_cpu_model,
    parse_virtualization,
    usable_address,
)


def local_facts() -> dict[str, Any]:
    """Gather this machine's facts (every key of ``FACT_KEYS``)."""
    facts = empty_facts()
    facts["hostname"] = socket.gethostname() or platform.node() or None
    facts["os_name"], facts["os_version"] = _os_name_version()
    facts["kernel"] = platform.release() or None
    facts["arch"] = platform.machine() or None
    facts["cpu_count"] = psutil.cpu_count(logical=True)
    facts["cpu_model"] = _cpu_model()
    facts["mem_total"] = int(psutil.virtual_memory().total)
    facts["filesystems"] = _filesystems()
    facts["ip_addresses"] = _ip_addresses()
    facts["uptime_seconds"] = round(max(0.0, time.time() - psutil.boot_time()), 2)
    facts["virtualization"] = _virtualization()
    facts["init"] = _read_first_line(Path("/proc/1/comm"))
    return facts


def _read_first_line(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            line = handle.readline(256).strip()
    except OSError:
        return None
    return line or None


def _os_name_version() -> tuple[str | None, str | None]:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    if release.get("NAME"):
        return release["NAME"], release.get("VERSION_ID") or release.get("VERSION")
    system = platform.system() or None
    if system == "Darwin":
        return "macOS", platform.mac_ver()[0] or None
    return system, None


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpu_model(text) or platform.processor() or None


def _filesystems() -> list[dict[str, Any]]:
    """Mounted filesystems as ``df`` lists them: real sizes, one mount per device.

    ``all=True`` because psutil's default drops "nodev" filesystems such as
    overlay, the root of every container; zero-size pseudo filesystems are
    dropped instead, as ``df`` does.
    """
    result: list[dict[str, Any]] = []
    seen_mounts: set[str] = set()
    seen_devices: set[str] = set()
    for part in psutil.disk_partitions(all=True):
        if part.fstype in IGNORED_FSTYPES or part.mountpoint in seen_mounts:
            continue
        if not part.mountpoint.startswith("/") or part.device in seen_devices:
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        if usage.total == 0:
            continue
        seen_mounts.add(part.mountpoint)
        seen_devices.add(part.device)
        result.append({
            "mount": part.mountpoint,
            "fstype": part.fstype or None,
            "size": int(usage.total),
            "used": int(usage.used),
            "avail": int(usage.free),
        })
        if len(result) >= MAX_FILESYSTEMS:
            break
    return result


def _ip_addresses() -> list[str]:
    addresses: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = usable_address(entry.address)
            if address and address not in addresses:
                addresses.append(address)
    return addresses[:MAX_ADDRESSES]


def _virtualization() -> str | None:
    detector = shutil.which("systemd-detect-virt")
    answer: str | None = None
    if detector:
        try:
            done = subprocess.run(
                [detector], capture_output=True, text=True, timeout=5, check=False
            )
            answer = done.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            answer = None
    hints = []
    if Path("/.dockerenv").exists():
        hints.append("dockerenv")
    if Path("/run/.containerenv").exists():
        hints.append("containerenv")
    if _has_hypervisor_flag():
        hints.append("hypervisor")
    return parse_virtualization(answer, hints)


def _has_hypervisor_flag() -> bool:
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "hypervisor" in line.split()
    except OSError:
        pass
    return False
