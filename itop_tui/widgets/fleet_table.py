"""The Performance pane's live fleet table.

:class:`FleetTable` is a :class:`~itop_tui.widgets.cell_table.CellTable`
(rows updated in place, re-sorted, and only the cells whose text or style
changed on screen repainted: at one update a second per host that keeps the
output to the few cells that really changed, ARCHITECTURE.md section 8):
host, state, CPU, memory, load, busiest disk, network, a CPU trend, open
problems and a note.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual.binding import Binding, BindingType

from itop_tui.domain.history import HostHistory
from itop_tui.domain.metrics import Sample
from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.domain.thresholds import SEVERITY_RANK, Threshold
from itop_tui.widgets.cell_table import Cell as Cell
from itop_tui.widgets.cell_table import CellTable as CellTable
from itop_tui.widgets.cell_table import SortKey as SortKey
from itop_tui.widgets.cell_table import TableColumn as TableColumn
from itop_tui.widgets.cell_table import TableRow as TableRow
from itop_tui.widgets.cell_table import natural_key
from itop_tui.widgets.metric_graph import BARS, bucket_values, format_rate

STATE_ORDER: dict[str, int] = {
    "unreachable": 0,
    "stale": 1,
    "connecting": 2,
    "paused": 3,
    "up": 4,
}
"""Worst first: how the State column sorts."""

TREND_WIDTH = 12
"""Cells of the trend column."""

TREND_METRIC = "cpu_percent"


def format_percent(value: float | None) -> str:
    """A share as a whole number (``42``); ``-`` when unknown."""
    return "-" if value is None else f"{value:.0f}"


def format_load(value: float | None) -> str:
    """A load average with two, one or no decimals as it grows."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def level(threshold: Threshold | None, value: float | None) -> str:
    """``critical``, ``warning`` or "" for ``value`` against a threshold's limits, right now."""
    if threshold is None or value is None:
        return ""
    if threshold.breaches(threshold.critical, value, False):
        return "critical"
    if threshold.breaches(threshold.warning, value, False):
        return "warning"
    return ""


def sparkline(values: Iterable[float | None], scale: float = 100.0) -> str:
    """One character per value on a fixed scale; a space where there is no value."""
    chars = []
    for value in values:
        if value is None:
            chars.append(" ")
        else:
            share = min(1.0, max(0.0, value / scale))
            chars.append(BARS[min(len(BARS) - 1, int(share * len(BARS)))])
    return "".join(chars)


def trend_bucket(window: float, width: int = TREND_WIDTH) -> float:
    """Seconds per trend character for a window."""
    return window / width


def trend_values(
    history: HostHistory, window: float, width: int = TREND_WIDTH
) -> tuple[tuple[float | None, ...], int]:
    """The trend of CPU over ``window``: the highest value of each completed bucket.

    Returns the values and the number of the last bucket shown; the trend
    only changes when that number does (buckets are aligned to the epoch).
    """
    latest = history.latest_time
    if latest is None:
        return (None,) * width, -1
    bucket = trend_bucket(window, width)
    last = math.floor(latest / bucket) - 1  # the bucket in progress is left out
    series = history.window(TREND_METRIC, window + bucket, latest)
    return tuple(bucket_values(series, bucket, width, last)), last


@dataclass(frozen=True, slots=True)
class HostProblems:
    """Open problems of one host: how many, the worst severity, how many unacknowledged."""

    count: int = 0
    severity: str = ""
    unacknowledged: int = 0


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One host of the fleet table: what is known of it and the cells shown."""

    host: Host
    state: str
    error: str | None
    sample: Sample | None
    trend: tuple[float | None, ...]
    problems: HostProblems
    cells: tuple[Cell, ...] = field(default=())

    @property
    def key(self) -> str:
        """The host's name."""
        return self.host.name

    def value(self, metric: str) -> float | None:
        """A metric of the latest sample, None before the first."""
        sample = self.sample
        if sample is None:
            return None
        value = getattr(sample, metric)
        return None if value is None else float(value)


