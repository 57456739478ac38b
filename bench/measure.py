"""What every benchmark needs: timing child processes, CPU of a process, the machine, results.

CPU figures come from the kernel's accounting (``wait4`` rusage of a child,
``/proc/PID/stat`` of a running process, ``getrusage`` of this process),
not from wall time: the machine is shared, and a busy neighbour stretches
wall time without changing the work done.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class ChildRun:
    """One finished child process: wall seconds, CPU seconds (its own and its waited children's)."""

    wall: float
    cpu: float
    returncode: int
    stdout: str
    stderr: str


def run_child(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600.0,
    cwd: Path | None = None,
) -> ChildRun:
    """Run ``argv`` to completion; time it by the wall clock and by ``wait4``'s rusage.

    Output goes to temp files (not pipes) so a chatty child never blocks
    on a full pipe while this process waits.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, cwd=cwd,
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop the fleet's sshd."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used, from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 (utime, stime), counted after the ")" as 12 and 13.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss(pid: int) -> int:
    """Resident set size of a running process, in bytes."""
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * PAGE_SIZE


def self_cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summary(values: Iterable[float]) -> dict[str, float | int]:
    """Median, min, max and count of ``values`` (empty gives count 0 only)."""
    data = sorted(values)
    if not data:
        return {"n": 0}
    return {
        "median": statistics.median(data),
        "min": data[0],
        "max": data[-1],
        "n": len(data),
    }


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` percentile (0-1) of ``values``, nearest rank."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    rank = max(1, min(len(data), round(share * len(data) + 0.4999)))
    return data[rank - 1]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _command_output(argv: Sequence[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "missing"
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr) else ""


def machine() -> dict[str, object]:
    """The machine the figures were taken on."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": _command_output(["ssh", "-V"]),
        "asyncssh": _version("asyncssh"),
        "textual": _version("textual"),
        "ansible_core": _version("ansible-core"),
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
    }


def write_results(name: str, data: Mapping[str, object]) -> Path:
    """Save ``data`` as ``bench/results/NAME-TIMESTAMP.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def emit(name: str, data: dict[str, object], lines: Sequence[str]) -> None:
    """Print the results as JSON, save them, then print the human summary."""
    data = {"benchmark": name, "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(), **data}
    print(json.dumps(data, indent=2))
    path = write_results(name, data)
    print()
    for line in lines:
        print(line)
    print(f"(raw results: {path})", file=sys.stderr)


def verdict(ok: bool) -> str:
    """The word for a budget check."""
    return "PASS" if ok else "MISS"

