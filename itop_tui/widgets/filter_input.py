"""The filter box above the host table: selector or free text, as you type."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input

_WIDTH_STEP = 256

FILTER_PLACEHOLDER = "/ filter: text, or a selector such as web:&prod, tag:db, status:production"


class FilterInput(Input):
    """An input whose value filters the host table.

    Escape clears it; a second Escape, Enter or Down leave it for the next
    widget (the table under it), keeping the filter. Focus moves at once
    rather than through a message, so the next key already goes to the table.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("enter,down", "done", "Keep filter", show=False),
    ]
    """
    | Key(s) | Description |
    | :- | :- |
    | escape | Clear the filter; when already empty, leave the input. |
    | enter, down | Keep the filter and move to the next widget. |
    """

    DEFAULT_CSS = """
    FilterInput {
        border: none;
        height: 1;
        padding: 0 1;
        background: $panel;
        &:focus { border: none; background: $boost; }
    }
    """

    def __init__(
        self, *, placeholder: str = FILTER_PLACEHOLDER, name: str | None = None,
        id: str | None = None, classes: str | None = None,
    ) -> None:
        """Create an empty filter input with a steady cursor; ``placeholder`` says
        what it filters by (default: the host selector syntax)."""
        super().__init__(placeholder=placeholder, name=name, id=id, classes=classes)
        # A blinking cursor repaints twice a second: output a slow link does not need.
        self.cursor_blink = False

    @property
    def content_width(self) -> int:
        """The text's width rounded up to 256 cells.

        ``Input`` sets its virtual size from this on every change, and a new
        virtual size lays out and repaints the whole screen: on every
        keystroke, in a screen holding a 10,000-host table. In steps of 256
        it changes only when the text crosses one.
        """
        width = super().content_width
        return -(-width // _WIDTH_STEP) * _WIDTH_STEP

    def action_clear_filter(self) -> None:
        """Clear the text, or leave the input when it is already empty."""
        if self.value:
            self.value = ""
        else:
            self.action_done()

    def action_done(self) -> None:
        """Leave the input for the next widget, keeping its text."""
        self.screen.focus_next()
