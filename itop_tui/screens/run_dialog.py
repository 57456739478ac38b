"""Run one command on the selected hosts, with per-host results shown live."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Footer, Input, Label, ProgressBar, Static
from textual.worker import Worker, WorkerState

from itop_tui.domain.change import Change
from itop_tui.domain.change_windows import time_left
from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.ops.change_gate import (
    ChangeGate,
    ChangeRequired,
    GateDecision,
    ObserveRefused,
    observe_command,
    without_cli_remedies,
)
from itop_tui.ops.fleet import FleetRunner
from itop_tui.screens.confirm import ChoiceDialog, ConfirmDialog
from itop_tui.screens.early_keys import KeepsEarlyKeys
from itop_tui.screens.result_view import ResultView
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.context import Services
from itop_tui.services.transport import HostKeyUnknown, RunResult

MAX_FORKS = 1000
FIRST_LINE_WIDTH = 200

OBSERVE_KEY = "ctrl+o"
"""Turns Observe on and off (a letter would go into the command field)."""
OBSERVE_NAME = "Observe"
"""What the dialog calls read-only runs (``itop run --observe``); not itop's read-only mode."""
GATE_REMEDY = ("Turn on Observe (ctrl+o) for a read-only command, or run it under an "
               "approved change covering the hosts (Changes pane, 4)")
"""What a refusal by the change gate suggests in the dialog (instead of ``itop run`` options)."""

STATE_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "ok": "green",
    "failed": "bold red",
    "error": "bold red",
    "cancelled": "yellow",
    "refused": "bold red",
}


def left_text(delta: timedelta) -> str:
    """``42m left`` (``<1m left`` in the last minute) for the time a window stays open."""
    minutes = int(delta.total_seconds()) // 60
    return f"{minutes}m left" if minutes >= 1 else "<1m left"


def change_note(changes: list[Change], production: list[str], now: datetime,
                observe: bool = False) -> Text:
    """What the dialog says about the change a run on ``production`` hosts goes under.

    With ``observe`` (Observe on) the run needs no change and is recorded
    against none.
    """
    if observe:
        text = Text("Observe: ", style="bold green")
        text.append("one program from the read-only list, plain arguments; it changes "
                    "nothing and needs no change")
        if changes:
            refs = ", ".join(c.ref for c in changes)
            text.append(f" (turn Observe off to run under {refs})", style="dim")
        return text
    if not changes:
        return Text(
            "No active change covers the production hosts: a command that changes things "
            "will be refused. Turn on Observe (ctrl+o) to run a read-only command such as "
            "df -h, or run it under an approved change", style="bold red")
    if len(changes) > 1:
        refs = ", ".join(c.ref for c in changes)
        return Text(f"Several active changes cover these hosts ({refs}): you choose the one "
                    "the run is recorded against when you run it", style="bold yellow")
    change = changes[0]
    left = time_left(change, now)
    text = Text("Recorded against ")
    text.append(change.ref, style="bold")
    text.append(f" {change.title}" if change.title else "")
    if left is not None:
        text.append(f" ({left_text(left)})")
    return text


def gate_refusal(reason: str) -> str:
    """The dialog's text for a refusal by the change gate, with the dialog's remedies."""
    return f"Refused by the change gate: {without_cli_remedies(reason).rstrip('.')}. {GATE_REMEDY}"


def observe_refusal(exc: ObserveRefused) -> str:
    """The dialog's text for a command Observe does not run."""
    return f"Not run: {exc.worded(OBSERVE_NAME)}"


def result_state(result: RunResult) -> str:
    """``ok``, ``failed`` (non-zero exit), ``error`` (never ran) or ``cancelled``."""
    if result.error == "cancelled":
        return "cancelled"
    if result.error is not None:
        return "error"
    return "ok" if result.exit_status == 0 else "failed"


def first_line(result: RunResult) -> str:
    """The first non-blank line of output (stdout, then stderr, then the error)."""
    for text in (result.stdout, result.stderr, result.error or ""):
        for line in strip_control(text).splitlines():
            if line.strip():
                return line.strip()[:FIRST_LINE_WIDTH]
    return ""


