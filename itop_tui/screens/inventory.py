"""The Inventory pane: the fleet as a table, filtered, sorted, acted on.

The inventory is read once per change in a thread worker; filtering and
sorting then work on that snapshot in memory, so typing in the filter never
touches the store. Every action that talks to hosts or writes the store runs
in a worker that ends by posting a message.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Label, ProgressBar, Static
from textual.worker import Worker, WorkerState

from itop_tui.domain.models import Host, Inventory
from itop_tui.domain.selectors import SelectorError, host_text, select_hosts
from itop_tui.screens.store_follow import follow_store
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.context import INVENTORY_FILE, OperatorRequired, Services
from itop_tui.services.store_watch import StoreWatch
from itop_tui.widgets.filter_input import FilterInput
from itop_tui.widgets.group_tree import GroupTree, TreeEntry, build_tree_entries
from itop_tui.widgets.host_detail import HostDetail
from itop_tui.widgets.host_table import COLUMNS, Clock, HostRow, HostTable, host_row
from itop_tui.widgets.pane_tabs import PaneTabs
from itop_tui.widgets.production_banner import ProductionBanner

if TYPE_CHECKING:
    # Dialogs and operations are imported when first used: the pane is the
    # first thing itop shows, and every import before it delays that.
    from itop_tui.ops.discovery import DiscoveryResult
    from itop_tui.screens.import_dialog import ImportOutcome
    from itop_tui.screens.run_dialog import RunOutcome
    from itop_tui.services.transport import HostKeyUnknown

Targets = Callable[[list[Host]], None]

DETAIL_DELAY = 0.08
"""Seconds the cursor must rest before the detail panel is redrawn.

