"""A virtual table of hosts that stays fast with tens of thousands of rows.

Textual's ``DataTable`` measures every cell of every new row when rows are
added; with 10,000 hosts and a rebuild per keystroke that costs seconds. This
widget uses the Line API instead: rows are plain tuples of strings computed
once per inventory load, filtering and sorting reorder a list, and only the
lines on screen are rendered. Cursor moves repaint two lines, not the table,
which keeps the output small over slow SSH links.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from itop_tui.domain.models import HOST_STATUSES, Host
from itop_tui.domain.output import strip_control
from itop_tui.widgets.host_facts import format_memory, host_cpus, host_memory, host_os

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (UTC)."""


@dataclass(frozen=True)
class Column:
    """One column of the host table.

    ``min_width``/``max_width`` bound the width computed from the data, so
    one long value cannot push the other columns off screen.
    """

    key: str
    label: str
    min_width: int
    max_width: int
    right_align: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("name", "Name", 8, 28),
    Column("address", "Address", 8, 22),
    Column("status", "Status", 6, 11),
    Column("groups", "Groups", 6, 24),
    Column("os", "OS", 4, 22),
    Column("cpus", "CPUs", 4, 5, right_align=True),
    Column("memory", "Memory", 6, 8, right_align=True),
    Column("last_seen", "Last seen", 9, 10),
)
COLUMN_KEYS: tuple[str, ...] = tuple(c.key for c in COLUMNS)

