"""One host in depth: per-core CPU, memory, filesystems, disks, interfaces, graphs.

Opened with Enter on the fleet table. Everything live comes from the
monitor the Performance pane runs: the latest sample, the host's status and
its in-memory history (graphs over the last minutes to one hour). The
screen follows the monitor's updates in a worker and repaints at most once
per interval. Top processes are fetched on demand (``p``) in a worker:
``ps`` over SSH, psutil for this machine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group as RenderGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from itop_tui.domain.metrics import Sample
from itop_tui.domain.models import Host
from itop_tui.domain.output import shorten, shorten_path, strip_control
from itop_tui.domain.processes import ProcessRow, TopProcesses
from itop_tui.domain.thresholds import Threshold
from itop_tui.ops.fleet_monitor import HostStatus, ProblemUpdate
from itop_tui.ops.top_processes import top_processes
from itop_tui.screens.problems import ProblemRow, host_problem_lines, problem_rows
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.context import Services
from itop_tui.widgets.fleet_table import format_load, level
from itop_tui.widgets.host_facts import format_duration, format_fact, format_memory, host_os
from itop_tui.widgets.host_table import Clock, relative_time
from itop_tui.widgets.metric_graph import MetricGraph, Unit, format_rate

if TYPE_CHECKING:
    from itop_tui.screens.performance import MonitorSource

WINDOWS: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0)
"""The time windows ``w`` cycles through: 1m, 5m, 15m, 1h."""

REPAINT_MIN = 0.5
"""Seconds between two repaints at least, whatever the interval."""
REPAINT_MAX = 1.0
"""Seconds between two repaints at most when updates keep coming."""

LIST_LIMIT = 8
"""Rows shown per filesystem, disk, interface or process list."""

WAITING = "waiting for the first sample"

WIDE_COLUMNS = 120
"""From this width on, figures, graphs and facts stand side by side; below it the
facts and processes go under the figures and graphs, which keep their room."""


def empty_text(status: HostStatus | None) -> str:
    """What a section without data says, for a host in this state."""
    if status is None:
        return WAITING
    if status.state == "unreachable":
        return "no data: the host is unreachable"
    if status.state == "paused":
        return "no data: collection is paused"
    return WAITING


_STYLE_OF_LEVEL = {"": "green", "warning": "yellow", "critical": "bold red"}
_SEVERITY_STYLE = {"warning": "yellow", "critical": "bold red"}


def window_label(seconds: float) -> str:
    """``1m``, ``15m``, ``1h``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def format_interval(seconds: float) -> str:
    """``0.5s``, ``2s``."""
    return f"{seconds:g}s"


def next_window(current: float) -> float:
    """The window after ``current`` in :data:`WINDOWS`, wrapping around."""
    later = [w for w in WINDOWS if w > current]
    return later[0] if later else WINDOWS[0]


def repaint_period(interval: float) -> float:
    """How often a live view repaints at most for a collection ``interval``."""
    return max(REPAINT_MIN, min(interval, REPAINT_MAX))


@dataclass(frozen=True)
class GraphSpec:
    """One graph of the drill-down."""

    id: str
    title: str
    metric: str
    unit: Unit
    floor: float = 1.0


GRAPHS: tuple[GraphSpec, ...] = (
    GraphSpec("graph-cpu", "CPU", "cpu_percent", "percent"),
    GraphSpec("graph-mem", "Memory", "mem_percent", "percent"),
    GraphSpec("graph-swap", "Swap", "swap_percent", "percent"),
    GraphSpec("graph-load", "Load 1m", "load1", "plain"),
    GraphSpec("graph-disk-util", "Busiest disk", "disk_busiest_util", "percent"),
    GraphSpec("graph-disk-read", "Disk read/s", "disk_read_bps", "rate", 1024.0),
    GraphSpec("graph-disk-write", "Disk write/s", "disk_write_bps", "rate", 1024.0),
    GraphSpec("graph-net-rx", "Net rx/s", "net_rx_bps", "rate", 1024.0),
    GraphSpec("graph-net-tx", "Net tx/s", "net_tx_bps", "rate", 1024.0),
)


