"""The questions a procedure run asks a person, as modal dialogs.

:class:`StepQuestion` asks to confirm a step that changes things, or that a
manual step was done; :class:`VariableDialog` asks for a variable's value
(secrets in a password field); :class:`ApprovalWait` stays up while a run
waits for an approver; :class:`CommentDialog` asks for the comment of an
approval, a rejection or an abort. Every one shows what the step is about
(its explanation) so that a trainee reads it before answering.

All of them are :class:`RunQuestion`: answered once at most, and only while
on top, because ``dismiss`` pops whatever screen is on top and gives its
result to a future that takes one result only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Generic, TypeVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Markdown, Static

from itop_tui.domain.output import strip_control
from itop_tui.domain.procedure import Variable
from itop_tui.domain.substitution import value_problem
from itop_tui.screens.early_keys import KeepsEarlyKeys
from itop_tui.screens.worker_errors import ReportsWorkerErrors

ResultT = TypeVar("ResultT")


class RunQuestion(ModalScreen[ResultT], Generic[ResultT]):
    """A dialog of a run, closed once at most, and only while it is on top.

    ``dismiss`` pops the screen on top (which may be another dialog pushed
    over this one) and hands the result to this dialog's waiter, whose
    future takes one result only: dismissing twice, or while another screen
    is on top, crashes itop or closes the wrong dialog. :meth:`close_with`
    guards both. :meth:`withdraw` is for the run: it no longer waits for the
    answer (it went on, or ended), so the dialog closes now if it is on top,
    else as soon as it is on top again (its pane shown, the screen over it
    closed).
    """

    def __init__(self) -> None:
        """A dialog not answered and not withdrawn."""
        super().__init__()
        self.answered = False
        """True once the dialog was closed with a result."""
        self.withdrawn = False
        """True once the run no longer waits for the answer."""
        self._withdrawn_result: ResultT | None = None

    def close_with(self, result: ResultT | None) -> bool:
        """Close with ``result`` if not answered yet and on top; True if it closed now."""
        if self.answered or not self.is_active:
            return False
        self.answered = True
        self.dismiss(result)
        return True

    def withdraw(self, result: ResultT | None = None) -> None:
        """The run no longer waits for the answer: close with ``result``, now or once on top."""
        if self.answered or self.withdrawn:
            return
        self.withdrawn = True
        self._withdrawn_result = result
        if not self.close_with(result):
            self.withdrawn_under_another()

    def withdrawn_under_another(self) -> None:
        """Called when withdrawn while another screen is over this one (or its pane is hidden)."""

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """On top again: a withdrawn dialog closes itself."""
        if self.withdrawn:
            self.close_with(self._withdrawn_result)


class StepQuestion(ReportsWorkerErrors, RunQuestion[bool | str]):
    """Asks whether to run a step that changes things, or whether a manual step was done.

    Dismisses with True (yes), the note typed (yes, with that note) or
    False (no: the run pauses). "No" has the focus, so a stray Enter never
    says yes; ``y`` answers yes, ``n`` or Escape no.
    """

    AUTO_FOCUS = "#no"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("escape,n", "answer(False)", "No: pause the run"),
    ]

    def __init__(self, title: str, explanation: str, facts: str, *, yes: str, no: str) -> None:
        """Ask under ``title``, showing the step's ``explanation`` (Markdown) and ``facts``."""
        super().__init__()
        self._title = title
        self._explanation = explanation
        self._facts = facts
        self._yes = yes
        self._no = no

    def compose(self) -> ComposeResult:
        """Title, explanation, facts, a note, the buttons."""
        with Vertical(classes="dialog step-question"):
            yield Static(self._title, classes="dialog-title", markup=False)
            with VerticalScroll(classes="question-explanation"):
                yield Markdown(strip_control(self._explanation).strip() or "*No explanation.*",
                               open_links=False)
            yield Static(self._facts, classes="dialog-text", markup=False)
            yield Input(placeholder="note for the record (optional); Enter answers yes",
                        id="note")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._no, id="no")
                yield Button(self._yes, id="yes", variant="warning")
            yield Static("y: yes · n or Esc: no, the run pauses · Tab: write a note",
                         classes="dialog-hint")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "yes")

    @on(Input.Submitted, "#note")
    def _note_given(self) -> None:
        self.action_answer(True)

    def action_answer(self, yes: bool) -> None:
        """Yes (with the note, if any) or no."""
        if not yes:
            self.close_with(False)
            return
        note = self.query_one("#note", Input).value.strip()
        self.close_with(note or True)


