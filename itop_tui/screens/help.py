"""The help screen: every key binding of the current screen and the app.

Nothing here is written by hand: the list is read from the bindings Textual
has active on the screen beneath (focused widget, its parents, the screen,
the app) plus the ``BINDINGS`` of itop's own widgets on that screen, so it
cannot drift from what the keys really do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Static

from itop_tui.screens.worker_errors import ReportsWorkerErrors


@dataclass(frozen=True)
class HelpEntry:
    """One line of the help: the keys as shown, what they do, whether usable now."""

    keys: str
    description: str
    enabled: bool = True


@dataclass
class HelpSection:
    """The bindings of one node (the app, the screen, a widget)."""

    title: str
    entries: list[HelpEntry]


def describe_action(binding: Binding) -> str:
    """The binding's description, or its action made readable when it has none."""
    if binding.description:
        return binding.description
    action = binding.action.split(".")[-1].split("(")[0]
    return action.replace("_", " ").capitalize()


def node_title(node: DOMNode) -> str:
    """A section title for ``node``'s bindings."""
    if isinstance(node, App):
        return "Everywhere"
    if isinstance(node, Screen):
        return f"{node.title or type(node).__name__} pane"
    title = getattr(type(node), "HELP_TITLE", None)
    if isinstance(title, str):
        return title
    name = type(node).__name__
    return "".join(f" {c}" if c.isupper() else c for c in name).strip()


def class_bindings(node: DOMNode, *, own_only: bool) -> list[Binding]:
    """The bindings ``node``'s class declares, merged along its MRO as Textual does.

    With ``own_only``, only classes defined in itop itself count, which
    leaves out the generic editing and scrolling keys of Textual's widgets.
    """
    merged: dict[str, Binding] = {}
    for cls in reversed(type(node).__mro__):
        if not (isinstance(cls, type) and issubclass(cls, DOMNode)):
            continue
        if own_only and not cls.__module__.startswith("itop_tui"):
            continue
        declared: list[BindingType] = cls.__dict__.get("BINDINGS", [])
        for binding in Binding.make_bindings(declared):
            merged[binding.key] = binding
    return list(merged.values())


def collect_help(screen: Screen[object]) -> list[HelpSection]:
    """The help sections for ``screen``: its active bindings, then its widgets'.

    Sections are ordered widget first, then screen, then app, the order in
    which Textual tries them when a key is pressed.
    """
    app = screen.app
    by_node: dict[DOMNode, list[HelpEntry]] = {}
    for active in screen.active_bindings.values():
        entry = HelpEntry(
            app.get_key_display(active.binding), describe_action(active.binding), active.enabled
        )
        by_node.setdefault(active.node, []).append(entry)
    for widget in screen.query(Widget):
        if widget in by_node or not type(widget).__module__.startswith("itop_tui"):
            continue
        entries = [
            HelpEntry(app.get_key_display(b), describe_action(b))
            for b in class_bindings(widget, own_only=True)
        ]
        if entries:
            by_node[widget] = entries
    ordered = sorted(
        by_node.items(),
        key=lambda item: 2 if isinstance(item[0], App) else 1 if isinstance(item[0], Screen) else 0,
    )
    sections: list[HelpSection] = []
    seen_titles: set[str] = set()
    for node, entries in ordered:
        title = node_title(node)
        if title in seen_titles:  # two widgets of one class: list their keys once
            continue
        seen_titles.add(title)
        sections.append(HelpSection(title, _merge_keys(entries)))
    return sections


def _merge_keys(entries: list[HelpEntry]) -> list[HelpEntry]:
    """Join keys bound to the same action (``up`` and ``k``) into one line."""
    merged: dict[tuple[str, bool], list[str]] = {}
    for entry in entries:
        merged.setdefault((entry.description, entry.enabled), []).append(entry.keys)
    # One key shown twice (two keys sharing a key_display) is listed once.
    return [HelpEntry(", ".join(dict.fromkeys(keys)), desc, enabled)
            for (desc, enabled), keys in merged.items()]


def render_help(sections: list[HelpSection]) -> Table:
    """The sections as one table: a heading row per section, then key and action."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold", no_wrap=True, min_width=12)
    table.add_column()
    for index, section in enumerate(sections):
        if index:
            table.add_row("", "")
        table.add_row(Text(""), Text(section.title, style="bold underline"))
        for entry in section.entries:
            style = "" if entry.enabled else "dim"
            table.add_row(Text(entry.keys, style=style), Text(entry.description, style=style))
    return table


class HelpScreen(ReportsWorkerErrors, ModalScreen[None]):
    """Lists the key bindings of the screen it was opened from."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,f1", "dismiss_help", "Close help"),
    ]

    def __init__(self, sections: list[HelpSection]) -> None:
        """Show ``sections`` (see :func:`collect_help`)."""
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        """A framed, scrollable list of bindings."""
        with Vertical(id="help-dialog", classes="dialog"):
            yield Static("Keys", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(render_help(self.sections), id="help-table")
            yield Static("Esc, ? or F1 closes this help.", classes="dialog-hint")

    def action_dismiss_help(self) -> None:
        """Close the help."""
        self.dismiss(None)