def bar(share: float | None, width: int, style: str) -> Text:
    """A horizontal bar ``width`` cells wide, filled to ``share`` percent."""
    if share is None:
        return Text("·" * width, style="dim")
    filled = round(min(100.0, max(0.0, share)) / 100 * width)
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"))


def _level_style(threshold: Threshold | None, value: float | None) -> str:
    return _STYLE_OF_LEVEL[level(threshold, value)]


def _section(title: str, body: RenderableType | None, empty: str) -> RenderableType:
    heading = Text(title, style="bold underline")
    if body is None:
        return RenderGroup(heading, Text(empty, style="dim italic"))
    return RenderGroup(heading, body)


def render_cores(
    sample: Sample | None, threshold: Threshold | None, width: int = 48, empty: str = WAITING
) -> RenderableType:
    """One bar per core, in up to four columns (``empty`` says why there are none)."""
    if sample is None or not sample.cpu_per_core:
        return _section("CPU per core", None, empty)
    cores = sample.cpu_per_core
    columns = min(4, max(1, math.ceil(len(cores) / 16)))
    rows = math.ceil(len(cores) / columns)
    label_width = len(str(len(cores) - 1))
    cell_width = width // columns - 1
    bar_width = max(4, cell_width - label_width - 6)
    table = Table.grid(padding=(0, 1))
    for _ in range(columns):
        table.add_column(no_wrap=True)
    for row in range(rows):
        cells: list[Text] = []
        for column in range(columns):
            index = column * rows + row
            if index >= len(cores):
                cells.append(Text(""))
                continue
            value = cores[index]
            text = Text(str(index).rjust(label_width) + " ")
            text.append_text(bar(value, bar_width, _level_style(threshold, value)))
            text.append(" -" if value is None else f"{value:4.0f}%"[-5:].rjust(5))
            cells.append(text)
        table.add_row(*cells)
    total = sample.cpu_percent
    title = "CPU per core" + ("" if total is None else f"  (total {total:.0f}%)")
    return _section(title, table, "")


def render_memory(
    sample: Sample | None,
    thresholds: Mapping[str, Threshold],
    width: int = 18,
    empty: str = WAITING,
) -> RenderableType:
    """Memory and swap bars with used and total sizes (``empty`` says why there are none)."""
    if sample is None or sample.mem_total is None:
        return _section("Memory", None, empty)
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, justify="right")
    table.add_column(no_wrap=True)
    mem = sample.mem_percent
    used = None
    if sample.mem_available is not None:
        used = sample.mem_total - sample.mem_available
    table.add_row(
        "Mem",
        bar(mem, width, _level_style(thresholds.get("mem_percent"), mem)),
        "-" if mem is None else f"{mem:.0f}%",
        f"{format_memory(used) if used is not None else '-'} of {format_memory(sample.mem_total)}",
    )
    if sample.swap_total:
        swap = sample.swap_percent
        table.add_row(
            "Swap",
            bar(swap, width, _level_style(thresholds.get("swap_percent"), swap)),
            "-" if swap is None else f"{swap:.0f}%",
            f"{format_memory(sample.swap_used or 0)} of {format_memory(sample.swap_total)}",
        )
    else:
        table.add_row("Swap", Text("none", style="dim"), "", "")
    return _section("Memory", table, "")


def _grid(headers: tuple[str, ...], right: set[int]) -> Table:
    table = Table(
        box=None, padding=(0, 1), show_edge=False, header_style="bold", pad_edge=False
    )
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index in right else "left", no_wrap=True)
    return table


