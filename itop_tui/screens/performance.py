"""The Performance pane: the whole fleet live, worst first, and its open problems.

The monitor (a :class:`~itop_tui.ops.fleet_monitor.FleetMonitor`) is built
when the pane is first shown, not when the app starts, so the Inventory
pane stays cheap; it is owned by this screen and stopped when the screen
goes away (at app exit). The screen never awaits a host: the monitor runs
its own tasks, and a worker folds its update queue into one pending batch
(newest sample and state per host) whenever the event loop gives it a turn,
so the queue stays short and intermediate samples are dropped. The batch is
posted at most once per repaint period and never before the previous one
is on screen; when showing a batch takes long (the process gets less CPU
than the monitor's work needs) the period grows, so painting and keys keep
their turn. The table then repaints only the visible cells that changed.

The monitor comes from a factory (:data:`SourceFactory`), so tests can hand
the pane a source of fixed samples instead of a live fleet.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Protocol

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from itop_tui.domain.history import FleetHistory
from itop_tui.domain.metrics import Sample
from itop_tui.domain.models import Host, Inventory
from itop_tui.domain.selectors import host_text
from itop_tui.domain.thresholds import (
    SEVERITY_RANK,
    OpenProblem,
    Threshold,
    resolve_thresholds,
)
from itop_tui.ops.fleet_monitor import (
    FleetMonitor,
    HostStatus,
    MonitorConfig,
    MonitorUpdate,
    NoticeUpdate,
    ProblemUpdate,
    SampleUpdate,
    StateUpdate,
)
from itop_tui.ops.monitor_settings import monitor_config
from itop_tui.screens.host_drilldown import (
    WINDOWS,
    HostDrilldown,
    format_interval,
    next_window,
    repaint_period,
    window_label,
)
from itop_tui.screens.inventory import FilterResult, match_filter
from itop_tui.screens.problems import ProblemRow, ProblemTable, ask_acknowledgement, problem_rows
from itop_tui.screens.store_follow import follow_store
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.context import INVENTORY_FILE, Services
from itop_tui.services.problem_repo import Problem, ProblemRepository
from itop_tui.services.store_watch import StoreWatch
from itop_tui.widgets.filter_input import FilterInput
from itop_tui.widgets.fleet_table import (
    CellTable,
    FleetRow,
    FleetTable,
    HostProblems,
    fleet_row,
    trend_bucket,
    trend_values,
)
from itop_tui.widgets.host_table import Clock
from itop_tui.widgets.pane_tabs import PaneTabs
from itop_tui.widgets.production_banner import ProductionBanner

log = logging.getLogger(__name__)

INTERVALS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Collection intervals ``+`` and ``-`` step through."""


class MonitorSource(Protocol):
    """What the pane needs of a monitor: a :class:`FleetMonitor`, or fixed data in tests."""

    config: MonitorConfig
    history: FleetHistory
    problems: ProblemRepository | None

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        ...

    @property
    def paused(self) -> bool:
        """Collection is paused."""
        ...

    async def start(self) -> None:
        """Start collecting."""
        ...

    async def stop(self) -> None:
        """Stop collecting and persist what is pending."""
        ...

    def pause(self) -> None:
        """Pause collection."""
        ...

    def resume(self) -> None:
        """Resume collection."""
        ...

    def set_interval(self, seconds: float) -> None:
        """Collect every ``seconds`` from now on."""
        ...

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Monitor exactly these hosts."""
        ...

    def retry(self, host: str) -> None:
        """Try an unreachable host now."""
        ...

    def subscribe(self, maxsize: int = ...) -> asyncio.Queue[MonitorUpdate]:
        """A queue receiving every update from now on."""
        ...

    def unsubscribe(self, queue: asyncio.Queue[MonitorUpdate]) -> None:
        """Stop feeding a queue."""
        ...

    def statuses(self) -> dict[str, HostStatus]:
        """The status of every monitored host."""
        ...

    def status(self, host: str) -> HostStatus:
        """The status of one host (``KeyError`` if not monitored)."""
        ...

    def latest(self, host: str) -> Sample | None:
        """The newest sample of a host."""
        ...

    def open_problems(self) -> list[OpenProblem]:
        """Breaches the monitor reports now."""
        ...

    async def acknowledge(
        self, problem_id: str, note: str = "", actor: str | None = None
    ) -> Problem:
        """Acknowledge a stored problem (stored and audited)."""
        ...


SourceFactory = Callable[[Services, list[Host], MonitorConfig], MonitorSource]
"""Builds the pane's monitor for the monitored hosts (called in a thread)."""


