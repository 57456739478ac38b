"""The steps of a procedure run with each host's state, and the detail of one step.

:class:`StepList` is a table with one row per step and, for a few hosts,
one column per host showing its state (waiting, running, ok, failed,
skipped, cancelled); with more hosts a single column counts the states.
:class:`StepDetail` shows one step: a heading, its explanation (Markdown)
and what it did on each host. The run view and the replay use both.

Everything shown here comes from hosts or from procedure files, so it is
stripped of terminal control sequences before it is displayed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Markdown, Static

from itop_tui.domain.output import strip_control
from itop_tui.services.procedure_repo import HostResult
from itop_tui.widgets.output_log import OutputLog

STATE_STYLES: dict[str, str] = {
    "waiting": "dim",
    "running": "bold cyan",
    "ok": "green",
    "failed": "bold red",
    "skipped": "dim italic",
    "cancelled": "yellow",
}
"""How each host state is shown."""

FINAL_STATES = frozenset({"ok", "failed", "skipped", "cancelled"})
"""States after which a step has nothing left to do on a host."""

MAX_HOST_COLUMNS = 4
"""Up to this many hosts get a column each; more are counted in one column."""

TITLE_WIDTH = 32
CURRENT_MARK = "▶"
READ_MARK = "✓"


@dataclass(frozen=True)
class StepRow:
    """One step as the list shows it."""

    id: str
    number: int
    title: str
    kind: str
    mutates: bool
    trainee_safe: bool = False

    @property
    def flags(self) -> str:
        """``changes`` or ``read-only``, with ``trainee-safe`` when it is."""
        text = "changes" if self.mutates else "read-only"
        return f"{text}, trainee-safe" if self.trainee_safe and self.mutates else text


def state_text(state: str) -> Text:
    """A host state, styled."""
    return Text(state, style=STATE_STYLES.get(state, ""))


def state_counts(states: Iterable[str]) -> dict[str, int]:
    """How many of ``states`` are in each state, in the order of :data:`STATE_STYLES`."""
    counts = dict.fromkeys(STATE_STYLES, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return {state: n for state, n in counts.items() if n}


def counts_text(states: Iterable[str]) -> Text:
    """``2 ok · 1 running · 5 waiting``, each part styled as its state."""
    text = Text()
    for index, (state, count) in enumerate(state_counts(states).items()):
        if index:
            text.append(" · ", style="dim")
        text.append(f"{count} {state}", style=STATE_STYLES.get(state, ""))
    return text


def one_line(text: str, width: int) -> str:
    """``text`` as one line of at most ``width`` characters, control sequences removed."""
    flat = " ".join(strip_control(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class StepList(DataTable[Text | str]):
    """Steps of a run (rows) and the state of each on every host.

    The row key is the step id. :meth:`mark_current` puts a marker on the
    step running now; :meth:`mark_read` a tick on a step whose explanation
    was read (trainee briefing). The cursor moves by row; screens follow it
    with ``DataTable.RowHighlighted``.
    """

    BINDINGS: ClassVar[list[BindingType]] = []

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        """An empty list; :meth:`show_steps` fills it."""
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self.steps: list[StepRow] = []
        self.hosts: list[str] = []
        self.states: dict[str, dict[str, str]] = {}
        self.current: str | None = None
        self.read: set[str] = set()

    @property
    def per_host(self) -> bool:
        """True when every host has its own column."""
        return len(self.hosts) <= MAX_HOST_COLUMNS

    def show_steps(
        self, steps: list[StepRow], hosts: list[str], states: Mapping[str, Mapping[str, str]]
    ) -> None:
        """Show ``steps`` on ``hosts``; ``states[step id][host]`` (missing: waiting)."""
        cursor = self.cursor_step_id
        self.steps = list(steps)
        self.hosts = list(hosts)
        self.states = {
            step.id: {h: states.get(step.id, {}).get(h, "waiting") for h in hosts} for step in steps
        }
        self.clear(columns=True)
        self.add_column(Text(" "), key="mark", width=1)
        self.add_column(Text("#"), key="number")
        self.add_column(Text("Kind"), key="kind")
        self.add_column(Text("Step"), key="title", width=TITLE_WIDTH)
        self.add_column(Text("Changes"), key="flags")
        if self.per_host:
            for host in self.hosts:
                self.add_column(Text(one_line(host, 16)), key=f"host:{host}")
        else:
            self.add_column(Text(f"{len(self.hosts)} hosts"), key="hosts")
        for step in self.steps:
            self.add_row(*self._cells(step), key=step.id)
        if cursor is not None and cursor in self.states:
            self.move_to_step(cursor)

    def _cells(self, step: StepRow) -> list[Text | str]:
        cells: list[Text | str] = [
            self._mark(step.id),
            Text(str(step.number), style="dim"),
            Text(step.kind),
            Text(one_line(step.title, TITLE_WIDTH)),
            Text(step.flags, style="yellow" if step.mutates else "dim"),
        ]
        states = self.states.get(step.id, {})
        if self.per_host:
            cells += [state_text(states.get(h, "waiting")) for h in self.hosts]
        else:
            cells.append(counts_text(states.values()))
        return cells

    def _mark(self, step_id: str) -> Text:
        if step_id == self.current:
            return Text(CURRENT_MARK, style="bold cyan")
        if step_id in self.read:
            return Text(READ_MARK, style="green")
        return Text(" ")

    def set_state(self, step_id: str, host: str, state: str) -> None:
        """Show ``host``'s state for ``step_id``."""
        states = self.states.get(step_id)
        if states is None or host not in states:
            return
        states[host] = state
        if self.per_host:
            self.update_cell(step_id, f"host:{host}", state_text(state), update_width=True)
        else:
            self.update_cell(step_id, "hosts", counts_text(states.values()), update_width=True)

    def mark_current(self, step_id: str | None) -> None:
        """Put the "running now" marker on ``step_id`` (None: on no step)."""
        previous, self.current = self.current, step_id
        for key in (previous, step_id):
            if key is not None and key in self.states:
                self.update_cell(key, "mark", self._mark(key))

    def mark_read(self, step_id: str) -> None:
        """Tick ``step_id`` as read."""
        if step_id in self.read or step_id not in self.states:
            return
        self.read.add(step_id)
        self.update_cell(step_id, "mark", self._mark(step_id))

    def move_to_step(self, step_id: str) -> None:
        """Put the cursor on ``step_id``."""
        if step_id in self.states:
            self.move_cursor(row=self.get_row_index(step_id))

    @property
    def cursor_step_id(self) -> str | None:
        """The id of the step under the cursor, or None when the list is empty."""
        if not self.steps or not self.is_valid_row_index(self.cursor_row):
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return key if isinstance(key, str) else None

    def progress(self) -> tuple[int, int]:
        """(step/host results that are final, all step/host results)."""
        states = [s for per_host in self.states.values() for s in per_host.values()]
        return sum(1 for s in states if s in FINAL_STATES), len(states)


