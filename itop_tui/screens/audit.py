"""The Problems / Audit pane: open problems on top, the audit log under them.

The on-call engineer's "what happened, and who did it?" without leaving the
console: every audited action, newest first, filtered as you type
(``action:run actor:alice target:web01 result:failed origin:tui`` or free
text), the selected event's detail, and ``v`` to check the hash chain as
``itop audit verify`` does. The open problems are the stored ones (from
this console's monitor or ``itop collect``); ``a`` acknowledges one with a
note. Both follow their files: what another itop appends shows up by itself.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from itop_tui.domain.output import shorten, strip_control
from itop_tui.ops.fleet_monitor import acknowledge_problem
from itop_tui.screens.problems import ProblemTable, ask_acknowledgement, problem_rows
from itop_tui.screens.store_follow import follow_store
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.audit import AuditError, AuditEvent, AuditVerification
from itop_tui.services.context import AUDIT_FILE, Services
from itop_tui.services.problem_repo import PROBLEMS_FILE, Problem, ProblemRepository
from itop_tui.services.store_watch import StoreWatch
from itop_tui.widgets.cell_table import Cell, CellTable, SortKey, TableColumn
from itop_tui.widgets.filter_input import FilterInput
from itop_tui.widgets.host_table import Clock
from itop_tui.widgets.pane_tabs import PaneTabs

EVENT_LIMIT = 20_000
"""The newest events kept on screen: a log of years stays quick to open and filter."""

DETAIL_LIMIT = 2_000
"""Characters of an event's detail shown under the list."""

FILTER_KEYS = ("action", "actor", "target", "result", "origin")
FILTER_PLACEHOLDER = "/ filter: action:run actor:alice target:web01 result:failed, or text"


# -- rows and filtering -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit event as listed, with its lower-case search text."""

    event: AuditEvent
    cells: tuple[Cell, ...]
    haystack: str

    @property
    def key(self) -> str:
        """The event's sequence number."""
        return str(self.event.seq)


