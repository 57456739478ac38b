"""The Problems panel of the Performance pane, and the acknowledge dialog.

Open problems (ARCHITECTURE.md section 4) are listed with host, metric,
severity, since when, the value against its limit, and who acknowledged
them. ``a`` on a problem asks for a note and acknowledges it; the screen
does the storing and auditing in a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Static

from itop_tui.domain.output import strip_control
from itop_tui.domain.thresholds import SEVERITY_RANK, OpenProblem
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.problem_repo import NOTE_LIMIT, Problem, iso_time
from itop_tui.widgets.cell_table import Cell, CellTable, SortKey, TableColumn
from itop_tui.widgets.host_table import natural_key, relative_time

METRIC_LABELS: dict[str, str] = {
    "cpu_percent": "CPU %",
    "mem_percent": "memory %",
    "swap_percent": "swap %",
    "load1": "load 1m",
    "load5": "load 5m",
    "load15": "load 15m",
    "load_per_core": "load per core",
    "procs": "processes",
    "disk_read_bps": "disk read/s",
    "disk_write_bps": "disk write/s",
    "disk_busiest_util": "busiest disk %",
    "net_rx_bps": "net rx/s",
    "net_tx_bps": "net tx/s",
    "fs_max_percent": "fullest filesystem %",
}
"""How metrics are named on screen (the stored name is shown for anything else)."""


def metric_label(metric: str) -> str:
    """The on-screen name of a metric or problem source."""
    return METRIC_LABELS.get(metric, strip_control(metric))


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


@dataclass(frozen=True, slots=True)
class ProblemRow:
    """One open problem as listed.

    ``problem_id`` is None for a problem the monitor sees but does not
    store (a read-only itop): it cannot be acknowledged.
    """

    problem_id: str | None
    host: str
    metric: str
    severity: str
    opened: float
    acknowledged_by: str | None
    note: str
    cells: tuple[Cell, ...]

    @property
    def key(self) -> str:
        """The problem id, or host and metric when it has none."""
        return self.problem_id or f"{self.host}/{self.metric}"


def problem_row(problem: Problem, now: datetime) -> ProblemRow:
    """The row of a stored problem; ages are counted from ``now``."""
    try:
        opened = problem.opened_epoch
    except ValueError:
        opened = 0.0
    value = "-"
    if problem.value is not None:
        value = _figure(problem.value)
        if problem.limit is not None:
            value += f" / {_figure(problem.limit)}"
    acknowledged = strip_control(problem.acknowledged_by or "")
    cells = (
        Cell(problem.id),
        Cell(strip_control(problem.host)),
        Cell(metric_label(problem.metric)),
        Cell(problem.severity, problem.severity),
        Cell(relative_time(problem.opened, now)),
        Cell(value),
        Cell(acknowledged or "no", "acknowledged" if acknowledged else "unacknowledged"),
        Cell(strip_control(" ".join(problem.note.split())), "muted"),
    )
    return ProblemRow(
        problem.id,
        problem.host,
        problem.metric,
        problem.severity,
        opened,
        problem.acknowledged_by,
        problem.note,
        cells,
    )


def open_problem_row(problem: OpenProblem, now: datetime) -> ProblemRow:
    """The row of a breach the monitor reports but does not store (read-only itop)."""
    cells = (
        Cell("-"),
        Cell(strip_control(problem.host)),
        Cell(metric_label(problem.metric)),
        Cell(problem.severity, problem.severity),
        Cell(relative_time(iso_time(problem.since), now)),
        Cell("-"),
        Cell("-", "muted"),
        Cell("not stored: itop is read-only", "muted"),
    )
    return ProblemRow(
        None, problem.host, problem.metric, problem.severity, problem.since, None, "", cells
    )


def problem_rows(
    problems: Iterable[Problem] | None, fallback: Iterable[OpenProblem], now: datetime
) -> list[ProblemRow]:
    """Rows of stored open problems, or of the monitor's breaches when nothing is stored."""
    if problems is not None:
        return [problem_row(p, now) for p in problems if p.is_open]
    return [open_problem_row(p, now) for p in fallback]