def result_lines(host: str, result: HostResult, *, same_command: bool = False) -> list[str]:
    """What one step did on one host, as plain lines: a heading, command, output, errors.

    ``same_command`` says the command is the one shown for the host before,
    so only a reference to it is written.
    """
    facts = [result.state]
    if result.exit_code is not None:
        facts.append(f"exit {result.exit_code}")
    if result.duration:
        facts.append(f"{result.duration:g} s")
    if result.attempts > 1:
        facts.append(f"{result.attempts} attempts")
    if result.confirmed_by:
        facts.append(f"confirmed by {result.confirmed_by}")
    lines = [f"── {host}: {' · '.join(strip_control(f) for f in facts)} ──"]
    if result.start:
        lines.append(f"   {result.start} → {result.end or '(unfinished)'}")
    if result.note:
        lines.append(f"   note: {one_line(result.note, 400)}")
    if result.reason:
        label = "failure" if result.state == "failed" else "reason"
        lines.append(f"   {label}: {one_line(result.reason, 400)}")
    if result.command and same_command:
        lines.append("$ (the same command as above)")
    elif result.command:
        label = "would run:" if result.state == "skipped" else "$"
        command = strip_control(result.command).rstrip().splitlines()
        if label == "$":
            lines += [f"$ {line}" for line in command]
        else:
            lines += [label, *(f"  {line}" for line in command)]
    lines += strip_control(result.output).rstrip().splitlines()
    if result.stderr.strip():
        lines += [f"! {line}" for line in strip_control(result.stderr).rstrip().splitlines()]
    if result.truncated:
        lines.append("(output was cut: itop keeps a bounded amount)")
    for number, earlier in enumerate(result.previous, 1):
        lines.append(
            f"   earlier attempt {number}: {earlier.get('state')} at {earlier.get('start')}, "
            f"exit {earlier.get('exit_code')}"
        )
    return lines


class StepDetail(Vertical):
    """One step: a heading, its explanation (Markdown) and its results per host."""

    DEFAULT_CSS = """
    StepDetail {
        height: 1fr;
    }
    StepDetail > .step-heading {
        height: auto;
        padding: 0 1;
        background: $panel;
        text-style: bold;
    }
    StepDetail > .step-explanation {
        height: auto;
        max-height: 45%;
        border-bottom: hkey $panel-lighten-1;
    }
    StepDetail > .step-explanation Markdown {
        margin: 0 1;
    }
    StepDetail > OutputLog {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        """An empty detail; :meth:`show` fills it."""
        super().__init__(id=id, classes=classes)
        self._shown: tuple[str, str] | None = None
        self._lines: list[str] | None = None

    def compose(self) -> ComposeResult:
        """Heading, explanation, output."""
        yield Static("", classes="step-heading", markup=False)
        with VerticalScroll(classes="step-explanation"):
            yield Markdown("", open_links=False)
        yield OutputLog(classes="step-output")

    def show(
        self,
        heading: str,
        explanation: str,
        results: Iterable[tuple[str, HostResult]],
        notes: Iterable[str] = (),
    ) -> None:
        """Show a step: ``heading``, its rendered ``explanation`` (Markdown), then for
        each ``(host, result)`` that did something its evidence, and ``notes``."""
        heading = one_line(heading, 300)
        text = strip_control(explanation).strip() or "*This step has no explanation.*"
        if (heading, text) != self._shown:
            # Rendering Markdown is the costly part: only when the text changed.
            self._shown = (heading, text)
            self.query_one(".step-heading", Static).update(heading)
            self.query_one(Markdown).update(text)
        lines: list[str] = []
        waiting: list[str] = []
        previous: str | None = None
        for host, result in results:
            if result.state == "waiting":
                waiting.append(host)
                continue
            if lines:
                lines.append("")
            lines += result_lines(host, result, same_command=result.command == previous)
            previous = result.command or previous
        if waiting:
            if lines:
                lines.append("")
            shown = ", ".join(waiting[:8]) + (f" and {len(waiting) - 8} more" if len(waiting) > 8 else "")
            lines.append(f"waiting: {shown}")
        for note in notes:
            lines.append(one_line(note, 400))
        lines = lines or ["(nothing has run yet)"]
        if lines == self._lines:
            return
        self._lines = lines
        log = self.query_one(OutputLog)
        log.clear()
        log.write_lines(lines, scroll_end=False)
        log.scroll_home(animate=False)