def fleet_monitor(services: Services, hosts: list[Host], config: MonitorConfig) -> MonitorSource:
    """The real source: a :class:`FleetMonitor` on the services' transports and data dir."""
    return FleetMonitor.for_services(services, hosts, config)


def monitored(inventory: Inventory) -> list[Host]:
    """The hosts the pane watches: every host of the inventory but the retired ones."""
    return [h for h in inventory.hosts.values() if h.status != "retired"]


def step_interval(current: float, longer: bool) -> float:
    """The next interval of :data:`INTERVALS` above (or below) ``current``."""
    if longer:
        return next((i for i in INTERVALS if i > current), INTERVALS[-1])
    return next((i for i in reversed(INTERVALS) if i < current), INTERVALS[0])


NOTICES_KEPT = 20
"""Distinct notices a pending batch keeps (the newest are dropped beyond)."""

PAINT_SHARE = 0.5
"""At most this share of the time goes to showing updates: when a batch took
``t`` seconds from being posted to being on screen, the next waits ``t / PAINT_SHARE``."""

SLOWEST_REPAINT = 5.0
"""The longest wait between two batches, however slow showing one is."""

SHOWN_TIMEOUT = 30.0
"""Seconds a batch may take to reach the screen before the next is posted anyway."""


@dataclass
class UpdateBatch:
    """What arrived from the monitor during one repaint period, newest per host.

    Its size is bounded by the host count (plus :data:`NOTICES_KEPT` notices),
    however many updates are folded into it.
    """

    samples: dict[str, Sample]
    states: dict[str, HostStatus]
    problems: bool = False
    notices: list[str] | None = None

    @classmethod
    def of(cls, updates: Iterable[MonitorUpdate]) -> UpdateBatch:
        """Fold updates: the last sample and state of each host win."""
        batch = cls({}, {})
        for update in updates:
            batch.add(update)
        return batch

    def add(self, update: MonitorUpdate) -> None:
        """Fold one update in: it replaces the host's older sample or state."""
        if isinstance(update, SampleUpdate):
            self.samples[update.host] = update.sample
        elif isinstance(update, StateUpdate):
            self.states[update.host] = update.status
        elif isinstance(update, ProblemUpdate):
            self.problems = True
        elif isinstance(update, NoticeUpdate):
            notices = self.notices if self.notices is not None else []
            self.notices = notices
            if update.message not in notices and len(notices) < NOTICES_KEPT:
                notices.append(update.message)

    def __bool__(self) -> bool:
        """True when there is something to show."""
        return bool(self.samples or self.states or self.problems or self.notices)


class UpdateFolder:
    """Keeps a monitor's queue drained into one pending :class:`UpdateBatch`.

    :meth:`run` takes every update as soon as the event loop gives it a turn,
    so the queue never backs up (the monitor would drop its oldest updates,
    states included) and a host's older samples are replaced by newer ones
    instead of waiting to be shown one after the other.
    """

    def __init__(self, queue: asyncio.Queue[MonitorUpdate]) -> None:
        """Fold ``queue``."""
        self.queue = queue
        self.batch = UpdateBatch({}, {})
        self.arrived = asyncio.Event()
        self.folded = 0
        """Updates folded so far."""

    async def run(self) -> None:
        """Fold updates until cancelled."""
        queue = self.queue
        while True:
            update = await queue.get()
            # ``self.batch`` is read after the wait: take() may have replaced it meanwhile
            self.batch.add(update)
            count = 1
            while not queue.empty():
                self.batch.add(queue.get_nowait())
                count += 1
            self.folded += count
            self.arrived.set()

    def take(self) -> UpdateBatch:
        """The pending batch; a new one starts empty."""
        batch, self.batch = self.batch, UpdateBatch({}, {})
        self.arrived.clear()
        return batch


