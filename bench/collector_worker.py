"""One measured collector process: itop's FleetMonitor, or a bare asyncssh streaming loop.

Run by :mod:`bench.run_collector`, one process per measurement, so that the
CPU time and memory counted (``getrusage`` and ``/proc/self/statm`` of this
process) are the collector's and nothing else's.

Both modes stream :func:`itop_tui.domain.procfs.collect_command` from every
host at the same interval, with at most 10 handshakes in flight:

* ``itop``: :class:`itop_tui.ops.fleet_monitor.FleetMonitor` as ``itop
  collect`` and the Performance pane use it (pooled transports, samples with
  rates, ring-buffer history of one hour, minute rollups in SQLite,
  thresholds, problems and audit);
* ``bare``: plain asyncssh, ``async for line in process.stdout``, counting
  frames, nothing else.

Phases: connect (until every host delivered two frames, or ``--connect-limit``
seconds), warm-up, then the measured window of ``--duration`` seconds. In
``itop`` mode the history of every host is then filled to its full hour and
the memory measured again. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil

from bench.measure import process_rss, self_cpu

HANDSHAKES = 10


class Window:
    """Counts frames per host and measures CPU and wall time over a window."""

    def __init__(self, hosts: int) -> None:
        self.hosts = hosts
        self.frames: dict[str, int] = {}
        self.all_up = asyncio.Event()
        self.measuring = False
        self.measured_frames = 0

    def frame(self, host: str) -> None:
        """Record one frame (sample) from ``host``."""
        count = self.frames.get(host, 0) + 1
        self.frames[host] = count
        if self.measuring:
            self.measured_frames += 1
        if count == 2 and sum(1 for c in self.frames.values() if c >= 2) >= self.hosts:
            self.all_up.set()

    async def run(self, connect_limit: float, warmup: float, duration: float) -> dict[str, object]:
        """Wait for the hosts, warm up, measure; return the figures (also printed at once)."""
        started = time.monotonic()
        while not self.all_up.is_set() and time.monotonic() - started < connect_limit:
            wait = min(15.0, connect_limit - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_up.wait(), max(0.0, wait))
            if not self.all_up.is_set():
                progress(f"connecting: {self.up()} of {self.hosts} hosts up")
        connect_seconds = time.monotonic() - started
        progress(f"{self.up()} of {self.hosts} hosts up after {connect_seconds:.1f} s")
        await asyncio.sleep(warmup)
        rss_start = process_rss(os.getpid())
        box0 = psutil.cpu_times()
        cpu0, wall0 = self_cpu(), time.monotonic()
        self.measuring = True
        await asyncio.sleep(duration)
        self.measuring = False
        cpu, wall = self_cpu() - cpu0, time.monotonic() - wall0
        box1 = psutil.cpu_times()
        box_total = sum(box1) - sum(box0)
        box_idle = (box1.idle + box1.iowait) - (box0.idle + box0.iowait)
        figures: dict[str, object] = {
            "hosts_up": self.up(),
            "connect_seconds": round(connect_seconds, 2),
            "window_seconds": wall,
            "cpu_seconds": cpu,
            "samples": self.measured_frames,
            "cpu_percent_of_one_core": 100 * cpu / wall,
            "cpu_ms_per_sample": 1000 * cpu / self.measured_frames if self.measured_frames else None,
            "samples_per_second": self.measured_frames / wall,
            "rss_steady": rss_start,
            # The whole machine, sshd and the hosts' loops included (100 = all cores busy).
            "machine_busy_percent": 100 * (box_total - box_idle) / box_total if box_total else None,
        }
        progress(f"window done: {figures['cpu_percent_of_one_core']:.1f}% of a core, "
                 f"{self.measured_frames} samples")
        # Printed now, so a run stopped later (memory fill, shutdown) still counts.
        print_json(figures)
        return figures

    def up(self) -> int:
        """Hosts that delivered two frames or more."""
        return sum(1 for c in self.frames.values() if c >= 2)


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an int, got {value!r}")
    return value


def progress(message: str) -> None:
    """A timestamped progress line on stderr (kept by the parent when a run fails)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def print_json(figures: dict[str, object]) -> None:
    """One JSON line on stdout, non-finite numbers as null."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in figures.items()}
    print(json.dumps(clean), flush=True)


async def run_itop(args: argparse.Namespace) -> dict[str, object]:
    """Measure FleetMonitor over the fleet in ``args.config``/``args.data_dir``."""
    # itop imports asyncssh and its SSH modules on the first connection;
    # import them before the baseline, as the bare worker does, so that
    # the growth per host counts per-host memory only.
    import asyncssh  # noqa: F401

    import itop_tui.services.pooled_client  # noqa: F401
    import itop_tui.services.ssh_client_config  # noqa: F401
    import itop_tui.services.ssh_transport  # noqa: F401
    from itop_tui.domain.metrics import METRIC_NAMES
    from itop_tui.ops.fleet_monitor import FleetMonitor, MonitorConfig, SampleUpdate
    from itop_tui.services.context import Services
    from itop_tui.settings import load_settings

    services = Services.open(load_settings(Path(args.config), Path(args.data_dir)), origin="cli")
    hosts = list(services.inventory.load().hosts.values())[: args.hosts]
    rss_before = process_rss(os.getpid())
    config = MonitorConfig(interval=args.interval, history_seconds=3600.0)
    monitor = FleetMonitor.for_data_dir(
        hosts, services.transports, config, Path(args.data_dir), services.audit
    )
    window = Window(len(hosts))

    def on_update(update: object) -> None:
        if isinstance(update, SampleUpdate):
            window.frame(update.host)

    monitor.add_listener(on_update)
    await monitor.start()
    try:
        figures = await window.run(args.connect_limit, args.warmup, args.duration)
        states: dict[str, int] = {}
        for status in monitor.statuses().values():
            states[status.state] = states.get(status.state, 0) + 1
        # An hour of history for every host: fill the rest of each ring buffer.
        progress("filling every host's history to one hour")
        fill_started = time.monotonic()
        names = [h.name for h in hosts]
        values = dict.fromkeys(METRIC_NAMES, 1.0)
        nbytes = []
        for name in names:
            history = monitor.history.host(name)
            latest = history.latest_time or time.time()
            for step in range(history.capacity):
                history.append_values(latest + (step + 1) * args.interval, values)
            nbytes.append(history.nbytes())
        fill_seconds = time.monotonic() - fill_started
        rss_filled = process_rss(os.getpid())
        capacity = monitor.history.host(names[0]).capacity if names else 0
    finally:
        await _bounded(monitor.stop(), services.close())
    figures.update({
        "mode": "itop",
        "states": states,
        "rss_before_monitor": rss_before,
        "rss_history_filled": rss_filled,
        "history_capacity": capacity,
        "history_nbytes_per_host": sum(nbytes) / len(nbytes) if nbytes else None,
        "rss_growth_per_host_steady": (_int(figures["rss_steady"]) - rss_before) / max(1, len(hosts)),
        "rss_growth_per_host_hour": (rss_filled - rss_before) / max(1, len(hosts)),
        "history_fill_seconds": round(fill_seconds, 2),
    })
    return figures


async def run_bare(args: argparse.Namespace) -> dict[str, object]:
    """Measure a plain asyncssh streaming loop over the same hosts."""
    import asyncssh

    from itop_tui.domain.procfs import collect_command
    from itop_tui.services.metrics_collector import df_every_frames

    command = collect_command(args.interval, df_every_frames(30.0, args.interval))
    keys = asyncssh.load_keypairs([args.key])
    known = asyncssh.read_known_hosts(args.known_hosts)
    rss_before = process_rss(os.getpid())
    handshakes = asyncio.Semaphore(HANDSHAKES)
    window = Window(args.hosts)
    errors: list[str] = []
    connections: list[asyncssh.SSHClientConnection] = []

    async def one(index: int) -> None:
        name = f"h{index:04d}"
        try:
            async with handshakes:
                conn = await asyncssh.connect(
                    args.address, port=args.port, username=args.user, client_keys=keys,
                    known_hosts=known, config=[], agent_path=None, connect_timeout=30,
                    keepalive_interval=15, keepalive_count_max=3,
                )
            connections.append(conn)
            process = await conn.create_process(command)
            async for line in process.stdout:
                if line.startswith("@@itop-end"):
                    window.frame(name)
        except (OSError, asyncssh.Error) as exc:
            errors.append(f"{name}: {exc}")

    tasks = [asyncio.create_task(one(i)) for i in range(1, args.hosts + 1)]
    try:
        figures = await window.run(args.connect_limit, args.warmup, args.duration)
    finally:
        for task in tasks:
            task.cancel()
        for conn in connections:
            conn.close()
        await _bounded(asyncio.gather(*tasks, *(c.wait_closed() for c in connections),
                                      return_exceptions=True))
    figures.update({
        "mode": "bare",
        "errors": errors[:5],
        "rss_before_monitor": rss_before,
        "rss_growth_per_host_steady": (_int(figures["rss_steady"]) - rss_before) / max(1, args.hosts),
    })
    return figures


async def _bounded(*steps: Awaitable[object], limit: float = 30.0) -> None:
    """Await shutdown steps, giving up after ``limit`` seconds: exiting closes the sockets anyway."""
    try:
        async with asyncio.timeout(limit):
            for step in steps:
                await step
    except TimeoutError:
        progress(f"shutdown took over {limit:g} s; exiting without waiting")


def main() -> int:
    """Parse arguments, run one mode, print JSON."""
    parser = argparse.ArgumentParser(description="one measured collector process")
    parser.add_argument("mode", choices=("itop", "bare"))
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--connect-limit", type=float, default=300.0)
    parser.add_argument("--config", help="itop mode: the fleet's itop.yaml")
    parser.add_argument("--data-dir", help="itop mode: the fleet's data dir")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--key")
    parser.add_argument("--known-hosts")
    args = parser.parse_args()
    runner: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, object]]] = (
        run_itop if args.mode == "itop" else run_bare
    )
    print_json(asyncio.run(runner(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
