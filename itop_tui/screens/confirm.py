"""Small modal questions: yes/no, and one choice among a few."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from itop_tui.screens.worker_errors import ReportsWorkerErrors

ChoiceType = TypeVar("ChoiceType")


class ConfirmDialog(ReportsWorkerErrors, ModalScreen[bool]):
    """Asks a yes/no question; dismisses with True for yes.

    The safe answer (no) has the focus, so a stray Enter never confirms.
    """

    AUTO_FOCUS = "#no"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes"),
        Binding("left,right", "app.focus_next", "Switch button", show=False),
    ]

    def __init__(self, title: str, question: str, *, yes: str = "Yes", no: str = "No") -> None:
        """Ask ``question`` under ``title``; ``yes``/``no`` label the buttons."""
        super().__init__()
        self._title = title
        self._question = question
        self._yes = yes
        self._no = no

    def compose(self) -> ComposeResult:
        """Title, question, then the No and Yes buttons."""
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="dialog-title", markup=False)
            yield Static(self._question, classes="dialog-text", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._no, id="no")
                yield Button(self._yes, id="yes", variant="warning")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Answer by key: y for yes, n or Escape for no."""
        self.dismiss(yes)


class ChoiceDialog(ReportsWorkerErrors, ModalScreen[ChoiceType | None], Generic[ChoiceType]):
    """Offers a few choices as buttons; dismisses with the chosen value (None on Escape)."""

    AUTO_FOCUS = "Button"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("left,up", "app.focus_previous", "Previous choice", show=False),
        Binding("right,down", "app.focus_next", "Next choice", show=False),
    ]

    def __init__(self, title: str, choices: list[tuple[str, ChoiceType]]) -> None:
        """Offer ``choices``, pairs of button label and value, the first focused."""
        super().__init__()
        self._title = title
        self._choices = choices

    def compose(self) -> ComposeResult:
        """The title and one button per choice."""
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="dialog-title", markup=False)
            with Vertical(classes="dialog-choices"):
                for index, (label, _value) in enumerate(self._choices):
                    yield Button(label, id=f"choice-{index}", classes="choice")
            yield Static("Enter chooses, Esc cancels.", classes="dialog-hint")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        index = int((event.button.id or "choice-0").removeprefix("choice-"))
        self.dismiss(self._choices[index][1])

    def action_cancel(self) -> None:
        """Choose nothing."""
        self.dismiss(None)
