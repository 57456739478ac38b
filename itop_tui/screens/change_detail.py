"""One change in detail, and its actions by key.

The detail shows the plans, the risk with its reasons, the approvals, the
warnings (conflicts, blackouts, maintenance windows), the linked runs, the
review, the work log, and what the person may do now: every action with
its key, or the reason it is not allowed. A key whose action is not allowed
says why in the status line instead of acting; the workflow checks every
guard again when it acts, so a refusal there is shown the same way.

Store calls run in thread workers. ``implement`` and ``back out`` first ask
for the values the procedures need that the change does not hold (secrets
always: they are never stored), then run the change's procedure with the
runner in an async worker, showing each step and host as it ends; a failed
implementation offers the backout procedure.

What may be done depends on the time (a window opens, closes): the guards
are judged again when a key is pressed, every second while a window
boundary is near, and the change is read again every 15 s; when what may be
done changes, the status line says it afresh.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from itop_tui.domain.change import (
    CLOSE_CODES,
    RISKS,
    ActionInput,
    Change,
    ChangeRefused,
    check,
)
from itop_tui.domain.change_windows import time_left
from itop_tui.domain.output import strip_control
from itop_tui.domain.selectors import SelectorError
from itop_tui.domain.timespec import TimeSpecError, parse_when
from itop_tui.ops.change_workflow import (
    BackupStatus,
    ChangeWorkflow,
    ImplementResult,
    NeededVariable,
)
from itop_tui.ops.procedure_runner import RunCallbacks, RunEvent, RunnerError
from itop_tui.screens.change_form import ChangeEditScreen, FieldsDialog, FormField
from itop_tui.screens.confirm import ChoiceDialog, ConfirmDialog
from itop_tui.screens.worker_errors import ReportsWorkerErrors, describe_error
from itop_tui.services.change_repo import ChangeNotFound
from itop_tui.services.context import ReadOnlyError
from itop_tui.services.procedure_repo import FINAL_STATUSES as FINISHED_RUNS

ACTION_KEYS: tuple[tuple[str, str, str], ...] = (
    ("edit", "e", "Edit"),
    ("submit", "s", "Submit"),
    ("assess", "a", "Assess"),
    ("approve", "p", "Approve"),
    ("reject", "x", "Reject"),
    ("schedule", "w", "Schedule"),
    ("implement", "i", "Implement"),
    ("backout", "b", "Back out"),
    ("review", "v", "Review"),
    ("close", "l", "Close"),
    ("cancel", "c", "Cancel"),
    ("note", "t", "Note"),
)
"""The actions of the detail: workflow action, key, label."""

REFUSALS = (ChangeRefused, ChangeNotFound, ReadOnlyError, RunnerError, SelectorError,
            TimeSpecError, ValueError)
"""Errors that are answers for the person (a guard, a bad time), not failures of itop."""

PROGRESS_LINES = 200
"""Progress lines kept of a run (the last few are shown)."""

RELOAD_SECONDS = 15
"""The change is read again this often (another itop may have moved it)."""

BOUNDARY_NEAR = timedelta(minutes=2)
"""Within this of a window's start or end, the guards are judged every second."""


def state_phrase(state: str) -> str:
    """``is in assess``, ``is scheduled``, ``is a draft``: the state in a sentence."""
    if state == "draft":
        return "is a draft"
    if state in ("assess", "authorize", "implement", "review"):
        return f"is in {state}"
    return f"is {state.replace('_', ' ')}"


# -- what the detail shows -----------------------------------------------------------


@dataclass(frozen=True)
class ChangeView:
    """A change and what is derived from it for the person looking at it."""

    change: Change
    actions: dict[str, str | None]
    warnings: list[str]
    approvers: list[str]
    backups: list[BackupStatus]


def action_label(change: Change, action: str, label: str) -> str:
    """What the key does for this change: ``i`` in implement records the outcome or continues."""
    if action == "implement" and change.state == "implement":
        return "Continue" if change.implementation else "Record outcome"
    return label


def _clean(text: str) -> str:
    return strip_control(text).strip()


