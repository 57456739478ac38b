"""Snapshot tests of the Changes pane and of a change in detail.

The data is fixed: changes written and moved by the real workflow under the
tests' fixed clock. Update the stored SVGs after an intended change with
``pytest tests/ui/test_change_snapshots.py --snapshot-update`` and review them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from change_fixtures import change_services, seed_changes
from textual.pilot import Pilot
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.screens.change_detail import ChangeDetailScreen
from itop_tui.screens.change_form import ChangeEditScreen
from itop_tui.screens.changes import ChangesScreen

SIZE = (160, 48)

SnapCompare = Callable[..., bool]


def make_app(tmp_path: Path) -> tuple[ItopApp, dict[str, str]]:
    alice = change_services(tmp_path)
    refs = seed_changes(tmp_path, alice)
    return ItopApp(alice, clock=fixed_clock), refs


def test_change_list(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, _refs = make_app(tmp_path)

    async def to_list(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ChangesScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_list)


def test_change_detail(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, refs = make_app(tmp_path)

    async def to_detail(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ChangesScreen) and screen.table.move_to(refs["scheduled"])
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ChangeDetailScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_detail)


def test_change_edit_form(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app, refs = make_app(tmp_path)

    async def to_form(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ChangesScreen) and screen.table.move_to(refs["draft"])
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ChangeEditScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=to_form)
