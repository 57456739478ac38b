"""Host facts: the discovery command and the pure parser of its output.

Discovery runs :data:`DISCOVERY_SCRIPT` (POSIX sh, every tool optional) once
per host. The script prints marked sections (``@@itop SECTION``) that
:func:`parse_discovery_output` turns into a facts dict with the stable keys
of :data:`FACT_KEYS`. A fact the host could not tell is ``None`` (or an empty
list), never missing, so consumers see one shape.

Fact keys:

- ``hostname`` (str), ``os_name`` (str, e.g. ``Ubuntu``), ``os_version``
  (str, e.g. ``22.04``), ``kernel`` (``uname -r``), ``arch`` (``uname -m``)
- ``cpu_count`` (int, online logical CPUs), ``cpu_model`` (str)
- ``mem_total`` (int, bytes)
- ``filesystems``: list of ``{"mount", "fstype", "size", "used", "avail"}``,
  sizes in bytes, ``fstype`` None when unknown
- ``ip_addresses``: list of str, loopback excluded
- ``uptime_seconds`` (float)
- ``virtualization`` (str: ``none``, ``kvm``, ``docker``, ``vm`` ...)
- ``init`` (str: name of PID 1, e.g. ``systemd``)
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Any

FACT_KEYS = (
    "hostname",
    "os_name",
    "os_version",
    "kernel",
    "arch",
    "cpu_count",
    "cpu_model",
    "mem_total",
    "filesystems",
    "ip_addresses",
    "uptime_seconds",
    "virtualization",
    "init",
)

MARKER = "@@itop "
_VIRT_WORD = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# Pseudo filesystems that say nothing about a host's storage.
IGNORED_FSTYPES = frozenset({"tmpfs", "devtmpfs", "squashfs", "proc", "sysfs", "devpts", "cgroup",
                             "cgroup2", "efivarfs", "ramfs", "autofs", "nsfs"})

# Caps that keep the facts small whatever the host prints.
MAX_FILESYSTEMS = 64
MAX_ADDRESSES = 64
MAX_TEXT = 256

# Each section is printed even when its tool is missing, so the parser knows
# the host was asked; `head` bounds the long ones. stderr is discarded
# because a missing tool is normal, not an error.
DISCOVERY_SCRIPT = r"""
exec 2>/dev/null
s() { echo "@@itop $1"; }
s hostname; hostname || uname -n
s uname_s; uname -s
s kernel; uname -r
s arch; uname -m
s os_release; head -n 50 /etc/os-release || head -n 50 /usr/lib/os-release
s cpu_count; getconf _NPROCESSORS_ONLN || grep -c '^processor' /proc/cpuinfo
s cpu_model; grep -m 1 -E '^(model name|Hardware|cpu model|Processor|cpu)[[:space:]]*:' /proc/cpuinfo
s meminfo; grep -E '^MemTotal:' /proc/meminfo
if df -kPT / >/dev/null; then s df_typed; df -kPT | head -n 200; else s df; df -kP | head -n 200; fi
if command -v ip >/dev/null; then s ip_addr; ip -o addr show | head -n 200; else s hostname_i; hostname -I; fi
s uptime; cat /proc/uptime
s detect_virt; systemd-detect-virt
s virt_hints
[ -e /.dockerenv ] && echo dockerenv
[ -e /run/.containerenv ] && echo containerenv
grep -q '^flags.*[[:space:]]hypervisor' /proc/cpuinfo && echo hypervisor
s init; head -c 64 /proc/1/comm
s end
exit 0
"""


def discovery_command() -> str:
    """The discovery script wrapped in ``sh -c`` so any login shell runs it."""
    return "sh -c " + shlex.quote(DISCOVERY_SCRIPT.strip())


def empty_facts() -> dict[str, Any]:
    """A facts dict with every key and nothing known."""
    facts: dict[str, Any] = dict.fromkeys(FACT_KEYS)
    facts["filesystems"] = []
    facts["ip_addresses"] = []
    return facts


class FactsParseError(ValueError):
    """The output holds no discovery sections at all."""


def split_sections(text: str) -> dict[str, list[str]]:
    """Map section name to its lines; lines before the first marker are dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(MARKER):
            name = line[len(MARKER):].strip()
            current = sections.setdefault(name, [])
            continue
        if current is not None:
            current.append(line)
    return sections


