"""Snapshot tests: the Inventory pane and the help screen, with fixed data and clock.

Update the stored SVGs after an intended change with
``pytest tests/ui/test_snapshots.py --snapshot-update`` and review them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from perf_fixtures import wait_until
from textual.pilot import Pilot
from textual.widgets import Input
from ui_fixtures import fixed_clock, fleet, fleet_groups, open_services, settle

from itop_tui.app import ItopApp
from itop_tui.widgets.host_detail import HostDetail
from itop_tui.widgets.host_table import HostTable

SIZE = (160, 48)

SnapCompare = Callable[..., bool]


def make_app(tmp_path: Path, *, read_only: bool = False) -> ItopApp:
    services = open_services(tmp_path / "data", fleet(), fleet_groups(), read_only=read_only)
    return ItopApp(services, clock=fixed_clock)


async def detail_follows(pilot: Pilot[Any]) -> None:
    """Wait until the detail panel shows the cursor host."""
    table = pilot.app.screen.query_one(HostTable)
    detail = pilot.app.screen.query_one(HostDetail)
    await wait_until(pilot, lambda: detail.host is not None and detail.host is table.cursor_host,
                     what="the detail panel")


async def loaded(pilot: Pilot[Any]) -> None:
    """Wait for the inventory and its detail panel; stop input cursors from blinking."""
    await settle(pilot)
    await detail_follows(pilot)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False


def test_inventory_pane(snap_compare: SnapCompare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=loaded)


def test_inventory_pane_filtered_with_marks(snap_compare: SnapCompare, tmp_path: Path) -> None:
    async def filter_and_mark(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("slash", *"prod", "enter", "space", "space", "S")
        await detail_follows(pilot)

    assert snap_compare(
        make_app(tmp_path, read_only=True), terminal_size=SIZE, run_before=filter_and_mark
    )


def test_help_screen(snap_compare: SnapCompare, tmp_path: Path) -> None:
    assert snap_compare(
        make_app(tmp_path), terminal_size=SIZE, run_before=loaded, press=["question_mark"]
    )