def target_summary(hosts: list[Host], limit: int = 8) -> Text:
    """The target hosts by name (the first ``limit``), production ones in red."""
    text = Text()
    for index, host in enumerate(hosts[:limit]):
        if index:
            text.append(", ")
        text.append(host.name, style="bold red" if host.status == "production" else "")
    if len(hosts) > limit:
        text.append(f" and {len(hosts) - limit} more")
    production = sum(1 for h in hosts if h.status == "production")
    if production:
        text.append(f"\n{production} production host{'s' if production != 1 else ''}", style="bold red")
    return text


@dataclass
class RunOutcome:
    """What the dialog leaves behind: the last run's results and any unknown host keys."""

    results: list[RunResult] = field(default_factory=list)
    unknown_keys: dict[str, HostKeyUnknown] = field(default_factory=dict)
    cancelled: bool = False


class RunDialog(ReportsWorkerErrors, KeepsEarlyKeys, ModalScreen[RunOutcome]):
    """Asks for a command, forks and timeout; runs it and shows each host's result.

    The run happens in a worker; results arrive as messages and update one
    row each. When production hosts are among the targets, a thread worker
    looks up the active changes covering them: the run goes under the single
    one (the dialog says which), or under the one the person chooses among
    several; a refusal by the change gate is shown with its reason in the
    dialog. When no active change covers them, a command is refused at once
    (the gate decides, without asking "run on production?" first).

    Observe (ctrl+o) runs the command as ``itop run --observe`` does: it
    must be on the read-only list (refused with the list's reason
    otherwise), needs no change and no confirmation, and is audited with
    ``"observe": true``. Escape or ctrl+c cancels a running command (hosts
    not started are never started); Escape when idle closes the dialog.
    """

    DEFAULT_CSS = """
    RunDialog #run-mode {
        height: auto;
    }
    RunDialog #run-observe-hint {
        width: 1fr;
        padding-left: 2;
        color: $text-muted;
    }
    """

    AUTO_FOCUS = "#run-command"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel_or_close", "Cancel run / close"),
        Binding("ctrl+c", "cancel_run", "Cancel run", show=False),
        Binding(OBSERVE_KEY, "toggle_observe", "Observe"),
    ]

    class HostStarted(Message):
        """The command started on a host."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    class HostFinished(Message):
        """A host's result arrived."""

        def __init__(self, result: RunResult) -> None:
            super().__init__()
            self.result = result

    class RunRefused(Message):
        """The change gate (or Observe) refused the run; nothing ran."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text
            """The refusal as the dialog shows it."""

    class RunEnded(Message):
        """The run is over: finished or cancelled."""

        def __init__(self, outcome: RunOutcome) -> None:
            super().__init__()
            self.outcome = outcome

    def __init__(self, services: Services, hosts: list[Host]) -> None:
        """Prepare a run on ``hosts`` with ``services``' settings as defaults."""
        super().__init__()
        self.services = services
        self.hosts = hosts
        self.results: dict[str, RunResult] = {}
        self.outcome = RunOutcome()
        self.running = False
        self.change_ref: str | None = None
        self.active: list[Change] = []
        """The active changes covering the production targets (looked up on mount)."""
        self.observe = False
        """Observe: the command must be on the read-only list and needs no change."""
        self._now: datetime | None = None
        self._run_worker: Worker[None] | None = None
        self._gate_worker: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        """The form, the progress bar, the results and a summary line."""
        settings = self.services.settings
        count = len(self.hosts)
        with Vertical(classes="dialog wide", id="run-dialog"):
            yield Static(
                f"Run a command on {count} host{'s' if count != 1 else ''}",
                classes="dialog-title",
            )
            yield Static(target_summary(self.hosts), id="run-targets")
            yield Static("", id="run-change", markup=False)
            with Horizontal(id="run-form"):
                yield Input(placeholder="command, e.g. uptime", id="run-command")
                yield Label("forks", classes="inline-label")
                yield Input(str(settings.forks), type="integer", id="run-forks")
                yield Label("timeout s", classes="inline-label")
                yield Input(str(settings.command_timeout), type="number", id="run-timeout")
                yield Button("Run", id="run-start", variant="primary")
            with Horizontal(id="run-mode"):
                yield Checkbox("Observe, read-only (ctrl+o)", False, id="run-observe", compact=True)
                yield Static(self._observe_hint(), id="run-observe-hint", markup=False)
            yield Static("", id="run-error", classes="field-error", markup=False)
            yield ProgressBar(total=count, show_eta=False, id="run-progress")
            yield DataTable(id="run-results", cursor_type="row", zebra_stripes=False)
            yield Static("", id="run-summary")
        yield Footer()

    def on_mount(self) -> None:
        """Set up the results table and focus the command input."""
        table = self.query_one("#run-results", DataTable)
        for label, key in (
            ("Host", "host"),
            ("State", "state"),
            ("Exit", "exit"),
            ("Time", "time"),
            ("First line of output", "line"),
        ):
            table.add_column(label, key=key)
        if self._production():
            self.query_one("#run-change", Static).update("Looking for the active change…")
            self._find_change()

    def _production(self) -> list[str]:
        return [h.name for h in self.hosts if h.status == "production"]

    @work(thread=True, exclusive=True, exit_on_error=False, group="change",
          description="Find the active change")
    def _find_change(self) -> None:
        production = self._production()
        gate = ChangeGate(self.services)
        changes = gate.active(production)
        self.app.call_from_thread(self._show_change, changes, production, gate.clock())

    def _show_change(self, changes: list[Change], production: list[str], now: datetime) -> None:
        self.active = changes
        self._now = now
        self.change_ref = changes[0].ref if len(changes) == 1 else None
        self._update_change_note()

    def _update_change_note(self) -> None:
        if self._now is None:
            return  # still looking
        self.query_one("#run-change", Static).update(
            change_note(self.active, self._production(), self._now, self.observe))

    # -- observe ------------------------------------------------------------

    def _observe_hint(self) -> str:
        if self.observe:
            return ("on: one read-only program (df, ps, uptime, systemctl status, …), "
                    "no pipes or other shell syntax")
        return "off: the command may change things"

    def action_toggle_observe(self) -> None:
        """Turn Observe (read-only runs) on or off."""
        checkbox = self.query_one("#run-observe", Checkbox)
        if not checkbox.disabled:
            checkbox.value = not checkbox.value

    @on(Checkbox.Changed, "#run-observe")
    def _observe_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.observe = event.value
        self.query_one("#run-observe-hint", Static).update(self._observe_hint())
        self.query_one("#run-error", Static).update("")
        self._update_change_note()

    # -- starting ---------------------------------------------------------

    @on(Input.Submitted)
    @on(Button.Pressed, "#run-start")
    def _submit(self) -> None:
        if self.running:
            return
        error = self.query_one("#run-error", Static)
        command = self.query_one("#run-command", Input).value.strip()
        try:
            forks = int(self.query_one("#run-forks", Input).value)
            if not 1 <= forks <= MAX_FORKS:
                raise ValueError
        except ValueError:
            error.update(f"forks: give a whole number from 1 to {MAX_FORKS}")
            self.query_one("#run-forks", Input).focus()
            return
        try:
            timeout = float(self.query_one("#run-timeout", Input).value)
            if timeout <= 0:
                raise ValueError
        except ValueError:
            error.update("timeout: give a number of seconds above 0")
            self.query_one("#run-timeout", Input).focus()
            return
        if not command:
            error.update("command: enter the command to run")
            self.query_one("#run-command", Input).focus()
            return
        error.update("")
        if self.observe:
            try:
                observe_command(command)
            except ObserveRefused as exc:
                error.update(observe_refusal(exc))
                self.query_one("#run-command", Input).focus()
                return
            # Nothing can change: no change needed, nothing to confirm.
            self._start(command, forks, timeout)
            return
        if not self._production():
            self._start(command, forks, timeout)
            return
        if not self.active:
            # The gate would refuse: let it say why now, not after "Run on production?".
            if self._gate_worker is None or self._gate_worker.is_finished:
                self._gate_worker = self._ask_gate(command, forks, timeout)
            return
        self._confirm_production(command, forks, timeout)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gate",
          description="Ask the change gate")
    def _ask_gate(self, command: str, forks: int, timeout: float) -> None:
        production = self._production()
        gate = ChangeGate(self.services)
        changes = gate.active(production)
        decision: GateDecision | None = None
        if not changes:
            # Audited as a refusal, like the run itself would be.
            decision = gate.check(self.hosts, mutating=True, change_ref=None,
                                  what=f"run: {command}")
            if decision.allowed:  # a change became active since the dialog looked
                changes = gate.active(production)
        self.app.call_from_thread(self._gate_answered, command, forks, timeout,
                                  changes, decision, gate.clock())

    def _gate_answered(self, command: str, forks: int, timeout: float, changes: list[Change],
                       decision: GateDecision | None, now: datetime) -> None:
        self._show_change(changes, self._production(), now)
        if decision is not None and not decision.allowed:
            self._refuse(gate_refusal(decision.reason))
        elif changes:
            self._confirm_production(command, forks, timeout)

    def _confirm_production(self, command: str, forks: int, timeout: float) -> None:
        """Ask before running a mutating ``command`` on production hosts (and which change)."""
        production = self._production()

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._start(command, forks, timeout)

        names = ", ".join(production[:5]) + (" …" if len(production) > 5 else "")

        def confirm(change_ref: str | None) -> None:
            if len(self.active) > 1:
                if not change_ref:
                    return
                self.change_ref = change_ref
            self.app.push_screen(
                ConfirmDialog(
                    "Production hosts",
                    f"Run `{command}` on {len(production)} production "
                    f"host{'s' if len(production) != 1 else ''} ({names})"
                    + (f" under {self.change_ref}" if self.change_ref else "") + "?",
                    yes="Run on production",
                ),
                confirmed,
            )

        if len(self.active) > 1:
            now = ChangeGate(self.services).clock()
            choices: list[tuple[str, str]] = []
            for change in self.active:
                left = time_left(change, now)
                choices.append((f"{change.ref} {strip_control(change.title)[:50]}"
                                + (f" ({left_text(left)})" if left is not None else ""),
                                change.ref))
            self.app.push_screen(ChoiceDialog(
                f"Several active changes cover {names}: which one is this run recorded against?",
                [*choices, ("Cancel", "")]), confirm)
            return
        confirm(self.change_ref)

    def _fill_rows(self) -> None:
        """One pending row per host."""
        self.results = {}
        table = self.query_one("#run-results", DataTable)
        table.clear()
        for host in self.hosts:
            table.add_row(
                Text(host.name),
                Text("pending", style=STATE_STYLES["pending"]),
                "",
                "",
                Text(""),
                key=host.name,
            )
        progress = self.query_one("#run-progress", ProgressBar)
        progress.update(total=len(self.hosts), progress=0)

    def _start(self, command: str, forks: int, timeout: float) -> None:
        self.running = True
        self.set_class(True, "-running")
        for widget in self.query("#run-form Input, #run-form Button, #run-observe"):
            widget.disabled = True
        self._fill_rows()
        self.query_one("#run-results", DataTable).focus()
        self._update_summary()
        self._run_worker = self._run(command, forks, timeout, mutating=not self.observe)

    @work(exclusive=True, exit_on_error=False, group="run", description="Run command")
    async def _run(self, command: str, forks: int, timeout: float, mutating: bool) -> None:
        runner = FleetRunner(self.services)

        def started(host: Host) -> None:
            self.post_message(self.HostStarted(host.name))

        def finished(result: RunResult) -> None:
            self.post_message(self.HostFinished(result))

        try:
            results = await runner.run(
                self.hosts, command, forks=forks, timeout=timeout,
                on_start=started, on_result=finished, mutating=mutating,
                change_ref=self.change_ref if mutating else None,
            )
        except ChangeRequired as exc:
            self.post_message(self.RunRefused(gate_refusal(exc.decision.reason)))
            return
        except ObserveRefused as exc:
            self.post_message(self.RunRefused(observe_refusal(exc)))
            return
        except asyncio.CancelledError:
            self.post_message(self.RunEnded(RunOutcome([], dict(runner.unknown_keys), True)))
            raise
        for warning in runner.warnings:
            self.app.notify(warning, severity="warning", markup=False)
        self.post_message(self.RunEnded(RunOutcome(results, dict(runner.unknown_keys))))

    # -- live updates -----------------------------------------------------

    def on_run_dialog_host_started(self, message: HostStarted) -> None:
        """Show the host as running."""
        self._set_state(message.host, "running")

    def on_run_dialog_host_finished(self, message: HostFinished) -> None:
        """Fill the host's row and advance the progress bar."""
        result = message.result
        self.results[result.host] = result
        table = self.query_one("#run-results", DataTable)
        self._set_state(result.host, result_state(result))
        exit_text = "" if result.exit_status is None else str(result.exit_status)
        # Columns were sized for empty cells: let them grow to fit results.
        table.update_cell(result.host, "exit", exit_text, update_width=True)
        table.update_cell(result.host, "time", f"{result.duration:.2f}s", update_width=True)
        table.update_cell(result.host, "line", Text(first_line(result)), update_width=True)
        self.query_one("#run-progress", ProgressBar).advance(1)
        self._update_summary()

    def on_run_dialog_run_refused(self, message: RunRefused) -> None:
        """Show why the run was refused; no host ran the command."""
        self._refuse(message.text)

    def _refuse(self, text: str) -> None:
        """Every host refused with ``text`` as the reason; the form is usable again."""
        self._fill_rows()
        for host in self.hosts:
            self._set_state(host.name, "refused")
        self.query_one("#run-error", Static).update(text)
        self._finish()

    def on_run_dialog_run_ended(self, message: RunEnded) -> None:
        """Mark unfinished hosts, re-enable the form, report unknown host keys."""
        outcome = message.outcome
        if not outcome.results:
            outcome.results = list(self.results.values())
        for host in self.hosts:
            if host.name not in self.results:
                self._set_state(host.name, "cancelled" if outcome.cancelled else "pending")
        self.outcome.results = outcome.results
        self.outcome.cancelled = outcome.cancelled
        self.outcome.unknown_keys.update(outcome.unknown_keys)
        self._finish()
        if outcome.unknown_keys:
            names = ", ".join(sorted(outcome.unknown_keys))
            self.app.notify(
                f"Unknown host keys: {names}. Close this dialog and press t to review them.",
                title="Host keys",
                severity="warning",
                timeout=15,
                markup=False,
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A run that failed (e.g. read-only) leaves the form usable again."""
        if event.worker is self._run_worker and event.state is WorkerState.ERROR:
            self._finish()

    def _finish(self) -> None:
        self.running = False
        self.set_class(False, "-running")
        for widget in self.query("#run-form Input, #run-form Button, #run-observe"):
            widget.disabled = False
        self._update_summary()

    def _set_state(self, host: str, state: str) -> None:
        table = self.query_one("#run-results", DataTable)
        table.update_cell(
            host, "state", Text(state, style=STATE_STYLES.get(state, "")), update_width=True
        )

    def _update_summary(self) -> None:
        counts: dict[str, int] = {}
        for result in self.results.values():
            state = result_state(result)
            counts[state] = counts.get(state, 0) + 1
        done = len(self.results)
        parts = [f"{done}/{len(self.hosts)} done"]
        parts += [f"{n} {state}" for state, n in sorted(counts.items())]
        if self.running:
            parts.append("Esc cancels")
        else:
            parts.append("Enter on a row shows its output; Esc closes")
        self.query_one("#run-summary", Static).update(" · ".join(parts))

    # -- actions ----------------------------------------------------------

    @on(DataTable.RowSelected, "#run-results")
    def _show_result(self, event: DataTable.RowSelected) -> None:
        name = event.row_key.value
        if name is not None and name in self.results:
            self.app.push_screen(ResultView(self.results[name]))

    def action_cancel_run(self) -> None:
        """Cancel the running command."""
        if self.running and self._run_worker is not None:
            self._run_worker.cancel()
            self.notify("Cancelling the run…", markup=False)

    def action_cancel_or_close(self) -> None:
        """Cancel a running command, or close the dialog when idle."""
        if self.running:
            self.action_cancel_run()
        else:
            self.dismiss(self.outcome)