def change_text(view: ChangeView, now: datetime) -> Text:
    """The whole detail as styled text, section by section."""
    change = view.change
    out = Text()

    def heading(title: str) -> None:
        out.append(f"\n{title}\n", style="bold underline")

    def line(label: str, value: str, style: str = "") -> None:
        out.append(f"  {label:<16}", style="dim")
        out.append((_clean(value) or "-") + "\n", style=style)

    out.append(f"{change.ref}  ", style="bold")
    out.append(f"{change.type}  ", style="bold red" if change.type == "emergency" else "bold")
    out.append(_clean(change.title) + "\n", style="bold")
    line("state", change.state + (f" (outcome {change.outcome})" if change.outcome else ""),
         "bold")
    window = "-"
    if change.window_start or change.window_end:
        window = f"{change.window_start or '?'} → {change.window_end or '?'}"
        left = time_left(change, now)
        if left is not None:
            window += f"  ACTIVE, {int(left.total_seconds() // 60)} min left"
    line("window", window, "bold green" if change.is_active(now) else "")
    line("hosts", ", ".join(change.hosts) + (f"  ({change.selector})" if change.selector else ""))
    line("requester", change.requester + (f" · assignee {change.assignee}"
                                          if change.assignee else ""))
    if change.template:
        line("template", change.template)
    risk_style = {"low": "green", "moderate": "yellow", "high": "bold red"}.get(change.risk or "", "")
    risk = change.risk or "-"
    if change.risk_requested and change.risk_requested != change.risk_computed:
        risk += f" (computed {change.risk_computed}, raised)"
    line("risk", risk, risk_style)
    for reason in change.risk_reasons:
        out.append(f"  {'':<16}· {_clean(reason)}\n", style="dim")

    heading("Plans")
    line("description", change.description)
    line("justification", change.justification)
    line("impact", change.impact)
    line("outage", "not stated" if change.outage is None else ("yes" if change.outage else "no"))
    line("implementation", change.implementation or "by hand")
    line("backout", change.backout or "by hand")
    line("backout plan", change.backout_plan)
    line("test plan", change.test_plan)

    heading(f"Approvals (round {change.round}: {len(change.approved_by)} of "
            f"{change.approvals_needed} needed)")
    if not change.approvals:
        out.append("  none yet\n", style="dim")
    for approval in change.approvals:
        style = "green" if approval.decision == "approved" else "red"
        out.append(f"  {approval.at}  {approval.by:<12} ", style="dim")
        out.append(approval.decision, style=style)
        extra = f" (round {approval.round})" + (" self-approval" if approval.self_approval else "")
        out.append(extra + (f": {_clean(approval.comment)}" if approval.comment else "") + "\n")
    if change.state in ("assess", "authorize") and view.approvers:
        out.append(f"  may decide next: {', '.join(view.approvers)}\n", style="dim")

    heading("Warnings and conflicts")
    if not view.warnings:
        out.append("  none\n", style="dim")
    for warning in view.warnings:
        style = "bold yellow" if warning.startswith("conflict") else "yellow"
        out.append(f"  ! {_clean(warning)}\n", style=style)

    heading("Linked runs")
    if not change.runs:
        out.append("  none\n", style="dim")
    for run in change.runs:
        style = {"succeeded": "green", "failed": "red", "aborted": "red"}.get(run.status, "")
        out.append(f"  {run.id:<8} {run.purpose:<15} ")
        out.append(f"{run.status:<10}", style=style)
        out.append(f" {run.at}\n", style="dim")
    known = [b for b in view.backups if b.known]
    if known and change.state in ("scheduled", "implement"):
        out.append("  last good backups: " + ", ".join(
            f"{b.host} {b.last_good.strftime('%Y-%m-%d %H:%M') if b.last_good else 'none'}"
            for b in known) + "\n", style="dim")

    if change.review is not None:
        heading("Review")
        line("what happened", change.review.what_happened)
        line("incidents", change.review.incidents)
        line("lessons", change.review.lessons)
        line("by", f"{change.review.by} at {change.review.at}")
    if change.close_code:
        heading("Closed")
        line("code", change.close_code)
        line("notes", change.close_notes)

    heading("Actions")
    for action, key, label in ACTION_KEYS:
        label = action_label(change, action, label)
        why = view.actions.get(action, "not an action of this change")
        if why is None:
            out.append(f"  {key}  {label}\n", style="bold green")
        else:
            out.append(f"  {key}  {label:<10} ", style="dim")
            out.append(_clean(why) + "\n", style="dim italic")

    heading("Work log")
    for entry in change.work_log:
        out.append(f"  {entry.at}  {entry.actor:<12} ", style="dim")
        moved = (f"{entry.from_state} → {entry.to_state}: "
                 if entry.from_state and entry.to_state and entry.from_state != entry.to_state
                 else "")
        out.append(moved, style="bold")
        out.append(_clean(entry.text) + "\n")
    return out


