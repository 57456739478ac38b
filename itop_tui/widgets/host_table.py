"""The Inventory pane's table of hosts, fast with tens of thousands of rows.

:class:`HostTable` is a :class:`~itop_tui.widgets.cell_table.CellTable`:
rows are computed once per inventory load (:func:`host_row`, in a worker
thread), filtering shows a subset without sorting again, and only the cells
that changed on screen are repainted, so a keystroke in the filter box
costs little even with 10,000 hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from textual.binding import Binding, BindingType

from itop_tui.domain.models import HOST_STATUSES, Host
from itop_tui.domain.output import strip_control
from itop_tui.widgets.cell_table import Cell, CellTable, SortKey, TableColumn
from itop_tui.widgets.cell_table import natural_key as natural_key
from itop_tui.widgets.host_facts import format_memory, host_cpus, host_memory, host_os

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (UTC)."""

COLUMNS: tuple[TableColumn, ...] = (
    TableColumn("name", "Name", 8, max_width=28),
    TableColumn("address", "Address", 8, max_width=22),
    TableColumn("status", "Status", 6, max_width=11),
    TableColumn("groups", "Groups", 6, max_width=24),
    TableColumn("os", "OS", 4, max_width=22),
    TableColumn("cpus", "CPUs", 4, max_width=5, right_align=True),
    TableColumn("memory", "Memory", 6, max_width=8, right_align=True),
    TableColumn("last_seen", "Last seen", 9, max_width=10),
)
"""The host table's columns; widths are fitted to the inventory within these bounds."""
COLUMN_KEYS: tuple[str, ...] = tuple(c.key for c in COLUMNS)

_STATUS_ORDER = {status: index for index, status in enumerate(HOST_STATUSES)}
_STATUS_STYLES = frozenset(("production", "staging", "development", "retired"))


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


class HostRow:
    """A host and its cells as shown, computed once per load."""

    __slots__ = ("cells", "host")

    def __init__(self, host: Host, cells: tuple[Cell, ...]) -> None:
        self.host = host
        self.cells = cells

    @property
    def key(self) -> str:
        """The host's name, the row's identity."""
        return self.host.name

    @property
    def name(self) -> str:
        """The host's name."""
        return self.host.name

    @property
    def texts(self) -> tuple[str, ...]:
        """The cells' text, in :data:`COLUMNS` order."""
        return tuple(cell.text for cell in self.cells)


def host_row(host: Host, now: datetime) -> HostRow:
    """The displayed cells of ``host``, in :data:`COLUMNS` order."""
    cpus = host_cpus(host)
    memory = host_memory(host)
    address = host.connect_address
    if host.port:
        address = f"{address}:{host.port}"
    texts = (
        host.name,
        address,
        host.status,
        ",".join(host.groups),
        host_os(host),
        "" if cpus is None else str(cpus),
        "" if memory is None else format_memory(memory),
        relative_time(host.last_seen or host.facts_at, now),
    )
    status_style = host.status if host.status in _STATUS_STYLES else ""
    # Values come from imported files and from hosts: never let them drive the terminal.
    cells = tuple(
        Cell(strip_control(text), status_style if key == "status" else "")
        for key, text in zip(COLUMN_KEYS, texts, strict=True)
    )
    return HostRow(host, cells)


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
    return natural_key(row.cells[COLUMN_KEYS.index(column)].text)


class HostTable(CellTable[HostRow]):
    """Hosts as rows; a cursor, marks (space), and sorting by column.

    Feed it the whole inventory once with :meth:`set_rows` (or
    :meth:`set_hosts`), then show any subset (a filter's result) with
    :meth:`show`; both are cheap enough to call on every keystroke with
    10,000 hosts. The cursor stays on its host while the view changes.
    """

    COLUMNS: ClassVar[tuple[TableColumn, ...]] = COLUMNS
    STYLE_PREFIX: ClassVar[str] = "host-table"
    MARK_WIDTH: ClassVar[int] = 2
    CURSOR_FOLLOWS_ROW: ClassVar[bool] = True

    BINDINGS: ClassVar[list[BindingType]] = [
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
        /* Always shown: a scrollbar that comes and goes as a filter narrows and
           widens the rows makes the whole screen lay out again. */
        overflow-y: scroll;
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

    class CursorMoved(CellTable.CursorMoved):
        """The cursor is on another host (or on none: the view is empty).

        Attributes:
            host: The host under the cursor, or None.
        """

        def __init__(
            self, table: CellTable[Any], key: str | None, *, follows_view: bool = False
        ) -> None:
            super().__init__(table, key, follows_view=follows_view)
            row = table.row(key) if key is not None else None
            self.host: Host | None = row.host if isinstance(row, HostRow) else None

    class HostChosen(CellTable.RowChosen):
        """Enter (or a double click) on a host.

        Attributes:
            host: The chosen host.
        """

        def __init__(self, table: CellTable[Any], key: str, host: Host) -> None:
            super().__init__(table, key)
            self.host = host

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

    # -- data -------------------------------------------------------------

    @property
    def cursor_host(self) -> Host | None:
        """The host under the cursor, if any."""
        key = self.cursor_key
        row = self.row(key) if key is not None else None
        return row.host if row is not None else None

    @property
    def visible_hosts(self) -> list[Host]:
        """Hosts of the current view, in display order."""
        return [row.host for row in self._view]

    def marked_hosts(self) -> list[Host]:
        """Marked hosts that still exist, in name order."""
        rows = (self.row(n) for n in sorted(self.marked, key=natural_key))
        return [row.host for row in rows if row is not None]

    def row_cells(self, index: int) -> tuple[str, ...]:
        """The cells of view row ``index``, as shown (uncut)."""
        return self._view[index].texts

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Replace every host the table knows; the view becomes all of them."""
        now = self._clock()
        self._shown = None
        self.set_rows([host_row(h, now) for h in hosts])

    def move_to_host(self, name: str) -> bool:
        """Put the cursor on host ``name``; False when it is not in the view."""
        return self.move_to(name)

    def sort_key(self, column: str) -> tuple[SortKey, bool]:
        """Status in lifecycle order, CPUs and memory as numbers, the rest naturally."""
        return (lambda row: _sort_value(row, column)), False

    # -- actions ----------------------------------------------------------

    def action_toggle_mark(self) -> None:
        """Mark or unmark the cursor host, then move down."""
        key = self.cursor_key
        if key is None:
            return
        self.toggle_mark(key)
        self._move_cursor(self._cursor + 1)

    def action_unmark_all(self) -> None:
        """Clear every mark."""
        self.unmark_all()

    def action_choose(self) -> None:
        """Post :class:`HostChosen` for the cursor host."""
        host = self.cursor_host
        if host is not None:
            self.post_message(self.HostChosen(self, host.name, host))
