"""Top processes of one host, fetched on demand for the drill-down.

A remote host runs :data:`itop_tui.domain.processes.TOP_PROCESSES_COMMAND`
(one exec: two ``/proc`` snapshots a second apart, then ``ps``) over its
transport; this machine is measured with psutil in a thread. Both give a
:class:`TopProcesses` with the same figures: ``%CPU`` is the CPU a process
used over the last :data:`~itop_tui.domain.processes.CPU_WINDOW` seconds,
100% being one core, as ``top`` shows it.
"""

from __future__ import annotations

import asyncio
import math
import time

import psutil

from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.domain.processes import (
    CPU_WINDOW,
    MAX_COMMAND_LENGTH,
    TOP_LIMIT,
    TOP_PROCESSES_COMMAND,
    ProcessRow,
    TopProcesses,
    parse_top_processes,
    rank_processes,
)
from itop_tui.services.audit import AuditLog
from itop_tui.services.transport import Transport

DEFAULT_TIMEOUT = 15.0
OUTPUT_LIMIT = 64 * 1024


async def top_processes(
    host: Host,
    transport: Transport | None,
    *,
    limit: int = TOP_LIMIT,
    timeout: float = DEFAULT_TIMEOUT,
    audit: AuditLog | None = None,
) -> TopProcesses:
    """The busiest processes of ``host`` by CPU and by memory.

    ``transport`` is the host's transport (``TransportPool.for_host``); it is
    not used for a local host, which is read with psutil. It takes about
    :data:`CPU_WINDOW` seconds, the window the CPU share is measured over
    (longer on a loaded host). Failures end up
    in the result's ``error``; host key problems are raised like every
    :meth:`Transport.run` raises them. With ``audit``, the command run on a
    remote host is audited as ``processes.top`` (reading psutil locally is not).
    """
    if host.is_local:
        try:
            result = await asyncio.wait_for(asyncio.to_thread(local_top_processes, limit), timeout)
        except TimeoutError:
            return TopProcesses(host=host.name, error=f"timed out after {timeout:g}s")
        result.host = host.name
        return result
    if transport is None:
        raise ValueError(f"{host.name}: a remote host needs its transport")
    run = await transport.run(TOP_PROCESSES_COMMAND, timeout=timeout, limit=OUTPUT_LIMIT)
    if run.error is not None:
        result = TopProcesses(host=host.name, error=run.error)
    else:
        result = parse_top_processes(host.name, run.stdout, limit)
        if result.error is not None and run.stderr.strip():
            result.error = f"{result.error}: {run.stderr.strip().splitlines()[0][:200]}"
        elif run.exit_status not in (0, None) and result.error is None and not result.by_memory:
            result.error = f"ps exited with status {run.exit_status}"
    if audit is not None:
        detail: dict[str, object] = {
            "exit_status": run.exit_status, "duration": round(run.duration, 3)
        }
        if result.error is not None:
            detail["error"] = result.error
        await asyncio.to_thread(
            audit.append, "processes.top", host.name, detail,
            "failed" if result.error is not None else "ok",
        )
    return result


def measure_local_shares(window: float = CPU_WINDOW) -> tuple[dict[int, tuple[float, float]], float]:
    """CPU each process of this machine used over ``window`` seconds (blocking).

    Maps pid to (create time, percent of one core) and returns the measured
    window. psutil's own per-process figure: primed on every process, read
    again after the window; the window returned runs between the midpoints
    of the two passes over the processes. Fresh :class:`psutil.Process`
    objects, not ``process_iter``'s shared cache, so another reader priming
    the same objects cannot shorten the window. Processes that vanished, or
    whose pid was reused meanwhile, are left out.
    """
    primed: list[psutil.Process] = []
    prime_start = time.monotonic()
    for pid in psutil.pids():
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
        except psutil.Error:
            continue  # vanished, or not ours to read
        primed.append(proc)
    prime_end = time.monotonic()
    time.sleep(window)
    read_start = time.monotonic()
    shares: dict[int, tuple[float, float]] = {}
    for proc in primed:
        try:
            share = proc.cpu_percent(None)
            if proc.is_running():
                shares[proc.pid] = (proc.create_time(), share)
        except psutil.Error:
            continue
    # Between the midpoints of the two passes, as for a remote host: each
    # process's own interval runs from its priming to its reading.
    return shares, ((read_start + time.monotonic()) - (prime_start + prime_end)) / 2


def local_table(shares: dict[int, tuple[float, float]]) -> list[ProcessRow]:
    """Every process of this machine, ``cpu_percent`` taken from ``shares`` (blocking).

    A process absent from ``shares`` or with another create time (born in
    the window, or a reused pid) used no CPU we measured: 0.
    """
    total = psutil.virtual_memory().total
    rows: list[ProcessRow] = []
    attrs = ["pid", "username", "name", "create_time", "memory_info"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        created, memory = info.get("create_time"), info.get("memory_info")
        if created is None or memory is None:
            continue  # vanished, or not ours to read
        measured = shares.get(int(info["pid"]))
        same = measured is not None and math.isclose(measured[0], created, abs_tol=1e-3)
        rss = int(memory.rss)
        rows.append(
            ProcessRow(
                pid=int(info["pid"]),
                user=strip_control(str(info.get("username") or "?"))[:32],
                cpu_percent=max(0.0, measured[1]) if measured is not None and same else 0.0,
                mem_percent=rss / total * 100.0 if total else 0.0,
                rss=rss,
                command=strip_control(str(info.get("name") or "?")).strip()[:MAX_COMMAND_LENGTH],
            )
        )
    return rows


def local_top_processes(limit: int = TOP_LIMIT) -> TopProcesses:
    """The busiest processes of this machine (blocking, about a second: call it in a thread)."""
    shares, window = measure_local_shares()
    return rank_processes(local_table(shares), window, limit)
