"""A virtual table of styled cells that repaints only what changed.

Textual's ``DataTable`` measures every cell of every new row when rows are
added; with 10,000 hosts and a rebuild per keystroke that costs seconds.
:class:`CellTable` uses the Line API instead: rows are tuples of cells
computed by the caller, filtering and sorting reorder a list of keys, and
only the lines on screen are rendered. It remembers what each screen line
showed when it was last drawn and, after any change (new rows, a filter, a
cursor move, a live update), marks dirty just the cells that differ;
Textual then writes only those spans to the terminal. That keeps the
output small over slow SSH links (ARCHITECTURE.md section 8).

Every table of the console is one of these: the host table of the
Inventory pane, the fleet table of the Performance pane, problems, changes,
backups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    """A sort key that orders ``web2`` before ``web10``."""
    parts = _DIGITS.split(text.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` padded or cut (with an ellipsis) to exactly ``width`` cells."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    if right:
        return " " * (width - cell_len(text)) + text
    return set_cell_size(text, width)


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
_SEPARATOR = 1
_UNPAINTED = object()
LineSignature = tuple[Any, ...] | None


class CellTable(ScrollView, Generic[RowT], can_focus=True):
    """Rows of styled cells with a cursor, marks, sorting, filtering and per-cell repaints.

    Subclasses set :attr:`COLUMNS`, :attr:`STYLE_PREFIX` (their component
    classes are ``<prefix>--header``, ``<prefix>--cursor``, ``<prefix>--marked``
    and ``<prefix>--<style>`` for each cell style they use) and may override
    :meth:`sort_key` and :meth:`lacks_value`.
    """

    COLUMNS: ClassVar[tuple[TableColumn, ...]] = ()
    STYLE_PREFIX: ClassVar[str] = "cell-table"
    MARK_WIDTH: ClassVar[int] = 1
    """Cells left of the first column, where a marked row shows ``●``."""
    CURSOR_FOLLOWS_ROW: ClassVar[bool] = False
    """True: the cursor stays on its row when rows move. False: it stays on
    the first row (the worst, in a live table) until the user moves it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First row", show=False),
        Binding("end,G", "last", "Last row", show=False),
    ]

    class TableMessage(Message):
        """A message from a table; ``control`` is the table (for ``@on`` selectors)."""

        def __init__(self, table: CellTable[Any]) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> CellTable[Any]:
            """The table that sent the message."""
            return self.table

    class CursorMoved(TableMessage):
        """The cursor is on another row (``key`` is None when the view is empty).

        ``follows_view`` is True when the rows changed under the cursor (a
        filter, new rows), False when the user moved it.
        """

        def __init__(
            self, table: CellTable[Any], key: str | None, *, follows_view: bool = False
        ) -> None:
            super().__init__(table)
            self.key = key
            self.follows_view = follows_view

    class RowChosen(TableMessage):
        """Enter (or a double click) on a row."""

        def __init__(self, table: CellTable[Any], key: str) -> None:
            super().__init__(table)
            self.key = key

    class ViewChanged(TableMessage):
        """The shown rows, their order or the marks changed; status lines redraw on this."""

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """An empty table."""
        super().__init__(name=name, id=id, classes=classes)
        self._rows: dict[str, RowT] = {}
        self._order: list[str] = []
        """Every row key, in the order of the last sort (a stable sort keeps ties in place)."""
        self._sort_values: dict[str, dict[str, Any]] = {}
        """Per column, the sort key of each row (computed once per row version)."""
        self._shown: set[str] | None = None
        self._view: list[RowT] = []
        self._index: dict[str, int] = {}
        self._cursor = 0
        self._cursor_pinned = self.CURSOR_FOLLOWS_ROW
        """The cursor follows its row when rows move (set once the user moved it)."""
        self._fitted: list[int] = [c.width for c in self.COLUMNS]
        self._labels: dict[str, str] = {}
        self._painted: dict[int, Any] = {}
        """What each screen line showed when last drawn (its signature)."""
        self._styles: dict[str, Style] = {}
        self._base_style: Style | None = None
        self.marked: set[str] = set()
        """Keys of marked rows; marks survive filtering."""
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

    @property
    def column_widths(self) -> tuple[int, ...]:
        """The current width of each column, in :attr:`COLUMNS` order."""
        return tuple(self._widths())

    def row(self, key: str) -> RowT | None:
        """The row with ``key``, shown or not."""
        return self._rows.get(key)

    def rows(self) -> list[RowT]:
        """Every row, in sort order."""
        return [self._rows[k] for k in self._order]

    def view_rows(self) -> list[RowT]:
        """The shown rows, in display order."""
        return list(self._view)

    def column_label(self, key: str) -> str:
        """The header label of a column."""
        return self._labels.get(key) or next(c.label for c in self.COLUMNS if c.key == key)

    def set_label(self, key: str, label: str) -> None:
        """Change a column's header label."""
        self._labels[key] = label
        self._repaint_changes()

    # -- changing -----------------------------------------------------------

    def set_rows(self, rows: Iterable[RowT]) -> None:
        """Replace every row; fitted column widths are computed again.

        Rows can be computed in a worker thread; widths are fitted to every
        row here, once, so they do not jump while filtering.
        """
        new = {row.key: row for row in rows}
        kept = [k for k in self._order if k in new]
        known = set(kept)
        self._order = kept + sorted((k for k in new if k not in known), key=natural_key)
        self._rows = new
        self._sort_values.clear()
        self.marked &= new.keys()
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
        self._rebuild(resort=True, scroll=True, repaint_all=True)

    def update_rows(self, rows: Iterable[RowT]) -> None:
        """Replace the rows with these keys (unknown keys are added) and repaint what changed."""
        added = False
        for row in rows:
            if row.key not in self._rows:
                self._order.append(row.key)
                added = True
            self._rows[row.key] = row
            for values in self._sort_values.values():
                values.pop(row.key, None)
        self._rebuild(resort=True, scroll=added, repaint_all=added)

    def show(self, keys: Iterable[str] | None) -> None:
        """Show only the rows with these keys (None: every row), in the table's order."""
        shown = None if keys is None else set(keys)
        if shown == self._shown:
            return  # e.g. a live refilter that picked the same hosts: repaint nothing
        self._shown = shown
        # The order is kept from the last sort, so filtering does not sort again.
        self._rebuild(resort=False, scroll=True, repaint_all=False)

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort by ``column`` (a key of :attr:`COLUMNS`), in its natural or reversed order."""
        if column not in [c.key for c in self.COLUMNS]:
            raise ValueError(f"unknown column {column!r}")
        self.sort_column = column
        self.sort_reverse = reverse
        self.resort()

    def resort(self) -> None:
        """Sort the rows again by :attr:`sort_column` and :attr:`sort_reverse` as they are.

        A subclass whose :meth:`sort_key` knows an order that is no column's sets
        :attr:`sort_column` to that order's key and calls this.
        """
        self._rebuild(resort=True, scroll=True, repaint_all=False)

    def move_to(self, key: str) -> bool:
        """Put the cursor on row ``key``; False when it is not shown."""
        index = self._index.get(key)
        if index is None:
            return False
        self._move_cursor(index, force_message=True)
        return True

    def sort_arrow(self) -> str:
        """``▼`` when the rows go from the largest value down (by the column's
        own order and :attr:`sort_reverse`), ``▲`` when they go up."""
        _key, descending = self.sort_key(self.sort_column)
        return "▼" if descending != self.sort_reverse else "▲"

    def sort_key(self, column: str) -> tuple[SortKey, bool]:
        """How to sort by ``column``: a key function of the row and whether it sorts descending.

        The default sorts by the cell's text, naturally (``web2`` before ``web10``).
        """
        index = [c.key for c in self.COLUMNS].index(column)
        return (lambda row: natural_key(row.cells[index].text)), False

    def lacks_value(self, row: RowT, column: str) -> bool:
        """True when ``row`` has nothing to sort by in ``column`` (it is then listed last)."""
        return False

    # -- marks ----------------------------------------------------------------

    def toggle_mark(self, key: str) -> None:
        """Mark row ``key``, or unmark it."""
        if key in self.marked:
            self.marked.discard(key)
        else:
            self.marked.add(key)
        self._repaint_changes()
        self.post_message(self.ViewChanged(self))

    def unmark_all(self) -> None:
        """Clear every mark."""
        if self.marked:
            self.marked.clear()
            self._repaint_changes()
            self.post_message(self.ViewChanged(self))

    # -- the view -----------------------------------------------------------

    def _sort(self) -> None:
        column = self.sort_column
        key_of, descending = self.sort_key(column)
        values = self._sort_values.setdefault(column, {})
        rows = self._rows
        for key in self._order:
            if key not in values:
                values[key] = key_of(rows[key])
        self._order.sort(key=values.__getitem__, reverse=descending != self.sort_reverse)
        # Rows without a value for the column go last, whichever the direction.
        missing = [k for k in self._order if self.lacks_value(rows[k], column)]
        if missing:
            gone = set(missing)
            self._order = [k for k in self._order if k not in gone] + missing

    def _rebuild(self, *, resort: bool, scroll: bool, repaint_all: bool) -> None:
        current = self.cursor_key if self._cursor_pinned else None
        before_cursor = self.cursor_key
        before = self.view_keys
        if resort:
            self._sort()
        rows = self._rows
        shown = self._shown
        if shown is None:
            self._view = [rows[k] for k in self._order]
        else:
            self._view = [rows[k] for k in self._order if k in shown]
        self._index = {row.key: i for i, row in enumerate(self._view)}
        index = self._index.get(current, 0) if current is not None else 0
        self._cursor = min(index, max(0, len(self._view) - 1))
        self._set_virtual_size(Size(self._content_width(), len(self._view) + 1))
        if scroll:
            self._scroll_cursor_into_view()
        if repaint_all:
            self._painted.clear()
            self.refresh()
        else:
            self._repaint_changes()
        if self.cursor_key != before_cursor:
            self.post_message(self.CursorMoved(self, self.cursor_key, follows_view=True))
        if repaint_all or self.view_keys != before:
            self.post_message(self.ViewChanged(self))

    def _set_virtual_size(self, size: Size) -> None:
        if size == self.virtual_size:
            return
        if not self.is_mounted or not self.container_size:
            self.virtual_size = size
            return
        # ``virtual_size`` is a layout reactive: setting it lays out and repaints
        # the whole screen, while a new row count changes only the scrollbars
        # (their showing or hiding still asks for a layout, through their own
        # reactives).
        self.set_reactive(CellTable.virtual_size, size)
        self._scroll_update(size)

    def _widths(self) -> list[int]:
        """Column widths for the current size: the flex column takes what is left."""
        widths = list(self._fitted)
        for index, column in enumerate(self.COLUMNS):
            if column.flex:
                used = self.MARK_WIDTH + sum(
                    w + _SEPARATOR for i, w in enumerate(widths) if i != index
                )
                room = self.scrollable_content_region.width - used - _SEPARATOR
                widths[index] = max(column.width, room)
        return widths

    def _content_width(self) -> int:
        return self.MARK_WIDTH + sum(w + _SEPARATOR for w in self._widths())

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
        """What screen line ``y`` shows: the header, a row (cells, highlight, mark) or nothing."""
        if y == 0:
            arrow = " " + self.sort_arrow()
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
        row = self._view[index]
        cursor = index == self._cursor
        return ((cursor, cursor and self.has_focus, row.key in self.marked), row.cells)

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
        x = self.MARK_WIDTH
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
        self._set_virtual_size(Size(self._content_width(), len(self._view) + 1))

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
        mark_width = self.MARK_WIDTH
        if signature[0] == "header":
            style = base + self._style("header")
            text = " " * mark_width
            for column, label, w in zip(self.COLUMNS, signature[1], widths, strict=True):
                if label.endswith((" ▲", " ▼")) and cell_len(label) > w >= 2:
                    # A narrow sorted column keeps its arrow and loses letters.
                    label = label[:-2][: w - 1] + label[-1]
                text += fit(label, w, column.right_align) + " " * _SEPARATOR
            strip = Strip([Segment(text, style)], cell_len(text))
        else:
            (cursor, _focused, marked), cells = signature
            row_style = base
            if marked:
                row_style += self._style("marked")
            if cursor:
                row_style += self._style("cursor")
            mark = fit("●" if marked else "", mark_width)
            # Runs of one style become one segment: each segment costs an
            # escape sequence and a reset on the terminal.
            runs: list[tuple[str, Style]] = [(mark, row_style)]
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
            strip = Strip(segments, mark_width + sum(w + _SEPARATOR for w in widths))
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
            # A click on a header sorts by its column; a second click reverses.
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
        left = self.MARK_WIDTH
        for column, width in zip(self.COLUMNS, self._widths(), strict=True):
            if left <= x < left + width + _SEPARATOR:
                return column.key
            left += width + _SEPARATOR
        return None
