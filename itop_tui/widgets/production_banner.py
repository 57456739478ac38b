"""A banner that says, in red, when the hosts about to be acted on are in production.

Hosts with status ``production`` refuse mutating actions unless an approved
change covering them is in its window (issue 5); the banner tells the
operator before they try, and names the change windows open now.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.widgets import Static

from itop_tui.domain.models import Host

PRODUCTION = "production"


def banner_text(hosts: Sequence[Host], active_changes: Sequence[str]) -> str:
    """The banner's line for the production ``hosts`` among the targets ("" when none)."""
    if not hosts:
        return ""
    who = hosts[0].name if len(hosts) == 1 else f"{len(hosts)} hosts"
    text = f"PRODUCTION ({who}): mutating actions need an approved change in its window"
    if active_changes:
        text += " · " + "; ".join(active_changes)
    else:
        text += " · no change window open now"
    return text


class ProductionBanner(Static):
    """One line, shown only while the targets include production hosts."""

    DEFAULT_CSS = """
    ProductionBanner {
        height: 1;
        display: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """A hidden banner."""
        super().__init__("", id=id, markup=False)
        self.text = ""
        """What the banner says; "" while hidden."""

    def show_for(self, targets: Iterable[Host | None], active_changes: Sequence[str]) -> None:
        """Show the banner if any of ``targets`` is in production, else hide it."""
        production = [h for h in targets if h is not None and h.status == PRODUCTION]
        text = banner_text(production, active_changes)
        if text == self.text:
            return
        self.text = text
        if text:
            self.update(text, layout=False)
        # Showing or hiding changes the layout: only when the answer changes.
        self.display = bool(text)