_MARK_WIDTH = 2
_SEPARATOR = 1
_STATUS_ORDER = {status: index for index, status in enumerate(HOST_STATUSES)}
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    """A sort key that orders ``web2`` before ``web10``."""
    parts = _DIGITS.split(text.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def relative_time(stamp: str | None, now: datetime) -> str:
    """``stamp`` (ISO 8601) as a short age such as ``5m ago``; ``never`` when unset."""
    if not stamp:
        return "never"
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


@dataclass(frozen=True)
class HostRow:
    """A host and its cells as shown, computed once per load."""

    host: Host
    cells: tuple[str, ...]

    @property
    def name(self) -> str:
        """The host's name, the row's identity."""
        return self.host.name


def host_row(host: Host, now: datetime) -> HostRow:
    """The displayed cells of ``host``, in :data:`COLUMNS` order."""
    cpus = host_cpus(host)
    memory = host_memory(host)
    address = host.connect_address
    if host.port:
        address = f"{address}:{host.port}"
    cells = (
        host.name,
        address,
        host.status,
        ",".join(host.groups),
        host_os(host),
        "" if cpus is None else str(cpus),
        "" if memory is None else format_memory(memory),
        relative_time(host.last_seen or host.facts_at, now),
    )
    # Values come from imported files and from hosts: never let them drive the terminal.
    return HostRow(host, tuple(strip_control(c) for c in cells))


def _sort_value(row: HostRow, column: str) -> Any:
    host = row.host
    if column == "status":
        return (_STATUS_ORDER.get(host.status, len(_STATUS_ORDER)), natural_key(host.name))
    if column == "cpus":
        return host_cpus(host) or -1
    if column == "memory":
        return host_memory(host) or -1
    if column == "last_seen":
        return host.last_seen or host.facts_at or ""
    index = COLUMN_KEYS.index(column)
    return natural_key(row.cells[index])


def _fit(text: str, width: int, right: bool = False) -> str:
    """``text`` padded or cut (with an ellipsis) to exactly ``width`` cells."""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    if right:
        return " " * (width - cell_len(text)) + text
    return set_cell_size(text, width)


class HostTable(ScrollView, can_focus=True):
    """Hosts as rows; a cursor, marks (space), and sorting by column.

    Feed it the whole inventory once with :meth:`set_hosts`, then show any
    subset (a filter's result) with :meth:`show`; both are cheap enough to
    call on every keystroke with 10,000 hosts.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First host", show=False),
        Binding("end,G", "last", "Last host", show=False),
        Binding("space", "toggle_mark", "Mark"),
        Binding("u", "unmark_all", "Unmark all", show=False),
        Binding("enter", "choose", "Show host", show=False),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
    ]
    """
    | Key(s) | Description |
    | :- | :- |
    | up,k / down,j | Move the cursor. |
    | pageup / pagedown | Move the cursor a page. |
    | home,g / end,G | First / last host. |
    | space | Mark or unmark the cursor host and move down. |
    | u | Unmark all hosts. |
    | enter | Post `HostChosen` for the cursor host. |
    | s | Sort by the next column. |
    | S | Reverse the sort order. |
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "host-table--header",
        "host-table--cursor",
        "host-table--marked",
        "host-table--production",
        "host-table--staging",
        "host-table--development",
        "host-table--retired",
    }
    """
    | Class | Description |
    | :- | :- |
    | `host-table--header` | The header line. |
    | `host-table--cursor` | The cursor row. |
    | `host-table--marked` | Marked rows. |
    | `host-table--production` (and staging, development, retired) | The status cell. |
    """

    DEFAULT_CSS = """
    HostTable {
        background: $surface;
        scrollbar-gutter: stable;
        & > .host-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .host-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .host-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .host-table--marked { color: $text-warning; text-style: bold; }
        & > .host-table--production { color: $text-error; text-style: bold; }
        & > .host-table--staging { color: $text-warning; }
        & > .host-table--development { color: $text-success; }
        & > .host-table--retired { color: $text-muted; text-style: strike; }
    }
    """

    class CursorMoved(Message):
        """The cursor is on another host (or on none: the view is empty).

        Attributes:
            host: The host under the cursor, or None.
        """

        def __init__(self, table: HostTable, host: Host | None) -> None:
            super().__init__()
            self.table = table
            self.host = host

        @property
        def control(self) -> HostTable:
            """The table that sent the message."""
            return self.table

    class HostChosen(Message):
        """Enter (or a double click) on a host.

        Attributes:
            host: The chosen host.
        """

        def __init__(self, table: HostTable, host: Host) -> None:
            super().__init__()
            self.table = table
            self.host = host

        @property
        def control(self) -> HostTable:
            """The table that sent the message."""
            return self.table

    class ViewChanged(Message):
        """Rows, marks or sort order changed; status lines redraw on this."""

        def __init__(self, table: HostTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> HostTable:
            """The table that sent the message."""
            return self.table

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """Create an empty table.

        Args:
            clock: Gives "now" for the last-seen ages; tests pass a fixed one.
            name: The widget's name.
            id: The widget's id in the DOM.
            classes: CSS classes.
        """
        super().__init__(name=name, id=id, classes=classes)
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._rows_by_name: dict[str, HostRow] = {}
        self._view: list[HostRow] = []
        self._widths: list[int] = [c.min_width for c in COLUMNS]
        self._sort_cache: dict[str, dict[str, Any]] = {}
        self._cursor = 0
        self.marked: set[str] = set()
        """Names of marked hosts; marks survive filtering."""
        self.sort_column = "name"
        """The key of the column rows are sorted by."""
        self.sort_reverse = False
        """True when sorted in descending order."""
        self._base_style: Style | None = None

    # -- data -------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """Rows in the current view."""
        return len(self._view)

    @property
    def total_count(self) -> int:
        """Hosts known to the table (the unfiltered count)."""
        return len(self._rows_by_name)

    @property
    def cursor_row(self) -> int:
        """Index of the cursor in the current view."""
        return self._cursor

    @property
    def cursor_host(self) -> Host | None:
        """The host under the cursor, if any."""
        if 0 <= self._cursor < len(self._view):
            return self._view[self._cursor].host
        return None

    @property
    def visible_hosts(self) -> list[Host]:
        """Hosts of the current view, in display order."""
        return [row.host for row in self._view]

    @property
    def column_widths(self) -> tuple[int, ...]:
        """The current width of each column, in :data:`COLUMNS` order."""
        return tuple(self._widths)

    def marked_hosts(self) -> list[Host]:
        """Marked hosts that still exist, in name order."""
        rows = (self._rows_by_name.get(n) for n in sorted(self.marked, key=natural_key))
        return [row.host for row in rows if row is not None]

    def row_cells(self, index: int) -> tuple[str, ...]:
        """The cells of view row ``index``, as shown (uncut)."""
        return self._view[index].cells

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Replace every host the table knows; the view becomes all of them."""
        now = self._clock()
        self.set_rows([host_row(h, now) for h in hosts])

    def set_rows(self, rows: Iterable[HostRow]) -> None:
        """Replace every row (see :func:`host_row`); the view becomes all of them.

        Rows can be computed in a worker thread. Column widths are fitted to
        the whole inventory here, once, so they do not jump while filtering.
        """
        self._rows_by_name = {row.name: row for row in rows}
        self._sort_cache.clear()
        self.marked &= self._rows_by_name.keys()
        widths = [cell_len(c.label) + 2 for c in COLUMNS]
        for row in self._rows_by_name.values():
            for i, cell in enumerate(row.cells):
                if len(cell) > widths[i]:
                    widths[i] = len(cell)
        self._widths = [
            max(c.min_width, min(c.max_width, w)) for c, w in zip(COLUMNS, widths, strict=True)
        ]
        self.show(self._rows_by_name)

    def show(self, names: Iterable[str]) -> None:
        """Show the hosts named in ``names`` (unknown names are ignored), sorted.

        The cursor stays on the same host when it is still shown.
        """
        current = self.cursor_host
        rows = self._rows_by_name
        self._view = [rows[n] for n in names if n in rows]
        self._sort_view()
        self._settle_cursor(current.name if current else None)

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort the view by ``column`` (a key of :data:`COLUMNS`)."""
        if column not in COLUMN_KEYS:
            raise ValueError(f"unknown column {column!r}")
        current = self.cursor_host
        self.sort_column = column
        self.sort_reverse = reverse
        self._sort_view()
        self._settle_cursor(current.name if current else None)

    def move_to_host(self, name: str) -> bool:
        """Put the cursor on host ``name``; False when it is not in the view."""
        for index, row in enumerate(self._view):
            if row.name == name:
                self._move_cursor(index, force_message=True)
                return True
        return False

    def _sort_view(self) -> None:
        column = self.sort_column
        keys = self._sort_cache.get(column)
        if keys is None:
            keys = {name: _sort_value(row, column) for name, row in self._rows_by_name.items()}
            self._sort_cache[column] = keys
        self._view.sort(key=lambda row: keys[row.name], reverse=self.sort_reverse)

    def _settle_cursor(self, name: str | None) -> None:
        index = 0
        if name is not None:
            for i, row in enumerate(self._view):
                if row.name == name:
                    index = i
                    break
        self._cursor = min(index, max(0, len(self._view) - 1))
        self.virtual_size = Size(self._content_width(), len(self._view) + 1)
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.CursorMoved(self, self.cursor_host))
        self.post_message(self.ViewChanged(self))

    # -- geometry ---------------------------------------------------------

    def _content_width(self) -> int:
        return _MARK_WIDTH + sum(w + _SEPARATOR for w in self._widths)

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
        if index == self._cursor and not force_message:
            return
        old = self._cursor
        self._cursor = index
        top_before = round(self.scroll_y)
        self._scroll_cursor_into_view()
        if round(self.scroll_y) == top_before:
            # Only the two rows whose highlight changed need repainting.
            self.refresh_line(old + 1)
            self.refresh_line(index + 1)
        self.post_message(self.CursorMoved(self, self.cursor_host))

    # -- actions ----------------------------------------------------------

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

    def action_toggle_mark(self) -> None:
        """Mark or unmark the cursor host, then move down."""
        host = self.cursor_host
        if host is None:
            return
        if host.name in self.marked:
            self.marked.discard(host.name)
        else:
            self.marked.add(host.name)
        self.refresh_line(self._cursor + 1)
        self._move_cursor(self._cursor + 1)
        self.post_message(self.ViewChanged(self))

    def action_unmark_all(self) -> None:
        """Clear every mark."""
        if self.marked:
            self.marked.clear()
            self.refresh()
            self.post_message(self.ViewChanged(self))

    def action_choose(self) -> None:
        """Post :class:`HostChosen` for the cursor host."""
        host = self.cursor_host
        if host is not None:
            self.post_message(self.HostChosen(self, host))

    def action_cycle_sort(self) -> None:
        """Sort by the next column, ascending."""
        index = (COLUMN_KEYS.index(self.sort_column) + 1) % len(COLUMN_KEYS)
        self.sort_by(COLUMN_KEYS[index])

    def action_reverse_sort(self) -> None:
        """Reverse the sort order."""
        self.sort_by(self.sort_column, not self.sort_reverse)

    # -- events -----------------------------------------------------------

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + round(self.scroll_x))
            if column is not None:
                reverse = not self.sort_reverse if column == self.sort_column else False
                self.sort_by(column, reverse)
            return
        index = round(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self._view):
            self._move_cursor(index)
            if event.chain >= 2:
                self.action_choose()

    def _column_at(self, x: int) -> str | None:
        left = _MARK_WIDTH
        for column, width in zip(COLUMNS, self._widths, strict=True):
            if left <= x < left + width + _SEPARATOR:
                return column.key
            left += width + _SEPARATOR
        return None

    def _on_focus(self, event: events.Focus) -> None:
        self.refresh_line(self._cursor + 1)

    def _on_blur(self, event: events.Blur) -> None:
        self.refresh_line(self._cursor + 1)

    # -- rendering --------------------------------------------------------

    def notify_style_update(self) -> None:
        """Forget the cached base style when CSS, theme or focus state change."""
        self._base_style = None
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        """Render line ``y`` of the widget: the header, or a row of the view."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        # Computing rich_style walks every ancestor's styles; per line that
        # dominated the cost of a repaint.
        base = self._base_style
        if base is None:
            base = self._base_style = self.rich_style
        if y == 0:
            strip = self._header_strip(base)
        else:
            index = scroll_y + y - 1
            if index >= len(self._view):
                return Strip.blank(width, base)
            strip = self._row_strip(index, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _header_strip(self, base: Style) -> Strip:
        style = base + self.get_component_rich_style("host-table--header")
        arrow = " ▼" if self.sort_reverse else " ▲"
        text = " " * _MARK_WIDTH
        for column, width in zip(COLUMNS, self._widths, strict=True):
            label = column.label + (arrow if column.key == self.sort_column else "")
            text += _fit(label, width, column.right_align) + " " * _SEPARATOR
        return Strip([Segment(text, style)], cell_len(text))

    def _row_strip(self, index: int, base: Style) -> Strip:
        row = self._view[index]
        marked = row.name in self.marked
        style = base
        if marked:
            style += self.get_component_rich_style("host-table--marked")
        if index == self._cursor:
            style += self.get_component_rich_style("host-table--cursor")
        segments = [Segment("● " if marked else "  ", style)]
        for column, width, cell in zip(COLUMNS, self._widths, row.cells, strict=True):
            cell_style = style
            if column.key == "status" and index != self._cursor:
                cell_style = style + self._status_style(cell)
            segments.append(Segment(_fit(cell, width, column.right_align), cell_style))
            segments.append(Segment(" " * _SEPARATOR, style))
        return Strip(segments, self._content_width())


    def _status_style(self, status: str) -> Style:
        component = f"host-table--{status}"
        if component not in self.COMPONENT_CLASSES:
            return Style()
        return self.get_component_rich_style(component)
