"""ItopApp: the terminal console, one Textual mode per pane.

The app is handed its :class:`~itop_tui.services.context.Services` from
outside (the CLI, or a test with a temp data dir), so that nothing in the UI
decides where data lives or how hosts are reached.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from textual import events
from textual.app import App
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen

from itop_tui.commands import HostCommands
from itop_tui.domain.models import Inventory
from itop_tui.services.context import Services
from itop_tui.widgets.host_table import Clock
from itop_tui.widgets.production_banner import OpenChange, ProductionBanner

if TYPE_CHECKING:
    from itop_tui.screens.inventory import InventoryScreen

ScreenFactory = Callable[[Services, Clock], Screen[None]]


@dataclass(frozen=True)
class Pane:
    """A pane of the console: its mode name, title, switch key and screen class.

    ``screen`` names the class as ``module:Class``: a pane's module (and all it
    imports) is loaded when the pane is first shown, not when itop starts.
    """

    mode: str
    title: str
    key: str
    screen: str

    def screen_class(self) -> ScreenFactory:
        """The pane's screen class (importing its module)."""
        module, _, name = self.screen.partition(":")
        factory: ScreenFactory = getattr(importlib.import_module(module), name)
        return factory


PANES: tuple[Pane, ...] = (
    Pane("inventory", "Inventory", "1", "itop_tui.screens.inventory:InventoryScreen"),
    Pane("performance", "Performance", "2", "itop_tui.screens.performance:PerformanceScreen"),
    Pane("procedures", "Procedures", "3", "itop_tui.screens.procedures:ProceduresScreen"),
    Pane("changes", "Changes", "4", "itop_tui.screens.changes:ChangesScreen"),
    Pane("backups", "Backups", "5", "itop_tui.screens.backups:BackupsScreen"),
    Pane("audit", "Audit", "6", "itop_tui.screens.audit:AuditScreen"),
)
"""The panes that work; only these are shown. Adding a pane is one line here."""


def pane_factory(pane: Pane, services: Services, clock: Clock) -> Callable[[], Screen[None]]:
    """Builds the pane's screen over ``services``, importing its module on first use."""

    def build() -> Screen[None]:
        return pane.screen_class()(services, clock)

    return build

INVENTORY_MODE = "inventory"

FIRST_ROWS_GRACE = 2.0
"""Seconds background work waits for the first pane's rows to be painted, at most.

The check for active changes and the backup scheduler import modules and read
the store; run at start they would compete with the first paint for the CPU
(and, in a thread, for the interpreter lock)."""

KEY_SETTLE_TIMEOUT = 1.0
"""Seconds after which a key whose handling cannot be observed stops holding the next."""
KEY_SETTLE_ROUNDS = 2
"""Rounds of "every node has processed what it had queued" after a key's own handling:
enough for a binding's messages and the messages their handlers post (a button's
Pressed, then the dialog dismissed and the next one pushed)."""


