"""Helpers for the Performance pane tests: a monitor-like source fed fixed samples.

:class:`ScriptedSource` stands where a ``FleetMonitor`` stands in the pane
(see ``MonitorSource``): the test decides which ``SampleUpdate`` and
``StateUpdate`` arrive and when. What the pane reads from it is real: a
``FleetHistory`` of the fed samples, a ``ProblemRepository`` in the test's
data dir, and acknowledgements stored and audited by the same function
``itop problems ack`` uses.

Run as a script, it opens the app on a simulated fleet whose hosts change
every second (``python tests/ui/perf_fixtures.py --hosts 50``): the
terminal-output measurement runs it in a pseudo-terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

import itop_tui.app as app_module
from itop_tui.app import ItopApp
from itop_tui.domain.history import FleetHistory
from itop_tui.domain.metrics import DiskRate, NetRate, Sample
from itop_tui.domain.models import Host
from itop_tui.domain.procfs import Filesystem
from itop_tui.domain.thresholds import OpenProblem
from itop_tui.ops.fleet_monitor import (
    HostStatus,
    MonitorConfig,
    MonitorUpdate,
    ProblemUpdate,
    SampleUpdate,
    StateUpdate,
    acknowledge_problem,
)
from itop_tui.screens.performance import MonitorSource, PerformanceScreen
from itop_tui.services.audit import AuditLog
from itop_tui.services.context import Services
from itop_tui.services.problem_repo import Problem, ProblemRepository
from itop_tui.widgets.host_table import Clock

GIB = 1024**3
BASE_TIME = 1_748_779_200.0
"""2025-06-01T12:00:00Z, the ui fixtures' FIXED_NOW, as epoch seconds."""