class ProblemTable(CellTable[ProblemRow]):
    """Open problems, most severe first; ``a`` acknowledges the one under the cursor."""

    COLUMNS: ClassVar[tuple[TableColumn, ...]] = (
        TableColumn("id", "Id", 6, max_width=9),
        TableColumn("host", "Host", 8, max_width=28),
        TableColumn("metric", "Metric", 20),
        TableColumn("severity", "Severity", 10),
        TableColumn("since", "Since", 10),
        TableColumn("value", "Value / limit", 13),
        TableColumn("acknowledged", "Acknowledged by", 15),
        TableColumn("note", "Note", 4, flex=True),
    )
    STYLE_PREFIX: ClassVar[str] = "problem-table"
    HELP_TITLE = "Problems"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "acknowledge", "Acknowledge"),
        Binding("enter", "choose", "Drill down", show=False),
        Binding("s", "cycle_sort", "Sort", show=False),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
    ]
    """
    | Key(s) | Description |
    | :- | :- |
    | a | Acknowledge the problem under the cursor, with a note. |
    | enter | Open the drill-down of the problem's host. |
    | s / S | Sort by the next column / reverse the order. |
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "problem-table--header",
        "problem-table--cursor",
        "problem-table--warning",
        "problem-table--critical",
        "problem-table--acknowledged",
        "problem-table--unacknowledged",
        "problem-table--muted",
    }
    """
    | Class | Description |
    | :- | :- |
    | `problem-table--header` | The header line. |
    | `problem-table--cursor` | The cursor row. |
    | `problem-table--warning` / `--critical` | The severity cell. |
    | `problem-table--acknowledged` / `--unacknowledged` | The acknowledged-by cell. |
    | `problem-table--muted` | Notes. |
    """

    DEFAULT_CSS = """
    ProblemTable {
        background: $surface;
        scrollbar-gutter: stable;
        & > .problem-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .problem-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .problem-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .problem-table--warning { color: $text-warning; text-style: bold; }
        & > .problem-table--critical { color: $text-error; text-style: bold; }
        & > .problem-table--acknowledged { color: $text-success; }
        & > .problem-table--unacknowledged { color: $text-warning; }
        & > .problem-table--muted { color: $text-muted; }
    }
    """

    class AcknowledgeRequested(Message):
        """``a`` on a problem."""

        def __init__(self, table: ProblemTable, problem: ProblemRow) -> None:
            super().__init__()
            self.table = table
            self.problem = problem

        @property
        def control(self) -> ProblemTable:
            """The table that sent the message."""
            return self.table

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """An empty list sorted by severity."""
        super().__init__(name=name, id=id, classes=classes)
        self.sort_column = "severity"

    def sort_key(self, column: str) -> tuple[SortKey, bool]:
        """Severity (then age) most severe first; since oldest first; text A-Z."""
        if column == "severity":
            return (lambda row: (SEVERITY_RANK.get(row.severity, 0), -row.opened)), True
        if column == "since":
            return (lambda row: row.opened), False
        if column == "id":
            return (lambda row: natural_key(row.key)), False
        return super().sort_key(column)

    @property
    def cursor_problem(self) -> ProblemRow | None:
        """The problem under the cursor."""
        key = self.cursor_key
        return None if key is None else self.row(key)

    def action_acknowledge(self) -> None:
        """Ask to acknowledge the problem under the cursor."""
        problem = self.cursor_problem
        if problem is None:
            self.app.notify("No open problem to acknowledge.", markup=False)
            return
        self.post_message(self.AcknowledgeRequested(self, problem))


class AcknowledgeDialog(ReportsWorkerErrors, ModalScreen[str | None]):
    """Asks for a note and dismisses with it (None when cancelled)."""

    AUTO_FOCUS = "#ack-note"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, problem: ProblemRow) -> None:
        """Acknowledge ``problem``."""
        super().__init__()
        self.problem = problem

    def compose(self) -> ComposeResult:
        """The problem, a note box, and Cancel / Acknowledge buttons."""
        p = self.problem
        since = iso_time(p.opened) if p.opened else "?"
        summary = (
            f"{p.key}: {metric_label(p.metric)} on {strip_control(p.host)} is {p.severity} "
            f"since {since}."
        )
        if p.acknowledged_by:
            summary += f"\nAlready acknowledged by {strip_control(p.acknowledged_by)}: "
            summary += strip_control(p.note) or "(no note)"
        with Vertical(id="ack-dialog", classes="dialog"):
            yield Static("Acknowledge a problem", classes="dialog-title")
            yield Static(summary, classes="dialog-text", markup=False)
            yield Input(
                placeholder="Note: what is being done, by whom (Enter acknowledges)",
                max_length=NOTE_LIMIT,
                id="ack-note",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="ack-cancel")
                yield Button("Acknowledge", id="ack-ok", variant="primary")

    def on_mount(self) -> None:
        """A steady cursor: a blinking one repaints twice a second."""
        self.query_one("#ack-note", Input).cursor_blink = False

    @on(Input.Submitted, "#ack-note")
    def _submitted(self) -> None:
        self._acknowledge()

    @on(Button.Pressed, "#ack-ok")
    def _ok(self) -> None:
        self._acknowledge()

    @on(Button.Pressed, "#ack-cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def _acknowledge(self) -> None:
        note = self.query_one("#ack-note", Input).value.strip()
        if not note:
            # An acknowledgement tells the next person what is being done.
            self.notify("An acknowledgement needs a note: what is being done, by whom.",
                        severity="error", markup=False)
            return
        self.dismiss(note)

    def action_cancel(self) -> None:
        """Close without acknowledging."""
        self.dismiss(None)


def ask_acknowledgement(
    screen: Screen[Any], read_only: bool, problem: ProblemRow,
    acknowledge: Callable[[str, str], object], *, stored: bool = True,
) -> bool:
    """Ask for a note on ``problem`` and hand ``(problem id, note)`` to ``acknowledge``.

    A read-only itop says so instead, and a problem that is not stored (the
    monitor's own in a read-only itop, or ``stored`` False: nowhere to store
    it) cannot be acknowledged. Returns whether the dialog was opened.
    """
    if read_only:
        screen.app.notify("Read-only mode: acknowledging problems is disabled.",
                          title="READ-ONLY", severity="warning", markup=False)
        return False
    problem_id = problem.problem_id
    if problem_id is None or not stored:
        screen.app.notify("This problem is not stored; nothing to acknowledge.", markup=False)
        return False

    def answered(note: str | None) -> None:
        if note is not None:
            acknowledge(problem_id, note)

    screen.app.push_screen(AcknowledgeDialog(problem), answered)
    return True


def host_problem_lines(rows: Iterable[ProblemRow]) -> list[tuple[str, str]]:
    """One line per problem of a host for the drill-down, with its severity as style."""
    lines = []
    for row in rows:
        text = f"{row.key}  {metric_label(row.metric)}  {row.severity}  since {row.cells[4].text}"
        if row.acknowledged_by:
            text += f"  ack {strip_control(row.acknowledged_by)}"
            if row.note:
                text += f": {strip_control(' '.join(row.note.split()))}"
        lines.append((text, row.severity))
    return lines