class ItopApp(App[None]):
    """The itop console.

    Args:
        services: The opened services (settings, inventory, audit, transports).
        clock: Gives "now" (UTC) for ages shown in tables; tests pass a fixed one.
    """

    CSS_PATH = "app.tcss"
    TITLE = "itop"
    # Seconds between scheduled-backup passes; None: the runner's SCHEDULER_INTERVAL.
    BACKUP_SCHEDULER_INTERVAL: ClassVar[float | None] = None
    ACTIVE_CHANGE_INTERVAL: ClassVar[float] = 30.0
    """Seconds between two looks for active changes (windows open and close with time)."""
    COMMANDS = App.COMMANDS | {HostCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),
        # Not in the Footer: each pane's tab strip (widgets/pane_tabs.py) shows them.
        *(Binding(pane.key, f"switch_mode('{pane.mode}')", pane.title, show=False)
          for pane in PANES),
    ]
    panes: ClassVar[tuple[Pane, ...]] = PANES
    """The panes, in the order of their keys (each pane's tab strip reads them)."""

    def __init__(self, services: Services, *, clock: Clock | None = None) -> None:
        """Build the app around ``services``; nothing is read until it runs."""
        super().__init__()
        self.services = services
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.inventory: Inventory | None = None
        """The latest inventory snapshot a pane loaded (the command palette searches it)."""
        # Animations cost bytes on every frame; over a slow SSH link that is lag.
        self.animation_level = "none"
        self._identity = f"{services.actor} ({services.role}) · {services.settings.config_label}"
        """The header's subtitle before any note of an active change."""
        self.open_changes: list[OpenChange] = []
        """Approved changes whose window is open now, each with its note (``CHG-7 active,
        20m left``): the header names them all, production banners those covering their hosts."""
        self.sub_title = self._identity
        for pane in PANES:
            self.add_mode(pane.mode, pane_factory(pane, services, self.clock))
        self._pending_keys: deque[events.Key] = deque()
        self._key_in_flight = 0
        """Serial number of the key being handled, 0 when none is."""
        self._key_serial = 0
        self._key_timeout: asyncio.TimerHandle | None = None
        self._refresh_active_changes: Callable[[], None] = lambda: None
        """Look for active changes again (set once mounted)."""
        self._first_rows = threading.Event()
        """Set once the first pane painted its rows (or :data:`FIRST_ROWS_GRACE` passed)."""

    def on_mount(self) -> None:
        """Apply the configured theme, open the first pane, show store recoveries;
        note active changes in the header every 30 s and whenever the changes file moved."""
        theme = self.services.settings.theme
        if theme in self.available_themes:
            self.theme = theme
        else:
            self.notify(
                f"Unknown theme {theme!r}; using {self.theme}. "
                f"Themes: {', '.join(sorted(self.available_themes))}",
                severity="warning",
                markup=False,
            )
        self.switch_mode(PANES[0].mode)
        for message in self.services.recovery_messages:
            self.notify(message, title="Store recovered", severity="warning", timeout=20, markup=False)

        # The header names each change whose window is open, with the time left,
        # as the change gate sees it (real time, whatever clock the tables use).
        def note_active_changes() -> None:
            # Started now, so that whoever waits for the app's workers waits for
            # this one too, but working only once the first rows are on screen.
            self._first_rows.wait(FIRST_ROWS_GRACE)
            from itop_tui.domain.change_windows import time_left
            from itop_tui.ops.change_gate import ChangeGate
            from itop_tui.screens.run_dialog import left_text

            gate = ChangeGate(self.services)
            now = gate.clock()
            found = [
                OpenChange(change, f"{change.ref} active, {left_text(left)}")
                for change in gate.active()
                if (left := time_left(change, now)) is not None
            ]
            self.call_from_thread(self._note_open_changes, found)

        def refresh_active_changes() -> None:
            self.run_worker(note_active_changes, thread=True, exclusive=True,
                            group="active-change", exit_on_error=False,
                            description="Look for active changes")

        refresh_active_changes()
        self.set_interval(self.ACTIVE_CHANGE_INTERVAL, refresh_active_changes)
        self._refresh_active_changes = refresh_active_changes
        # Due backup jobs run while the console is open, whichever pane is
        # shown; started after the first rows are painted, which it would only delay.
        self.set_timer(FIRST_ROWS_GRACE, self._first_rows_shown)

    def _first_rows_shown(self) -> None:
        """The first pane shows its rows (or had time to): start the background work."""
        if self._first_rows.is_set():
            return
        self._first_rows.set()
        self._start_backup_scheduler()
        self._follow_changes()

    def _follow_changes(self) -> None:
        """A change approved or scheduled by another itop shows in the header and the
        production banners within a poll of the changes file, not at the next 30 s tick."""
        from itop_tui.screens.store_follow import follow_store
        from itop_tui.services.change_repo import CHANGES_FILE
        from itop_tui.services.store_watch import StoreWatch

        watch = StoreWatch.in_data_dir(self.services.settings.data_dir, CHANGES_FILE)
        follow_store(self, watch, self._refresh_active_changes)

    def _start_backup_scheduler(self) -> None:
        from itop_tui.screens.scheduled_backups import ScheduledBackups

        interval = self.BACKUP_SCHEDULER_INTERVAL
        if interval is None:
            ScheduledBackups(self, self.services).start()
        else:
            ScheduledBackups(self, self.services, interval=interval).start()

    def _note_open_changes(self, found: list[OpenChange]) -> None:
        self.open_changes = found
        self.sub_title = self._identity + "".join(f" · {note}" for note in self.active_changes)
        for banner in self.screen.query(ProductionBanner):
            banner.show_changes(found)

    @property
    def active_changes(self) -> list[str]:
        """The notes of :attr:`open_changes`, as ``CHG-7 active, 20m left``."""
        return [change.note for change in self.open_changes]

    async def on_unmount(self) -> None:
        """Close pooled SSH connections while their event loop still runs."""
        self._first_rows.set()  # a worker still waiting for the first paint ends now
        await self.services.close()

    # -- keys in order ------------------------------------------------------
    #
    # Textual hands each key to the widget focused *when the app reads it*,
    # while focus changes happen later, when a widget or a binding handles
    # an earlier key. Keys that arrive together (fast typing; a slow SSH link
    # that delivers a stall's worth of keystrokes at once) then went to the
    # widget focused before "/" or "r" took effect: typed text was lost, or a
    # letter meant for the filter ran an action. So the app lets one key be
    # handled completely (by the focused widget, its parents and the app's
    # bindings, then what those set off) before it routes the next, which is
    # what typing slowly gives.

    async def on_event(self, event: events.Event) -> None:
        """Route keys one at a time; everything else as Textual does."""
        if isinstance(event, events.Key) and not event.is_forwarded:
            # Queued behind any key still waiting its turn, not only behind the one
            # in flight: between two keys the next is scheduled but not yet routed.
            if self._key_in_flight or self._pending_keys:
                self._pending_keys.append(event)
            else:
                await self._route_key(event)
            return
        await super().on_event(event)

    async def _route_key(self, event: events.Key) -> None:
        self._key_serial += 1
        serial = self._key_in_flight = self._key_serial
        target = self.focused or self.screen
        await super().on_event(event)
        # The key (if it was not consumed) bubbles from the target to the app;
        # a callback queued on each node in turn runs after the key passed it.
        chain = [n for n in target.ancestors_with_self if n is not self]
        self._key_timeout = asyncio.get_running_loop().call_later(
            KEY_SETTLE_TIMEOUT, self.call_later, self._key_settled, serial
        )
        self._after_key([*chain, self], serial)

    def _after_key(self, nodes: list[object], serial: int) -> None:
        """Follow the key up its bubbling path, one node after the other."""
        while nodes:
            node, nodes = nodes[0], nodes[1:]
            call_later = getattr(node, "call_later", None)
            if call_later is not None and call_later(self._after_key, nodes, serial):
                return
        self._settle_round(serial, KEY_SETTLE_ROUNDS)

    def _settle_round(self, serial: int, rounds: int) -> None:
        """Wait until every node of the current screen has processed its queue."""
        if serial != self._key_in_flight:
            return
        if rounds <= 0:
            self._key_settled(serial)
            return
        nodes = [self, *self.screen.walk_children(with_self=True)]
        remaining = len(nodes)

        def node_done() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                self._settle_round(serial, rounds - 1)

        for node in nodes:
            if not node.call_later(node_done):
                node_done()

    def _key_settled(self, serial: int) -> None:
        if serial != self._key_in_flight:
            return  # a late timeout or callback for a key already settled
        self._key_in_flight = 0
        if self._key_timeout is not None:
            self._key_timeout.cancel()
            self._key_timeout = None
        if self._pending_keys:
            self.call_next(self._route_next_key)

    async def _route_next_key(self) -> None:
        # Taken from the queue only now: a key that arrived meanwhile queued behind it.
        if self._pending_keys and not self._key_in_flight:
            await self._route_key(self._pending_keys.popleft())

    def format_title(self, title: str, sub_title: str) -> Content:
        """``itop · Inventory [READ-ONLY] — user (role) · config`` for the header."""
        parts: list[Content | tuple[str, str] | str] = [(self.TITLE or "itop", "bold")]
        if title and title != self.TITLE:
            parts += [(" · ", "dim"), Content(title)]
        if self.services.read_only:
            parts += [" ", (" READ-ONLY ", "bold reverse $error")]
        if sub_title:
            parts += [(" — ", "dim"), Content(sub_title).stylize("dim")]
        return Content.assemble(*parts)

    def action_help(self) -> None:
        """Show the bindings of the current screen and the app."""
        from itop_tui.screens.help import HelpScreen, collect_help

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(collect_help(self.screen)))

    def on_inventory_screen_inventory_loaded(
        self, message: InventoryScreen.InventoryLoaded
    ) -> None:
        """Keep the latest snapshot for the command palette; the first one's
        rows, once painted, let the background work start."""
        self.inventory = message.inventory
        if not self._first_rows.is_set():
            self.call_after_refresh(self._first_rows_shown)

    def jump_to_host(self, name: str) -> None:
        """Open the Inventory pane with the cursor on host ``name``."""
        from itop_tui.screens.inventory import InventoryScreen

        self.switch_mode(INVENTORY_MODE)
        screen = self.screen
        if isinstance(screen, InventoryScreen):
            screen.focus_host(name)
