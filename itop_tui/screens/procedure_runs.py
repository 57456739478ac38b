"""Procedure runs: the list (filtered by status), approvals, resume, replay and report.

The list is read from the store in a thread worker. From it a run is
opened in the run view (Enter or ``o``), resumed (``r``) or retried (``t``)
there, approved (``a``) or rejected (``n``) by an approver who neither asked
for it nor runs it, aborted (``x``), replayed (``v``: a finished run,
read-only, step by step with its outputs) or read as its Markdown report
(``p``). What a person may not do is greyed out, and the line under the
list says why.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Markdown, Static

from itop_tui.ops.approval_facts import pending_facts
from itop_tui.ops.procedure_report import ReplayStep, replay, run_report
from itop_tui.ops.procedure_runner import ProcedureRunner
from itop_tui.screens.procedure_access import ShowsAllowedKeys, approve_refusal, run_refusal
from itop_tui.screens.procedure_prompts import CommentDialog
from itop_tui.screens.procedure_run import RESUMABLE, ProcedureRunScreen, step_rows
from itop_tui.screens.store_follow import follow_store
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import (
    RUN_STATUSES,
    RUNS_FILE,
    ProcedureRun,
    RunRepository,
)
from itop_tui.services.store_watch import StoreWatch
from itop_tui.widgets.step_list import StepDetail, StepList, StepRow, counts_text, one_line

STATUS_FILTERS: tuple[str | None, ...] = (None, *RUN_STATUSES)
"""The status filter cycles through these (None: every run)."""

STATUS_STYLES = {
    "running": "bold cyan",
    "waiting": "bold yellow",
    "paused": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "aborted": "red",
}


def run_note(run: ProcedureRun, locked: bool) -> str:
    """What to know about a run at a glance: what it waits for, or why it ended."""
    if run.pending is not None:
        kind = "sign-off" if run.pending.kind == "signoff" else "approval"
        return f"needs {kind} of {run.pending.step} (asked by {run.pending.requested_by})"
    if run.status == "running" and not locked:
        return "interrupted: no itop runs it (resume it)"
    return one_line(run.reason or "", 80)


def decision_refusal(services: Services, run: ProcedureRun) -> str | None:
    """Why this person may not approve or reject ``run``; None when they may."""
    general = approve_refusal(services)
    if general is not None:
        return general
    pending = run.pending
    if pending is None:
        return f"{run.id} waits for no approval"
    if services.actor in (pending.requested_by, run.operator):
        return (f"{services.actor} asked for it (or runs it): a different person with the "
                "approver role must decide")
    return None


class ProcedureRunsScreen(ReportsWorkerErrors, ShowsAllowedKeys):
    """Every procedure run, newest first, filtered by status, with what can be done to each."""

    TITLE = "Procedure runs"
    AUTO_FOCUS = "#runs-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_status", "Status filter"),
        Binding("o", "open", "Open"),
        Binding("v", "replay", "Replay"),
        Binding("r", "resume", "Resume"),
        Binding("t", "retry", "Retry failed"),
        Binding("a", "approve", "Approve"),
        Binding("n", "reject", "Reject"),
        Binding("x", "abort", "Abort"),
        Binding("p", "report", "Report"),
        Binding("f5", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    class RunsLoaded(Message):
        """The runs as stored; ``locked`` holds those a process executes now."""

        def __init__(self, runs: list[ProcedureRun], locked: set[str]) -> None:
            super().__init__()
            self.runs = runs
            self.locked = locked

    class Decided(Message):
        """An approval, rejection or abort was recorded."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, services: Services) -> None:
        """List the runs in ``services``' data dir."""
        super().__init__()
        self.services = services
        self.runs: list[ProcedureRun] | None = None
        self.locked: set[str] = set()
        self.status_filter: str | None = None
        self.shown: list[ProcedureRun] = []
        self.store_watch = StoreWatch.in_data_dir(services.settings.data_dir, RUNS_FILE)
        """The runs file as last read: runs of other itop processes move by themselves."""

    def compose(self) -> ComposeResult:
        """Filter line, table, the selected run's facts, reasons."""
        yield Header(icon="≡")
        yield Static("", id="runs-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id="runs-detail", markup=False)
        yield Static("Reading the runs…", id="runs-why", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """Columns, then the runs."""
        table = self.table
        for label, key in (("Run", "id"), ("Status", "status"), ("Mode", "mode"),
                           ("Procedure", "procedure"), ("Operator", "operator"),
                           ("Started", "started"), ("Ended", "ended"), ("Hosts", "hosts"),
                           ("Steps × hosts", "states"), ("Note", "note")):
            table.add_column(Text(label), key=key)
        self.load_runs()
        follow_store(self, self.store_watch, self.load_runs)

    def on_screen_resume(self) -> None:
        """Read the runs again when coming back from a run or a replay."""
        if self.runs is not None:
            self.load_runs()

    @property
    def table(self) -> DataTable[Text | str]:
        """The runs table."""
        return self.query_one("#runs-table", DataTable)

    # -- loading and filtering ----------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load", description="Load the runs")
    def load_runs(self) -> None:
        """Read every run and which are being executed (in a thread)."""
        self.store_watch.mark()
        repository = RunRepository.in_data_dir(self.services.settings.data_dir)
        runs = repository.all()
        locked = {r.id for r in runs if not r.finished and repository.is_locked(r.id)}
        self.post_message(self.RunsLoaded(runs, locked))

    def on_procedure_runs_screen_runs_loaded(self, message: RunsLoaded) -> None:
        """Show the runs."""
        self.runs = message.runs
        self.locked = message.locked
        self._refilter()

    def action_reload(self) -> None:
        """Read the runs again."""
        self.load_runs()

    def action_cycle_status(self) -> None:
        """Show only runs in the next status (then all again)."""
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self._refilter()

    def _refilter(self) -> None:
        if self.runs is None:
            return
        keep = self.selected.id if self.selected is not None else None
        self.shown = [r for r in reversed(self.runs)
                      if self.status_filter is None or r.status == self.status_filter]
        table = self.table
        table.clear()
        for run in self.shown:
            states = [r.state for record in run.steps for r in record.hosts.values()]
            table.add_row(
                Text(run.id, style="bold"),
                Text(run.status, style=STATUS_STYLES.get(run.status, "")),
                Text(run.mode, style="yellow" if run.mode != "normal" else ""),
                Text(one_line(f"{run.procedure_id} {run.procedure_version}", 40)),
                Text(one_line(run.operator, 16)),
                Text(run.started[:19].replace("T", " ")),
                Text((run.ended or "")[:19].replace("T", " ")),
                Text(str(len(run.targets)), justify="right"),
                counts_text(states),
                Text(run_note(run, run.id in self.locked)),
                key=run.id,
            )
        if keep is not None and any(r.id == keep for r in self.shown):
            table.move_cursor(row=table.get_row_index(keep))
        counts = {s: sum(1 for r in self.runs if r.status == s) for s in RUN_STATUSES}
        summary = " · ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs yet"
        label = self.status_filter or "all"
        self.query_one("#runs-filter", Static).update(Text.assemble(
            ("Status: ", "dim"), (label, "bold"), ("  (s changes it) · ", "dim"),
            (f"{len(self.shown)} of {len(self.runs)} runs · {summary}", "")))
        self._selection_changed()

    # -- the selected run ---------------------------------------------------------

    @property
    def selected(self) -> ProcedureRun | None:
        """The run under the cursor."""
        table = self.table
        if not self.shown or not table.is_valid_row_index(table.cursor_row):
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.shown if r.id == key), None)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _selection_changed(self) -> None:
        run = self.selected
        detail = self.query_one("#runs-detail", Static)
        why = self.query_one("#runs-why", Static)
        if run is None:
            detail.update("No run matches the filter." if self.runs else
                          "No runs yet: run a procedure from the library (r).")
            why.update("")
            self.refresh_keys()
            return
        lines = [f"{run.id} · {run.procedure_id} {run.procedure_version}: "
                 f"{one_line(run.procedure_title, 70)} · targets {one_line(run.selector, 40)} → "
                 f"{one_line(', '.join(run.targets), 60)}"]
        if run.pending is not None:
            pending = run.pending
            lines.append(f"Waiting for {'a sign-off' if pending.kind == 'signoff' else 'an approval'}"
                         f" of step {pending.step}, asked by {pending.requested_by} at "
                         f"{pending.requested_at}: {one_line(pending.reason, 80)}")
        elif run.reason:
            lines.append(one_line(run.reason, 150))
        for approval in run.approvals[-2:]:
            lines.append(f"{approval.kind} of {approval.step} {approval.decision} by {approval.by} "
                         f"at {approval.at}" + (f": {one_line(approval.comment, 60)}"
                                                if approval.comment else ""))
        detail.update("\n".join(lines))
        why.update(self.reasons(run))
        self.refresh_keys()

    def reasons(self, run: ProcedureRun) -> str:
        """Why the actions that fit this run are disabled, if they are."""
        parts: list[str] = []
        refusal = run_refusal(self.services)
        if refusal is not None and not run.finished:
            parts.append(f"resume, abort: {refusal}")
        elif refusal is not None and run.status == "failed":
            parts.append(f"retry: {refusal}")
        if run.id in self.locked:
            parts.append("resume: another itop process runs it now")
        if run.status == "waiting":
            decision = decision_refusal(self.services, run)
            if decision is not None:
                parts.append(f"approve, reject: {decision}")
        if not parts:
            hints = {"waiting": "a approves, n rejects, r resumes once approved",
                     "paused": "r resumes", "running": "r resumes (interrupted)",
                     "failed": "t retries the failed hosts, v replays",
                     "succeeded": "v replays, p shows the report",
                     "aborted": "v replays, p shows the report"}
            parts.append(hints.get(run.status, ""))
        return " · ".join(p for p in parts if p)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show the actions that fit the selected run; grey out those not allowed."""
        run = self.selected
        if action in ("cycle_status", "reload", "back"):
            return True
        if run is None:
            return False
        refusal = run_refusal(self.services)
        if action in ("open", "report"):
            return True
        if action == "replay":
            return run.finished
        if action == "resume":
            if run.status not in RESUMABLE:
                return False
            return None if refusal is not None or run.id in self.locked else True
        if action == "retry":
            if run.status != "failed":
                return False
            return None if refusal is not None else True
        if action in ("approve", "reject"):
            if run.status != "waiting":
                return False
            return None if decision_refusal(self.services, run) is not None else True
        if action == "abort":
            if run.finished:
                return False
            return None if refusal is not None else True
        return True

    # -- actions ------------------------------------------------------------------

    @on(DataTable.RowSelected, "#runs-table")
    def action_open(self) -> None:
        """Open the selected run in the run view (Enter does it too)."""
        run = self.selected
        if run is not None:
            self.app.push_screen(ProcedureRunScreen(self.services, run_id=run.id))

    def action_replay(self) -> None:
        """Step through the selected finished run."""
        run = self.selected
        if run is not None and run.finished:
            self.app.push_screen(ReplayScreen(run))

    def action_report(self) -> None:
        """Read the selected run's report."""
        run = self.selected
        if run is not None:
            self.app.push_screen(ReportScreen(run))

    def action_resume(self) -> None:
        """Continue the selected run in the run view."""
        run = self.selected
        if run is not None:
            self.app.push_screen(ProcedureRunScreen(self.services, run_id=run.id, then="resume"))

    def action_retry(self) -> None:
        """Rerun the failed hosts of the selected run in the run view."""
        run = self.selected
        if run is not None:
            self.app.push_screen(ProcedureRunScreen(self.services, run_id=run.id, then="retry"))

    def action_approve(self) -> None:
        """Approve what the selected run waits for, after showing what that is."""
        run = self.selected
        if run is None or run.pending is None:
            return
        self._approval_facts(run)

    @work(thread=True, exclusive=True, exit_on_error=False, group="facts",
          description="Read what is approved")
    def _approval_facts(self, run: ProcedureRun) -> None:
        """Render what approving ``run`` allows (in a thread: it reads the host's address)."""
        first = (run.pending.hosts or run.targets)[:1] if run.pending is not None else []
        addresses = {}
        for name in first:
            host = self.services.inventory.get_host(name)
            if host is not None:
                addresses[name] = host.connect_address
        facts = pending_facts(run, addresses)
        self.app.call_from_thread(self._ask_approval, run, facts)

    def _ask_approval(self, run: ProcedureRun, facts: list[str]) -> None:
        pending = run.pending
        if pending is None:
            return

        def answered(comment: str | None) -> None:
            if comment is not None:
                self._decide(run.id, "approve", comment)

        self.app.push_screen(CommentDialog(
            f"Approve step {pending.step} of {run.id}?",
            "\n".join([*facts, f"Asked by {pending.requested_by} at {pending.requested_at}: "
                       f"{pending.reason}. The run goes on once approved."]),
            required=False, action="approve"), answered)

    def action_reject(self) -> None:
        """Reject what the selected run waits for: the run ends."""
        run = self.selected
        if run is None or run.pending is None:
            return

        def answered(comment: str | None) -> None:
            if comment is not None:
                self._decide(run.id, "reject", comment)

        self.app.push_screen(CommentDialog(
            f"Reject step {run.pending.step} of {run.id}?",
            "The run ends aborted. Say why: the requester reads it.",
            required=True, action="reject"), answered)

    def action_abort(self) -> None:
        """End the selected unfinished run."""
        run = self.selected
        if run is None:
            return

        def answered(reason: str | None) -> None:
            if reason is not None:
                self._decide(run.id, "abort", reason)

        self.app.push_screen(CommentDialog(
            f"Abort {run.id}?",
            "The run ends aborted: unfinished steps are cancelled (a process running it stops "
            "within a second). It cannot be resumed.", required=False, action="abort the run"),
            answered)

    @work(thread=True, exit_on_error=False, group="decide", description="Record the decision")
    def _decide(self, run_id: str, what: str, comment: str) -> None:
        runner = ProcedureRunner(self.services)
        if what == "approve":
            run = runner.approve(run_id, comment=comment)
            text = f"{run.id}: approved; the run goes on (or resume it)."
        elif what == "reject":
            run = runner.reject(run_id, comment)
            text = f"{run.id}: rejected; the run ended."
        else:
            run = runner.abort(run_id, comment)
            text = f"{run.id}: {run.reason}"
        self.post_message(self.Decided(text))

    def on_procedure_runs_screen_decided(self, message: Decided) -> None:
        """Say what was recorded and show it."""
        self.app.notify(message.text, markup=False)
        self.load_runs()

    def action_back(self) -> None:
        """Back to the library."""
        self.dismiss()