def fleet_row(
    host: Host,
    state: str,
    error: str | None,
    sample: Sample | None,
    trend: tuple[float | None, ...],
    problems: HostProblems,
    thresholds: Mapping[str, Threshold],
) -> FleetRow:
    """The row of one host, its cells coloured by ``thresholds`` (metric -> threshold)."""
    live = state == "up"

    def metric_cell(text: str, metric: str, value: float | None) -> Cell:
        if value is None:
            return Cell(text, "muted")
        if not live:
            return Cell(text, "muted")  # the last known value of a host not reporting now
        return Cell(text, level(thresholds.get(metric), value))

    row = FleetRow(host, state, error, sample, trend, problems)
    cpu = row.value("cpu_percent")
    mem = row.value("mem_percent")
    load = row.value("load1")
    disk = row.value("disk_busiest_util")
    load_per_core = None if sample is None else sample.load_per_core
    note = ""
    if error and state in ("unreachable", "stale"):
        note = strip_control(" ".join(error.split()))
    problem_text = str(problems.count) if problems.count else ""
    if problems.unacknowledged:
        problem_text += "!"
    cells = (
        Cell(strip_control(host.name)),
        Cell(state, state),
        metric_cell(format_percent(cpu), "cpu_percent", cpu),
        metric_cell(format_percent(mem), "mem_percent", mem),
        metric_cell(format_load(load), "load_per_core", load_per_core),
        metric_cell(format_percent(disk), "disk_busiest_util", disk),
        metric_cell(format_rate(row.value("net_rx_bps")), "", row.value("net_rx_bps")),
        metric_cell(format_rate(row.value("net_tx_bps")), "", row.value("net_tx_bps")),
        Cell(sparkline(trend), "trend" if live else "muted"),
        Cell(problem_text, problems.severity),
        Cell(note, "muted"),
    )
    return FleetRow(host, state, error, sample, trend, problems, cells)


def _number(value: float | None) -> float:
    # Unknown values are moved last by lacks_value; the key only has to be a number.
    return value if value is not None else 0.0


def _trend_mean(row: FleetRow) -> float | None:
    known = [v for v in row.trend if v is not None]
    return sum(known) / len(known) if known else None


def _worst_first(row: FleetRow) -> tuple[Any, ...]:
    cpu = row.value("cpu_percent") if row.state == "up" else None
    return (
        STATE_ORDER.get(row.state, len(STATE_ORDER)),
        -SEVERITY_RANK.get(row.problems.severity or "ok", 0),
        -(round(cpu) if cpu is not None else -1),
        natural_key(row.key),
    )


