"""The group, tag and status tree beside the host table.

Each node carries a host selector (``all``, a group name, ``tag:X``,
``status:production``); choosing a node posts it so the screen can filter.
The tree's contents are computed by :func:`build_tree_entries`, which is plain
data work and safe to run in a thread worker.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from itop_tui.domain.models import HOST_STATUSES, Inventory


@dataclass
class TreeEntry:
    """One node of the tree: what it says, the selector it stands for, its children."""

    label: str
    selector: str | None
    count: int | None = None
    children: list[TreeEntry] = field(default_factory=list)


def _group_counts(inventory: Inventory) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Hosts per group (descendants included) and each group's child groups."""
    direct: dict[str, set[str]] = defaultdict(set)
    for host in inventory.hosts.values():
        for group in host.groups:
            direct[group].add(host.name)
    children = {name: list(group.children) for name, group in inventory.groups.items()}
    counts: dict[str, int] = {}
    for name in inventory.all_group_names():
        members: set[str] = set()
        for group in inventory.descendant_groups(name):
            members |= direct.get(group, set())
        counts[name] = len(members)
    return counts, children


def _group_entries(
    names: Iterable[str],
    counts: dict[str, int],
    children: dict[str, list[str]],
    path: tuple[str, ...] = (),
) -> list[TreeEntry]:
    entries = []
    for name in sorted(names):
        if name in path:  # a cycle in the group graph: show it once, stop there
            continue
        entries.append(
            TreeEntry(
                name,
                name,
                counts.get(name, 0),
                _group_entries(children.get(name, []), counts, children, (*path, name)),
            )
        )
    return entries


def build_tree_entries(inventory: Inventory) -> list[TreeEntry]:
    """The tree for ``inventory``: all hosts, groups (nested), tags, statuses.

    Groups appear at the top level unless some other group lists them as a
    child. ``all`` and ``ungrouped`` are Ansible's implicit groups and are
    shown as their own entries rather than as groups.
    """
    counts, children = _group_counts(inventory)
    names = inventory.all_group_names() - {"all", "ungrouped"}
    nested = {c for name in names for c in children.get(name, []) if c != name}
    top = names - nested
    entries = [TreeEntry("All hosts", "all", len(inventory.hosts))]
    ungrouped = sum(1 for h in inventory.hosts.values() if not h.groups)
    if top:
        entries.append(TreeEntry("Groups", None, None, _group_entries(top, counts, children)))
    tags: dict[str, int] = defaultdict(int)
    statuses: dict[str, int] = defaultdict(int)
    for host in inventory.hosts.values():
        for tag in host.tags:
            tags[tag] += 1
        statuses[host.status] += 1
    if tags:
        entries.append(
            TreeEntry(
                "Tags",
                None,
                None,
                [TreeEntry(tag, f"tag:{tag}", tags[tag]) for tag in sorted(tags)],
            )
        )
    ordered = [s for s in HOST_STATUSES if s in statuses] + sorted(
        s for s in statuses if s not in HOST_STATUSES
    )
    if ordered:
        entries.append(
            TreeEntry(
                "Status",
                None,
                None,
                [TreeEntry(s, f"status:{s}", statuses[s]) for s in ordered],
            )
        )
    if ungrouped:
        entries.append(TreeEntry("ungrouped", "ungrouped", ungrouped))
    return entries


class GroupTree(Tree[str]):
    """Groups, tags and statuses; Enter (or a click) on a node filters by it."""

    DEFAULT_CSS = """
    GroupTree {
        background: $surface;
    }
    """

    class SelectorChosen(Message):
        """A node was chosen.

        Attributes:
            selector: The node's host selector (``all`` for everything).
            label: The node's name as shown.
        """

        def __init__(self, tree: GroupTree, selector: str, label: str) -> None:
            super().__init__()
            self.tree = tree
            self.selector = selector
            self.label = label

        @property
        def control(self) -> GroupTree:
            """The tree that sent the message."""
            return self.tree

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """Create an empty tree; fill it with :meth:`show_entries`."""
        super().__init__("Inventory", name=name, id=id, classes=classes)
        self.show_root = False
        self.guide_depth = 2

    def show_entries(self, entries: list[TreeEntry]) -> None:
        """Replace the tree's contents with ``entries``; top-level sections open.

        The cursor stays on the line it was on (on the first line at first),
        so a reload does not throw the user back to the top.
        """
        line = max(0, self.cursor_line)
        self.clear()
        for entry in entries:
            self._add(self.root, entry, expand=True)
        self.root.expand()
        self.cursor_line = line

    def _add(self, parent: TreeNode[str], entry: TreeEntry, expand: bool = False) -> None:
        label = Text(entry.label)
        if entry.count is not None:
            label.append(f" {entry.count}", style="dim")
        if entry.children:
            node = parent.add(label, entry.selector, expand=expand)
            for child in entry.children:
                self._add(node, child)
        else:
            parent.add_leaf(label, entry.selector)

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        """Turn a chosen node that carries a selector into :class:`SelectorChosen`."""
        selector = event.node.data
        if selector is not None:
            event.stop()
            self.post_message(self.SelectorChosen(self, selector, str(event.node.label)))