def parse_discovery_output(text: str) -> dict[str, Any]:
    """Turn the discovery script's output into facts.

    Raises :class:`FactsParseError` when no section is present (the script
    did not run); missing or garbled sections just leave their facts unknown.
    """
    sections = split_sections(text)
    if not sections:
        raise FactsParseError("the discovery command printed none of its sections")
    facts = empty_facts()
    facts["hostname"] = _first_line(sections.get("hostname"))
    facts["kernel"] = _first_line(sections.get("kernel"))
    facts["arch"] = _first_line(sections.get("arch"))
    release = parse_os_release("\n".join(sections.get("os_release", [])))
    facts["os_name"] = release.get("NAME") or _first_line(sections.get("uname_s"))
    facts["os_version"] = release.get("VERSION_ID") or release.get("VERSION")
    facts["cpu_count"] = _positive_int(_first_line(sections.get("cpu_count")))
    facts["cpu_model"] = parse_cpu_model("\n".join(sections.get("cpu_model", [])))
    facts["mem_total"] = parse_mem_total("\n".join(sections.get("meminfo", [])))
    if "df_typed" in sections:
        facts["filesystems"] = parse_df(sections["df_typed"], typed=True)
    elif "df" in sections:
        facts["filesystems"] = parse_df(sections["df"], typed=False)
    if "ip_addr" in sections:
        facts["ip_addresses"] = parse_ip_addr(sections["ip_addr"])
    elif "hostname_i" in sections:
        facts["ip_addresses"] = parse_hostname_i(sections["hostname_i"])
    facts["uptime_seconds"] = parse_uptime(_first_line(sections.get("uptime")))
    facts["virtualization"] = parse_virtualization(
        _first_line(sections.get("detect_virt")), sections.get("virt_hints", [])
    )
    facts["init"] = _first_line(sections.get("init"))
    return facts


def _first_line(lines: list[str] | None) -> str | None:
    for line in lines or []:
        value = line.strip()
        if value:
            return value[:MAX_TEXT]
    return None


def _positive_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.split()[0])
    except (ValueError, IndexError):
        return None
    return value if value > 0 else None


def parse_os_release(text: str) -> dict[str, str]:
    """Parse ``/etc/os-release`` (shell-style ``KEY=value``, possibly quoted)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key.strip()] = " ".join(parts)[:MAX_TEXT]
    return values


def parse_cpu_model(text: str) -> str | None:
    """The CPU model from ``/proc/cpuinfo`` lines (x86 ``model name``, ARM ``Hardware`` ...)."""
    preferred = ("model name", "hardware", "cpu model", "processor", "cpu")
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        value = " ".join(value.split())
        if sep and key in preferred and value and key not in found:
            # On x86 "processor" is the CPU index, not a model.
            if key == "processor" and value.isdigit():
                continue
            found[key] = value[:MAX_TEXT]
    for key in preferred:
        if key in found:
            return found[key]
    return None


def parse_mem_total(text: str) -> int | None:
    """Bytes of ``MemTotal`` from ``/proc/meminfo`` text (which counts in kB)."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                factor = 1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1
                return int(parts[1]) * factor
    return None


def parse_df(lines: list[str], *, typed: bool) -> list[dict[str, Any]]:
    """Parse ``df -kP`` (or ``df -kPT`` when ``typed``) output into filesystems.

    POSIX format keeps one filesystem per line; the mount point is the rest
    of the line, so mount points with spaces survive.
    """
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    numbers_at = 2 if typed else 1
    for line in lines:
        parts = line.split()
        if len(parts) < numbers_at + 5 or parts[0] == "Filesystem":
            continue
        fstype = parts[1] if typed else None
        try:
            size, used, avail = (int(p) * 1024 for p in parts[numbers_at:numbers_at + 3])
        except ValueError:
            continue
        mount = " ".join(parts[numbers_at + 4:])
        if not mount.startswith("/") or mount in seen:
            continue
        if fstype in IGNORED_FSTYPES:
            continue
        seen.add(mount)
        result.append({"mount": mount, "fstype": fstype, "size": size, "used": used, "avail": avail})
        if len(result) >= MAX_FILESYSTEMS:
            break
    return result


def usable_address(text: str) -> str | None:
    """``text`` as a normalized IP address, or None for loopback and non-addresses."""
    candidate = text.split("/", 1)[0].split("%", 1)[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return None
    return str(address)


def parse_ip_addr(lines: list[str]) -> list[str]:
    """Addresses from ``ip -o addr show`` lines, loopback excluded, in order."""
    addresses: list[str] = []
    for line in lines:
        parts = line.split()
        for family in ("inet", "inet6"):
            if family in parts:
                index = parts.index(family)
                if index + 1 < len(parts):
                    address = usable_address(parts[index + 1])
                    if address and address not in addresses:
                        addresses.append(address)
    return addresses[:MAX_ADDRESSES]


def parse_hostname_i(lines: list[str]) -> list[str]:
    """Addresses from ``hostname -I`` (space separated), loopback excluded."""
    addresses: list[str] = []
    for word in " ".join(lines).split():
        address = usable_address(word)
        if address and address not in addresses:
            addresses.append(address)
    return addresses[:MAX_ADDRESSES]


def parse_uptime(text: str | None) -> float | None:
    """Seconds since boot from ``/proc/uptime``'s first field."""
    if not text:
        return None
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        return None
    return value if value >= 0 else None


def parse_virtualization(detect_virt: str | None, hints: list[str]) -> str | None:
    """The virtualization type: ``systemd-detect-virt``'s answer, else file hints.

    Hints are ``dockerenv`` (/.dockerenv), ``containerenv``
    (/run/.containerenv, podman) and ``hypervisor`` (the CPU flag: some VM).
    With no detector and no hint the answer is ``none``.
    """
    if detect_virt and _VIRT_WORD.match(detect_virt):
        return detect_virt
    words = {h.strip() for h in hints if h.strip()}
    if "dockerenv" in words:
        return "docker"
    if "containerenv" in words:
        return "podman"
    if "hypervisor" in words:
        return "vm"
    return "none"