def schedulable(workflow: ChangeWorkflow, change: Change) -> dict[str, str | None]:
    """The available actions, ``schedule`` judged as if a window were given.

    The schedule dialog asks for the window, so a change without one may
    still be scheduled; its other guards (state, role, approvals, fields) hold.
    """
    actions = workflow.available_actions(change)
    if actions.get("schedule") is not None and not (change.window_start and change.window_end):
        now = workflow.clock()
        probe = ActionInput(start=now + timedelta(hours=1), end=now + timedelta(hours=2))
        refusal = check(change, "schedule", workflow.context(), probe)
        actions["schedule"] = None if refusal is None else refusal.reason
    return actions


def event_line(event: RunEvent) -> str | None:
    """A progress line for a run event, or None for events not shown."""
    data = event.data
    if event.kind == "run.start":
        return f"{event.run_id} {data.get('procedure', '')} started"
    if event.kind == "step.start":
        return (f"[{data.get('number')}/{data.get('total')}] {data.get('kind', '')} "
                f"{event.step_id}: {data.get('title', '')}")
    if event.kind == "host.end":
        code = data.get("exit_code")
        text = f"  {event.host}: {event.state}" + (f" (exit {code})" if code is not None else "")
        return text + (f": {event.message}" if event.message and event.state != "ok" else "")
    if event.kind == "run.end":
        return f"{event.run_id} {event.state}"
    if event.kind in ("notice", "wait"):
        return f"  {event.message}"
    return None


# -- the screen ----------------------------------------------------------------------


