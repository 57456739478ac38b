"""The run view: targets and variables for a new run, then the run live, step by step.

One screen serves three uses: a new run of a procedure (a form for the
host selector, the variables and check mode, then the run), an existing
run opened from the runs list (its record shown; resume, retry or abort
it), and the run going on (the step list with each host's state, the
explanation and output of the step under the cursor, progress, badges).

The run is executed by :class:`~itop_tui.ops.procedure_runner.ProcedureRunner`
in an async worker of this screen. The runner asks a person through
callbacks, which push modal dialogs and wait for the answer
(``push_screen_wait``); its progress events arrive as messages (the
observer only posts). An approval makes the runner wait, polling the store,
while a dialog says who must approve; the run goes on by itself once
another person approves it from their itop. Stopping the worker pauses the
run (it can be resumed); aborting ends it.

A run whose mutating steps reach production hosts goes under a change:
before a run starts (or a run without a change is resumed or retried), the
active changes covering its production hosts are looked up. One is used
(and named); among several the person chooses; with none, the person is
told that the change gate will pause the run at its first mutating step,
and decides whether to start anyway. The change gate decides each step.

Trainees read every step's explanation before the run starts: the steps
must each be looked at (a tick marks them) before the run can start, and
each step's explanation is shown again as it starts, and in every prompt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    ProgressBar,
    Static,
)
from textual.worker import Worker, WorkerState

from itop_tui.domain.change import Change
from itop_tui.domain.change_windows import time_left
from itop_tui.domain.models import Inventory
from itop_tui.domain.output import strip_control
from itop_tui.domain.procedure import Procedure, Step, Variable
from itop_tui.domain.procedure_loader import ProcedureFormatError, procedure_from_dict
from itop_tui.domain.roles import Role
from itop_tui.domain.selectors import SelectorError, select_hosts
from itop_tui.domain.substitution import (
    REDACTED,
    VariableError,
    builtin_values,
    render_text,
)
from itop_tui.ops.approval_facts import preview_lines
from itop_tui.ops.change_gate import PRODUCTION, ChangeGate
from itop_tui.ops.procedure_runner import (
    ProcedureRunner,
    ResumeRefused,
    RunCallbacks,
    RunEvent,
    RunnerError,
)
from itop_tui.screens.confirm import ChoiceDialog, ConfirmDialog
from itop_tui.screens.procedure_access import ShowsAllowedKeys, role_of, run_refusal
from itop_tui.screens.procedure_prompts import (
    ApprovalWait,
    CommentDialog,
    RunQuestion,
    StepQuestion,
    VariableDialog,
)
from itop_tui.screens.run_dialog import left_text
from itop_tui.screens.worker_errors import ReportsWorkerErrors, describe_error
from itop_tui.services.context import ReadOnlyError, Services
from itop_tui.services.procedure_repo import (
    FINAL_STATUSES,
    HostResult,
    ProcedureRun,
    RunBusy,
    RunNotFound,
    RunRepository,
    StoredProcedure,
)
from itop_tui.widgets.run_form import TARGET, RunForm
from itop_tui.widgets.step_list import (
    FINAL_STATES,
    StepDetail,
    StepList,
    StepRow,
    counts_text,
    one_line,
)

T = TypeVar("T")

POLL_INTERVAL = 1.0
"""Seconds between looks at the store while a run waits for an approval."""

DETAIL_DELAY = 0.08
"""Seconds the cursor must rest on a step before its detail is shown."""

RESUMABLE = frozenset({"paused", "waiting", "running"})
"""Statuses a run can be resumed from (``running``: only when no process runs it)."""

BADGE_STYLES = {"CHECK MODE": "bold reverse yellow", "TRAINEE": "bold reverse magenta"}


def badges(*names: str) -> Text:
    """Reverse-video badges such as `` CHECK MODE `` followed by a space each."""
    text = Text()
    for name in names:
        text.append(f" {name} ", style=BADGE_STYLES.get(name, "bold reverse"))
        text.append(" ")
    return text


def step_rows(
    procedure: Procedure | None,
    run: ProcedureRun | None = None,
    values: Mapping[str, str] | None = None,
    secret_names: frozenset[str] = frozenset(),
) -> list[StepRow]:
    """The rows of the step list: the run's steps when there is a run, else the procedure's.

    Titles have the ``values`` known so far filled in (secrets as ``***``).
    """
    shown = dict(values or {})

    def title(text: str) -> str:
        return render_text(text, shown, secret_names=secret_names)

    if run is not None:
        safe = {s.id: s.trainee_safe for s in procedure.steps} if procedure is not None else {}
        return [StepRow(r.id, n, title(r.title), r.kind, r.mutates, safe.get(r.id, False))
                for n, r in enumerate(run.steps, 1)]
    if procedure is None:
        return []
    return [StepRow(s.id, n, title(s.title), s.kind, s.mutates, s.trainee_safe)
            for n, s in enumerate(procedure.steps, 1)]


def stopped_at(run: ProcedureRun) -> str | None:
    """The step to look at first: the one that failed, is awaited, or comes next."""
    for record in run.steps:
        if any(r.state == "failed" for r in record.hosts.values()):
            return record.id
    if run.pending is not None:
        return run.pending.step
    for record in run.steps:
        if any(r.state not in FINAL_STATES for r in record.hosts.values()):
            return record.id
    return None


# -- the run view ----------------------------------------------------------------------


class ProcedureRunScreen(ReportsWorkerErrors, ShowsAllowedKeys):
    """A procedure run: the form for a new one, then its steps, states and output live.

    Args:
        services: The opened services.
        procedure: The procedure to run (a new run), or None.
        run_id: An existing run to show (from the runs list), or None.
        check: Start the form with check mode on.
        then: ``resume`` or ``retry`` to do with ``run_id`` once it is loaded.
    """

    TITLE = "Procedure run"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "start", "Start"),
        Binding("ctrl+t", "toggle_check", "Check mode"),
        Binding("r", "resume", "Resume"),
        Binding("t", "retry", "Retry failed"),
        Binding("s", "stop", "Stop here"),
        Binding("a", "abort", "Abort"),
        Binding("p", "replay", "Replay"),
        Binding("tab", "app.focus_next", "Next panel", show=False),
        Binding("f5", "reload", "Reload", show=False),
        Binding("escape", "back", "Back"),
    ]

    class InventoryLoaded(Message):
        """The inventory, to show which hosts the selector picks."""

        def __init__(self, inventory: Inventory) -> None:
            super().__init__()
            self.inventory = inventory

    class RunLoaded(Message):
        """A run record read from the store; ``locked`` when a process executes it."""

        def __init__(self, run: ProcedureRun, locked: bool) -> None:
            super().__init__()
            self.run = run
            self.locked = locked

    class Progress(Message):
        """A progress event of the run being executed."""

        def __init__(self, event: RunEvent) -> None:
            super().__init__()
            self.event = event

    class RunEnded(Message):
        """The runner returned: the run as it ended (or stopped waiting)."""

        def __init__(self, run: ProcedureRun, warnings: list[str], unknown_keys: list[str]) -> None:
            super().__init__()
            self.run = run
            self.warnings = warnings
            self.unknown_keys = unknown_keys

    class RunRefused(Message):
        """The runner refused to start or go on; nothing ran."""

        def __init__(self, text: str, problems: tuple[tuple[str, str], ...] = (),
                     resume_refused: bool = False) -> None:
            super().__init__()
            self.text = text
            self.problems = problems
            self.resume_refused = resume_refused

    class RunStopped(Message):
        """The worker was stopped (the run paused, or stays waiting)."""

    class Aborted(Message):
        """An abort was recorded (for a run not executed here)."""

        def __init__(self, run: ProcedureRun) -> None:
            super().__init__()
            self.run = run

    def __init__(
        self,
        services: Services,
        *,
        procedure: StoredProcedure | None = None,
        run_id: str | None = None,
        check: bool = False,
        then: str | None = None,
    ) -> None:
        """Prepare a new run of ``procedure``, or show the run ``run_id``."""
        super().__init__()
        if (procedure is None) == (run_id is None):
            raise ValueError("give a procedure to run, or the id of a run to show")
        self.services = services
        self.procedure: Procedure | None = procedure.procedure if procedure else None
        self.check = check
        self.then = then
        self.phase = "form" if procedure is not None else "loading"
        self.run_id = run_id
        self.run: ProcedureRun | None = None
        self.locked = False
        self.status = "new"
        self.reason: str | None = None
        self.mode = "check" if check else "normal"
        self.targets: list[str] = []
        self.results: dict[str, dict[str, HostResult]] = {}
        self.values: dict[str, str] = {}
        self.secret_names: frozenset[str] = (
            self.procedure.secret_names() if self.procedure else frozenset())
        self.started_info: dict[str, dict[str, object]] = {}
        self.notes: dict[str, list[str]] = {}
        self.current_step: str | None = None
        self.batch_label = ""
        self.inventory: Inventory | None = None
        self.runner: ProcedureRunner | None = None
        self.execution: Worker[None] | None = None
        self._prompts: list[RunQuestion[Any]] = []
        self._waiting: ApprovalWait | None = None
        self._mode: str | None = None
        self._detail_timer: Timer | None = None
        self.last_action = "start"
        """What the latest execution did: start, resume or retry (a refused resume repeats it)."""
        self.change_ref: str | None = None
        """The change the latest execution went under (chosen here, or the run's own)."""
        self.choosing_change = False
        """True while the change a run goes under is looked up or asked for."""

    # -- layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Heading; the form (new runs); steps, progress and step detail; status."""
        yield Header(icon="≡")
        yield Static("", id="run-head")
        if self.procedure is not None and self.phase == "form":
            yield RunForm(self.procedure, check=self.check, id="run-form")
        with Horizontal(id="run-body"):
            with Vertical(id="run-left"):
                yield StepList(id="run-steps")
                yield ProgressBar(id="run-progress", show_eta=False)
            yield StepDetail(id="run-detail")
        yield Static("", id="run-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """Build the step list; load the inventory (new run) or the run record."""
        self._mode = self.app.current_mode
        self.load_inventory()
        if self.phase == "form":
            self._show_steps()
            self.query_one(RunForm).focus_field(TARGET)
        else:
            assert self.run_id is not None
            self.load_run(self.run_id)
        self._update()

    @property
    def steps(self) -> StepList:
        """The step list."""
        return self.query_one("#run-steps", StepList)

    # -- loading ------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="inventory",
          description="Load the inventory")
    def load_inventory(self) -> None:
        """Read the inventory (in a thread): which hosts the selector picks, their addresses."""
        self.post_message(self.InventoryLoaded(self.services.inventory.load()))

    def on_procedure_run_screen_inventory_loaded(self, message: InventoryLoaded) -> None:
        """Match the selector now that the hosts are known."""
        self.inventory = message.inventory
        for form in self.query(RunForm):
            form.set_inventory(message.inventory)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load", description="Load the run")
    def load_run(self, run_id: str) -> None:
        """Read the run record and whether a process executes it (in a thread)."""
        runs = RunRepository.in_data_dir(self.services.settings.data_dir)
        run = runs.require(run_id)
        locked = not run.finished and runs.is_locked(run.id)
        self.post_message(self.RunLoaded(run, locked))

    def on_procedure_run_screen_run_loaded(self, message: RunLoaded) -> None:
        """Show the record; do what the runs list asked (resume, retry)."""
        if self.phase == "running":
            return
        self.locked = message.locked
        self._apply_record(message.run)
        self.phase = "view"
        where = stopped_at(message.run)
        if where is not None:
            self.steps.move_to_step(where)
        self._update()
        then, self.then = self.then, None
        if then == "resume":
            self.action_resume()
        elif then == "retry":
            self.action_retry()

    def action_reload(self) -> None:
        """Read the run record again (another itop may be running it)."""
        if self.phase == "view" and self.run_id is not None:
            self.load_run(self.run_id)

    def _apply_record(self, run: ProcedureRun) -> None:
        self.run = run
        self.run_id = run.id
        try:
            self.procedure = procedure_from_dict(run.procedure, source=f"{run.id} snapshot")
        except (ProcedureFormatError, KeyError, TypeError, ValueError):
            self.procedure = None
        self.secret_names = frozenset(run.secret_names)
        self.status = run.status
        self.reason = run.reason
        self.mode = run.mode
        self.targets = list(run.targets)
        self.values = dict(run.variables)
        self.results = {record.id: dict(record.hosts) for record in run.steps}
        self._show_steps(run)

    # -- the form -----------------------------------------------------------------

    @on(RunForm.Changed)
    def _form_changed(self, message: RunForm.Changed) -> None:
        if self.phase != "form":
            return
        hosts_changed = message.targets != self.targets
        self.targets = message.targets
        self.values = message.values
        self.check = message.check
        self.mode = "check" if self.check else "trainee" if self._trainee else "normal"
        rows = step_rows(self.procedure, None, self.values, self.secret_names)
        if hosts_changed or rows != self.steps.steps:
            self._show_steps()
        else:
            # Typing: redraw the detail once the keys stop, not for every key.
            self._step_highlighted()
        self._update()

    def action_toggle_check(self) -> None:
        """Turn check mode on or off."""
        self.query_one(RunForm).toggle_check()

    @property
    def _trainee(self) -> bool:
        return role_of(self.services) == Role.TRAINEE

    def unread_steps(self) -> list[str]:
        """Steps a trainee has not looked at yet (empty for everyone else)."""
        if not self._trainee or self.phase != "form":
            return []
        return [row.id for row in self.steps.steps if row.id not in self.steps.read]

    def action_start(self) -> None:
        """Check the form and start the run."""
        if self.phase != "form" or self.procedure is None:
            return
        form = self.query_one(RunForm)
        given = form.read()
        for name, problem in given.problems:
            form.show_problem(name, problem)
        if given.problems:
            form.focus_field(given.problems[0][0])
            return
        unread = self.unread_steps()
        if unread:
            self.app.notify(f"Read each step's explanation first ({len(unread)} not read yet): "
                            "Tab to the steps and go through them with ↓.", markup=False)
            return
        if self.choosing_change:
            return

        def begin(change_ref: str | None) -> None:
            form.forget_secrets()
            form.display = False
            self.change_ref = change_ref
            self.phase = "running"
            self.status = "starting"
            self._update()
            self.set_focus(self.steps)
            self.execution = self._execute("start", values=given.values, selector=given.selector,
                                           change_id=change_ref)

        self._choose_change(None, given.selector, begin)

    # -- the change a run goes under ---------------------------------------------------

    def _choose_change(self, hosts: list[str] | None, selector: str | None,
                       go: Callable[[str | None], None]) -> None:
        """Find the change for a run on ``hosts`` (or the hosts ``selector`` picks), then ``go``.

        ``go`` gets the change's reference, or None when no change is needed
        (check mode, a read-only procedure, no production host) or the person
        starts without one. Nothing happens when the person cancels.
        """
        if self.mode == "check" or (self.procedure is not None and not self.procedure.mutates):
            go(None)
            return
        self.choosing_change = True
        self._find_change(hosts, selector, go)

    @work(thread=True, exclusive=True, exit_on_error=False, group="change",
          description="Find the active change")
    def _find_change(self, hosts: list[str] | None, selector: str | None,
                     go: Callable[[str | None], None]) -> None:
        """Look up the production hosts and the active changes covering them (in a thread)."""
        try:
            inventory = self.inventory or self.services.inventory.load()
            if hosts is None:
                default = self.procedure.targets if self.procedure is not None else None
                try:
                    hosts = [h.name for h in select_hosts(inventory, selector or default or "")]
                except SelectorError:
                    hosts = []  # the runner reports the selector's problem
            production = [n for n in hosts
                          if (host := inventory.hosts.get(n)) is not None
                          and host.status == PRODUCTION]
            gate = ChangeGate(self.services)
            changes = gate.active(production) if production else []
            now = gate.clock()
        except Exception:
            self.app.call_from_thread(setattr, self, "choosing_change", False)
            raise
        self.app.call_from_thread(self._change_found, production, changes, now, go)

    def _change_found(self, production: list[str], changes: list[Change], now: datetime,
                      go: Callable[[str | None], None]) -> None:
        """Go under the single active change, or ask which one, or whether to go without."""
        names = ", ".join(production[:5]) + (" …" if len(production) > 5 else "")

        def chosen(ref: str | None) -> None:
            self.choosing_change = False
            if ref:
                go(ref)
            else:
                self.app.notify("Not started: no change chosen.", markup=False)

        if not production:
            self.choosing_change = False
            go(None)
        elif len(changes) == 1:
            change = changes[0]
            left = time_left(change, now)
            self.app.notify(
                f"Runs under {change.ref}, the active change covering {names}"
                + (f" ({left_text(left)})" if left is not None else ""), markup=False)
            self.choosing_change = False
            go(change.ref)
        elif changes:
            choices: list[tuple[str, str]] = []
            for change in changes:
                left = time_left(change, now)
                title = one_line(strip_control(change.title), 50)
                choices.append((f"{change.ref} {title}"
                                + (f" ({left_text(left)})" if left is not None else ""),
                                change.ref))
            self.app.push_screen(ChoiceDialog(
                f"Several active changes cover {names}: which one does this run go under?",
                [*choices, ("Cancel: do not start", "")]), chosen)
        else:
            def answered(yes: bool | None) -> None:
                self.choosing_change = False
                if yes:
                    go(None)

            self.app.push_screen(ConfirmDialog(
                "No active change",
                f"No approved change covering {names} (production) is in its window. The "
                "change gate will refuse the steps that change things there: the run pauses "
                "at the first one, and can be resumed once a change is active. Start anyway?",
                yes="Start anyway"), answered)

    # -- executing ----------------------------------------------------------------

    def _runner_callbacks(self) -> RunCallbacks:
        return RunCallbacks(confirm=self._confirm, manual=self._manual, ask=self._ask,
                            observer=self._observe)

    @work(exclusive=True, exit_on_error=False, group="execute", description="Procedure run")
    async def _execute(
        self,
        action: str,
        *,
        values: dict[str, str] | None = None,
        selector: str | None = None,
        force: bool = False,
        change_id: str | None = None,
    ) -> None:
        runner = ProcedureRunner(self.services, self._runner_callbacks(), approval_wait=None,
                                 poll_interval=POLL_INTERVAL)
        self.runner = runner
        try:
            if action == "start":
                assert self.procedure is not None
                run = await runner.start(self.procedure.id, selector=selector,
                                         variables=values or {}, check=self.check,
                                         change_id=change_id)
            elif action == "resume":
                assert self.run_id is not None
                run = await runner.resume(self.run_id, force=force, change_id=change_id)
            else:
                assert self.run_id is not None
                run = await runner.retry_failed(self.run_id, force=force, change_id=change_id)
        except ResumeRefused as exc:
            self.post_message(self.RunRefused(str(exc), resume_refused=True))
            return
        except VariableError as exc:
            self.post_message(self.RunRefused(f"variables: {exc}", exc.problems))
            return
        except SelectorError as exc:
            self.post_message(self.RunRefused(f"targets: {exc}", (("target", str(exc)),)))
            return
        except (RunnerError, RunBusy, RunNotFound, ReadOnlyError, ValueError) as exc:
            self.post_message(self.RunRefused(describe_error(exc)))
            return
        except asyncio.CancelledError:
            self.post_message(self.RunStopped())
            raise
        finally:
            self.runner = None
        self.post_message(self.RunEnded(run, list(runner.warnings),
                                        sorted({*runner.unknown_keys, *runner.changed_keys})))

    def _observe(self, event: RunEvent) -> None:
        # Called inside the runner: it must not block, so it only posts. The
        # end of a wait is acted on at once (withdrawing does not block): the
        # runner goes on now, and Escape on the waiting dialog must not stop
        # a run that no longer waits.
        if event.kind == "approved":
            self._end_wait()
        self.post_message(self.Progress(event))

    def _end_wait(self) -> None:
        """The run no longer waits for an approver: its waiting dialog goes away."""
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.withdraw("approved")

    async def _prompt(self, dialog: RunQuestion[T]) -> T:
        """Show ``dialog`` over this run's pane and wait for the person's answer.

        A run asking something no longer waits for an approval: the waiting
        dialog is withdrawn first, so the question is not pushed under it.
        """
        self._end_wait()
        self._prompts.append(dialog)
        try:
            return await self.app.push_screen_wait(dialog, mode=self._mode)
        finally:
            if dialog in self._prompts:
                self._prompts.remove(dialog)

    def _step_title(self, step: Step) -> str:
        assert self.procedure is not None
        number = self.procedure.step_index(step.id) + 1
        title = render_text(step.title, self.values, secret_names=self.secret_names)
        return f"Step {number}/{len(self.procedure.steps)}: {title}"

    def _explanation(self, step: Step) -> str:
        info = self.started_info.get(step.id)
        if info is not None:
            return str(info.get("instructions") or "")
        return render_text(step.instructions, self.values, secret_names=self.secret_names)

    async def _confirm(self, step: Step, hosts: list[str]) -> bool | str:
        facts = f"Runs on {self._host_list(hosts)}:\n{self._command_preview(step, hosts)}"
        return await self._prompt(StepQuestion(
            f"{self._step_title(step)} (changes things)", self._explanation(step), facts,
            yes="Run it", no="Not now: pause the run"))

    async def _manual(self, step: Step, hosts: list[str], instructions: str) -> bool | str:
        if self.mode == "check":
            # Shown in the step's detail; check mode does nothing, so there
            # is nothing to confirm (the runner records it as skipped).
            return True
        return await self._prompt(StepQuestion(
            f"{self._step_title(step)} (manual step)", instructions,
            f"Do this for {self._host_list(hosts)}, then say it is done.",
            yes="Done", no="Not done: pause the run"))

    async def _ask(self, variable: Variable, step: Step | None, problem: str | None) -> str | None:
        if step is None:
            title = f"{variable.name} is needed again to continue {self.run_id} (secrets are never stored)"
        else:
            title = f"{self._step_title(step)}: a value for {variable.name}"
        value = await self._prompt(VariableDialog(variable, title, problem))
        if value is not None and not variable.secret:
            self.values[variable.name] = value if value or variable.default is None else variable.default
        return value

    def _host_list(self, hosts: list[str]) -> str:
        shown = ", ".join(hosts[:8]) + (f" and {len(hosts) - 8} more" if len(hosts) > 8 else "")
        return f"{len(hosts)} host{'s' if len(hosts) != 1 else ''} ({shown})"

    def _host_values(self, name: str) -> dict[str, str]:
        """The values known so far, with ``host`` and ``address`` of the host ``name``."""
        host = self.inventory.hosts.get(name) if self.inventory is not None else None
        address = host.connect_address if host is not None else name
        return {**self.values, **builtin_values(name, address)}

    def _command_preview(self, step: Step, hosts: list[str]) -> str:
        """The step's command as it will run on the first host (secrets as ***)."""
        values = self._host_values(hosts[0]) if hosts else dict(self.values)
        return "\n".join(preview_lines(step.command or "", values, self.secret_names, hosts))

    def _dismiss_prompts(self) -> None:
        """Close the questions of a run that no longer waits for their answers.

        A dialog on top closes now; one under another screen (or in a pane not
        shown) closes itself once it is on top again (``dismiss`` pops
        whatever is on top, so it is never called for a dialog below).
        """
        waiting, self._waiting = self._waiting, None
        for dialog in [*self._prompts, *([waiting] if waiting else [])]:
            dialog.withdraw(None)
        self._prompts.clear()

    # -- progress -----------------------------------------------------------------

    def on_procedure_run_screen_progress(self, message: Progress) -> None:
        """Follow the run: states, the current step, waiting for approvals."""
        event = message.event
        data = event.data
        self.run_id = event.run_id
        if event.kind == "run.start":
            self.status = "running"
            self.mode = str(data.get("mode", self.mode))
            targets = [str(t) for t in data.get("targets", [])]
            if targets != self.targets:
                self.targets = targets
                self._show_steps()
        elif event.kind == "batch.start":
            total = int(data.get("total", 1))
            self.batch_label = f"batch {data.get('number')}/{total}" if total > 1 else ""
        elif event.kind == "step.start" and event.step_id is not None:
            self.started_info[event.step_id] = dict(data)
            self.current_step = event.step_id
            self.steps.mark_current(event.step_id)
            self.steps.move_to_step(event.step_id)
            if data.get("decision") in ("skip", "signoff"):
                self._note(event.step_id, f"{data.get('decision')}: {data.get('reason')}")
        elif event.kind == "host.start" and event.step_id and event.host:
            self._set_result(event.step_id, event.host,
                             HostResult(state="running", command=data.get("command")))
        elif event.kind == "host.end" and event.step_id and event.host:
            self._set_result(event.step_id, event.host, HostResult.from_dict(data))
        elif event.kind == "attempt" and event.step_id:
            self._note(event.step_id, f"{event.host}: attempt {data.get('attempt')} of "
                       f"{data.get('of')} failed ({event.message}); again in {data.get('delay')} s")
        elif event.kind == "wait":
            self.status = "waiting"
            self._show_waiting(event)
        elif event.kind == "approved":
            self.status = "running"
            self._end_wait()
            self.app.notify(f"{event.run_id}: approved by {data.get('by')}"
                            + (f": {data.get('comment')}" if data.get("comment") else ""),
                            markup=False)
        elif event.kind == "notice":
            self.app.notify(event.message, severity="warning", markup=False)
        elif event.kind == "run.end":
            self.status = str(event.state)
            self.reason = event.message or None
            self.steps.mark_current(None)
        self._update()

    def _set_result(self, step_id: str, host: str, result: HostResult) -> None:
        self.results.setdefault(step_id, {})[host] = result
        self.steps.set_state(step_id, host, result.state)
        if step_id == self.steps.cursor_step_id:
            self._show_detail()

    def _note(self, step_id: str, text: str) -> None:
        self.notes.setdefault(step_id, []).append(text)
        if step_id == self.steps.cursor_step_id:
            self._show_detail()

    def _show_waiting(self, event: RunEvent) -> None:
        if self._waiting is not None:
            return
        step = self.procedure.step(event.step_id) if self.procedure and event.step_id else None
        dialog = ApprovalWait(event.run_id, event.data,
                              self._explanation(step) if step and step.kind == "approval" else "")
        self._waiting = dialog

        def closed(why: str | None) -> None:
            if self._waiting is not dialog:
                return  # closed because the run went on or ended
            self._waiting = None
            if why == "stop":
                self.action_stop()
            elif why == "abort":
                self._abort(confirmed=True)

        self.app.push_screen(dialog, closed, mode=self._mode)

    def on_procedure_run_screen_run_ended(self, message: RunEnded) -> None:
        """Show the run as it ended."""
        self._dismiss_prompts()
        self.phase = "view"
        self.locked = False
        self._apply_record(message.run)
        for warning in message.warnings:
            self.app.notify(warning, severity="warning", markup=False)
        if message.unknown_keys:
            self.app.notify(
                f"Host key problems on {', '.join(message.unknown_keys)}: trust unknown keys in "
                "the Inventory pane (t) after checking them.",
                title="Host keys", severity="warning", timeout=15, markup=False)
        run = message.run
        self.app.notify(f"{run.id} {run.status}" + (f": {run.reason}" if run.reason else ""),
                        severity="information" if run.status == "succeeded" else "warning",
                        timeout=10, markup=False)
        self._update()

    def on_procedure_run_screen_run_stopped(self, message: RunStopped) -> None:
        """The run was stopped here: show its record as stored."""
        self._dismiss_prompts()
        self.phase = "view"
        if self.run_id is not None:
            self.load_run(self.run_id)
        self._update()

    def on_procedure_run_screen_run_refused(self, message: RunRefused) -> None:
        """Nothing ran: say why, and let the person fix it."""
        self._dismiss_prompts()
        if self.run_id is None and self.query(RunForm):
            self.phase = "form"
            form = self.query_one(RunForm)
            form.display = True
            self.status = "new"
            for name, problem in message.problems:
                form.show_problem(name, problem)
        else:
            self.phase = "view"
            if self.run_id is not None:
                self.load_run(self.run_id)
        if message.resume_refused:
            self._offer_force(message.text)
        else:
            self.app.notify(message.text, title="The run did not start", severity="error",
                            timeout=15, markup=False)
        self._update()

    def _offer_force(self, text: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._go("retry" if self.last_action == "retry" else "resume", force=True,
                         change_id=self.change_ref)

        self.app.push_screen(ConfirmDialog(
            "The procedure changed", f"{text}.\n\nContinue with the new version? (audited)",
            yes="Continue with the new version"), answered)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A run whose worker failed is shown as stored (the mixin reports the error)."""
        if event.worker is self.execution and event.state is WorkerState.ERROR:
            self._dismiss_prompts()
            self.phase = "view" if self.run_id is not None else "form"
            if self.phase == "form":
                self.query_one(RunForm).display = True
            elif self.run_id is not None:
                self.load_run(self.run_id)
            self._update()

    # -- display ------------------------------------------------------------------

    def _show_steps(self, run: ProcedureRun | None = None) -> None:
        states = {step: {h: r.state for h, r in hosts.items()} for step, hosts in self.results.items()}
        rows = step_rows(self.procedure, run if run is not None else self.run, self.values,
                         self.secret_names)
        self.steps.show_steps(rows, self.targets, states)
        if self.current_step is not None and self.phase == "running":
            self.steps.mark_current(self.current_step)
        self._show_detail()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The step under the cursor counts as read once the step list has the focus."""
        if event.widget is self.steps and self.phase == "form":
            self._step_highlighted()

    @on(DataTable.RowHighlighted, "#run-steps")
    def _step_highlighted(self) -> None:
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY, self._detail_rested)

    def _detail_rested(self) -> None:
        self._detail_timer = None
        self._show_detail()
        step_id = self.steps.cursor_step_id
        if step_id is not None and self.phase == "form" and self.focused is self.steps:
            self.steps.mark_read(step_id)
            self._update()

    def _show_detail(self) -> None:
        step_id = self.steps.cursor_step_id
        detail = self.query_one("#run-detail", StepDetail)
        if step_id is None:
            detail.show("No steps", "", [])
            return
        row = next((r for r in self.steps.steps if r.id == step_id), None)
        if row is None:
            return
        step = None
        if self.procedure is not None:
            try:
                step = self.procedure.step(step_id)
            except KeyError:
                step = None
        values = self._host_values(self.targets[0]) if len(self.targets) == 1 else dict(self.values)
        title = render_text(row.title, values, secret_names=self.secret_names)
        heading = f"Step {row.number}/{len(self.steps.steps)} · {row.kind} · {row.flags} · {title}"
        info = self.started_info.get(step_id)
        if info is not None:
            explanation = str(info.get("instructions") or "")
        else:
            explanation = render_text(step.instructions if step else "", values,
                                      secret_names=self.secret_names)
        results = [(h, self.results.get(step_id, {}).get(h, HostResult())) for h in self.targets]
        if step is not None and step.command and not any(r.command for _h, r in results):
            # Until a host ran it, show what will run (the hosts' own commands replace it).
            command = render_text(step.command, values, secret_names=self.secret_names)
            explanation = f"{explanation.rstrip()}\n\n```sh\n{command.rstrip()}\n```\n"
        detail.show(heading, explanation, results, [*self.notes.get(step_id, []),
                                                   *self._approval_notes(step_id)])

    def _approval_notes(self, step_id: str) -> list[str]:
        """Approvals given for ``step_id`` and the one it waits for, from the record."""
        run = self.run
        if run is None or self.phase == "running":
            return []
        notes = [f"{a.kind} {a.decision} by {a.by} at {a.at} (asked by {a.requested_by})"
                 + (f": {a.comment}" if a.comment else "")
                 for a in run.approvals if a.step == step_id]
        pending = run.pending
        if pending is not None and pending.step == step_id:
            kind = "sign-off" if pending.kind == "signoff" else "approval"
            notes.append(f"waits for an approver's {kind}, asked by {pending.requested_by} at "
                         f"{pending.requested_at}: {pending.reason}")
        return notes

    def head_text(self) -> Text:
        """Badges, run id, procedure, status, batch and step."""
        names = []
        if self.mode == "check" or (self.phase == "form" and self.check):
            names.append("CHECK MODE")
        if self.mode == "trainee" or self._trainee:
            names.append("TRAINEE")
        text = badges(*names)
        procedure = self.procedure
        if self.run_id:
            text.append(f"{self.run_id} ", style="bold")
        if procedure is not None:
            text.append(f"{procedure.id} {procedure.version}: ", style="bold")
            text.append(one_line(procedure.title, 70))
        elif self.run is not None:
            text.append(f"{self.run.procedure_id} {self.run.procedure_version}", style="bold")
        status = self.status if self.phase != "form" else "not started"
        if self.phase == "view" and self.status == "running" and not self.locked:
            status = "interrupted (no itop runs it)"
        elif self.locked:
            status = f"{self.status} in another itop process"
        text.append(" · ")
        text.append(status, style={"succeeded": "bold green", "failed": "bold red",
                                   "aborted": "bold red", "waiting": "bold yellow",
                                   "paused": "yellow"}.get(self.status, "bold"))
        if self.batch_label and self.phase == "running":
            text.append(f" · {self.batch_label}")
        if self.current_step and self.phase == "running" and self.procedure is not None:
            try:
                number = self.procedure.step_index(self.current_step) + 1
                text.append(f" · step {number}/{len(self.procedure.steps)}")
            except KeyError:
                pass
        if self.phase != "form" and self.targets:
            text.append(f" · {len(self.targets)} host{'s' if len(self.targets) != 1 else ''}")
        under = self.run.change_id if self.run is not None and self.phase == "view" else None
        under = under or self.change_ref
        if under and self.phase != "form":
            text.append(" · under ")
            text.append(under, style="bold")
        shown_values = [f"{k}={one_line(v, 30)}" for k, v in sorted(self.values.items())
                        if k not in self.secret_names]
        shown_values += [f"{name}={REDACTED}" for name in sorted(self.secret_names)]
        if self.phase != "form" and shown_values:
            text.append(" · " + one_line(", ".join(shown_values), 60), style="dim")
        return text

    def status_text(self) -> str:
        """What is going on and what the keys do now (and why some do nothing)."""
        refusal = run_refusal(self.services)
        done, total = self.steps.progress()
        if self.phase == "loading":
            return "Reading the run…"
        if self.phase == "form":
            if refusal is not None:
                return f"Running is disabled: {refusal}"
            parts = ["Targets and variables, then ctrl+r starts", "ctrl+t: check mode"]
            unread = self.unread_steps()
            if unread:
                # Why ctrl+r does nothing yet comes first: a narrow terminal cuts the end.
                read = len(self.steps.steps) - len(unread)
                parts.insert(0, f"Trainee: read each step first (Tab to the steps, ↓): "
                                f"{read} of {len(self.steps.steps)} read")
            return " · ".join(parts)
        counts = counts_text(
            r.state for hosts in self.results.values() for r in hosts.values()).plain
        progress = f"{done}/{total} done" + (f" ({counts})" if counts else "")
        if self.phase == "running":
            return f"{progress} · s stops here (the run pauses) · a aborts"
        disabled = refusal is not None and self.status not in FINAL_STATUSES
        # Why the keys do nothing comes first: the run's reason (up to 100
        # characters) would push it off a narrow terminal.
        parts = [f"Actions disabled: {refusal}", progress] if disabled else [progress]
        if self.reason:
            parts.append(one_line(self.reason, 100))
        if not disabled:  # (when disabled, these keys are refused)
            if self.locked:
                parts.append("another itop process runs it; F5 reads it again")
            elif self.status in RESUMABLE:
                parts.append("r resumes it")
            elif self.status == "failed":
                parts.append("t retries the failed hosts")
        if self.status in FINAL_STATUSES:
            parts.append("p replays it")
        return " · ".join(parts)

    def _update(self) -> None:
        """Redraw the heading, progress and status lines; the footer when the keys changed."""
        self.query_one("#run-head", Static).update(self.head_text(), layout=False)
        done, total = self.steps.progress()
        progress = self.query_one("#run-progress", ProgressBar)
        progress.update(total=max(total, 1), progress=done)
        self.query_one("#run-status", Static).update(self.status_text(), layout=False)
        self.refresh_keys()

    # -- actions ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only what fits the phase; grey out what this person may not do."""
        refusal = run_refusal(self.services)
        viewing = self.phase == "view"
        unfinished = self.status not in FINAL_STATUSES
        if action == "start":
            if self.phase != "form":
                return False
            return None if refusal is not None or self.unread_steps() else True
        if action == "toggle_check":
            return self.phase == "form"
        if action == "resume":
            if not viewing or self.status not in RESUMABLE:
                return False
            return None if refusal is not None or self.locked else True
        if action == "retry":
            if not viewing or self.status != "failed":
                return False
            return None if refusal is not None else True
        if action == "stop":
            return self.phase == "running"
        if action == "abort":
            if self.phase == "running":
                return True
            if not viewing or not unfinished:
                return False
            return None if refusal is not None else True
        if action == "replay":
            return viewing and self.status in FINAL_STATUSES
        return True

    def _go(self, action: str, *, force: bool = False, change_id: str | None = None) -> None:
        self.last_action = action
        self.change_ref = change_id
        self.phase = "running"
        self.notes.clear()
        self.started_info.clear()
        self._update()
        self.set_focus(self.steps)
        self.execution = self._execute(action, force=force, change_id=change_id)

    def _go_under_change(self, action: str) -> None:
        """Resume or retry: a run without a change gets one (or is asked for one) first."""
        if self.choosing_change:
            return
        if self.run is not None and self.run.change_id is not None:
            self._go(action)  # it stays under its own change
            return
        self._choose_change(list(self.targets), None,
                            lambda ref: self._go(action, change_id=ref))

    def action_resume(self) -> None:
        """Continue this paused, waiting or interrupted run here."""
        if self.check_action("resume", ()) is True:
            self._go_under_change("resume")

    def action_retry(self) -> None:
        """Rerun the failed hosts of this failed run."""
        if self.check_action("retry", ()) is True:
            self._go_under_change("retry")

    def action_stop(self) -> None:
        """Stop executing here: the run pauses (or stays waiting) and can be resumed."""
        if self.execution is not None and self.execution.is_running:
            self.execution.cancel()
            self.app.notify("Stopping: the run pauses; resume it from the runs list.", markup=False)

    def action_abort(self) -> None:
        """End the run: unfinished steps are cancelled (asks first)."""
        self._abort(confirmed=False)

    def _abort(self, *, confirmed: bool) -> None:
        run_id = self.run_id
        if run_id is None:
            return

        def answered(reason: str | None) -> None:
            if reason is not None:
                self._abort_run(run_id, reason)

        if confirmed:
            answered("")
            return
        self.app.push_screen(CommentDialog(
            f"Abort {run_id}?",
            "The run ends aborted: unfinished steps are cancelled. It cannot be resumed.",
            required=False, action="abort the run"), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="abort", description="Abort the run")
    def _abort_run(self, run_id: str, reason: str) -> None:
        runner = self.runner
        if runner is not None and runner.active_run_id == run_id:
            # Cancels the executing task too; the worker then reports the end.
            runner.abort(run_id, reason)
            return
        self.post_message(self.Aborted(ProcedureRunner(self.services).abort(run_id, reason)))

    def on_procedure_run_screen_aborted(self, message: Aborted) -> None:
        """Show the aborted run."""
        if self.phase != "running":
            self._apply_record(message.run)
            self._update()

    def action_replay(self) -> None:
        """Step through this finished run read-only."""
        from itop_tui.screens.procedure_runs import ReplayScreen

        if self.run is not None and self.run.finished:
            self.app.push_screen(ReplayScreen(self.run))

    def action_back(self) -> None:
        """Leave; a run executing here is stopped first (it pauses), after asking."""
        if self.phase != "running":
            self.dismiss()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.action_stop()
                self.dismiss()

        self.app.push_screen(ConfirmDialog(
            "Leave the run?",
            "Leaving stops the run here: it pauses (or stays waiting for its approval) and "
            "can be resumed from the runs list.", yes="Stop and leave"), answered)