class VariableDialog(ReportsWorkerErrors, KeepsEarlyKeys, RunQuestion[str | None]):
    """Asks for the value of a variable, checked against its rules before it is given.

    A secret is typed into a password field and never shown. Enter gives the
    value (empty takes the default); Escape gives nothing (the run pauses).
    """

    AUTO_FOCUS = "#variable-value"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel: pause the run"),
    ]

    def __init__(self, variable: Variable, title: str, problem: str | None = None) -> None:
        """Ask for ``variable`` under ``title``; ``problem`` says why an earlier answer was refused."""
        super().__init__()
        self.variable = variable
        self._title = title
        self._problem = problem

    def compose(self) -> ComposeResult:
        """What is asked, its rules, the field and a line for problems."""
        variable = self.variable
        rules = ["required" if variable.required else "optional"]
        if variable.secret:
            rules.append("secret: not shown, never stored")
        if variable.choices:
            rules.append("one of " + ", ".join(variable.choices))
        if variable.regex:
            rules.append(f"must match the regex `{variable.regex}`")
        if variable.default is not None:
            rules.append(f"empty takes the default {variable.default!r}")
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="dialog-title", markup=False)
            if variable.description:
                yield Static(variable.description, classes="dialog-text", markup=False)
            yield Static(" · ".join(rules), classes="field-label", markup=False)
            yield Input(password=variable.secret, id="variable-value",
                        placeholder=variable.default or variable.name)
            yield Static(self._problem or "", id="variable-problem", classes="field-error",
                         markup=False)
            yield Static("Enter gives the value · Esc: no value, the run pauses",
                         classes="dialog-hint")

    def problem(self, value: str) -> str | None:
        """Why ``value`` would be refused, or None."""
        if value == "" and self.variable.default is not None:
            value = self.variable.default
        return value_problem(self.variable, value)

    @on(Input.Submitted, "#variable-value")
    def _submitted(self, event: Input.Submitted) -> None:
        problem = self.problem(event.value)
        if problem is not None:
            self.query_one("#variable-problem", Static).update(f"{self.variable.name} {problem}")
            return
        self.close_with(event.value)

    def action_cancel(self) -> None:
        """Give no value."""
        self.close_with(None)


class CommentDialog(ReportsWorkerErrors, KeepsEarlyKeys, RunQuestion[str | None]):
    """Asks for a comment (approving, rejecting, aborting); None when cancelled."""

    AUTO_FOCUS = "#comment"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, text: str, *, required: bool, action: str) -> None:
        """Ask under ``title``; ``required`` refuses a blank comment; ``action`` names what Enter does."""
        super().__init__()
        self._title = title
        self._text = text
        self._required = required
        self._action = action

    def compose(self) -> ComposeResult:
        """Title, explanation, the comment field."""
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="dialog-title", markup=False)
            yield Static(self._text, classes="dialog-text", markup=False)
            yield Input(id="comment", placeholder="comment" + (" (required)" if self._required else
                                                             " (optional)"))
            yield Static("", id="comment-problem", classes="field-error", markup=False)
            yield Static(f"Enter: {self._action} · Esc: cancel", classes="dialog-hint",
                         markup=False)

    @on(Input.Submitted, "#comment")
    def _submitted(self, event: Input.Submitted) -> None:
        if self._required and not event.value.strip():
            self.query_one("#comment-problem", Static).update("Say why: a comment is required.")
            return
        self.close_with(event.value.strip())

    def action_cancel(self) -> None:
        """Do nothing."""
        self.close_with(None)


class ApprovalWait(ReportsWorkerErrors, RunQuestion[str]):
    """Shown while a run waits for an approver; the run screen withdraws it once approved.

    Dismisses with ``stop`` (stop waiting: the run stays waiting and is
    resumed later), ``abort`` (end the run) or ``approved``. Once withdrawn
    (the wait is over), Escape or ``a`` only close it: the run goes on.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave('stop')", "Stop waiting"),
        Binding("a", "leave('abort')", "Abort the run"),
    ]

    def __init__(self, run_id: str, pending: Mapping[str, object], explanation: str) -> None:
        """Say what ``run_id`` waits for (``pending``: the PendingApproval as a dict)."""
        super().__init__()
        self.run_id = run_id
        self.pending = dict(pending)
        self._explanation = explanation

    def compose(self) -> ComposeResult:
        """What is waited for, who may give it, how."""
        pending = self.pending
        kind = "a sign-off" if pending.get("kind") == "signoff" else "an approval"
        text = (
            f"Step {pending.get('step')} needs {kind}: {pending.get('reason')}.\n"
            f"Asked by {pending.get('requested_by')} at {pending.get('requested_at')}.\n\n"
            "Another person with the approver role approves it in their itop "
            f"(Procedures, u for the runs, a) or with `itop procedure approve {self.run_id}`. "
            "The run goes on by itself once it is approved."
        )
        with Vertical(classes="dialog step-question", id="approval-wait"):
            yield Static(f"{self.run_id} is waiting for an approver", classes="dialog-title",
                         markup=False)
            if self._explanation.strip():
                with VerticalScroll(classes="question-explanation"):
                    yield Markdown(strip_control(self._explanation).strip(), open_links=False)
            yield Static(text, classes="dialog-text", markup=False)
            yield Static("Esc: stop waiting (the run stays waiting; resume it from the runs "
                         "list) · a: abort the run", classes="dialog-hint", id="approval-hint")

    def withdrawn_under_another(self) -> None:
        """Say that the wait is over, for when this dialog shows again."""
        if self.is_mounted:
            self.query_one("#approval-hint", Static).update(
                "The run was approved and goes on: Esc closes this.")

    def action_leave(self, why: str) -> None:
        """Close with ``why``; once the wait is over, only close (the run goes on)."""
        self.close_with("approved" if self.withdrawn else why)