def render_filesystems(sample: Sample | None, threshold: Threshold | None) -> RenderableType:
    """The fullest filesystems, writable ones first.

    Read-only mounts (a snap's squashfs, a mounted ISO: often 100 % used,
    never filling further) are listed last, dimmed, marked ``ro`` and not
    coloured by the threshold, as they do not count in ``fs_max_percent``.
    """
    if sample is None or not sample.filesystems:
        return _section("Filesystems", None, "none reported yet")
    table = _grid(("Mount", "Size", "Used", "Use%"), {1, 2, 3})
    ordered = sorted(sample.filesystems, key=lambda fs: (fs.read_only, -(fs.percent or 0.0)))
    for fs in ordered[:LIST_LIMIT]:
        percent = fs.percent
        figure = "-" if percent is None else f"{percent:.0f}%"
        if fs.read_only:
            table.add_row(
                Text(shorten_path(strip_control(fs.mount), 21) + " ro", "dim"),
                Text(format_memory(fs.size), "dim"),
                Text(format_memory(fs.used), "dim"),
                Text(figure, "dim"),
            )
            continue
        table.add_row(
            shorten_path(strip_control(fs.mount), 24),
            format_memory(fs.size),
            format_memory(fs.used),
            Text(figure, _level_style(threshold, percent)),
        )
    more = len(ordered) - LIST_LIMIT
    title = "Filesystems" + (f"  (+{more} more)" if more > 0 else "")
    return _section(title, table, "")


def render_disks(sample: Sample | None, threshold: Threshold | None) -> RenderableType:
    """The busiest disks."""
    if sample is None or not sample.disks:
        return _section("Disks", None, "no rates yet")
    table = _grid(("Disk", "Read/s", "Write/s", "Util%"), {1, 2, 3})
    ordered = sorted(sample.disks.items(), key=lambda item: (-item[1].util_percent, item[0]))
    for name, rate in ordered[:LIST_LIMIT]:
        table.add_row(
            shorten(strip_control(name), 16),
            format_rate(rate.read_bps),
            format_rate(rate.write_bps),
            Text(f"{rate.util_percent:.0f}%", _level_style(threshold, rate.util_percent)),
        )
    return _section("Disks", table, "")


def render_interfaces(sample: Sample | None) -> RenderableType:
    """The busiest network interfaces."""
    if sample is None or not sample.interfaces:
        return _section("Interfaces", None, "no rates yet")
    table = _grid(("Interface", "Rx/s", "Tx/s"), {1, 2})
    ordered = sorted(
        sample.interfaces.items(), key=lambda item: (-(item[1].rx_bps + item[1].tx_bps), item[0])
    )
    for name, rate in ordered[:LIST_LIMIT]:
        table.add_row(
            shorten(strip_control(name), 16), format_rate(rate.rx_bps), format_rate(rate.tx_bps)
        )
    return _section("Interfaces", table, "")


FACT_ROWS: tuple[tuple[str, str], ...] = (
    ("kernel", "Kernel"),
    ("arch", "Arch"),
    ("cpu_model", "CPU"),
    ("cpu_count", "CPUs"),
    ("mem_total", "Memory"),
    ("virtualization", "Virtualization"),
    ("init", "Init"),
    ("ip_addresses", "Addresses"),
)


def render_facts(host: Host, now: datetime) -> RenderableType:
    """The host's inventory record and discovered facts."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    address = host.connect_address + (f":{host.port}" if host.port else "")
    table.add_row("Address", Text(strip_control(address)))
    table.add_row("Status", Text(f"{host.status}, criticality {host.criticality}"))
    table.add_row("Groups", Text(strip_control(", ".join(host.groups)) or "-"))
    os_name = host_os(host)
    if os_name:
        table.add_row("OS", Text(strip_control(os_name)))
    for key, label in FACT_ROWS:
        if key in host.facts:
            table.add_row(label, Text(strip_control(format_fact(key, host.facts[key]))))
    if host.facts_at:
        table.add_row("Facts", Text(f"discovered {relative_time(host.facts_at, now)}"))
    else:
        table.add_row("Facts", Text("not discovered yet (d in the Inventory pane)", style="dim"))
    return _section("Host", table, "")


def render_problems(rows: list[ProblemRow]) -> RenderableType:
    """The host's open problems."""
    if not rows:
        return _section("Open problems", None, "none")
    lines = [Text(text, style=_SEVERITY_STYLE.get(severity, "")) for text, severity in host_problem_lines(rows)]
    return _section(f"Open problems ({len(rows)})", RenderGroup(*lines), "")