class ScriptedSource:
    """A monitor whose updates are chosen by the test (see the module notes)."""

    def __init__(
        self,
        hosts: Iterable[Host],
        config: MonitorConfig,
        problems: ProblemRepository | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.history = FleetHistory(config.history_seconds, config.interval)
        self.problems = problems
        self.audit = audit
        self.host_names = [h.name for h in hosts]
        self._statuses = {n: HostStatus(n, "connecting", BASE_TIME) for n in self.host_names}
        self._latest: dict[str, Sample] = {}
        self._queues: list[asyncio.Queue[MonitorUpdate]] = []
        self._running = False
        self._paused = False
        self.starts = 0
        self.stops = 0
        self.intervals: list[float] = []
        self.retried: list[str] = []
        self.breaches: list[OpenProblem] = []

    @property
    def running(self) -> bool:
        return self._running

    @property
    def paused(self) -> bool:
        return self._paused

    async def start(self) -> None:
        self.starts += 1
        self._running = True

    async def stop(self) -> None:
        self.stops += 1
        self._running = False

    def pause(self) -> None:
        self._paused = True
        for name in self.host_names:
            self.feed(StateUpdate(name, HostStatus(name, "paused", BASE_TIME)))

    def resume(self) -> None:
        self._paused = False
        for name in self.host_names:
            self.feed(StateUpdate(name, HostStatus(name, "connecting", BASE_TIME)))

    def set_interval(self, seconds: float) -> None:
        self.intervals.append(seconds)
        self.config.interval = seconds

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        self.host_names = [h.name for h in hosts]
        for name in self.host_names:
            self._statuses.setdefault(name, HostStatus(name, "connecting", BASE_TIME))

    def retry(self, host: str) -> None:
        self.retried.append(host)

    def subscribe(self, maxsize: int = 10_000) -> asyncio.Queue[MonitorUpdate]:
        queue: asyncio.Queue[MonitorUpdate] = asyncio.Queue(maxsize=maxsize)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[MonitorUpdate]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def statuses(self) -> dict[str, HostStatus]:
        return dict(self._statuses)

    def status(self, host: str) -> HostStatus:
        return self._statuses[host]

    def latest(self, host: str) -> Sample | None:
        return self._latest.get(host)

    def open_problems(self) -> list[OpenProblem]:
        return list(self.breaches)

    async def acknowledge(self, problem_id: str, note: str = "", actor: str | None = None) -> Problem:
        if self.problems is None:
            raise RuntimeError("this monitor keeps no problems")
        problem = await asyncio.to_thread(
            acknowledge_problem, self.problems, self.audit, problem_id, note, actor
        )
        self.feed(ProblemUpdate("acknowledged", problem.host, problem))
        return problem

    # -- driving it ----------------------------------------------------------

    def feed(self, update: MonitorUpdate) -> None:
        """Deliver an update, as the monitor would: state and history first, then queues."""
        if isinstance(update, SampleUpdate):
            self._latest[update.host] = update.sample
            self.history.append(update.sample)
            if self._statuses[update.host].state != "up":
                self.feed(StateUpdate(update.host, HostStatus(update.host, "up", update.sample.time)))
        elif isinstance(update, StateUpdate):
            self._statuses[update.host] = update.status
        for queue in self._queues:
            queue.put_nowait(update)

    def feed_all(self, updates: Iterable[MonitorUpdate]) -> None:
        """Deliver several updates."""
        for update in updates:
            self.feed(update)


def sample(
    host: str,
    at: float,
    *,
    cpu: float | None = 10.0,
    mem: float = 40.0,
    load1: float = 0.5,
    disk_util: float = 5.0,
    rx: float = 2048.0,
    tx: float = 1024.0,
    cores: int = 4,
    mem_total: int = 8 * GIB,
) -> Sample:
    """A complete sample of ``host`` at epoch ``at`` with the figures given."""
    available = int(mem_total * (1 - mem / 100))
    per_core: list[float | None] = [
        None if cpu is None else min(100.0, max(0.0, cpu + (i % 3 - 1) * 5.0)) for i in range(cores)
    ]
    return Sample(
        host=host,
        time=at,
        cpu_percent=cpu,
        cpu_per_core=per_core,
        mem_total=mem_total,
        mem_available=available,
        mem_percent=mem,
        swap_total=2 * GIB,
        swap_used=GIB // 8,
        swap_percent=6.25,
        load1=load1,
        load5=load1 * 0.9,
        load15=load1 * 0.8,
        procs=180 + cores,
        disk_read_bps=disk_util * 40_000,
        disk_write_bps=disk_util * 80_000,
        disk_busiest_util=disk_util,
        disks={
            "sda": DiskRate(disk_util * 40_000, disk_util * 80_000, disk_util),
            "sdb": DiskRate(0.0, 512.0, disk_util / 4),
        },
        net_rx_bps=rx,
        net_tx_bps=tx,
        interfaces={"eth0": NetRate(rx, tx)},
        filesystems=[
            Filesystem("/dev/sda1", "/", 40 * GIB, 10 * GIB, 30 * GIB),
            Filesystem("/dev/sdb1", "/var", 100 * GIB, 91 * GIB, 9 * GIB),
        ],
        uptime=3 * 86400 + 4 * 3600,
    )


FLEET_FIGURES: dict[str, dict[str, float]] = {
    "web01": {"cpu": 97.0, "mem": 62.0, "load1": 3.4, "disk_util": 12.0},
    "web02": {"cpu": 45.0, "mem": 88.0, "load1": 6.5, "disk_util": 3.0},
    "web03": {"cpu": 12.0, "mem": 35.0, "load1": 0.3, "disk_util": 97.0},
    "web04": {"cpu": 5.0, "mem": 22.0, "load1": 0.1, "disk_util": 1.0},
    "web05": {"cpu": 63.0, "mem": 51.0, "load1": 2.2, "disk_util": 20.0},
    "db01": {"cpu": 30.0, "mem": 91.0, "load1": 8.0, "disk_util": 55.0, "cores": 16},
    "db02": {"cpu": 88.0, "mem": 70.0, "load1": 20.0, "disk_util": 40.0, "cores": 16},
    "db03": {"cpu": 8.0, "mem": 30.0, "load1": 0.2, "disk_util": 2.0, "cores": 16},
}
"""The fixed figures of the tests' fleet at the last sample."""


def fleet_history(seconds: int = 90, step: float = 2.0) -> list[SampleUpdate]:
    """Samples of :data:`FLEET_FIGURES`' hosts over ``seconds`` before :data:`BASE_TIME`.

    Values ramp up to the fixed figures, so trends and graphs have a shape;
    the last sample of each host has exactly its figures.
    """
    updates = []
    count = int(seconds / step)
    for index in range(count + 1):
        at = BASE_TIME - seconds + index * step
        share = index / count
        for offset, (name, figures) in enumerate(FLEET_FIGURES.items()):
            wave = ((index + offset * 3) % 7) / 7
            cpu = figures["cpu"] * (share if index < count else 1.0)
            if index < count:
                cpu = max(0.0, min(100.0, cpu * (0.6 + 0.4 * wave)))
            updates.append(
                SampleUpdate(
                    name,
                    sample(
                        name,
                        at,
                        cpu=round(cpu, 1),
                        mem=figures["mem"],
                        load1=figures["load1"],
                        disk_util=figures["disk_util"],
                        rx=(offset + 1) * 150_000.0 * (0.5 + share / 2),
                        tx=(offset + 1) * 40_000.0 * (0.5 + share / 2),
                        cores=int(figures.get("cores", 4)),
                    ),
                )
            )
    return updates


def fleet_states() -> list[StateUpdate]:
    """web06 unreachable (refused), cache01 stale, after the samples."""
    return [
        StateUpdate(
            "web06",
            HostStatus("web06", "unreachable", BASE_TIME - 30, "connection refused", None, 3,
                       BASE_TIME + 8),
        ),
        StateUpdate("cache01", HostStatus("cache01", "stale", BASE_TIME - 10, "no sample for 9s")),
    ]


SourceBox = dict[str, ScriptedSource]


def scripted_factory(
    box: SourceBox, *, with_problems: bool = True
) -> Callable[[Services, list[Host], MonitorConfig], MonitorSource]:
    """A source factory that builds a :class:`ScriptedSource` and keeps it in ``box['source']``."""

    def build(services: Services, hosts: list[Host], config: MonitorConfig) -> MonitorSource:
        problems = (
            ProblemRepository.in_data_dir(services.settings.data_dir) if with_problems else None
        )
        source = ScriptedSource(hosts, config, problems, services.audit)
        box["source"] = source
        return source

    return build


class PerfTestApp(ItopApp):
    """The itop app whose Performance pane builds its monitor with a given factory."""

    # Textual reads CSS_PATH relative to the module of the class that sets it.
    CSS_PATH = str(Path(app_module.__file__).parent / "app.tcss")

    def __init__(
        self,
        services: Services,
        factory: Callable[[Services, list[Host], MonitorConfig], MonitorSource],
        clock: Clock,
    ) -> None:
        self.source_factory = factory
        super().__init__(services, clock=clock)

    def add_mode(self, mode: str, base_screen: Any) -> None:
        """Register the panes, the Performance pane with the factory."""
        if mode == "performance":
            base_screen = partial(
                PerformanceScreen, self.services, self.clock, source_factory=self.source_factory
            )
        super().add_mode(mode, base_screen)


def perf_app(
    services: Services,
    factory: Callable[[Services, list[Host], MonitorConfig], MonitorSource],
    clock: Clock,
) -> ItopApp:
    """The itop app whose Performance pane uses ``factory`` for its monitor."""
    return PerfTestApp(services, factory, clock)


async def wait_until(
    pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0, what: str = ""
) -> None:
    """Pause until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.05)


def performance_screen(pilot: Pilot[Any]) -> PerformanceScreen:
    """The Performance pane's screen, under any drill-down or dialog above it."""
    for candidate in pilot.app.screen_stack:
        if isinstance(candidate, PerformanceScreen):
            return candidate
    raise AssertionError("the Performance pane is not open")


async def open_performance(pilot: Pilot[Any], box: SourceBox) -> PerformanceScreen:
    """Press 2 and wait until the pane follows its started source."""
    await pilot.press("2")
    await wait_until(pilot, lambda: "source" in box and box["source"].running, what="the source")
    await wait_until(pilot, lambda: bool(box["source"]._queues), what="the subscription")
    screen = pilot.app.screen
    assert isinstance(screen, PerformanceScreen)
    await wait_until(pilot, lambda: screen.table.total_count > 0, what="rows")
    return screen


async def feed_and_wait(
    pilot: Pilot[Any], source: ScriptedSource, updates: Iterable[MonitorUpdate]
) -> None:
    """Feed updates, then wait until the pane shows the last sample and state of each host."""
    updates = list(updates)
    source.feed_all(updates)
    screen = performance_screen(pilot)
    samples = {u.host: u.sample for u in updates if isinstance(u, SampleUpdate)}
    states = {u.host: u.status for u in updates if isinstance(u, StateUpdate)}

    def applied() -> bool:
        shown_samples = screen._samples
        shown_states = screen._statuses
        return all(shown_samples.get(h) is s for h, s in samples.items()) and all(
            shown_states.get(h) is s for h, s in states.items()
        )

    await wait_until(pilot, applied, what="the pane to apply the updates")
    await pilot.pause()


@dataclass
class Flood:
    """What :func:`flood_until` fed: the last round's sample per host, how many
    updates, and the longest the source's queues grew after a round."""

    last: dict[str, Sample] = field(default_factory=dict)
    fed: int = 0
    rounds: int = 0
    max_queued: int = 0


async def flood_until(
    source: ScriptedSource, names: list[str], condition: Callable[[], bool], timeout: float = 60.0
) -> Flood:
    """Feed a fresh sample of every host in ``names``, round after round with
    only one turn of the event loop between rounds (faster than any pane
    paints), until ``condition()`` holds; fail after ``timeout`` seconds.

    Each round's CPU figures differ from the previous round's, so the last
    round is recognisable on screen.
    """
    flood = Flood()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s of flooding ({flood.rounds} rounds)")
        at = BASE_TIME + flood.rounds
        for index, name in enumerate(names):
            fresh = sample(name, at, cpu=float((flood.rounds * 7 + index) % 100))
            source.feed(SampleUpdate(name, fresh))
            flood.last[name] = fresh
        flood.fed += len(names)
        flood.rounds += 1
        flood.max_queued = max([flood.max_queued, *(q.qsize() for q in source._queues)])
        await asyncio.sleep(0)
    return flood


# -- the simulated fleet for output measurements ----------------------------


def simulated_fleet(count: int) -> list[Host]:
    """``count`` hosts, none of which is ever contacted (the source is simulated)."""
    return [
        Host(name=f"node{i:03d}", address=f"127.0.9.{i % 250 + 1}", groups=["sim"])
        for i in range(count)
    ]


async def drive(source: ScriptedSource, names: list[str], seconds: float) -> None:
    """Each host reports once a second, spread over the second, with plausible drift."""
    rng = random.Random(7)
    state = {n: [rng.uniform(2, 60), rng.uniform(20, 80), rng.uniform(0.1, 3)] for n in names}
    start = time.time()
    groups = max(1, len(names) // 10)
    while time.time() - start < seconds:
        for index, name in enumerate(names):
            cpu, mem, load = state[name]
            cpu = min(100.0, max(0.0, cpu + rng.uniform(-6, 6)))
            mem = min(100.0, max(0.0, mem + rng.uniform(-0.4, 0.4)))
            load = max(0.0, load + rng.uniform(-0.1, 0.1))
            state[name] = [cpu, mem, load]
            source.feed(
                SampleUpdate(
                    name,
                    sample(
                        name,
                        time.time(),
                        cpu=cpu,
                        mem=mem,
                        load1=load,
                        disk_util=rng.uniform(0, 30),
                        rx=rng.uniform(1e3, 5e6),
                        tx=rng.uniform(1e3, 2e6),
                    ),
                )
            )
            if index % 10 == 9 or index == len(names) - 1:
                await asyncio.sleep(1 / groups)


def run_simulation(data_dir: Path, hosts: int, seconds: float, marks: int | None) -> int:
    """Open the app on the Performance pane with a simulated fleet (see the module notes).

    ``marks`` is a file descriptor that gets ``start`` once the pane is
    shown and warm, and ``stop`` when the measured period is over.
    """
    from ui_fixtures import open_services

    services = open_services(data_dir, simulated_fleet(hosts))
    box: SourceBox = {}
    app = perf_app(services, scripted_factory(box), clock=lambda: datetime.now(UTC))
    names = [h.name for h in simulated_fleet(hosts)]

    async def script(pilot: Pilot[object]) -> None:
        await pilot.pause(0.5)
        await pilot.press("2")
        while "source" not in box or not box["source"]._queues:
            await asyncio.sleep(0.05)
        source = box["source"]
        await drive(source, names, 3.0)  # first paint and warm-up, not measured
        if marks is not None:
            os.write(marks, b"start\n")
        await drive(source, names, seconds)
        if marks is not None:
            os.write(marks, b"stop\n")
        app.exit()

    app.run(auto_pilot=script)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line of the simulation (see :func:`run_simulation`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--marks-fd", type=int, default=None)
    args = parser.parse_args(argv)
    return run_simulation(args.data_dir, args.hosts, args.seconds, args.marks_fd)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
