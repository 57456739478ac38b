"""The panes as a one-line tab strip at the top of each pane, as k9s shows its views.

The keys that switch panes (``1`` to ``5``) are listed here instead of in
the Footer, which then has room for the pane's own keys at 160 columns.
Each tab is clickable; the pane it is on is highlighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static


class PaneEntry(Protocol):
    """What the strip needs of a pane (the app's ``Pane``)."""

    @property
    def mode(self) -> str:
        """The pane's mode name (``app.switch_mode`` takes it)."""

    @property
    def title(self) -> str:
        """The pane's title."""

    @property
    def key(self) -> str:
        """The key that switches to the pane."""

    @property
    def screen(self) -> str:
        """The pane's screen class as ``module:Class``."""


CURRENT_STYLE = "bold $block-cursor-foreground on $block-cursor-background"
KEY_STYLE = "bold $footer-key-foreground"


def screen_path(screen: Screen[object]) -> str:
    """``module:Class`` of ``screen``, as a pane names its screen class."""
    cls = type(screen)
    return f"{cls.__module__}:{cls.__qualname__}"


def tab_strip(panes: Sequence[PaneEntry], current: str | None) -> Content:
    """The strip: `` 1 Inventory  2 Performance …``, the ``current`` mode's tab highlighted,
    each tab switching to its pane when clicked."""
    parts: list[Content] = []
    for pane in panes:
        if pane.mode == current:
            label = Content(f" {pane.key} {pane.title} ").stylize(CURRENT_STYLE)
        else:
            label = Content.assemble(" ", (pane.key, KEY_STYLE), f" {pane.title} ")
        parts.append(label.stylize(f"@click=app.switch_mode({pane.mode!r})"))
    return Content(" ").join(parts)


class PaneTabs(Static):
    """One line naming every pane with its key; the pane this strip is on is highlighted.

    The panes are the app's ``panes`` (none in an app without them); the
    current one is the pane whose screen class is this strip's screen's.
    """

    DEFAULT_CSS = """
    PaneTabs {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $text-muted;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """An empty strip; filled when mounted on its screen."""
        super().__init__("", id=id, markup=False)
        self.current: str | None = None
        """The mode of the pane this strip is on (None outside the app's panes)."""

    def on_mount(self) -> None:
        """Draw the tabs, the pane of this strip's screen highlighted."""
        panes: Sequence[PaneEntry] = getattr(self.app, "panes", ())
        path = screen_path(self.screen)
        self.current = next((p.mode for p in panes if p.screen == path), None)
        self.update(tab_strip(panes, self.current), layout=False)