class ReportScreen(ReportsWorkerErrors, Screen[None]):
    """A run's Markdown report (``itop procedure report RUN``), read-only."""

    TITLE = "Run report"
    AUTO_FOCUS = "#report-body"

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, run: ProcedureRun) -> None:
        """Show the report of ``run``."""
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        """The report, scrollable."""
        yield Header(icon="≡")
        with VerticalScroll(id="report-body"):
            yield Markdown(run_report(self.run), open_links=False)
        yield Footer()

    def action_back(self) -> None:
        """Close the report."""
        self.dismiss()


class ReplayScreen(ReportsWorkerErrors, Screen[None]):
    """A finished run, step by step, read-only: each step's explanation and what it did."""

    TITLE = "Replay"
    AUTO_FOCUS = "#replay-steps"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,n", "move(1)", "Next step", priority=True),
        Binding("left,p", "move(-1)", "Previous step", priority=True),
        Binding("home", "jump(0)", "First step", priority=True),
        Binding("end", "jump(-1)", "Last step", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run: ProcedureRun) -> None:
        """Replay ``run``."""
        super().__init__()
        self.run = run
        self.replay_steps: list[ReplayStep] = list(replay(run))
        self.index = 0

    def compose(self) -> ComposeResult:
        """Heading, steps and the step's detail, position."""
        yield Header(icon="≡")
        yield Static(self.head_text(), id="replay-head")
        with Horizontal(id="replay-body"):
            yield StepList(id="replay-steps")
            yield StepDetail(id="replay-detail")
        yield Static("", id="replay-position", markup=False)
        yield Footer()

    def head_text(self) -> Text:
        """What run this is, how it ended, who ran it when."""
        run = self.run
        text = Text.assemble((" REPLAY ", "bold reverse"), " ", (f"{run.id} ", "bold"),
                             (f"{run.procedure_id} {run.procedure_version}: ", "bold"),
                             one_line(run.procedure_title, 60), " · ",
                             (run.status, STATUS_STYLES.get(run.status, "bold")))
        text.append(f" · {run.mode} · {run.operator} · {run.started} → {run.ended or '…'}")
        text.append(" · read-only", style="dim")
        return text

    def on_mount(self) -> None:
        """Fill the step list and show the first step."""
        rows = [StepRow(s.id, s.number, s.title, s.kind, s.mutates) for s in self.replay_steps]
        if not rows:
            rows = step_rows(None, self.run)
        states = {s.id: {h: r.state for h, r in s.hosts} for s in self.replay_steps}
        self.query_one(StepList).show_steps(rows, list(self.run.targets), states)
        self._show()

    @property
    def current(self) -> ReplayStep | None:
        """The step shown."""
        return self.replay_steps[self.index] if self.replay_steps else None

    def action_move(self, delta: int) -> None:
        """Show the next (1) or previous (-1) step."""
        if self.replay_steps:
            self.index = max(0, min(len(self.replay_steps) - 1, self.index + delta))
            self._show()

    def action_jump(self, index: int) -> None:
        """Show the first (0) or last (-1) step."""
        if self.replay_steps:
            self.index = index % len(self.replay_steps)
            self._show()

    @on(DataTable.RowHighlighted, "#replay-steps")
    def _highlighted(self) -> None:
        step_id = self.query_one(StepList).cursor_step_id
        for index, step in enumerate(self.replay_steps):
            if step.id == step_id and index != self.index:
                self.index = index
                self._show()

    def _show(self) -> None:
        step = self.current
        steps = self.query_one(StepList)
        position = self.query_one("#replay-position", Static)
        if step is None:
            self.query_one(StepDetail).show("This run has no steps", "", [])
            position.update("")
            return
        steps.mark_current(step.id)
        if steps.cursor_step_id != step.id:
            steps.move_to_step(step.id)
        flags = StepRow(step.id, step.number, step.title, step.kind, step.mutates).flags
        heading = f"Step {step.number}/{step.total} · {step.kind} · {flags} · {step.title}"
        explanation = step.instructions
        if step.command and not any(r.command for _h, r in step.hosts):
            explanation = explanation.rstrip() + "\n\n```sh\n" + step.command.rstrip() + "\n```\n"
        notes = [
            f"{a.kind} {a.decision} by {a.by} at {a.at} (asked by {a.requested_by})"
            + (f": {a.comment}" if a.comment else "")
            for a in step.approvals
        ]
        self.query_one(StepDetail).show(heading, explanation, step.hosts, notes)
        states = counts_text(r.state for _h, r in step.hosts).plain
        position.update(f"Step {step.number} of {step.total}" + (f" · {states}" if states else "")
                        + " · → or n: next · ← or p: previous · Home/End: first/last · Esc: back")

    def action_back(self) -> None:
        """Leave the replay."""
        self.dismiss()

