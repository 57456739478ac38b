"""The Changes pane: every change, pending ones first, filtered as you type.

The list is read from the change store in a thread worker (the workflow's
calls block on file locks) and filtered in memory. ``/`` filters by
``state:``, ``type:``, ``host:``, ``requester:`` or free text; Enter opens
the change in detail (where its actions are), ``n`` writes a new one and
``u`` shows the upcoming windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from itop_tui.domain.change import CHANGE_TYPES, PENDING_STATES, STATES, Change
from itop_tui.domain.change_windows import time_left
from itop_tui.domain.output import strip_control
from itop_tui.ops.change_workflow import ChangeWorkflow
from itop_tui.screens.change_detail import ChangeDetailScreen
from itop_tui.screens.change_form import ChangeFormScreen
from itop_tui.screens.change_upcoming import UpcomingScreen
from itop_tui.screens.store_follow import follow_store
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.change_repo import CHANGES_FILE
from itop_tui.services.context import Services
from itop_tui.services.store_watch import StoreWatch
from itop_tui.widgets.filter_input import FilterInput
from itop_tui.widgets.fleet_table import Cell, CellTable, SortKey, TableColumn
from itop_tui.widgets.host_table import Clock
from itop_tui.widgets.pane_tabs import PaneTabs

FILTER_PLACEHOLDER = "/ filter: state:scheduled type:emergency host:web01 requester:alice, or text"
FILTER_KEYS = ("state", "type", "host", "requester")

# -- filtering ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeFilter:
    """What the filter box asks for: each list is "any of", the lists are "all of"."""

    states: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    requesters: tuple[str, ...] = ()
    words: tuple[str, ...] = ()


class ChangeFilterError(ValueError):
    """The filter text names an unknown state or type; ``str()`` says which."""


def parse_change_filter(text: str) -> ChangeFilter:
    """``state:scheduled type:emergency host:web01 requester:alice words`` as a filter.

    ``state:`` and ``type:`` take comma-separated values and are checked;
    other words are free text, matched anywhere in the change.
    """
    found: dict[str, list[str]] = {key: [] for key in FILTER_KEYS}
    words: list[str] = []
    for word in text.split():
        key, sep, value = word.partition(":")
        key = key.lower()
        if sep and key in found and value:
            found[key] += [v for v in value.split(",") if v]
        else:
            words.append(word.lower())
    for key, known in (("state", STATES), ("type", CHANGE_TYPES)):
        unknown = [v for v in found[key] if v.lower() not in known]
        if unknown:
            raise ChangeFilterError(
                f"unknown {key} {unknown[0]!r}: one of {', '.join(known)}")
    return ChangeFilter(
        states=tuple(v.lower() for v in found["state"]),
        types=tuple(v.lower() for v in found["type"]),
        hosts=tuple(found["host"]),
        requesters=tuple(found["requester"]),
        words=tuple(words),
    )


def change_matches(change: Change, wanted: ChangeFilter) -> bool:
    """True when ``change`` passes every part of ``wanted``."""
    if wanted.states and change.state not in wanted.states:
        return False
    if wanted.types and change.type not in wanted.types:
        return False
    if wanted.hosts and not any(change.covers(h) for h in wanted.hosts):
        return False
    if wanted.requesters and change.requester not in wanted.requesters:
        return False
    if wanted.words:
        hay = " ".join([change.ref, change.title, change.description, change.state,
                        change.type, change.requester, *change.hosts]).lower()
        return all(word in hay for word in wanted.words)
    return True


# -- the table ---------------------------------------------------------------------


def window_text(change: Change, now: datetime) -> str:
    """``06-03 22:00→23:00`` (a window within a day) or ``06-03 22:00→06-04 02:00``."""
    start, end = change.start, change.end
    if start is None or end is None:
        return "-"
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    text = start.strftime("%m-%d %H:%M") + "→"
    text += end.strftime("%H:%M") if end.date() == start.date() else end.strftime("%m-%d %H:%M")
    left = time_left(change, now)
    if left is not None:
        text += f" ({int(left.total_seconds() // 60)}m left)"
    return text


def hosts_text(hosts: Sequence[str], limit: int = 3) -> str:
    """``web01, web02 +4``."""
    shown = ", ".join(hosts[:limit])
    return shown + (f" +{len(hosts) - limit}" if len(hosts) > limit else "")


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One change of the list; ``rank`` is its place in the workflow's order."""

    change: Change
    rank: int
    conflict: bool
    cells: tuple[Cell, ...] = field(default=())

    @property
    def key(self) -> str:
        """The change's reference."""
        return self.change.ref


