"""The live fleet table, on a table widget that repaints only changed cells.

:class:`CellTable` draws rows line by line, as ``HostTable`` does (Textual's
``DataTable`` measures every cell of every new row), and adds what a live
table needs: rows are updated in place, re-sorted, and only the cells whose
text or style changed on screen are repainted. It remembers what each
screen line showed when it was last drawn and, after an update, marks dirty
just the cells that differ; Textual then writes only those spans to the
terminal. At one update a second per host, that keeps the output to the
few cells that really changed (ARCHITECTURE.md section 8: under 20 KB/s at
160x48).

:class:`FleetTable` is the Performance pane's table: host, state, CPU,
memory, load, busiest disk, network, a CPU trend, open problems and a note.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from itop_tui.domain.history import HostHistory
from itop_tui.domain.metrics import Sample
from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.domain.thresholds import SEVERITY_RANK, Threshold
from itop_tui.widgets.host_table import natural_key
from itop_tui.widgets.metric_graph import BARS, bucket_values, format_rate

# -- a table of cells ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableColumn:
    """One column: a fixed ``width``, or fitted to the data up to ``max_width``.

    A ``flex`` column (the last one) takes whatever width is left.
    """

    key: str
    label: str
    width: int
    max_width: int | None = None
    right_align: bool = False
    flex: bool = False


@dataclass(frozen=True, slots=True)
class Cell:
    """The text of a cell and the name of its style ("" for the plain row style)."""

    text: str
    style: str = ""


class TableRow(Protocol):
    """A row of a :class:`CellTable`: a unique key and one cell per column."""

    @property
    def key(self) -> str:
        """The row's identity."""
        ...

    @property
    def cells(self) -> tuple[Cell, ...]:
        """The cells, in column order."""
        ...