def _process_table(title: str, rows: list[ProcessRow]) -> RenderableType:
    table = _grid(("PID", "User", "CPU%", "Mem%", "RSS", "Command"), {0, 2, 3, 4})
    for row in rows[:LIST_LIMIT]:
        table.add_row(
            str(row.pid),
            # Cut to fit the panel's 56 columns: a wider table gets its
            # headers squeezed ("Me…") by the renderer instead.
            shorten(strip_control(row.user), 8),
            f"{row.cpu_percent:.1f}",
            f"{row.mem_percent:.1f}",
            format_memory(row.rss),
            shorten(strip_control(row.command), 16),
        )
    return RenderGroup(Text(title, style="italic"), table)


def render_processes(result: TopProcesses | None, loading: bool) -> RenderableType:
    """Top processes by CPU and by memory, or how to get them."""
    if loading:
        return _section("Top processes", None, "fetching…")
    if result is None:
        return _section("Top processes", None, "p lists the busiest processes")
    parts: list[RenderableType] = []
    if result.error:
        parts.append(Text(strip_control(result.error), style="bold red"))
    if result.by_cpu:
        window = f"{result.cpu_window:.1f} s" if result.cpu_window else "1 s"
        parts.append(_process_table(
            f"by CPU (% of one core over the last {window}, as top shows)", result.by_cpu))
    elif result.note:
        parts.append(Text(strip_control(result.note), style="dim"))
    if result.by_memory:
        parts.append(_process_table("by resident memory", result.by_memory))
    if not parts:
        parts.append(Text("no processes listed", style="dim"))
    return _section("Top processes  (p refreshes)", RenderGroup(*parts), "")


def status_line(
    host: Host, status: HostStatus | None, sample: Sample | None, interval: float, window: float,
    paused: bool,
) -> Text:
    """``web01 · up · 4 cores · up 3d 4h · 213 processes · load 0.52 0.61 0.70 · ...``."""
    state = status.state if status is not None else "connecting"
    style = {"up": "green", "unreachable": "bold red", "stale": "yellow"}.get(state, "dim")
    text = Text.assemble((strip_control(host.name), "bold"), " · ", (state, style))
    if status is not None and status.error and state in ("unreachable", "stale"):
        text.append(f" ({strip_control(status.error)})", style="dim")
    if sample is not None:
        parts = []
        if sample.cpu_per_core:
            parts.append(f"{len(sample.cpu_per_core)} cores")
        if sample.uptime is not None:
            parts.append(f"up {format_duration(sample.uptime)}")
        if sample.procs is not None:
            parts.append(f"{sample.procs} processes")
        parts.append(
            f"load {format_load(sample.load1)} {format_load(sample.load5)} {format_load(sample.load15)}"
        )
        stamp = datetime.fromtimestamp(sample.time, UTC).strftime("%H:%M:%SZ")
        parts.append(f"sample {stamp}")
        text.append(" · " + " · ".join(parts))
    text.append(f" · interval {format_interval(interval)} · window {window_label(window)}")
    if paused:
        text.append(" · PAUSED", style="bold yellow")
    return text