class FleetTable(CellTable[FleetRow]):
    """The live state of every monitored host, worst first by default."""

    COLUMNS: ClassVar[tuple[TableColumn, ...]] = (
        TableColumn("host", "Host", 8, max_width=28),
        TableColumn("state", "State", 11),
        TableColumn("cpu", "CPU%", 5, right_align=True),
        TableColumn("mem", "Mem%", 5, right_align=True),
        TableColumn("load", "Load", 6, right_align=True),
        TableColumn("disk", "Disk%", 5, right_align=True),
        TableColumn("rx", "Net rx", 7, right_align=True),
        TableColumn("tx", "Net tx", 7, right_align=True),
        TableColumn("trend", "CPU 1m", TREND_WIDTH),
        TableColumn("problems", "Probs", 5, right_align=True),
        TableColumn("note", "Note", 4, flex=True),
    )
    STYLE_PREFIX: ClassVar[str] = "fleet-table"
    HELP_TITLE = "Fleet table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "choose", "Details"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse"),
    ]
    """
    | Key(s) | Description |
    | :- | :- |
    | up,k / down,j | Move the cursor. |
    | pageup / pagedown | Move the cursor a page. |
    | home,g / end,G | First / last host. |
    | enter | Post `RowChosen` for the cursor host (the drill-down). |
    | s | Sort by the next column. |
    | S | Reverse the sort order. |
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "fleet-table--header",
        "fleet-table--cursor",
        "fleet-table--up",
        "fleet-table--connecting",
        "fleet-table--stale",
        "fleet-table--unreachable",
        "fleet-table--paused",
        "fleet-table--warning",
        "fleet-table--critical",
        "fleet-table--muted",
        "fleet-table--trend",
    }
    """
    | Class | Description |
    | :- | :- |
    | `fleet-table--header` | The header line. |
    | `fleet-table--cursor` | The cursor row. |
    | `fleet-table--up` (connecting, stale, unreachable, paused) | The state cell. |
    | `fleet-table--warning` / `--critical` | A value over its warning / critical limit. |
    | `fleet-table--muted` | Unknown values, values of hosts not reporting, notes. |
    | `fleet-table--trend` | The trend sparkline. |
    """

    DEFAULT_CSS = """
    FleetTable {
        background: $surface;
        scrollbar-gutter: stable;
        & > .fleet-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .fleet-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .fleet-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .fleet-table--up { color: $text-success; }
        & > .fleet-table--connecting { color: $text-muted; text-style: italic; }
        & > .fleet-table--stale { color: $text-warning; text-style: bold; }
        & > .fleet-table--unreachable { color: $text-error; text-style: bold reverse; }
        & > .fleet-table--paused { color: $text-muted; }
        & > .fleet-table--warning { color: $text-warning; text-style: bold; }
        & > .fleet-table--critical { color: $text-error; text-style: bold; }
        & > .fleet-table--muted { color: $text-muted; }
        & > .fleet-table--trend { color: $text-primary; }
    }
    """

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """An empty fleet table sorted worst first."""
        super().__init__(name=name, id=id, classes=classes)
        self.sort_column = "state"

    def sort_key(self, column: str) -> tuple[SortKey, bool]:
        """Hosts by name; states worst first; figures largest first."""
        if column == "host":
            return (lambda row: natural_key(row.key)), False
        if column == "state":
            return _worst_first, False
        if column == "problems":
            return (
                lambda row: (SEVERITY_RANK.get(row.problems.severity or "ok", 0), row.problems.count)
            ), True
        if column == "trend":
            return (lambda row: _number(_trend_mean(row))), True
        if column == "note":
            return (lambda row: row.cells[-1].text), False
        metric = _COLUMN_METRICS[column]
        return (lambda row: _number(row.value(metric))), True

    def lacks_value(self, row: FleetRow, column: str) -> bool:
        """Hosts without the figure (no sample yet) and empty notes sort last."""
        if column == "trend":
            return _trend_mean(row) is None
        if column == "note":
            return not row.cells[-1].text
        metric = _COLUMN_METRICS.get(column)
        return metric is not None and row.value(metric) is None

    def cell_styles(self, key: str) -> dict[str, str]:
        """The style name of each cell of row ``key``, by column (for tests and checks)."""
        row = self.row(key)
        if row is None:
            raise KeyError(key)
        return {c.key: cell.style for c, cell in zip(self.COLUMNS, row.cells, strict=True)}

    def cell_texts(self, key: str) -> dict[str, str]:
        """The text of each cell of row ``key``, by column."""
        row = self.row(key)
        if row is None:
            raise KeyError(key)
        return {c.key: cell.text for c, cell in zip(self.COLUMNS, row.cells, strict=True)}

    def sort_description(self) -> str:
        """``State (worst first)``, ``CPU% (highest first)``: the current order in words."""
        label = next(c.label for c in self.COLUMNS if c.key == self.sort_column)
        if self.sort_column == "state":
            words = ("worst first", "best first")
        elif self.sort_column in ("host", "note"):
            words = ("A-Z", "Z-A")
        else:
            words = ("highest first", "lowest first")
        return f"{label} ({words[1] if self.sort_reverse else words[0]})"


_COLUMN_METRICS = {
    "cpu": "cpu_percent",
    "mem": "mem_percent",
    "load": "load1",
    "disk": "disk_busiest_util",
    "rx": "net_rx_bps",
    "tx": "net_tx_bps",
}