class ChangeDetailScreen(ReportsWorkerErrors, Screen[None]):
    """Change ``ref`` in detail, with its actions by key."""

    TITLE = "Change"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        *(Binding(key, f"change('{action}')", label) for action, key, label in ACTION_KEYS),
        Binding("f5", "reload", "Reload", show=False),
    ]

    class Loaded(Message):
        """The change as read now, with what derives from it."""

        def __init__(self, view: ChangeView, is_reload: bool = False) -> None:
            super().__init__()
            self.view = view
            self.is_reload = is_reload

    def __init__(self, workflow: ChangeWorkflow, ref: str) -> None:
        """Show change ``ref`` of ``workflow``."""
        super().__init__()
        self.workflow = workflow
        self.ref = ref
        self.view: ChangeView | None = None
        self.running = False
        self.progress: deque[str] = deque(maxlen=PROGRESS_LINES)
        self._ticks = 0
        self._forced_refresh = False

    def compose(self) -> ComposeResult:
        """Header, the detail, the progress of a run, the status line, footer."""
        yield Header(icon="≡")
        with VerticalScroll(id="change-detail"):
            yield Static("", id="change-body")
        yield Static("", id="change-progress", markup=False)
        status = Static(f"Loading {self.ref}…", id="change-status", markup=False)
        # Long refusals wrap over a few lines rather than being cut at the edge.
        status.styles.height = "auto"
        status.styles.max_height = 4
        yield status
        yield Footer()

    def on_mount(self) -> None:
        """Read the change; keep what may be done up to date with the time."""
        self.sub_title = self.ref
        self.query_one("#change-progress").display = False
        self.load_change()
        self._ticks = 0
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        """Each second: judge the guards again near a window boundary; reload now and then."""
        if self.view is None or self.running:
            return
        self._ticks += 1
        if self._ticks % RELOAD_SECONDS == 0:
            self.load_change(True)
            return
        change = self.view.change
        now = self.workflow.clock()
        if any(moment is not None and abs(moment - now) <= BOUNDARY_NEAR
               for moment in (change.start, change.end)):
            self.reevaluate()

    def reevaluate(self) -> bool:
        """Judge the guards again at the current time; True when what may be done changed.

        Pure work on the change as last read (no store access), so it runs
        on the spot, when a key is pressed too.
        """
        if self.view is None:
            return False
        actions = schedulable(self.workflow, self.view.change)
        if actions == self.view.actions:
            return False
        self._show(replace(self.view, actions=actions), refreshed=True)
        return True

    @property
    def change(self) -> Change | None:
        """The change as last read."""
        return self.view.change if self.view is not None else None

    @work(thread=True, exclusive=True, exit_on_error=False, group="load",
          description="Read the change")
    def load_change(self, refresh: bool = False) -> None:
        """Read the change and what derives from it (in a thread).

        ``refresh``: a reload (F5, the periodic one) rather than the reading
        after an action, whose outcome the status line keeps saying.
        """
        workflow = self.workflow
        change = workflow.get(self.ref)
        view = ChangeView(change, schedulable(workflow, change), workflow.warnings(change),
                          workflow.approvers_for(change), workflow.backup_status(change))
        self.post_message(self.Loaded(view, refresh))

    def on_change_detail_screen_loaded(self, message: Loaded) -> None:
        """Show the change."""
        self._show(message.view, refreshed=message.is_reload)

    def _show(self, view: ChangeView, *, refreshed: bool) -> None:
        """Show ``view``; the status line says what may be done when it is new or changed."""
        before = self.view
        self.view = view
        self.query_one("#change-body", Static).update(change_text(view, self.workflow.clock()))
        changed = before is None or before.actions != view.actions or (
            before.change.state != view.change.state)
        loading = self.query_one("#change-status", Static).content == f"Loading {self.ref}…"
        if loading or (refreshed and (changed or self._forced_refresh)):
            self.status(self._next_hint())
        self._forced_refresh = False

    def _next_hint(self) -> str:
        if self.view is None:
            return ""
        allowed = [action_label(self.view.change, action, label)
                   for action, _key, label in ACTION_KEYS
                   if self.view.actions.get(action, "") is None and action != "note"]
        where = f"{self.ref} {state_phrase(self.view.change.state)}"
        if not allowed:
            return f"{where}: nothing to do here now."
        return f"{where}. You may: {', '.join(allowed)}."

    def status(self, text: str) -> None:
        """Say ``text`` in the status line."""
        self.query_one("#change-status", Static).update(text)

    def action_back(self) -> None:
        """Back to the list (not while a run goes on)."""
        if self.running:
            self.status("A run is going on for this change: wait for it to end.")
            return
        self.dismiss(None)

    def action_reload(self) -> None:
        """Read the change again; the status line starts afresh."""
        self._forced_refresh = True
        self.load_change(True)

    # -- acting ------------------------------------------------------------------------

    def refusal(self, action: str) -> str | None:
        """Why ``action`` may not be done now (None: it may)."""
        if self.running:
            return "a run is going on for this change"
        if self.view is None:
            return "the change is still being read"
        return self.view.actions.get(action, f"{action} is not an action of a change")

    def action_change(self, action: str) -> None:
        """Do ``action`` on the change, asking what it needs, or say why it may not.

        The guards are judged again first: a window may have opened since
        the list of actions was drawn.
        """
        if not self.running:
            self.reevaluate()
        reason = self.refusal(action)
        if reason is not None:
            label = next(lbl for act, _key, lbl in ACTION_KEYS if act == action)
            text = f"{label}: not now: {reason}"
            self.status(text)
            self.app.notify(text, severity="warning", markup=False)
            return
        change = self.change
        assert change is not None
        handler = getattr(self, f"_ask_{action}")
        handler(change)

    def _ask(self, title: str, fields: list[FormField], act: Callable[[dict[str, str]], Change],
             intro: str = "") -> None:
        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self.perform(title, lambda: act(values))

        self.app.push_screen(FieldsDialog(f"{title} {self.ref}", fields, intro=intro), answered)

    def _ask_edit(self, change: Change) -> None:
        def saved(answer: dict[str, str] | None) -> None:
            if answer:
                self.status(_clean(f"{answer['ref']} edited: {answer['fields']}"))
                self.load_change()

        self.app.push_screen(ChangeEditScreen(self.workflow, change), saved)

    def _ask_submit(self, change: Change) -> None:
        self.perform("Submit", lambda: self.workflow.submit(change.ref))

    def _ask_assess(self, change: Change) -> None:
        self._ask("Assess", [
            FormField("risk", "Risk (raise only)", change.risk or "", choices=RISKS),
            FormField("comment", "Comment"),
        ], lambda v: self.workflow.assess(change.ref, risk=v["risk"] or None,
                                          comment=v["comment"]),
            intro=f"Computed risk: {change.risk_computed or '-'}. "
                  + "; ".join(change.risk_reasons))

    def _ask_approve(self, change: Change) -> None:
        self._ask("Approve", [FormField("comment", "Comment")],
                  lambda v: self.workflow.approve(change.ref, v["comment"]))

    def _ask_reject(self, change: Change) -> None:
        self._ask("Reject", [FormField("comment", "Why (the requester reads this)",
                                       required=True)],
                  lambda v: self.workflow.reject(change.ref, v["comment"]),
                  intro="The change goes back to draft.")

    def _ask_schedule(self, change: Change) -> None:
        def schedule(values: dict[str, str]) -> Change:
            now = self.workflow.clock()
            start = parse_when(values["start"], now)
            end = parse_when(values["end"], start if values["end"].startswith("+") else now)
            return self.workflow.schedule(change.ref, start, end)

        self._ask("Schedule", [
            FormField("start", "Window start", "2025-06-03T22:00Z, now or +30m",
                      change.window_start or "", required=True),
            FormField("end", "Window end", "an ISO time, or +1h after the start",
                      change.window_end or "", required=True),
        ], schedule, intro="Times are UTC unless they carry an offset.")

    def _ask_review(self, change: Change) -> None:
        self._ask("Review", [
            FormField("what_happened", "What happened", required=True),
            FormField("incidents", "Incidents caused"),
            FormField("lessons", "Lessons"),
        ], lambda v: self.workflow.review(change.ref, what_happened=v["what_happened"],
                                          incidents=v["incidents"], lessons=v["lessons"]))

    def _ask_close(self, change: Change) -> None:
        code = "unsuccessful" if change.state in ("failed", "backed_out") else "successful"
        self._ask("Close", [
            FormField("code", "Close code", value=code, required=True, choices=CLOSE_CODES),
            FormField("notes", "Notes", required=True),
        ], lambda v: self.workflow.close(change.ref, v["code"], v["notes"]))

    def _ask_cancel(self, change: Change) -> None:
        self._ask("Cancel", [FormField("reason", "Reason", required=True)],
                  lambda v: self.workflow.cancel(change.ref, v["reason"]))

    def _ask_note(self, change: Change) -> None:
        self._ask("Note on", [FormField("text", "Note", required=True)],
                  lambda v: self.workflow.note(change.ref, v["text"]))

    @work(thread=True, exclusive=True, exit_on_error=False, group="act",
          description="Change action")
    def perform(self, title: str, act: Callable[[], Change]) -> None:
        """Apply an action (in a thread); a refusal is shown, not raised."""
        before = self.change.state if self.change is not None else "?"
        try:
            done = act()
        except REFUSALS as exc:
            self.app.call_from_thread(self._refused, title, describe_error(exc))
            return
        self.app.call_from_thread(self._acted, before, done)

    def _refused(self, title: str, reason: str) -> None:
        text = f"{title} refused: {reason}"
        self.status(text)
        self.app.notify(text, severity="error", timeout=10, markup=False)
        self.load_change()

    def _acted(self, before: str, change: Change) -> None:
        moved = f"{before} → {change.state}" if before != change.state else change.state
        entry = change.work_log[-1].text if change.work_log else ""
        self.status(_clean(f"{change.ref}: {moved}  ({entry})"))
        self.load_change()

    # -- implementing and backing out ---------------------------------------------------

    def _ask_implement(self, change: Change) -> None:
        self.prepare_run(change, "implement")

    def _ask_backout(self, change: Change) -> None:
        if not change.backout:
            self._ask("Back out", [FormField("comment", "How it was backed out by hand",
                                             required=True)],
                      lambda v: self._backout_by_hand(change, v["comment"]))
            return
        self.prepare_run(change, "backout")

    @work(thread=True, exclusive=True, exit_on_error=False, group="prepare",
          description="Check the procedures")
    def prepare_run(self, change: Change, what: str) -> None:
        """Find the values the procedures need that the change lacks (in a thread)."""
        purposes = ("implementation", "backout") if what == "implement" else ("backout",)
        title = "Implement" if what == "implement" else "Back out"
        try:
            needed = self.workflow.missing_variables(change, purposes=purposes)
        except REFUSALS as exc:
            self.app.call_from_thread(self._refused, title, describe_error(exc))
            return
        self.app.call_from_thread(self._ask_values, change, what, needed)

    def _ask_values(self, change: Change, what: str, needed: list[NeededVariable]) -> None:
        """Ask for the missing values (none: straight to the question), then confirm."""
        if not needed:
            self._confirm_run(change, what, {})
            return
        fields: dict[str, FormField] = {}
        for item in needed:
            variable = item.variable
            if variable.name in fields:
                continue
            kind = "secret, " if variable.secret else ""
            fields[variable.name] = FormField(
                variable.name,
                f"{variable.name} ({kind}variable of {item.procedure}, the {item.purpose})",
                _clean(variable.description), required=variable.required,
                choices=variable.choices, secret=variable.secret)

        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self._confirm_run(change, what, {k: v for k, v in values.items() if v != ""})

        intro = ("The procedures need these values, which the change does not hold. They are "
                 "used for this run only; secrets are never stored or shown.")
        self.app.push_screen(FieldsDialog(f"Values for {change.ref}", list(fields.values()),
                                          intro=intro, save_label="Continue"), answered)

    def _confirm_run(self, change: Change, what: str, values: dict[str, str]) -> None:
        hosts = ", ".join(change.hosts)
        if what == "backout":
            def backout(yes: bool | None) -> None:
                if yes:
                    self.backout(change, values)

            self.app.push_screen(ConfirmDialog(
                f"Back out {change.ref}", f"Run {change.backout} on {hosts} now?",
                yes="Back out"), backout)
            return
        if change.state == "implement" and not change.implementation:
            # Already being implemented by hand: what is left is the outcome.
            self.implement(change, values)
            return
        if change.state == "implement":
            earlier = change.linked_run("implementation")
            unfinished = (f"; its unfinished run {earlier.id} ({earlier.status}) is resumed"
                          if earlier is not None and earlier.status not in FINISHED_RUNS else "")
            question = (f"{change.ref} is being implemented. Continue with {change.implementation} "
                        f"on {hosts} now{unfinished}? When it fails, you are asked whether to "
                        f"run the backout procedure ({change.backout or 'none: back out by hand'}).")
        elif not change.implementation:
            question = (f"{change.ref} has no implementation procedure: the work is done by "
                        f"hand on {hosts}. Start implementing it now?")
        else:
            question = (f"Run {change.implementation} on {hosts} now? When it fails, "
                        f"you are asked whether to run the backout procedure "
                        f"({change.backout or 'none: back out by hand'}).")

        def implement(yes: bool | None) -> None:
            if yes:
                self.implement(change, values)

        going_on = change.state == "implement"
        self.app.push_screen(ConfirmDialog(f"{'Continue implementing' if going_on else 'Implement'} "
                                           f"{change.ref}", question,
                                           yes="Continue" if going_on else "Implement"), implement)

    def _backout_by_hand(self, change: Change, comment: str) -> Change:
        return self.workflow.act(change.ref, "backout", ActionInput(comment=comment))

    async def _wait(self, dialog: Any) -> Any:
        """Show ``dialog`` and wait for its answer (inside a worker)."""
        return await self.app.push_screen_wait(dialog)

    def _run_callbacks(self) -> RunCallbacks:
        async def manual(step: Any, hosts: list[str], instructions: str) -> bool:
            question = f"{_clean(instructions)}\n\nDone on {', '.join(hosts)}?"
            return bool(await self._wait(
                ConfirmDialog(f"Manual step {step.id}", question, yes="Done")))

        async def ask(variable: Any, step: Any, problem: str | None) -> str | None:
            answer = await self._wait(FieldsDialog(
                f"Value for {variable.name}", [FormField("value", variable.name)],
                intro=problem or ""))
            return None if answer is None else answer["value"]

        return RunCallbacks(manual=manual, ask=ask, observer=self._observe)

    def _observe(self, event: RunEvent) -> None:
        text = event_line(event)
        if text is None:
            return
        self.progress.append(strip_control(text))
        self.call_later(self._show_progress)

    def _show_progress(self) -> None:
        widget = self.query_one("#change-progress", Static)
        widget.display = True
        widget.update("\n".join(list(self.progress)[-8:]))

    def _start_run(self, what: str) -> None:
        self.running = True
        self.progress = deque(maxlen=PROGRESS_LINES)
        self.status(f"{what} {self.ref}…")

    def _end_run(self, title: str, result: ImplementResult | None, error: str | None) -> None:
        self.running = False
        if error is not None:
            self._refused(title, error)
            return
        assert result is not None
        self.status(_clean(result.message))
        self.app.notify(_clean(result.message), severity="information" if result.ok else "error",
                        timeout=10, markup=False)
        self.load_change()

    @work(exclusive=True, exit_on_error=False, group="run", description="Implement the change")
    async def implement(self, change: Change, values: dict[str, str] | None = None) -> None:
        """Implement the change (by its procedure, or by hand with an outcome).

        ``values`` are the variables asked for this run (never stored on the change).
        """
        self._start_run("Implementing")
        if not change.implementation:
            await self._implement_by_hand(change)
            return

        async def offer(current: Change, run: Any) -> bool:
            return bool(await self._wait(ConfirmDialog(
                f"{run.id} {run.status}",
                f"Run the backout procedure {current.backout} on {', '.join(current.hosts)} "
                "now? No leaves the change failed (back it out later with b).",
                yes="Back out")))

        try:
            result = await self.workflow.implement(
                change.ref, callbacks=self._run_callbacks(), variables=values,
                backout_on_failure=offer)
        except REFUSALS as exc:
            self._end_run("Implement", None, describe_error(exc))
            return
        self._end_run("Implement", result, None)

    async def _implement_by_hand(self, change: Change) -> None:
        """Start implementing by hand (unless already in implement), then ask how it went."""
        current = change
        if change.state != "implement":
            try:
                current = self.workflow.act(change.ref, "implement")
            except REFUSALS as exc:
                self._end_run("Implement", None, describe_error(exc))
                return
        outcome = await self._wait(ChoiceDialog(
            f"{current.ref} is being implemented by hand on {', '.join(current.hosts)}: "
            "how did it go? Succeeded sends it to review; failed leaves it failed (back it "
            "out with b).",
            [("Succeeded", "succeeded"), ("Failed", "failed"), ("Not done yet", "")]))
        if not outcome:
            self.running = False
            self.status(f"{current.ref} stays in implement; press i to record the outcome.")
            self.load_change()
            return
        try:
            done = self.workflow.record_outcome(current.ref, outcome)
        except REFUSALS as exc:
            self._end_run("Implement", None, describe_error(exc))
            return
        self._end_run("Implement", ImplementResult(done, outcome == "succeeded",
                                                   f"{done.ref}: {done.state}"), None)

    @work(exclusive=True, exit_on_error=False, group="run", description="Back out the change")
    async def backout(self, change: Change, values: dict[str, str] | None = None) -> None:
        """Run the change's backout procedure with ``values`` asked for this run."""
        self._start_run("Backing out")
        try:
            result = await self.workflow.backout(change.ref, callbacks=self._run_callbacks(),
                                                 variables=values)
        except REFUSALS as exc:
            self._end_run("Back out", None, describe_error(exc))
            return
        self._end_run("Back out", result, None)