class HostDrilldown(ReportsWorkerErrors, Screen[None]):
    """Everything live about one host, with graphs over a time window."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_COLUMNS, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("w", "cycle_window", "Window"),
        Binding("p", "top_processes", "Top processes"),
        Binding("space,P", "toggle_pause", "Pause/resume"),
    ]

    class HostUpdated(Message):
        """New data for the host arrived (``problems`` when its problems changed)."""

        def __init__(self, problems: bool) -> None:
            super().__init__()
            self.problems = problems

    class ProcessesLoaded(Message):
        """Top processes arrived."""

        def __init__(self, result: TopProcesses) -> None:
            super().__init__()
            self.result = result

    class ProblemsLoaded(Message):
        """The host's open problems were read again."""

        def __init__(self, rows: list[ProblemRow]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(
        self,
        services: Services,
        source: MonitorSource,
        host: Host,
        *,
        window: float = WINDOWS[0],
        thresholds: Mapping[str, Threshold] | None = None,
        problems: list[ProblemRow] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Show ``host`` as ``source`` (the running monitor) sees it."""
        super().__init__()
        self.services = services
        self.source = source
        self.host = host
        self.window = window
        self.thresholds: Mapping[str, Threshold] = thresholds or {}
        self.problem_rows: list[ProblemRow] = list(problems or [])
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.processes: TopProcesses | None = None
        self.processes_loading = False
        self.title = f"Host {host.name}"
        self._shown: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        """Status line; live figures, graphs, and facts with processes side by side."""
        yield Header(icon="≡")
        yield Static("", id="drill-status")
        with Horizontal(id="drill-body"):
            with VerticalScroll(id="drill-left", can_focus=False):
                yield Static("", id="drill-cores")
                yield Static("", id="drill-memory")
                yield Static("", id="drill-filesystems")
                yield Static("", id="drill-disks")
                yield Static("", id="drill-interfaces")
            with VerticalScroll(id="drill-graphs", can_focus=False):
                for spec in GRAPHS:
                    yield MetricGraph(
                        spec.title,
                        spec.unit,
                        threshold=self.thresholds.get(spec.metric),
                        floor=spec.floor,
                        id=spec.id,
                    )
            with VerticalScroll(id="drill-right"):
                yield Static("", id="drill-facts")
                yield Static("", id="drill-problems")
                yield Static("", id="drill-processes")
        yield Footer()

    def on_mount(self) -> None:
        """Draw what the monitor has now, then follow its updates."""
        self.refresh_live()
        self._update("drill-facts", render_facts(self.host, self.clock()), ("facts",))
        self._show_problems()
        self._show_processes()
        self._follow()

    # -- live data -------------------------------------------------------------

    @work(exclusive=True, exit_on_error=False, group="follow", description="Follow the host")
    async def _follow(self) -> None:
        source = self.source
        name = self.host.name
        queue = source.subscribe()
        loop = asyncio.get_running_loop()
        last = -math.inf
        try:
            while True:
                update = await queue.get()
                if update_host(update) != name:
                    continue
                problems = isinstance(update, ProblemUpdate)
                wait = last + repaint_period(source.config.interval) - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                while not queue.empty():
                    more = queue.get_nowait()
                    if update_host(more) == name and isinstance(more, ProblemUpdate):
                        problems = True
                last = loop.time()
                self.post_message(self.HostUpdated(problems))
        finally:
            source.unsubscribe(queue)

    def on_host_drilldown_host_updated(self, message: HostUpdated) -> None:
        """Repaint the live parts; read the problems again when they changed."""
        self.refresh_live()
        if message.problems:
            self._load_problems()

    def refresh_live(self) -> None:
        """Redraw status, per-core CPU, memory, lists and graphs from the monitor."""
        source = self.source
        name = self.host.name
        sample = source.latest(name)
        try:
            status: HostStatus | None = source.status(name)
        except KeyError:
            status = None
        thresholds = self.thresholds
        self._update(
            "drill-status",
            status_line(
                self.host, status, sample, source.config.interval, self.window, source.paused
            ),
            ("status", status, None if sample is None else sample.time, self.window, source.paused,
             source.config.interval),
        )
        stamp = None if sample is None else sample.time
        empty = empty_text(status)
        self._update(
            "drill-cores",
            render_cores(sample, thresholds.get("cpu_percent"), empty=empty),
            ("cores", stamp, empty),
        )
        self._update(
            "drill-memory", render_memory(sample, thresholds, empty=empty), ("memory", stamp, empty)
        )
        self._update(
            "drill-filesystems",
            render_filesystems(sample, thresholds.get("fs_max_percent")),
            ("fs", stamp),
        )
        self._update(
            "drill-disks", render_disks(sample, thresholds.get("disk_busiest_util")), ("disks", stamp)
        )
        self._update("drill-interfaces", render_interfaces(sample), ("net", stamp))
        history = source.history.host(name)
        for spec in GRAPHS:
            graph = self.query_one(f"#{spec.id}", MetricGraph)
            graph.show(
                history.window(spec.metric, self.window), self.window, span=source.config.interval
            )

    def _update(self, widget_id: str, renderable: RenderableType, key: tuple[Any, ...]) -> None:
        """Update a Static only when what it shows changed (each update costs output)."""
        if self._shown.get(widget_id) == key:
            return
        self._shown[widget_id] = key
        self.query_one(f"#{widget_id}", Static).update(renderable)

    # -- problems ----------------------------------------------------------------

    def _show_problems(self) -> None:
        rows = self.problem_rows
        self._update(
            "drill-problems",
            render_problems(rows),
            ("problems", tuple((r.key, r.severity, r.acknowledged_by, r.note) for r in rows)),
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="problems", description="Load problems")
    def _load_problems(self) -> None:
        repo = self.source.problems
        stored = repo.open_problems(self.host.name) if repo is not None else None
        fallback = [p for p in self.source.open_problems() if p.host == self.host.name]
        self.post_message(self.ProblemsLoaded(problem_rows(stored, fallback, self.clock())))

    def on_host_drilldown_problems_loaded(self, message: ProblemsLoaded) -> None:
        """Show the host's problems as read."""
        self.problem_rows = message.rows
        self._show_problems()

    # -- processes ----------------------------------------------------------------

    def _show_processes(self) -> None:
        self.query_one("#drill-processes", Static).update(
            render_processes(self.processes, self.processes_loading)
        )

    def action_top_processes(self) -> None:
        """Fetch the busiest processes of the host (``ps`` over SSH, psutil locally)."""
        self.processes_loading = True
        self._show_processes()
        self._fetch_processes()

    @work(exclusive=True, exit_on_error=False, group="processes", description="Top processes")
    async def _fetch_processes(self) -> None:
        host = self.host
        transport = None if host.is_local else self.services.transports.for_host(host)
        try:
            audit = None if self.services.read_only else self.services.audit
            result = await top_processes(host, transport, audit=audit)
        except BaseException:
            self.post_message(self.ProcessesLoaded(TopProcesses(host.name, error="not fetched")))
            raise
        self.post_message(self.ProcessesLoaded(result))

    def on_host_drilldown_processes_loaded(self, message: ProcessesLoaded) -> None:
        """Show the processes."""
        self.processes = message.result
        self.processes_loading = False
        self._show_processes()

    # -- keys ------------------------------------------------------------------------

    def action_back(self) -> None:
        """Back to the fleet."""
        self.dismiss(None)

    def action_cycle_window(self) -> None:
        """Show graphs over the next time window (1m, 5m, 15m, 1h)."""
        self.window = next_window(self.window)
        self.refresh_live()

    def action_toggle_pause(self) -> None:
        """Pause or resume collection (for the whole fleet)."""
        if self.source.paused:
            self.source.resume()
        else:
            self.source.pause()
        self.refresh_live()


def update_host(update: object) -> str | None:
    """The host an update is about, if any."""
    host = getattr(update, "host", None)
    return host if isinstance(host, str) else None
