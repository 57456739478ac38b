"""Top processes of one host, fetched on demand for the drill-down.

A remote host runs :data:`itop_tui.domain.processes.TOP_PROCESSES_COMMAND`
(two ``ps`` calls, one exec) over its transport; this machine is read with
psutil in a thread. Both give a :class:`TopProcesses` with the same figures:
``%CPU`` is CPU time over the process's lifetime, as ``ps`` reports it.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.domain.processes import (
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
    not used for a local host, which is read with psutil. Failures end up
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


def local_table(now: float | None = None) -> list[ProcessRow]:
    """Every process of this machine with the figures ``ps`` would print (blocking)."""
    now = time.time() if now is None else now
    total = psutil.virtual_memory().total
    rows: list[ProcessRow] = []
    attrs = ["pid", "username", "name", "cpu_times", "create_time", "memory_info"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        times, created, memory = info.get("cpu_times"), info.get("create_time"), info.get("memory_info")
        if times is None or created is None or memory is None:
            continue  # vanished, or not ours to read
        elapsed = now - created
        cpu = (times.user + times.system) / elapsed * 100.0 if elapsed > 0 else 0.0
        rss = int(memory.rss)
        rows.append(
            ProcessRow(
                pid=int(info["pid"]),
                user=strip_control(str(info.get("username") or "?"))[:32],
                cpu_percent=max(0.0, cpu),
                mem_percent=rss / total * 100.0 if total else 0.0,
                rss=rss,
                command=strip_control(str(info.get("name") or "?")).strip()[:MAX_COMMAND_LENGTH],
            )
        )
    return rows


def local_top_processes(limit: int = TOP_LIMIT) -> TopProcesses:
    """The busiest processes of this machine (blocking: call it in a thread)."""
    return rank_processes(local_table(), limit)