def change_row(change: Change, rank: int, conflict: bool, now: datetime) -> ChangeRow:
    """The row of ``change``: state and risk coloured, ``!`` after the ref on a conflict."""
    state_style = ("pending" if change.state in PENDING_STATES
                   else "bad" if change.state in ("failed", "backed_out")
                   else "muted" if change.state in ("closed", "cancelled") else "")
    active = change.is_active(now)
    cells = (
        Cell(change.ref + (" !" if conflict else ""), "conflict" if conflict else ""),
        Cell(change.type, "emergency" if change.type == "emergency" else ""),
        Cell(strip_control(" ".join(change.title.split()))),
        Cell(change.risk or "-", f"risk-{change.risk}" if change.risk else "muted"),
        Cell(change.state, state_style),
        Cell(window_text(change, now), "active" if active else ""),
        Cell(hosts_text(change.hosts)),
        Cell(change.requester),
    )
    return ChangeRow(change, rank, conflict, cells)


WORKFLOW_ORDER = ""
"""The sort that is no column's: the workflow's order (pending first, newest first)."""


class ChangeTable(CellTable[ChangeRow]):
    """The changes, in the workflow's order (pending first, newest first) by default.

    That order is no column's, so no header carries a sort arrow until a
    column is chosen (``s`` cycles the columns and comes back to it, ``S``
    reverses); :meth:`sort_description` says in words how rows are ordered.
    """

    # The title takes the room the others leave (cut with an ellipsis; Enter
    # shows it whole), so the columns after it keep their whole labels on a
    # 100-column terminal, and on an 80-column one while no window is set.
    COLUMNS: ClassVar[tuple[TableColumn, ...]] = (
        TableColumn("ref", "Ref", 7, max_width=10),
        TableColumn("type", "Type", 9),
        TableColumn("title", "Title", 10, flex=True),
        TableColumn("risk", "Risk", 8),
        TableColumn("state", "State", 10),
        TableColumn("window", "Window (UTC)", 12, max_width=32),
        TableColumn("hosts", "Hosts", 7, max_width=24),
        TableColumn("requester", "By", 4, max_width=12),
    )
    STYLE_PREFIX: ClassVar[str] = "change-table"
    HELP_TITLE = "Change list"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "choose", "Details"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "change-table--header",
        "change-table--cursor",
        "change-table--pending",
        "change-table--bad",
        "change-table--muted",
        "change-table--conflict",
        "change-table--emergency",
        "change-table--active",
        "change-table--risk-low",
        "change-table--risk-moderate",
        "change-table--risk-high",
    }

    DEFAULT_CSS = """
    ChangeTable {
        background: $surface;
        scrollbar-gutter: stable;
        & > .change-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .change-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .change-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .change-table--pending { color: $text-primary; text-style: bold; }
        & > .change-table--bad { color: $text-error; text-style: bold; }
        & > .change-table--muted { color: $text-muted; }
        & > .change-table--conflict { color: $text-warning; text-style: bold; }
        & > .change-table--emergency { color: $text-error; }
        & > .change-table--active { color: $text-success; text-style: bold; }
        & > .change-table--risk-low { color: $text-success; }
        & > .change-table--risk-moderate { color: $text-warning; }
        & > .change-table--risk-high { color: $text-error; text-style: bold; }
    }
    """

    class SortChanged(Message):
        """The rows are ordered differently (the status line says how)."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty table in the workflow's order."""
        super().__init__(id=id)
        self.sort_column = WORKFLOW_ORDER

    def sort_key(self, column: str) -> tuple[SortKey, bool]:
        """The workflow's order by rank, references by number, other columns by text."""
        if column == WORKFLOW_ORDER:
            return (lambda row: row.rank), False
        if column == "ref":
            return (lambda row: row.change.number), False
        return super().sort_key(column)

    def sort_description(self) -> str:
        """How the rows are ordered, in words."""
        if self.sort_column == WORKFLOW_ORDER:
            return ("pending last, oldest first" if self.sort_reverse
                    else "pending first, newest first")
        label = self.column_label(self.sort_column)
        return f"by {label} {self.sort_arrow()}"

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort by ``column``, or by the workflow's order for :data:`WORKFLOW_ORDER`."""
        if column == WORKFLOW_ORDER:
            self.sort_column = WORKFLOW_ORDER
            self.sort_reverse = reverse
            # No column's order: the base class's sort_by refuses it; resort() takes it.
            self.resort()
        else:
            super().sort_by(column, reverse)
        self.post_message(self.SortChanged())

    def action_cycle_sort(self) -> None:
        """Sort by the next column; after the last one, back to the workflow's order."""
        keys = [c.key for c in self.COLUMNS]
        if self.sort_column == WORKFLOW_ORDER:
            self.sort_by(keys[0])
        elif self.sort_column == keys[-1]:
            self.sort_by(WORKFLOW_ORDER)
        else:
            self.sort_by(keys[keys.index(self.sort_column) + 1])

    def cell_texts(self, key: str) -> dict[str, str]:
        """The text of each cell of row ``key``, by column."""
        row = self.row(key)
        if row is None:
            raise KeyError(key)
        return {c.key: cell.text for c, cell in zip(self.COLUMNS, row.cells, strict=True)}