def detail_text(detail: object) -> str:
    """An event's detail on one line, as compact JSON."""
    if detail is None:
        return ""
    try:
        return json.dumps(detail, separators=(", ", ": "), ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(detail)


def audit_row(event: AuditEvent) -> AuditRow:
    """The cells of ``event``: time (UTC), who, what, on what, how it went, detail."""
    try:
        when = event.time.astimezone(UTC).strftime("%m-%d %H:%M:%S")
    except ValueError:
        when = event.at[:14]
    detail = strip_control(detail_text(event.detail))
    result = strip_control(event.result)
    cells = (
        Cell(str(event.seq), "muted"),
        Cell(when),
        Cell(strip_control(f"{event.actor}@{event.origin}")),
        Cell(strip_control(event.action), "action"),
        Cell(strip_control(event.target)),
        Cell(result, "ok" if result == "ok" else "bad"),
        Cell(shorten(" ".join(detail.split()), 400), "muted"),
    )
    haystack = " ".join(
        (event.action, event.actor, event.origin, event.target, event.result, detail)
    ).lower()
    return AuditRow(event, cells, haystack)


@dataclass(frozen=True)
class AuditFilter:
    """What the filter box asks for: ``key:value`` terms (each key "any of", the keys
    "all of") and free words that must all appear somewhere in the event."""

    terms: dict[str, tuple[str, ...]]
    words: tuple[str, ...]


def parse_audit_filter(text: str) -> AuditFilter:
    """``action:run actor:alice web01`` as terms and words (keys as in :data:`FILTER_KEYS`)."""
    terms: dict[str, list[str]] = {}
    words: list[str] = []
    for word in text.lower().split():
        key, colon, value = word.partition(":")
        if colon and key in FILTER_KEYS and value:
            terms.setdefault(key, []).append(value)
        else:
            words.append(word)
    return AuditFilter({k: tuple(v) for k, v in terms.items()}, tuple(words))


def audit_matches(row: AuditRow, wanted: AuditFilter) -> bool:
    """Whether ``row`` passes the filter: an action term matches its start
    (``action:change`` finds every ``change.*``), other terms the whole field."""
    event = row.event
    fields = {
        "action": event.action.lower(), "actor": event.actor.lower(),
        "target": event.target.lower(), "result": event.result.lower(),
        "origin": event.origin.lower(),
    }
    for key, values in wanted.terms.items():
        field_value = fields[key]
        if key == "action":
            if not any(field_value.startswith(v) for v in values):
                return False
        elif field_value not in values:
            return False
    return all(word in row.haystack for word in wanted.words)


def chain_text(verification: AuditVerification | None) -> str:
    """The state of the hash chain for the status line."""
    if verification is None:
        return "chain: v checks it"
    if verification.ok:
        return f"chain intact ({verification.checked} events)"
    return f"CHAIN BROKEN: {verification.message}"


# -- the table ----------------------------------------------------------------------


class AuditTable(CellTable[AuditRow]):
    """Audit events, newest first by default; Enter shows nothing more (the detail
    follows the cursor)."""

    COLUMNS: ClassVar[tuple[TableColumn, ...]] = (
        TableColumn("seq", "#", 4, max_width=8, right_align=True),
        TableColumn("time", "Time (UTC)", 14),
        TableColumn("who", "Who", 8, max_width=24),
        TableColumn("action", "Action", 8, max_width=24),
        TableColumn("target", "Target", 8, max_width=28),
        TableColumn("result", "Result", 6, max_width=10),
        TableColumn("detail", "Detail", 10, flex=True),
    )
    STYLE_PREFIX: ClassVar[str] = "audit-table"
    HELP_TITLE = "Audit log"
    CURSOR_FOLLOWS_ROW = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_sort", "Sort", show=False),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "audit-table--header",
        "audit-table--cursor",
        "audit-table--muted",
        "audit-table--action",
        "audit-table--ok",
        "audit-table--bad",
    }

    DEFAULT_CSS = """
    AuditTable {
        background: $surface;
        scrollbar-gutter: stable;
        & > .audit-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .audit-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .audit-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .audit-table--muted { color: $text-muted; }
        & > .audit-table--action { color: $text-primary; }
        & > .audit-table--ok { color: $text-success; }
        & > .audit-table--bad { color: $text-error; text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """An empty table, newest event first."""
        super().__init__(id=id)
        self.sort_column = "seq"
        self.sort_reverse = True

    def sort_key(self, column: str) -> tuple[SortKey, bool]:
        """Events by sequence number (time order); other columns by their text."""
        if column in ("seq", "time"):
            return (lambda row: row.event.seq), False
        return super().sort_key(column)


# -- the screen ---------------------------------------------------------------------


class AuditScreen(ReportsWorkerErrors, Screen[None]):
    """Open problems and the audit log, following both files."""

    TITLE = "Problems / Audit"
    AUTO_FOCUS = "#audit-list"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("v", "verify", "Verify chain"),
        Binding("o", "focus_problems", "Problems"),
        Binding("f5", "reload", "Reload", show=False),
    ]

    class EventsLoaded(Message):
        """The audit log was read: the newest events, how many in all, or why not."""

        def __init__(self, events: list[AuditEvent], total: int, error: str | None) -> None:
            super().__init__()
            self.events = events
            self.total = total
            self.error = error

    class ProblemsLoaded(Message):
        """The stored open problems were read."""

        def __init__(self, problems: list[Problem]) -> None:
            super().__init__()
            self.problems = problems

    class Acknowledged(Message):
        """A problem was acknowledged (stored and audited)."""

        def __init__(self, problem_id: str) -> None:
            super().__init__()
            self.problem_id = problem_id

    class Verified(Message):
        """The hash chain was checked."""

        def __init__(self, verification: AuditVerification) -> None:
            super().__init__()
            self.verification = verification

    def __init__(self, services: Services, clock: Clock | None = None) -> None:
        """The pane over ``services``' audit log and problems; ``clock`` gives now."""
        super().__init__()
        self.services = services
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.rows: list[AuditRow] = []
        self.total = 0
        self.load_error: str | None = None
        self.verification: AuditVerification | None = None
        self.shown: list[str] = []
        data_dir = services.settings.data_dir
        self.audit_watch = StoreWatch.in_data_dir(data_dir, AUDIT_FILE)
        """The audit log as last read: what any itop appends shows up by itself."""
        self.problems_watch = StoreWatch.in_data_dir(data_dir, PROBLEMS_FILE)

    def compose(self) -> ComposeResult:
        """Problems, filter, events, the selected event, a status line."""
        yield Header(icon="≡")
        yield PaneTabs()
        with Vertical(id="audit-problems-panel"):
            yield Static("Open problems: reading…", id="audit-problems-title", markup=False)
            yield ProblemTable(id="audit-problems")
        yield FilterInput(id="audit-filter", placeholder=FILTER_PLACEHOLDER)
        yield AuditTable(id="audit-list")
        yield Static("", id="audit-detail", markup=False)
        yield Static("Reading the audit log…", id="audit-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """Read both files, and again whenever one of them moved."""
        self.load_events()
        self.load_problems()
        follow_store(self, self.audit_watch, self.load_events)
        follow_store(self, self.problems_watch, self.load_problems)

    @property
    def table(self) -> AuditTable:
        """The audit event list."""
        return self.query_one("#audit-list", AuditTable)

    @property
    def problem_table(self) -> ProblemTable:
        """The open problems."""
        return self.query_one("#audit-problems", ProblemTable)

    # -- loading --------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load",
          description="Read the audit log")
    def load_events(self) -> None:
        """Read the newest :data:`EVENT_LIMIT` events (in a thread)."""
        self.audit_watch.mark()
        events: deque[AuditEvent] = deque(maxlen=EVENT_LIMIT)
        total = 0
        error = None
        try:
            for event in self.services.audit.events():
                total += 1
                events.append(event)
        except (AuditError, OSError) as exc:
            error = str(exc)
        self.post_message(self.EventsLoaded(list(events), total, error))

    def on_audit_screen_events_loaded(self, message: EventsLoaded) -> None:
        """Show the events, filtered; a newer event invalidates the last chain check."""
        if message.total != self.total:
            self.verification = None
        self.rows = [audit_row(e) for e in message.events]
        self.total = message.total
        self.load_error = message.error
        self.table.set_rows(self.rows)
        self._refilter()

    @work(thread=True, exclusive=True, exit_on_error=False, group="problems",
          description="Read the open problems")
    def load_problems(self) -> None:
        """Read the stored open problems (in a thread)."""
        self.problems_watch.mark()
        repository = ProblemRepository.in_data_dir(self.services.settings.data_dir)
        self.post_message(self.ProblemsLoaded(repository.open_problems()))

    def on_audit_screen_problems_loaded(self, message: ProblemsLoaded) -> None:
        """List the problems, most severe first."""
        rows = problem_rows(message.problems, [], self.clock())
        self.problem_table.set_rows(rows)
        unacknowledged = sum(1 for r in rows if not r.acknowledged_by)
        text = f"Open problems: {len(rows)}" if rows else "Open problems: none"
        if unacknowledged:
            text += f" ({unacknowledged} not acknowledged)"
        if rows:
            text += " · o focuses this list · a acknowledges"
        self.query_one("#audit-problems-title", Static).update(text)
        self.set_class(not rows, "-no-problems")

    def action_reload(self) -> None:
        """Read the log and the problems again."""
        self.load_events()
        self.load_problems()

    # -- filtering and the detail ---------------------------------------------------

    def _refilter(self) -> None:
        text = self.query_one("#audit-filter", Input).value
        wanted = parse_audit_filter(text)
        self.shown = [r.key for r in self.rows if audit_matches(r, wanted)]
        self.table.show(None if not text.strip() else self.shown)
        self._show_status()
        self._show_detail()

    def _show_status(self) -> None:
        parts = [f"{len(self.shown)} of {len(self.rows)} events"]
        if self.total > len(self.rows):
            parts[0] += f" (the newest of {self.total})"
        if self.load_error:
            parts.append(f"cannot read all of it: {self.load_error}")
        parts.append(chain_text(self.verification))
        parts.append("/: filter  v: verify  s: sort")
        self.query_one("#audit-status", Static).update(" · ".join(parts))

    def _show_detail(self) -> None:
        key = self.table.cursor_key
        row = self.table.row(key) if key is not None else None
        if row is None:
            text = "" if self.rows else "No audited action yet."
        else:
            event = row.event
            body = strip_control(json.dumps(event.detail, indent=1, ensure_ascii=False,
                                            sort_keys=True, default=str))
            text = (f"#{event.seq} {event.at} {strip_control(event.actor)}@{event.origin} "
                    f"{strip_control(event.action)} {strip_control(event.target)} "
                    f"{strip_control(event.result)}\n{shorten(body, DETAIL_LIMIT)}")
        self.query_one("#audit-detail", Static).update(text)

    @on(Input.Changed, "#audit-filter")
    def _filter_changed(self) -> None:
        self._refilter()

    @on(AuditTable.CursorMoved, "#audit-list")
    def _cursor_moved(self) -> None:
        self._show_detail()

    def action_focus_filter(self) -> None:
        """Put the cursor in the filter box."""
        self.set_focus(self.query_one("#audit-filter", Input))

    def action_focus_problems(self) -> None:
        """Move to the problems list (Tab moves on)."""
        self.set_focus(self.problem_table)

    # -- the chain ------------------------------------------------------------------

    def action_verify(self) -> None:
        """Check the hash chain of the whole log, as ``itop audit verify`` does."""
        self.query_one("#audit-status", Static).update("Checking the hash chain…")
        self._verify()

    @work(thread=True, exclusive=True, exit_on_error=False, group="verify",
          description="Check the audit chain")
    def _verify(self) -> None:
        self.post_message(self.Verified(self.services.audit.verify()))

    def on_audit_screen_verified(self, message: Verified) -> None:
        """Show the result; a broken chain is also a notification."""
        self.verification = message.verification
        self._show_status()
        if not message.verification.ok:
            self.app.notify(message.verification.message, title="Audit chain broken",
                            severity="error", timeout=20, markup=False)

    # -- acknowledging --------------------------------------------------------------

    @on(ProblemTable.AcknowledgeRequested)
    def _acknowledge_requested(self, message: ProblemTable.AcknowledgeRequested) -> None:
        ask_acknowledgement(self, self.services.read_only, message.problem, self._acknowledge)

    @work(thread=True, exclusive=True, exit_on_error=False, group="acknowledge",
          description="Acknowledge a problem")
    def _acknowledge(self, problem_id: str, note: str) -> None:
        repository = ProblemRepository.in_data_dir(self.services.settings.data_dir)
        problem = acknowledge_problem(repository, self.services.audit, problem_id, note,
                                      actor=self.services.actor)
        self.post_message(self.Acknowledged(problem.id))

    def on_audit_screen_acknowledged(self, message: Acknowledged) -> None:
        """Say so, and list the problems again."""
        self.app.notify(f"{message.problem_id} acknowledged.", markup=False)
        self.load_problems()