def next_wait(base: float, showing: float) -> float:
    """Seconds between two batches: the repaint period ``base``, longer when
    showing the last batch took ``showing`` seconds (see :data:`PAINT_SHARE`)."""
    return min(SLOWEST_REPAINT, max(base, showing / PAINT_SHARE))


def host_problems(rows: Iterable[ProblemRow]) -> dict[str, HostProblems]:
    """Open problems per host: count, worst severity, unacknowledged count."""
    counts: dict[str, list[int]] = {}
    worst: dict[str, str] = {}
    for row in rows:
        entry = counts.setdefault(row.host, [0, 0])
        entry[0] += 1
        if not row.acknowledged_by:
            entry[1] += 1
        if SEVERITY_RANK.get(row.severity, 0) > SEVERITY_RANK.get(worst.get(row.host, "ok"), 0):
            worst[row.host] = row.severity
    return {
        host: HostProblems(count, worst.get(host, ""), unacked)
        for host, (count, unacked) in counts.items()
    }


class PerformanceScreen(ReportsWorkerErrors, Screen[None]):
    """The fleet table, a status line and the open problems below it."""

    TITLE = "Performance"
    AUTO_FOCUS = "#fleet"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("w", "cycle_window", "Window"),
        Binding("plus", "slower", "Slower", key_display="+"),
        Binding("minus", "faster", "Faster", key_display="-"),
        Binding("space,P", "toggle_pause", "Pause"),
        Binding("o", "focus_problems", "Problems"),
        Binding("r", "retry", "Retry"),
        Binding("escape", "escape", "Clear filter", show=False),
    ]

    class FleetLoaded(Message):
        """The inventory was read (and, the first time, the monitor built)."""

        def __init__(
            self,
            inventory: Inventory,
            hosts: list[Host],
            haystacks: dict[str, str],
            thresholds: dict[str, dict[str, Threshold]],
            source: MonitorSource | None,
        ) -> None:
            super().__init__()
            self.inventory = inventory
            self.hosts = hosts
            self.haystacks = haystacks
            self.thresholds = thresholds
            self.source = source

    class UpdatesArrived(Message):
        """A repaint period's worth of monitor updates, posted at loop time ``posted``."""

        def __init__(self, batch: UpdateBatch, posted: float = 0.0) -> None:
            super().__init__()
            self.batch = batch
            self.posted = posted

    class ProblemsLoaded(Message):
        """Open problems were read (None when the monitor stores none)."""

        def __init__(self, problems: list[Problem] | None) -> None:
            super().__init__()
            self.problems = problems

    class Acknowledged(Message):
        """A problem was acknowledged (stored and audited)."""

        def __init__(self, problem: Problem) -> None:
            super().__init__()
            self.problem = problem

    def __init__(
        self,
        services: Services,
        clock: Clock | None = None,
        *,
        source_factory: SourceFactory | None = None,
    ) -> None:
        """The pane over ``services``; ``source_factory`` builds the monitor (tests pass one)."""
        super().__init__()
        self.services = services
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.source_factory: SourceFactory = source_factory or fleet_monitor
        self.source: MonitorSource | None = None
        self.inventory: Inventory | None = None
        self.hosts: dict[str, Host] = {}
        self.thresholds: dict[str, dict[str, Threshold]] = {}
        self.window = WINDOWS[0]
        self.problem_rows: list[ProblemRow] = []
        self._stored_problems: list[Problem] | None = None
        self._problems_minute: int | None = None
        self.filter_result = FilterResult([], "all")
        self.store_watch = StoreWatch.in_data_dir(services.settings.data_dir, INVENTORY_FILE)
        """The inventory as last read: hosts added or retired elsewhere are followed."""
        self._haystacks: dict[str, str] = {}
        self._statuses: dict[str, HostStatus] = {}
        self._samples: dict[str, Sample] = {}
        self._problems: dict[str, HostProblems] = {}
        self._trends: dict[str, tuple[float, int, tuple[float | None, ...]]] = {}
        self._status_text = ""
        self._problems_text = ""
        self._child_open = False
        self._notices: set[str] = set()
        self.folder: UpdateFolder | None = None
        """The live batch being gathered (None until the monitor is followed)."""
        self.batches_shown = 0
        """Batches of updates applied and painted."""
        self._shown = asyncio.Event()
        self._shown.set()
        self._showing_took = 0.0

    # -- layout -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Filter, fleet table, status line, then the problems panel."""
        yield Header(icon="≡")
        yield PaneTabs()
        yield FilterInput(id="perf-filter")
        yield ProductionBanner(id="perf-production-banner")
        yield FleetTable(id="fleet")
        yield Static("Loading the inventory…", id="perf-status", markup=False)
        yield Static("Open problems", id="problems-title", markup=False)
        yield ProblemTable(id="problems")
        yield Footer()

    @property
    def table(self) -> FleetTable:
        """The fleet table."""
        return self.query_one("#fleet", FleetTable)

    @property
    def problem_table(self) -> ProblemTable:
        """The problems panel's table."""
        return self.query_one("#problems", ProblemTable)

    def on_mount(self) -> None:
        """Read the inventory and build the monitor (in a thread)."""
        self.table.set_label("trend", f"CPU {window_label(self.window)}")
        self._load_fleet()
        follow_store(self, self.store_watch, self._load_fleet)

    def on_screen_resume(self) -> None:
        """Coming back from another pane: the inventory may have changed."""
        if self._child_open:
            self._child_open = False
            return
        if self.inventory is not None:
            self._load_fleet()

    async def on_unmount(self) -> None:
        """Stop the monitor: streams closed, rollups written (the app is exiting)."""
        source, self.source = self.source, None
        if source is None:
            return
        try:
            await source.stop()
        except Exception:
            log.exception("stopping the metrics monitor failed")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed load (bad thresholds, unreadable store) must not leave "Loading" up."""
        if event.state is WorkerState.ERROR and event.worker.group == "load" and self.source is None:
            self._status_text = "Live metrics could not start (see the notice)."
            self.query_one("#perf-status", Static).update(self._status_text, layout=False)
            self.inventory = None

    # -- loading ----------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load", description="Load the fleet")
    def _load_fleet(self) -> None:
        """Read the inventory; the first time, build the monitor for it (in a thread)."""
        self.store_watch.mark()
        inventory = self.services.inventory.load()
        hosts = monitored(inventory)
        settings_thresholds = self.services.settings.thresholds
        thresholds = {
            h.name: resolve_thresholds(h.name, h.groups, settings_thresholds) for h in hosts
        }
        haystacks = {h.name: host_text(h) for h in hosts}
        source = None
        if self.source is None:
            source = self.source_factory(self.services, hosts, monitor_config(self.services.settings))
        self.post_message(self.FleetLoaded(inventory, hosts, haystacks, thresholds, source))

    def on_performance_screen_fleet_loaded(self, message: FleetLoaded) -> None:
        """Show the hosts; start following the monitor, or tell it the new host list."""
        self.inventory = message.inventory
        self.hosts = {h.name: h for h in message.hosts}
        self.thresholds = message.thresholds
        self._haystacks = message.haystacks
        for table in (self._statuses, self._samples, self._trends):
            for name in [n for n in table if n not in self.hosts]:
                del table[name]
        if message.source is not None and self.source is None:
            self.source = message.source
            self._follow(message.source)
        elif self.source is not None:
            self.source.set_hosts(message.hosts)
        self.table.set_rows(self._row(name) for name in self.hosts)
        self._refilter()
        self._show_status()

    # -- following the monitor ----------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="monitor", description="Live metrics")
    async def _follow(self, source: MonitorSource) -> None:
        """Start the monitor and post its updates, gathered per repaint period.

        A batch is posted only once the previous one is on screen, so the
        screen's own queue never holds more than one and there is always a
        paint between two batches.
        """
        queue = source.subscribe()
        folder = UpdateFolder(queue)
        self.folder = folder
        folding = asyncio.create_task(folder.run(), name="fold monitor updates")
        try:
            await source.start()
            statuses = source.statuses()
            samples = {n: s for n in statuses if (s := source.latest(n)) is not None}
            loop = asyncio.get_running_loop()
            self._post_batch(UpdateBatch(samples, statuses, problems=True), loop.time())
            last = loop.time()
            while True:
                await folder.arrived.wait()
                try:
                    await asyncio.wait_for(self._shown.wait(), SHOWN_TIMEOUT)
                except TimeoutError:
                    # a lost refresh callback (the app switching screens) must not stop the pane
                    self._showing_took = SLOWEST_REPAINT
                wait = last + next_wait(repaint_period(source.config.interval), self._showing_took)
                delay = wait - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                last = loop.time()
                self._post_batch(folder.take(), last)
        finally:
            folding.cancel()
            source.unsubscribe(queue)

    def _post_batch(self, batch: UpdateBatch, posted: float) -> None:
        self._shown.clear()
        self.post_message(self.UpdatesArrived(batch, posted))

    def _batch_on_screen(self, posted: float) -> None:
        self._showing_took = max(0.0, asyncio.get_running_loop().time() - posted)
        self.batches_shown += 1
        self._shown.set()

    def on_performance_screen_updates_arrived(self, message: UpdatesArrived) -> None:
        """Apply a batch: rows of the hosts it touched, then the status line."""
        try:
            self._apply(message.batch)
        finally:
            # The next batch waits until this one is painted (or, if the pane is
            # not on screen, until the screen shown has refreshed).
            if not self.call_after_refresh(self._batch_on_screen, message.posted):
                self._shown.set()

    def _apply(self, batch: UpdateBatch) -> None:
        self._statuses.update(batch.states)
        self._samples.update(batch.samples)
        changed = (batch.states.keys() | batch.samples.keys()) & self.hosts.keys()
        if changed:
            self.table.update_rows(self._row(name) for name in changed)
        if batch.states and self.filter_result.mode == "text":
            self._refilter()  # states are part of what free text matches
        if batch.problems:
            self._load_problems()
        elif self._problems_minute != self._minute():
            self._show_problems()  # "since" ages move on
        for notice in batch.notices or ():
            if notice not in self._notices:
                self._notices.add(notice)
                self.app.notify(notice, title="Live metrics", severity="warning", markup=False)
        self._show_status()

    def _trend(self, name: str) -> tuple[float | None, ...]:
        """The CPU trend of a host, computed again only when a trend bucket completed."""
        source = self.source
        if source is None or name not in self._samples:
            return ()
        history = source.history.host(name)
        latest = history.latest_time
        if latest is None:
            return ()
        last_bucket = math.floor(latest / trend_bucket(self.window)) - 1
        cached = self._trends.get(name)
        if cached is not None and cached[0] == self.window and cached[1] == last_bucket:
            return cached[2]
        values, last = trend_values(history, self.window)
        self._trends[name] = (self.window, last, values)
        return values

    def _row(self, name: str) -> FleetRow:
        status = self._statuses.get(name)
        return fleet_row(
            self.hosts[name],
            status.state if status is not None else "connecting",
            status.error if status is not None else None,
            self._samples.get(name),
            self._trend(name),
            self._problems.get(name, HostProblems()),
            self.thresholds.get(name, {}),
        )

    # -- problems -------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="problems", description="Load problems")
    def _load_problems(self) -> None:
        source = self.source
        if source is None:
            return
        repo = source.problems
        self.post_message(self.ProblemsLoaded(repo.open_problems() if repo is not None else None))

    def on_performance_screen_problems_loaded(self, message: ProblemsLoaded) -> None:
        """List the problems and count them per host."""
        self._stored_problems = message.problems
        self._show_problems()

    def _minute(self) -> int:
        return int(self.clock().timestamp() // 60)

    def _show_problems(self) -> None:
        source = self.source
        fallback = source.open_problems() if source is not None else []
        self._problems_minute = self._minute()
        rows = problem_rows(self._stored_problems, fallback, self.clock())
        self.problem_rows = rows
        table = self.problem_table
        if {r.key for r in rows} == {r.key for r in table.rows()}:
            table.update_rows(rows)  # ages and acknowledgements: only changed cells repaint
        else:
            table.set_rows(rows)
        counts = host_problems(rows)
        touched = (counts.keys() | self._problems.keys()) & self.hosts.keys()
        self._problems = counts
        self.table.update_rows(self._row(name) for name in touched)
        unacknowledged = sum(1 for r in rows if r.problem_id and not r.acknowledged_by)
        text = f"Open problems: {len(rows)}"
        if unacknowledged:
            text += f" ({unacknowledged} not acknowledged)"
        text += " · o focuses this list · a acknowledges · Enter opens the host"
        if text != self._problems_text:
            self._problems_text = text
            self.query_one("#problems-title", Static).update(text, layout=False)

    @on(ProblemTable.AcknowledgeRequested)
    def _acknowledge_requested(self, message: ProblemTable.AcknowledgeRequested) -> None:
        if ask_acknowledgement(self, self.services.read_only, message.problem,
                               self._acknowledge, stored=self.source is not None):
            self._child_open = True

    @work(exclusive=True, exit_on_error=False, group="acknowledge", description="Acknowledge")
    async def _acknowledge(self, problem_id: str, note: str) -> None:
        source = self.source
        if source is None:
            return
        problem = await source.acknowledge(problem_id, note, actor=self.services.actor)
        self.post_message(self.Acknowledged(problem))

    def on_performance_screen_acknowledged(self, message: Acknowledged) -> None:
        """Say so, and list the problems again."""
        self.app.notify(f"{message.problem.id} acknowledged.", markup=False)
        self._load_problems()

    # -- filtering ---------------------------------------------------------------------

    def _refilter(self) -> None:
        inventory = self.inventory
        if inventory is None:
            return
        text = self.query_one(FilterInput).value
        haystacks = {
            name: f"{hay} {self._statuses[name].state if name in self._statuses else 'connecting'}"
            for name, hay in self._haystacks.items()
        }
        result = match_filter(inventory, haystacks, text)
        self.filter_result = result
        self.table.show(None if result.mode == "all" else result.names)

    @on(Input.Changed, "#perf-filter")
    def _filter_changed(self) -> None:
        self._refilter()
        self._show_status()

    def action_focus_filter(self) -> None:
        """Put the cursor in the filter box."""
        self.set_focus(self.query_one(FilterInput))

    def action_escape(self) -> None:
        """Clear the filter."""
        filter_input = self.query_one(FilterInput)
        if filter_input.value:
            with self.prevent(Input.Changed):
                filter_input.value = ""
            self._refilter()
            self._show_status()

    # -- status -------------------------------------------------------------------------

    @on(CellTable.ViewChanged, "#fleet")
    def _view_changed(self) -> None:
        self._show_status()

    @on(CellTable.CursorMoved, "#fleet")
    def _cursor_moved(self, message: CellTable.CursorMoved) -> None:
        host = self.hosts.get(message.key) if message.key is not None else None
        open_changes = getattr(self.app, "open_changes", [])
        self.query_one(ProductionBanner).show_for([host], open_changes)

    def status_text(self) -> str:
        """``50 hosts: 45 up, 5 unreachable · interval 2s · window 1m · sort ...``."""
        if self.inventory is None:
            return "Loading the inventory…"
        counts: dict[str, int] = {}
        for name in self.hosts:
            status = self._statuses.get(name)
            state = status.state if status is not None else "connecting"
            counts[state] = counts.get(state, 0) + 1
        order = ("up", "connecting", "stale", "unreachable", "paused")
        states = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
        table = self.table
        count = len(self.hosts)
        parts = [f"{count:,} host{'' if count == 1 else 's'}" + (f": {states}" if states else "")]
        if table.row_count != table.total_count:
            parts.append(f"{table.row_count:,} shown")
        text = self.query_one(FilterInput).value.strip()
        if text:
            parts.append(f"{'selector' if self.filter_result.mode == 'selector' else 'text'}: {text}")
        source = self.source
        if source is not None:
            parts.append(f"interval {format_interval(source.config.interval)}")
        parts.append(f"window {window_label(self.window)}")
        parts.append(f"sort: {table.sort_description()}")
        retired = 0 if self.inventory is None else len(self.inventory.hosts) - len(self.hosts)
        if retired:
            parts.append(f"{retired} retired not watched")
        if source is not None and source.paused:
            parts.append("PAUSED (space resumes)")
        if self.services.read_only:
            parts.append("READ-ONLY")
        return " · ".join(parts)

    def _show_status(self) -> None:
        text = self.status_text()
        # One fixed-height line, repainted only when its text changes.
        if text != self._status_text:
            self._status_text = text
            self.query_one("#perf-status", Static).update(text, layout=False)

    # -- keys ------------------------------------------------------------------------------

    def action_cycle_window(self) -> None:
        """Trend over the next window (1m, 5m, 15m, 1h); the drill-down opens on it."""
        self.window = next_window(self.window)
        table = self.table
        table.set_label("trend", f"CPU {window_label(self.window)}")
        table.update_rows(self._row(name) for name in self.hosts)
        self._show_status()

    def _set_interval(self, longer: bool) -> None:
        source = self.source
        if source is None:
            return
        current = source.config.interval
        new = step_interval(current, longer)
        if new != current:
            source.set_interval(new)
        self._show_status()

    def action_slower(self) -> None:
        """Collect less often."""
        self._set_interval(True)

    def action_faster(self) -> None:
        """Collect more often."""
        self._set_interval(False)

    def action_toggle_pause(self) -> None:
        """Pause collection (the hosts' loops end), or resume it."""
        source = self.source
        if source is None:
            return
        if source.paused:
            source.resume()
        else:
            source.pause()
        self._show_status()

    def action_focus_problems(self) -> None:
        """Move between the fleet table and the problems list."""
        target = self.table if self.focused is self.problem_table else self.problem_table
        self.set_focus(target)

    def action_retry(self) -> None:
        """Try the cursor host now instead of waiting for its backoff."""
        name = self.table.cursor_key
        if name is None or self.source is None:
            return
        self.source.retry(name)
        self.app.notify(f"Trying {name} again now.", markup=False)

    # -- drill-down ------------------------------------------------------------------------------

    @on(CellTable.RowChosen, "#fleet")
    def _host_chosen(self, message: CellTable.RowChosen) -> None:
        self.open_drilldown(message.key)

    @on(CellTable.RowChosen, "#problems")
    def _problem_chosen(self, message: CellTable.RowChosen) -> None:
        row = self.problem_table.row(message.key)
        if row is not None:
            self.open_drilldown(row.host)

    def open_drilldown(self, name: str) -> None:
        """Show host ``name`` in depth."""
        host = self.hosts.get(name)
        if host is None or self.source is None:
            self.app.notify(f"{name} is not monitored.", severity="warning", markup=False)
            return
        # Facts discovered since the pane started (Inventory, d) are shown too.
        host = self.services.inventory.get_host(name) or host
        self._child_open = True
        self.app.push_screen(
            HostDrilldown(
                self.services,
                self.source,
                host,
                window=self.window,
                thresholds=self.thresholds.get(name, {}),
                problems=[r for r in self.problem_rows if r.host == name],
                clock=self.clock,
            )
        )

    def state_of(self, name: str) -> str:
        """The state shown for host ``name``."""
        status = self._statuses.get(name)
        return status.state if status is not None else "connecting"