Redrawing the panel costs about 4 KB of terminal output; holding an arrow
key down would otherwise send that for every row passed, which a slow SSH
link feels."""


@dataclass(frozen=True)
class FilterResult:
    """Which hosts a filter text picks (by name, in inventory order), and how the
    text was read: ``all`` (blank), ``selector`` or ``text``."""

    names: list[str]
    mode: str


def match_filter(
    inventory: Inventory,
    haystacks: dict[str, str],
    text: str,
    candidates: Iterable[str] | None = None,
) -> FilterResult:
    """Apply the filter box's ``text`` to ``inventory``.

    As ``filter_hosts`` in the selectors module: a selector that picks hosts
    is used as a selector; anything else (a plain word that names no group
    or host, text that does not parse) matches hosts whose text contains
    every word. ``haystacks`` holds that text per host (lower case), computed
    once per load; ``candidates``, when given, are the only hosts the text
    can match (the result of a shorter text it extends).
    """
    text = text.strip()
    if not text:
        return FilterResult(list(inventory.hosts), "all")
    try:
        selected = select_hosts(inventory, text)
    except SelectorError:
        selected = []
    if selected:
        return FilterResult([h.name for h in selected], "selector")
    words = text.lower().split()
    pool = haystacks.keys() if candidates is None else candidates
    names = [n for n in pool if all(w in haystacks[n] for w in words)]
    return FilterResult(names, "text")


class HostFilter:
    """:func:`match_filter` over one inventory snapshot, remembering recent texts.

    Typing narrows: when the new text extends one whose free-text result is
    known, only that result's hosts are searched (10,000, then 1,000, then
    100). Erasing goes back to texts already seen, which are not computed
    again.
    """

    MEMORY = 64
    """Texts remembered (the longest queries are typed and erased one key at a time)."""

    def __init__(self, inventory: Inventory, haystacks: dict[str, str]) -> None:
        """Filter ``inventory``; ``haystacks`` is its lower-case search text per host."""
        self.inventory = inventory
        self.haystacks = haystacks
        self._results: OrderedDict[str, FilterResult] = OrderedDict()

    def match(self, text: str) -> FilterResult:
        """What ``text`` picks, as :func:`match_filter` would."""
        key = text.strip()
        known = self._results.get(key)
        if known is not None:
            self._results.move_to_end(key)
            return known
        narrower = [
            (len(shorter), result)
            for shorter, result in self._results.items()
            if result.mode == "text" and key.lower().startswith(shorter.lower())
        ]
        candidates = max(narrower, key=lambda pair: pair[0])[1].names if narrower else None
        result = match_filter(self.inventory, self.haystacks, key, candidates)
        self._results[key] = result
        if len(self._results) > self.MEMORY:
            self._results.popitem(last=False)
        return result


class InventoryScreen(ReportsWorkerErrors, Screen[None]):
    """Hosts with a group tree, a filter, a detail panel and actions by key."""

    TITLE = "Inventory"
    AUTO_FOCUS = "HostTable"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("d", "discover", "Discover"),
        Binding("r", "run", "Run"),
        Binding("a", "add_host", "Add"),
        Binding("e", "edit_host", "Edit"),
        Binding("i", "import_file", "Import"),
        Binding("t", "trust_keys", "Trust keys"),
        Binding("f5", "reload", "Reload", show=False),
        Binding("escape", "escape", "Cancel / show all", show=False),
    ]

    AGES_REFRESH_SECONDS: ClassVar[float] = 30.0
    """Seconds between two recomputations of the "Last seen" ages while the pane is on top."""

    class AgesRefreshed(Message):
        """The rows of ``inventory`` computed again at a later "now" (the ages moved)."""

        def __init__(self, inventory: Inventory, rows: list[HostRow]) -> None:
            super().__init__()
            self.inventory = inventory
            self.rows = rows

    class InventoryLoaded(Message):
        """A fresh inventory snapshot, with what the widgets need precomputed.

        Bubbles to the app, which keeps the snapshot for the command palette.
        """

        def __init__(
            self,
            inventory: Inventory,
            rows: list[HostRow],
            tree: list[TreeEntry],
            haystacks: dict[str, str],
            focus: str | None,
        ) -> None:
            super().__init__()
            self.inventory = inventory
            self.rows = rows
            self.tree = tree
            self.haystacks = haystacks
            self.focus = focus

    class DiscoveryProgress(Message):
        """One host's discovery finished."""

        def __init__(self, result: DiscoveryResult) -> None:
            super().__init__()
            self.result = result

    class DiscoveryEnded(Message):
        """A discovery finished or was cancelled."""

        def __init__(
            self,
            results: list[DiscoveryResult],
            unknown_keys: dict[str, HostKeyUnknown],
            warnings: list[str],
            cancelled: bool,
        ) -> None:
            super().__init__()
            self.results = results
            self.unknown_keys = unknown_keys
            self.warnings = warnings
            self.cancelled = cancelled

    def __init__(self, services: Services, clock: Clock | None = None) -> None:
        """Show ``services``' inventory; ``clock`` gives "now" for ages (tests fix it)."""
        super().__init__()
        self.services = services
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.inventory: Inventory | None = None
        self.haystacks: dict[str, str] = {}
        self.host_filter: HostFilter | None = None
        self.tree_selector = "all"
        self.tree_label = "All hosts"
        self.tree_names: set[str] | None = None
        self.filter_result = FilterResult([], "all")
        self.pending_keys: dict[str, HostKeyUnknown] = {}
        self.operation: Worker[None] | None = None
        self._discovered = 0
        self._detail_timer: Timer | None = None
        self._detail_host: Host | None = None
        self._status_text = ""
        self.store_watch = StoreWatch.in_data_dir(services.settings.data_dir, INVENTORY_FILE)
        """The inventory file as last read: another itop's writes show up by themselves."""

    # -- layout -----------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Tree on the left; filter, table, status and detail on the right."""
        yield Header(icon="≡")
        yield PaneTabs()
        with Horizontal(id="inventory-body"):
            yield GroupTree(id="group-tree")
            with Vertical(id="inventory-main"):
                yield FilterInput(id="filter")
                yield ProductionBanner(id="production-banner")
                yield HostTable(id="hosts", clock=self.clock)
                yield Static("Loading the inventory…", id="inventory-status", markup=False)
                yield HostDetail(id="host-detail")
        with Horizontal(id="operation"):
            yield Label("", id="operation-label", markup=False)
            yield ProgressBar(id="operation-progress", show_eta=False)
        yield Footer()

    def on_mount(self) -> None:
        """Start loading the inventory."""
        self.query_one("#operation").display = False
        self.load_inventory()
        follow_store(self, self.store_watch, self.action_reload)
        self.set_interval(self.AGES_REFRESH_SECONDS, self._refresh_ages, name="ages")

    def _refresh_ages(self) -> None:
        if self.is_active and self.inventory is not None:
            self._compute_ages(self.inventory)

    @work(thread=True, exclusive=True, exit_on_error=False, group="ages",
          description="Refresh the ages")
    def _compute_ages(self, inventory: Inventory) -> None:
        now = self.clock()
        self.post_message(self.AgesRefreshed(inventory, [host_row(h, now) for h in inventory.hosts.values()]))

    def on_inventory_screen_ages_refreshed(self, message: AgesRefreshed) -> None:
        """Repaint the cells whose age changed (a reload meanwhile made these rows old)."""
        if message.inventory is self.inventory:
            self.table.update_rows(message.rows)

    @property
    def table(self) -> HostTable:
        """The host table."""
        return self.query_one("#hosts", HostTable)

    # -- loading ----------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load", description="Load inventory")
    def load_inventory(self, focus: str | None = None) -> None:
        """Read the inventory and precompute rows, tree and search text (in a thread)."""
        self.store_watch.mark()
        inventory = self.services.inventory.load()
        now = self.clock()
        rows = [host_row(h, now) for h in inventory.hosts.values()]
        tree = build_tree_entries(inventory)
        haystacks = {name: host_text(h) for name, h in inventory.hosts.items()}
        self.post_message(self.InventoryLoaded(inventory, rows, tree, haystacks, focus))

    def on_inventory_screen_inventory_loaded(self, message: InventoryLoaded) -> None:
        """Show the snapshot: rows, tree, then the current filters on top."""
        self.inventory = message.inventory
        self.haystacks = message.haystacks
        self.host_filter = HostFilter(message.inventory, message.haystacks)
        self.query_one(GroupTree).show_entries(message.tree)
        if self.tree_selector != "all":
            self._select_tree(self.tree_selector, self.tree_label)
        self.table.set_rows(message.rows)
        self._refilter()
        if message.focus:
            self.focus_host(message.focus)

    def action_reload(self) -> None:
        """Read the inventory again (it may have been changed by another itop)."""
        host = self.table.cursor_host
        self.load_inventory(host.name if host else None)

    # -- filtering --------------------------------------------------------

    def _select_tree(self, selector: str, label: str) -> None:
        assert self.inventory is not None
        self.tree_selector = selector
        self.tree_label = label
        if selector == "all":
            self.tree_names = None
            return
        try:
            self.tree_names = {h.name for h in select_hosts(self.inventory, selector)}
        except SelectorError:
            # A group name that is not a valid selector: match it as a group.
            self.tree_names = self.inventory.group_members(selector)

    def _refilter(self) -> None:
        host_filter = self.host_filter
        if host_filter is None:
            return
        self.filter_result = host_filter.match(self.query_one(FilterInput).value)
        names = self.filter_result.names
        if self.tree_names is not None:
            names = [n for n in names if n in self.tree_names]
        self.table.show(names)
        # The filter's text is on the status line even when the rows stay the same.
        self._view_changed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._refilter()

    @on(GroupTree.SelectorChosen)
    def _tree_chosen(self, message: GroupTree.SelectorChosen) -> None:
        if self.inventory is None:
            return
        self._select_tree(message.selector, message.label)
        self._refilter()

    def action_focus_filter(self) -> None:
        """Put the cursor in the filter box (at once, not scheduled like ``focus()``)."""
        self.set_focus(self.query_one(FilterInput))

    def clear_filters(self) -> None:
        """Show every host: empty filter box, tree back on "All hosts"."""
        if self.inventory is not None:
            self._select_tree("all", "All hosts")
        filter_input = self.query_one(FilterInput)
        with self.prevent(Input.Changed):
            filter_input.value = ""
        self._refilter()

    def focus_host(self, name: str) -> None:
        """Put the table's cursor on host ``name``, clearing filters that hide it."""
        table = self.table
        if not table.move_to_host(name):
            self.clear_filters()
            table.move_to_host(name)
        self.set_focus(table)

    # -- status and detail ------------------------------------------------

    @on(HostTable.CursorMoved)
    def _cursor_moved(self, message: HostTable.CursorMoved) -> None:
        self._detail_host = message.host
        self._show_production()
        if self._detail_timer is not None:
            self._detail_timer.stop()
            self._detail_timer = None
        if message.follows_view:
            # A filter moved the cursor: one frame shows the rows and their detail.
            self._show_detail()
        else:
            self._detail_timer = self.set_timer(DETAIL_DELAY, self._show_detail)

    def _show_detail(self) -> None:
        self._detail_timer = None
        self.query_one(HostDetail).show_host(self._detail_host)

    @on(HostTable.HostChosen)
    def _host_chosen(self) -> None:
        self.query_one(HostDetail).focus()

    def _show_production(self) -> None:
        """The banner follows the hosts an action would target: marked ones, else the cursor's."""
        table = self.table
        targets: list[Host | None] = [*table.marked_hosts()] or [table.cursor_host]
        open_changes = getattr(self.app, "open_changes", [])
        self.query_one(ProductionBanner).show_for(targets, open_changes)

    @on(HostTable.ViewChanged)
    def _view_changed(self) -> None:
        self._show_production()
        text = self.status_text()
        if text != self._status_text:
            self._status_text = text
            # One fixed-height line: no layout pass, so only this line is repainted.
            self.query_one("#inventory-status", Static).update(text, layout=False)

    def status_text(self) -> str:
        """``12 of 340 hosts · group web · selector web:&prod · 2 marked · sort name ▲``."""
        table = self.table
        if self.inventory is None:
            return "Loading the inventory…"
        parts = [f"{table.row_count:,} of {table.total_count:,} hosts"]
        if self.tree_selector != "all":
            parts.append(f"tree: {self.tree_label}")
        text = self.query_one(FilterInput).value.strip()
        if text:
            kind = "selector" if self.filter_result.mode == "selector" else "text"
            parts.append(f"{kind}: {text}")
        if table.marked:
            parts.append(f"{len(table.marked)} marked")
        label = next(c.label for c in COLUMNS if c.key == table.sort_column)
        parts.append(f"sort: {label} {table.sort_arrow()}")
        if self.pending_keys:
            parts.append(f"{self._pending_key_count()} unknown host keys (t)")
        if self.services.read_only:
            parts.append("READ-ONLY")
        return " · ".join(parts)

    # -- choosing targets -------------------------------------------------

    def _blocked(self, what: str) -> bool:
        """True (with a notice) when read-only mode forbids ``what``."""
        if self.services.read_only:
            self.app.notify(
                f"Read-only mode: {what} is disabled.",
                title="READ-ONLY",
                severity="warning",
                markup=False,
            )
            return True
        return False

    def _not_operator(self, what: str) -> bool:
        """True (with the reason as a notice) when only an operator may ``what``:
        a trainee acts on hosts through procedure runs, not from this pane."""
        try:
            self.services.require_operator(what)
        except OperatorRequired as exc:
            self.app.notify(str(exc), title="Not allowed", severity="warning", markup=False)
            return True
        return False

    def with_targets(self, verb: str, then: Targets) -> None:
        """Call ``then`` with the hosts to act on.

        Marked hosts when there are any; otherwise the cursor host, or, when
        more hosts are shown, whichever of the two the user picks.
        """
        table = self.table
        marked = table.marked_hosts()
        if marked:
            then(marked)
            return
        cursor = table.cursor_host
        if cursor is None:
            self.app.notify(f"No host to {verb}.", severity="warning", markup=False)
            return
        shown = table.visible_hosts
        if len(shown) <= 1:
            then([cursor])
            return

        def chosen(choice: str | None) -> None:
            if choice == "cursor":
                then([cursor])
            elif choice == "shown":
                then(shown)

        from itop_tui.screens.confirm import ChoiceDialog

        self.app.push_screen(
            ChoiceDialog(
                f"{verb.capitalize()} which hosts? (space marks hosts)",
                [(f"Only {cursor.name}", "cursor"), (f"All {len(shown):,} shown hosts", "shown")],
            ),
            chosen,
        )

    # -- discovery --------------------------------------------------------

    def action_discover(self) -> None:
        """Discover facts of the selection."""
        if self._blocked("discovering facts"):
            return
        if self.operation is not None and self.operation.is_running:
            self.app.notify("An operation is running; Esc cancels it.", markup=False)
            return
        self.with_targets("discover facts of", self._start_discovery)

    def _start_discovery(self, hosts: list[Host]) -> None:
        self._discovered = 0
        self._show_operation(f"Discovering facts of {len(hosts)} hosts (Esc cancels)", len(hosts))
        self.operation = self._discover(hosts)

    @work(exclusive=True, exit_on_error=False, group="operation", description="Discover facts")
    async def _discover(self, hosts: list[Host]) -> None:
        from itop_tui.ops.discovery import FactDiscovery

        discovery = FactDiscovery(self.services)

        def finished(result: DiscoveryResult) -> None:
            self.post_message(self.DiscoveryProgress(result))

        try:
            results = await discovery.discover(hosts, on_result=finished)
        except asyncio.CancelledError:
            self.post_message(
                self.DiscoveryEnded([], dict(discovery.unknown_keys), discovery.warnings, True)
            )
            raise
        self.post_message(
            self.DiscoveryEnded(results, dict(discovery.unknown_keys), discovery.warnings, False)
        )

    def on_inventory_screen_discovery_progress(self, message: DiscoveryProgress) -> None:
        """Advance the progress bar."""
        self._discovered += 1
        self.query_one("#operation-progress", ProgressBar).advance(1)

    def on_inventory_screen_discovery_ended(self, message: DiscoveryEnded) -> None:
        """Summarize, remember unknown host keys, and reload to show the new facts."""
        self._hide_operation()
        self.pending_keys.update(message.unknown_keys)
        ok = [r for r in message.results if r.ok]
        failed = [r for r in message.results if not r.ok]
        if message.cancelled:
            summary = f"Discovery cancelled after {self._discovered} hosts."
        else:
            summary = f"Facts of {len(ok)} host{'s' if len(ok) != 1 else ''} stored."
        if failed:
            summary += f" {len(failed)} failed: " + "; ".join(
                f"{r.host}: {r.error}" for r in failed[:3]
            )
        if message.unknown_keys:
            summary += " Press t to review unknown host keys."
        self.app.notify(
            summary, severity="warning" if failed or message.cancelled else "information",
            timeout=10, markup=False,
        )
        for warning in message.warnings:
            self.app.notify(warning, severity="warning", markup=False)
        self.action_reload()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed operation (reported by the mixin) must not leave its progress bar
        up, nor a failed load its "Loading" line."""
        if event.state is not WorkerState.ERROR:
            return
        if event.worker is self.operation:
            self._hide_operation()
        elif event.worker.group == "load" and self.inventory is None:
            self._status_text = "Could not load the inventory (see the notice). F5 tries again."
            self.query_one("#inventory-status", Static).update(self._status_text, layout=False)

    def _show_operation(self, label: str, total: int) -> None:
        self.query_one("#operation-label", Label).update(label)
        self.query_one("#operation-progress", ProgressBar).update(total=total, progress=0)
        self.query_one("#operation").display = True

    def _hide_operation(self) -> None:
        self.query_one("#operation").display = False

    def action_escape(self) -> None:
        """Cancel a running operation; otherwise clear marks, then filters."""
        if self.operation is not None and self.operation.is_running:
            self.operation.cancel()
            self.app.notify("Cancelling…", markup=False)
        elif self.table.marked:
            self.table.action_unmark_all()
        else:
            self.clear_filters()

    # -- run, add, edit, import, trust ------------------------------------

    def action_run(self) -> None:
        """Run a command on the selection."""
        if self._blocked("running commands") or self._not_operator("run commands"):
            return
        self.with_targets("run a command on", self._open_run)

    def _open_run(self, hosts: list[Host]) -> None:
        def closed(outcome: RunOutcome | None) -> None:
            if outcome is None:
                return
            self.pending_keys.update(outcome.unknown_keys)
            if outcome.results:
                self.action_reload()  # last_seen changed
            self._view_changed()

        from itop_tui.screens.run_dialog import RunDialog

        self.app.push_screen(RunDialog(self.services, hosts), closed)

    def action_add_host(self) -> None:
        """Add a host with a form."""
        if self._blocked("adding hosts") or self._not_operator("add hosts"):
            return
        from itop_tui.screens.host_form import HostForm

        self.app.push_screen(HostForm(self.services), self._host_saved)

    def action_edit_host(self) -> None:
        """Edit the cursor host with a form."""
        if self._blocked("editing hosts") or self._not_operator("edit hosts"):
            return
        host = self.table.cursor_host
        if host is None:
            self.app.notify("No host to edit.", severity="warning", markup=False)
            return
        from itop_tui.screens.host_form import HostForm

        self.app.push_screen(HostForm(self.services, host), self._host_saved)

    def _host_saved(self, host: Host | None) -> None:
        if host is not None:
            self.app.notify(f"Saved {host.name}.", markup=False)
            self.load_inventory(host.name)

    def action_import_file(self) -> None:
        """Import hosts from a file."""
        if self._blocked("importing") or self._not_operator("import hosts"):
            return

        def closed(outcome: ImportOutcome | None) -> None:
            if outcome is not None:
                self.action_reload()

        from itop_tui.screens.import_dialog import ImportDialog

        self.app.push_screen(ImportDialog(self.services), closed)

    def _pending_key_count(self) -> int:
        """Distinct unknown keys waiting: one per host:port and key, however many hosts met it."""
        return len({_key_identity(u) for u in self.pending_keys.values()})

    def _drop_known_keys(self) -> None:
        """Forget waiting keys that are trusted by now (in this pass, or by ``itop trust``)."""
        from itop_tui.services.transport import TransportError

        known_hosts = self.services.transports.known_hosts
        for name, unknown in list(self.pending_keys.items()):
            try:
                status = known_hosts.check(unknown.key_host, unknown.port, unknown.key_data)
            except (OSError, TransportError) as exc:
                self.app.notify(f"Cannot read the known hosts: {exc}", severity="error",
                                markup=False)
                return
            if status == "known":
                del self.pending_keys[name]

    def action_trust_keys(self) -> None:
        """Ask, one key at a time, whether to trust the unknown host keys met so far.

        Jump hosts' keys come first: trusting one lets the hosts behind it be
        reached, whose own keys are then read and asked about. One answer
        covers every host that met the same key at the same host:port.
        """
        self._drop_known_keys()
        self._view_changed()
        if not self.pending_keys:
            self.app.notify(
                "No unknown host keys waiting. They are collected when a run or a "
                "discovery meets a host whose key itop does not know.",
                markup=False,
            )
            return
        if self._blocked("trusting host keys") or self._not_operator("trust host keys"):
            return
        name, unknown = next(
            ((n, u) for n, u in self.pending_keys.items() if u.jump_for is not None),
            next(iter(self.pending_keys.items())),
        )
        identity = _key_identity(unknown)

        def answered(trusted: bool | None) -> None:
            same = [n for n, u in self.pending_keys.items() if _key_identity(u) == identity]
            behind_hop = [n for n in same if self.pending_keys[n].jump_for is not None]
            for other in same:
                del self.pending_keys[other]
            self._view_changed()
            if trusted and behind_hop:
                self._read_keys_behind_hop(behind_hop)
            elif self.pending_keys:
                self.action_trust_keys()

        from itop_tui.screens.trust_dialog import TrustDialog

        self.app.push_screen(TrustDialog(self.services, name, unknown), answered)

    @work(exclusive=True, exit_on_error=False, group="trust-read", description="Read host keys")
    async def _read_keys_behind_hop(self, names: list[str]) -> None:
        """Read the own keys of ``names`` through their newly trusted jump host, then go on asking.

        Unknown ones (or a further hop's) join the waiting keys; known ones
        are not asked about.
        """
        from itop_tui.services.transport import HostKeyChanged, HostKeyUnknown, TransportError

        pool = self.services.transports
        hosts = self.inventory.hosts if self.inventory is not None else {}
        for name in names:
            host = hosts.get(name)
            if host is None:
                continue
            try:
                found = await pool.fetch_host_key(host)
                status = pool.known_hosts.check(found.host, found.port, found.key_data)
            except HostKeyUnknown as hop:
                self.pending_keys[name] = HostKeyUnknown(
                    hop.host, hop.port, hop.fingerprint, hop.key_data,
                    key_host=hop.key_host, jump_for=hop.jump_for or name,
                )
                continue
            except (TransportError, OSError) as exc:
                self.app.notify(
                    f"Could not read the host key of {name}: {exc}. Discover it again to see it.",
                    severity="warning", markup=False,
                )
                continue
            if status == "unknown":
                self.pending_keys[name] = HostKeyUnknown(
                    name, found.port, found.fingerprint, found.key_data, key_host=found.host
                )
            elif isinstance(status, tuple):
                changed = HostKeyChanged(name, found.port, status[1], found.fingerprint)
                self.app.notify(str(changed), severity="error", timeout=20, markup=False)
        self._view_changed()
        if self.pending_keys:
            self.action_trust_keys()


def _key_identity(unknown: HostKeyUnknown) -> tuple[str, int, str]:
    """What makes a key distinct: where it was presented and the key itself (comment dropped)."""
    return (unknown.key_host or unknown.host, unknown.port, " ".join(unknown.key_data.split()[:2]))
