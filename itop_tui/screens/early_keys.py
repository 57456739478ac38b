"""Keep keys typed right after a dialog opens.

Textual sends a key to the focused widget, or to the screen when nothing has
focus yet. A dialog gets its focus only once it is composed, so the keys of
``r`` + ``uptime`` arriving in one burst (fast typing, a paste, or a slow SSH
link delivering keystrokes together) reach the new screen before its input
has focus, and the characters were dropped.
"""

from __future__ import annotations

from textual import events
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.widgets import Input


class KeepsEarlyKeys(MessagePump):
    """Mixin for dialog screens with inputs: early printable keys go to the input.

    A printable key can only reach the screen itself while an :class:`Input`
    has focus if it was sent before that input got focus (a focused input
    consumes every printable key), so it is inserted there. Other keys
    (Enter, Escape) bubble on to the app, whose binding check already sees the
    input focused.
    """

    def on_key(self, event: events.Key) -> None:
        """Put a printable key that arrived before the focus into the input."""
        if not (event.is_printable and event.character) or not isinstance(self, Screen):
            return
        focused = self.focused
        if focused is None:
            focused = next((w for w in self.query(Input) if w.focusable), None)
            if focused is None:
                return
            self.set_focus(focused)
        if isinstance(focused, Input):
            focused.insert_text_at_cursor(event.character)
            event.stop()
