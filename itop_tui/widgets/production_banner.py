"""A banner that says, in red, when the hosts about to be acted on are in production.

Hosts with status ``production`` refuse mutating actions unless an approved
change covering them is in its window (issue 5); the banner tells the
operator before they try, and names the open changes that cover every one
of those hosts (a change open on other hosts does not help, so it is not
named).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.widgets import Static

from itop_tui.domain.models import Host

if TYPE_CHECKING:
    # Only a type here: the change modules are loaded when changes are first read.
    from itop_tui.domain.change import Change

PRODUCTION = "production"


@dataclass(frozen=True)
class OpenChange:
    """An approved change inside its window, and how the header names it
    (``CHG-7 active, 20m left``)."""

    change: Change
    note: str

    def covers_all(self, hosts: Iterable[Host]) -> bool:
        """True when the change covers every one of ``hosts``."""
        return all(self.change.covers(host.name) for host in hosts)


def banner_text(hosts: Sequence[Host], open_changes: Sequence[OpenChange]) -> str:
    """The banner's line for the production ``hosts`` among the targets ("" when none).

    Names the open changes that cover all of ``hosts``, or says that none does.
    """
    if not hosts:
        return ""
    who = hosts[0].name if len(hosts) == 1 else f"{len(hosts)} hosts"
    text = f"PRODUCTION ({who}): mutating actions need an approved change in its window · "
    covering = [c.note for c in open_changes if c.covers_all(hosts)]
    if covering:
        return text + "; ".join(covering)
    these = hosts[0].name if len(hosts) == 1 else f"these {len(hosts)} hosts"
    return text + f"no approved change covers {these} now"


class ProductionBanner(Static):
    """One line, red while the targets include production hosts, blank otherwise.

    The line is always there: showing and hiding a widget makes the whole
    screen lay out again (tens of milliseconds on a large table), while
    changing a fixed line's text and colours only repaints that line.
    """

    DEFAULT_CSS = """
    ProductionBanner {
        height: 1;
        width: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """A blank banner."""
        super().__init__("", id=id, markup=False)
        self.text = ""
        """What the banner says; "" while blank."""
        self._production: list[Host] = []

    @property
    def shown(self) -> bool:
        """True while the banner warns of production hosts."""
        return bool(self.text)

    def show_for(self, targets: Iterable[Host | None], open_changes: Sequence[OpenChange]) -> None:
        """Warn if any of ``targets`` is in production, else blank the line."""
        self._production = [h for h in targets if h is not None and h.status == PRODUCTION]
        self.show_changes(open_changes)

    def show_changes(self, open_changes: Sequence[OpenChange]) -> None:
        """Say again which of ``open_changes`` cover the same production targets."""
        text = banner_text(self._production, open_changes)
        if text == self.text:
            return
        self.text = text
        self.update(text, layout=False)
        # Colours only (see app.tcss): a repaint of this line, no layout.
        self.set_class(bool(text), "-production")