# -- the screen --------------------------------------------------------------------


class ChangesScreen(ReportsWorkerErrors, Screen[None]):
    """The change list: pending changes first, a filter, and the way to each change."""

    TITLE = "Changes"
    AUTO_FOCUS = "#change-list"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("n", "new_change", "New change"),
        Binding("u", "upcoming", "Upcoming"),
        Binding("f5", "reload", "Reload"),
    ]

    class ChangesLoaded(Message):
        """The changes as read from the store, in the workflow's order, and the conflicts."""

        def __init__(self, changes: list[Change], conflicted: set[str]) -> None:
            super().__init__()
            self.changes = changes
            self.conflicted = conflicted

    def __init__(self, services: Services, clock: Clock | None = None) -> None:
        """List ``services``' changes; ``clock`` gives now (tests pass a fixed one)."""
        super().__init__()
        self.services = services
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.workflow = ChangeWorkflow(services, clock=self.clock)
        self.changes: list[Change] | None = None
        self.shown: list[str] = []
        self.store_watch = StoreWatch.in_data_dir(services.settings.data_dir, CHANGES_FILE)
        """The changes file as last read: another itop's steps show up by themselves."""

    def compose(self) -> ComposeResult:
        """Filter, list, status line."""
        yield Header(icon="≡")
        yield PaneTabs()
        yield FilterInput(id="change-filter", placeholder=FILTER_PLACEHOLDER)
        yield ChangeTable(id="change-list")
        yield Static("Loading changes…", id="changes-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """Read the changes, and again whenever another itop changed them."""
        self.load_changes()
        follow_store(self, self.store_watch, self.load_changes)

    def on_screen_resume(self) -> None:
        """Read the changes again when coming back from a detail or the form."""
        if self.changes is not None:
            self.load_changes()

    @property
    def table(self) -> ChangeTable:
        """The change list."""
        return self.query_one("#change-list", ChangeTable)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load",
          description="Load the changes")
    def load_changes(self) -> None:
        """Read every change and the conflicts among them (in a thread)."""
        self.store_watch.mark()
        changes = self.workflow.find()
        conflicted = set()
        for conflict in self.workflow.all_conflicts():
            conflicted |= {conflict.first, conflict.second}
        self.post_message(self.ChangesLoaded(changes, conflicted))

    def on_changes_screen_changes_loaded(self, message: ChangesLoaded) -> None:
        """Show the changes, filtered."""
        self.changes = message.changes
        now = self.clock()
        self.table.set_rows(change_row(c, rank, c.ref in message.conflicted, now)
                            for rank, c in enumerate(message.changes))
        self._refilter()

    def _refilter(self) -> None:
        if self.changes is None:
            return
        text = self.query_one("#change-filter", Input).value
        status = self.query_one("#changes-status", Static)
        try:
            wanted = parse_change_filter(text)
        except ChangeFilterError as exc:
            status.update(f"Filter: {exc}")
            return
        self.shown = [c.ref for c in self.changes if change_matches(c, wanted)]
        self.table.show(None if not text.strip() else self.shown)
        pending = sum(1 for c in self.changes if c.state in PENDING_STATES)
        # Only what the footer does not say: the keys (Enter, n, u, /, s) are
        # there, and on a 100-column terminal they cut the order off here.
        status.update(
            f"{len(self.shown)} of {len(self.changes)} changes · {pending} pending · "
            f"order: {self.table.sort_description()}")

    @on(ChangeTable.SortChanged)
    def _sort_changed(self) -> None:
        self._refilter()

    @on(Input.Changed, "#change-filter")
    def _filter_changed(self) -> None:
        self._refilter()

    @on(ChangeTable.RowChosen)
    def _chosen(self, event: ChangeTable.RowChosen) -> None:
        self.open_change(event.key)

    def open_change(self, ref: str) -> None:
        """Show change ``ref`` in detail."""
        self.app.push_screen(ChangeDetailScreen(self.workflow, ref))

    def action_focus_filter(self) -> None:
        """Put the cursor in the filter box."""
        self.set_focus(self.query_one("#change-filter", Input))

    def action_new_change(self) -> None:
        """Write a new change; its detail opens once it is saved."""

        def created(answer: dict[str, str] | None) -> None:
            if answer:
                self.load_changes()
                self.open_change(answer["ref"])

        self.app.push_screen(ChangeFormScreen(self.workflow), created)

    def action_upcoming(self) -> None:
        """Show the approved windows, blackouts and maintenance windows to come."""
        self.app.push_screen(UpcomingScreen(self.workflow))

    def action_reload(self) -> None:
        """Read the changes again (another itop may have moved them)."""
        self.load_changes()