RowT = TypeVar("RowT", bound=TableRow)
SortKey = Callable[[Any], Any]
_MARK = 1
_SEPARATOR = 1
_UNPAINTED = object()
LineSignature = tuple[Any, ...] | None


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` padded or cut (with an ellipsis) to exactly ``width`` cells."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    if right:
        return " " * (width - cell_len(text)) + text
    return set_cell_size(text, width)


class CellTable(ScrollView, Generic[RowT], can_focus=True):
    """Rows of styled cells with a cursor, sorting, filtering and per-cell repaints.

    Subclasses set :attr:`COLUMNS`, :attr:`STYLE_PREFIX` (their component
    classes are ``<prefix>--header``, ``<prefix>--cursor`` and
    ``<prefix>--<style>`` for each cell style they use) and may override
    :meth:`sort_key`.
    """

    COLUMNS: ClassVar[tuple[TableColumn, ...]] = ()
    STYLE_PREFIX: ClassVar[str] = "cell-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First row", show=False),
        Binding("end,G", "last", "Last row", show=False),
    ]

    class CursorMoved(Message):
        """The cursor is on another row (``key`` is None when the view is empty)."""

        def __init__(self, table: CellTable[Any], key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> CellTable[Any]:
            """The table that sent the message."""
            return self.table

    class RowChosen(Message):
        """Enter (or a double click) on a row."""

        def __init__(self, table: CellTable[Any], key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> CellTable[Any]:
            """The table that sent the message."""
            return self.table

    class ViewChanged(Message):
        """The shown rows or their order changed; status lines redraw on this."""

        def __init__(self, table: CellTable[Any]) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> CellTable[Any]:
            """The table that sent the message."""
            return self.table

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """An empty table."""
        super().__init__(name=name, id=id, classes=classes)
        self._rows: dict[str, RowT] = {}
        self._order: list[str] = []
        """Every row key, in the order of the last sort (a stable sort keeps ties in place)."""
        self._shown: set[str] | None = None
        self._view: list[RowT] = []
        self._index: dict[str, int] = {}
        self._cursor = 0
        self._cursor_pinned = False
        """The user put the cursor on a row: it follows that row when rows move."""
        self._fitted: list[int] = [c.width for c in self.COLUMNS]
        self._labels: dict[str, str] = {}
        self._painted: dict[int, Any] = {}
        """What each screen line showed when last drawn (its signature)."""
        self._styles: dict[str, Style] = {}
        self._base_style: Style | None = None
        self.sort_column = self.COLUMNS[0].key if self.COLUMNS else ""
        """The key of the column rows are sorted by."""
        self.sort_reverse = False
        """True when the column's order is reversed."""
        self.repainted_cells = 0
        """Cells marked for repaint by updates so far (whole lines count as their cells)."""

    # -- reading ------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """Rows in the current view."""
        return len(self._view)

    @property
    def total_count(self) -> int:
        """Rows known to the table (the unfiltered count)."""
        return len(self._rows)

    @property
    def cursor_row(self) -> int:
        """Index of the cursor in the view."""
        return self._cursor

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if 0 <= self._cursor < len(self._view):
            return self._view[self._cursor].key
        return None

    @property
    def view_keys(self) -> list[str]:
        """Keys of the shown rows, in display order."""
        return [row.key for row in self._view]

    def row(self, key: str) -> RowT | None:
        """The row with ``key``, shown or not."""
        return self._rows.get(key)

    def rows(self) -> list[RowT]:
        """Every row, in sort order."""
        return [self._rows[k] for k in self._order]

    def column_label(self, key: str) -> str:
        """The header label of a column."""
        return self._labels.get(key) or next(c.label for c in self.COLUMNS if c.key == key)

    def set_label(self, key: str, label: str) -> None:
        """Change a column's header label."""
        self._labels[key] = label
        self._repaint_changes()

    # -- changing -----------------------------------------------------------

    def set_rows(self, rows: Iterable[RowT]) -> None:
        """Replace every row; fitted column widths are computed again."""
        new = {row.key: row for row in rows}
        kept = [k for k in self._order if k in new]
        known = set(kept)
        self._order = kept + sorted((k for k in new if k not in known), key=natural_key)
        self._rows = new
        widths = []
        for index, column in enumerate(self.COLUMNS):
            width = column.width
            if column.max_width is not None:
                width = max(width, cell_len(column.label) + 2)
                for row in new.values():
                    width = max(width, cell_len(row.cells[index].text))
                width = min(width, column.max_width)
            widths.append(width)
        self._fitted = widths
        self._rebuild(full=True)

    def update_rows(self, rows: Iterable[RowT]) -> None:
        """Replace the rows with these keys (unknown keys are added) and repaint what changed."""
        added = False
        for row in rows:
            if row.key not in self._rows:
                self._order.append(row.key)
                added = True
            self._rows[row.key] = row
        self._rebuild(full=added)

    def show(self, keys: Iterable[str] | None) -> None:
        """Show only the rows with these keys (None: every row)."""
        shown = None if keys is None else set(keys)
        if shown == self._shown:
            return  # e.g. a live refilter that picked the same hosts: repaint nothing
        self._shown = shown
        self._rebuild(full=True)

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort by ``column`` (a key of :attr:`COLUMNS`), in its natural or reversed order."""
        if column not in [c.key for c in self.COLUMNS]:
            raise ValueError(f"unknown column {column!r}")
        self.sort_column = column
        self.sort_reverse = reverse
        self._rebuild(full=True)

    def move_to(self, key: str) -> bool:
        """Put the cursor on row ``key``; False when it is not shown."""
        index = self._index.get(key)
        if index is None:
            return False
        self._move_cursor(index, force_message=True)
        return True

    def sort_key(self, column: str) -> tuple[SortKey, bool]:
        """How to sort by ``column``: a key function and whether it sorts descending.

        The default sorts by the cell's text, naturally (``web2`` before ``web10``).
        """
        index = [c.key for c in self.COLUMNS].index(column)
        return (lambda row: natural_key(row.cells[index].text)), False

    def lacks_value(self, row: RowT, column: str) -> bool:
        """True when ``row`` has nothing to sort by in ``column`` (it is then listed last)."""
        return False

    # -- the view -----------------------------------------------------------

    def _rebuild(self, *, full: bool) -> None:
        # Until the user moves it, the cursor stays on the first row (the worst
        # host); afterwards it follows its row as updates reorder the table.
        current = self.cursor_key if self._cursor_pinned else None
        before_cursor = self.cursor_key
        before = self.view_keys
        key_of, descending = self.sort_key(self.sort_column)
        rows = self._rows
        self._order.sort(key=lambda k: key_of(rows[k]), reverse=descending != self.sort_reverse)
        # Rows without a value for the column go last, whichever the direction.
        column = self.sort_column
        missing = [k for k in self._order if self.lacks_value(rows[k], column)]
        if missing:
            gone = set(missing)
            self._order = [k for k in self._order if k not in gone] + missing
        shown = self._shown
        self._view = [rows[k] for k in self._order if shown is None or k in shown]
        self._index = {row.key: i for i, row in enumerate(self._view)}
        index = self._index.get(current, 0) if current is not None else 0
        self._cursor = min(index, max(0, len(self._view) - 1))
        self.virtual_size = Size(self._content_width(), len(self._view) + 1)
        if full:
            self._scroll_cursor_into_view()
            self.refresh()
        else:
            self._repaint_changes()
        if self.cursor_key != before_cursor:
            self.post_message(self.CursorMoved(self, self.cursor_key))
        if full or self.view_keys != before:
            self.post_message(self.ViewChanged(self))

    def _widths(self) -> list[int]:
        """Column widths for the current size: the flex column takes what is left."""
        widths = list(self._fitted)
        for index, column in enumerate(self.COLUMNS):
            if column.flex:
                used = _MARK + sum(w + _SEPARATOR for i, w in enumerate(widths) if i != index)
                room = self.scrollable_content_region.width - used - _SEPARATOR
                widths[index] = max(column.width, room)
        return widths

    def _content_width(self) -> int:
        return _MARK + sum(w + _SEPARATOR for w in self._widths())

    def _page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        page = self._page_rows()
        top = round(self.scroll_y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + page:
            self.scroll_to(y=self._cursor - page + 1, animate=False, immediate=True)

    def _move_cursor(self, index: int, force_message: bool = False) -> None:
        if not self._view:
            return
        index = max(0, min(index, len(self._view) - 1))
        self._cursor_pinned = True
        if index == self._cursor and not force_message:
            return
        self._cursor = index
        self._scroll_cursor_into_view()
        self._repaint_changes()
        self.post_message(self.CursorMoved(self, self.cursor_key))

    # -- repainting what changed ---------------------------------------------

    def _signature(self, y: int, top: int) -> LineSignature:
        """What screen line ``y`` shows: the header, a row (cells and highlight) or nothing."""
        if y == 0:
            arrow = " ▼" if self.sort_reverse else " ▲"
            return (
                "header",
                tuple(
                    self.column_label(c.key) + (arrow if c.key == self.sort_column else "")
                    for c in self.COLUMNS
                ),
            )
        index = top + y - 1
        if index >= len(self._view):
            return None
        cursor = index == self._cursor
        return ((cursor, cursor and self.has_focus), self._view[index].cells)

    def _repaint_changes(self) -> None:
        """Mark dirty only the cells whose text or style differ from what the screen shows."""
        if not self.is_mounted or not self.size:
            return
        region = self.scrollable_content_region
        top = round(self.scroll_y)
        scroll_x = round(self.scroll_x)
        widths = self._widths()
        line_width = max(region.width, self._content_width())
        spans: list[tuple[int, int]] = []
        x = _MARK
        for width in widths:
            spans.append((x, width))
            x += width + _SEPARATOR
        for y in range(region.height):
            new = self._signature(y, top)
            old = self._painted.get(y, _UNPAINTED)
            if old == new:
                continue
            if (
                old is _UNPAINTED
                or old is None
                or new is None
                or old[0] != new[0]
                or len(old[1]) != len(new[1])
            ):
                self.repainted_cells += len(widths)
                self.refresh(Region(0, y, line_width, 1))
                continue
            changed = [
                span
                for span, before, after in zip(spans, old[1], new[1], strict=True)
                if before != after
            ]
            self.repainted_cells += len(changed)
            # One region per line, from the first changed cell to the end of the
            # last: Textual 8 writes a line's update from the widget's left edge
            # to the end of each dirty span, so several spans on one line would
            # repeat its start.
            left = changed[0][0]
            right = changed[-1][0] + changed[-1][1]
            self.refresh(Region(left - scroll_x, y, right - left, 1))

    def _on_resize(self, event: events.Resize) -> None:
        self._painted.clear()
        self.virtual_size = Size(self._content_width(), len(self._view) + 1)

    def _on_focus(self, event: events.Focus) -> None:
        self._repaint_changes()

    def _on_blur(self, event: events.Blur) -> None:
        self._repaint_changes()

    def notify_style_update(self) -> None:
        """Forget cached styles when CSS, theme or focus state change."""
        self._styles.clear()
        self._base_style = None
        super().notify_style_update()

    # -- rendering -------------------------------------------------------------

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            component = f"{self.STYLE_PREFIX}--{name}"
            style = (
                self.get_component_rich_style(component)
                if component in self.COMPONENT_CLASSES
                else Style()
            )
            self._styles[name] = style
        return style

    def render_line(self, y: int) -> Strip:
        """Render screen line ``y``, and remember what it shows."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self._base_style
        if base is None:
            # rich_style walks every ancestor's styles: once per style change, not per line.
            base = self._base_style = self.rich_style
        signature = self._signature(y, scroll_y)
        self._painted[y] = signature
        if signature is None:
            return Strip.blank(width, base)
        widths = self._widths()
        if signature[0] == "header":
            style = base + self._style("header")
            text = " " * _MARK
            for column, label, w in zip(self.COLUMNS, signature[1], widths, strict=True):
                text += fit(label, w, column.right_align) + " " * _SEPARATOR
            strip = Strip([Segment(text, style)], cell_len(text))
        else:
            (cursor, _focused), cells = signature
            row_style = base + self._style("cursor") if cursor else base
            # Runs of one style become one segment: each segment costs an
            # escape sequence and a reset on the terminal.
            runs: list[tuple[str, Style]] = [(" " * _MARK, row_style)]
            for column, cell, w in zip(self.COLUMNS, cells, widths, strict=True):
                style = row_style
                if cell.style and not cursor:
                    style = row_style + self._style(cell.style)
                text = fit(cell.text, w, column.right_align)
                for part, part_style in ((text, style), (" " * _SEPARATOR, row_style)):
                    if runs[-1][1] == part_style:
                        runs[-1] = (runs[-1][0] + part, part_style)
                    else:
                        runs.append((part, part_style))
            segments = [Segment(text, style) for text, style in runs]
            strip = Strip(segments, _MARK + sum(w + _SEPARATOR for w in widths))
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    # -- actions ----------------------------------------------------------------

    def action_cursor_up(self) -> None:
        """Move the cursor up one row."""
        self._move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        """Move the cursor down one row."""
        self._move_cursor(self._cursor + 1)

    def action_page_up(self) -> None:
        """Move the cursor up a page."""
        self._move_cursor(self._cursor - self._page_rows())

    def action_page_down(self) -> None:
        """Move the cursor down a page."""
        self._move_cursor(self._cursor + self._page_rows())

    def action_first(self) -> None:
        """Move the cursor to the first row."""
        self._move_cursor(0)

    def action_last(self) -> None:
        """Move the cursor to the last row."""
        self._move_cursor(len(self._view) - 1)

    def action_choose(self) -> None:
        """Post :class:`RowChosen` for the cursor row."""
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowChosen(self, key))

    def action_cycle_sort(self) -> None:
        """Sort by the next column, in its natural order."""
        keys = [c.key for c in self.COLUMNS]
        self.sort_by(keys[(keys.index(self.sort_column) + 1) % len(keys)])

    def action_reverse_sort(self) -> None:
        """Reverse the sort order."""
        self.sort_by(self.sort_column, not self.sort_reverse)

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            return
        index = round(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self._view):
            self._move_cursor(index)
            if event.chain >= 2:
                self.action_choose()


# -- the fleet table --------------------------------------------------------

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
