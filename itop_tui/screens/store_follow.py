"""Panes follow the store: what another itop process wrote shows up by itself.

An operator runs ``itop change approve`` or ``itop inventory add`` in a second
terminal; the open console shows it within :data:`STORE_POLL_SECONDS`, as
k9s follows the cluster, instead of waiting for F5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.screen import Screen

from itop_tui.services.store_watch import StoreWatch

STORE_POLL_SECONDS = 2.0
"""Seconds between two looks at the store files of the pane shown (a ``stat`` each)."""


def follow_store(
    owner: Screen[Any] | App[Any],
    watch: StoreWatch,
    reload: Callable[[], object],
    every: float = STORE_POLL_SECONDS,
) -> None:
    """Call ``reload`` when a file of ``watch`` changed.

    A screen looks only while it is on top: under a dialog or behind
    another pane nothing moves, and the change is picked up when it is
    shown again. The app (the header's active changes) looks all the time.
    The pane calls ``watch.mark()`` when it starts a read of its own, so
    that its own reloads are not done twice.
    """

    def look() -> None:
        if isinstance(owner, Screen) and not owner.is_active:
            return
        if watch.poll():
            reload()

    owner.set_interval(every, look, name="follow-store")
