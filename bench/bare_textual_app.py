"""The bare baseline of the TUI figures: a minimal Textual app showing and filtering a host table.

Header, a filter Input, a stock ``DataTable`` of ``--hosts`` generated hosts
(the same names, addresses, groups and tags as ``bench/run_tui.py``'s
inventory, built in memory: no store, no SSH library), Footer. ``/`` focuses
the filter; every change refills the table with the rows whose name,
address, groups or tags contain the text. Escape quits.

Run by ``bench/run_tui.py`` in the same pty, measured the same way as
``itop``; it imports nothing from itop.
"""

from __future__ import annotations

import argparse
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Input

STATUSES = ("production", "staging", "development", "retired")


def rows(count: int) -> list[tuple[str, str, str, str, str]]:
    """The generated hosts as table rows (name, address, groups, tags, status)."""
    return [
        (
            f"node{i:05d}",
            f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            f"rack{i % 100:02d},{'web' if i % 3 == 0 else 'app'}",
            f"zone{i % 7}",
            STATUSES[i % len(STATUSES)],
        )
        for i in range(count)
    ]


class BareTableApp(App[None]):
    """A host table with a filter box, and nothing else."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "quit", "Quit"),
    ]

    def __init__(self, count: int) -> None:
        super().__init__()
        self.rows = rows(count)
        self.animation_level = "none"

    def compose(self) -> ComposeResult:
        """Header, filter, table, footer."""
        yield Header()
        yield Input(placeholder="/ filter", id="filter")
        yield DataTable(id="hosts", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        """Fill the table and give it the focus."""
        table = self.query_one(DataTable)
        table.add_columns("name", "address", "groups", "tags", "status")
        table.add_rows(self.rows)
        table.focus()

    def action_focus_filter(self) -> None:
        """Move the cursor into the filter box."""
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Show only the rows containing the filter text."""
        text = event.value
        table = self.query_one(DataTable)
        table.clear()
        table.add_rows([r for r in self.rows if any(text in cell for cell in r[:4])])


def main() -> int:
    """Run the app on ``--hosts`` generated hosts."""
    parser = argparse.ArgumentParser(description="minimal Textual host table (benchmark baseline)")
    parser.add_argument("--hosts", type=int, default=100)
    args = parser.parse_args()
    BareTableApp(args.hosts).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
