"""Snapshot tests: the Performance pane and the host drill-down, with fixed samples.

No monitor runs: a scripted source is fed the same samples every time, the
clock is fixed, and cursors do not blink. Update the stored SVGs after an
intended change with
``pytest tests/ui/test_performance_snapshots.py --snapshot-update`` and review them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from perf_fixtures import (
    BASE_TIME,
    SourceBox,
    feed_and_wait,
    fleet_history,
    fleet_states,
    open_performance,
    perf_app,
    scripted_factory,
    wait_until,
)
from textual.pilot import Pilot
from textual.widgets import Input
from ui_fixtures import fixed_clock, fleet, fleet_groups, open_services, settle

from itop_tui.app import ItopApp
from itop_tui.screens.host_drilldown import HostDrilldown
from itop_tui.services.problem_repo import ProblemRepository

SIZE = (160, 48)

SnapCompare = Callable[..., bool]


def make_app(tmp_path: Path, box: SourceBox) -> ItopApp:
    services = open_services(tmp_path / "data", fleet(), fleet_groups())
    repo = ProblemRepository.in_data_dir(services.settings.data_dir)
    problem, _ = repo.open("web01", "cpu_percent", "critical", BASE_TIME - 300, 97.0, 95.0)
    repo.open("db01", "mem_percent", "warning", BASE_TIME - 120, 91.0, 85.0)
    repo.acknowledge(problem.id, "bob", "rolling back release 2.3", at=BASE_TIME - 60)
    return perf_app(services, scripted_factory(box), fixed_clock)


async def fleet_shown(pilot: Pilot[Any], box: SourceBox) -> None:
    """The pane with the fixed fleet's samples, states and problems; steady cursors."""
    await settle(pilot)
    screen = await open_performance(pilot, box)
    await feed_and_wait(pilot, box["source"], [*fleet_history(), *fleet_states()])
    await wait_until(pilot, lambda: screen.problem_table.row_count == 2, what="problems")
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def test_performance_pane(snap_compare: SnapCompare, tmp_path: Path) -> None:
    box: SourceBox = {}

    async def run_before(pilot: Pilot[Any]) -> None:
        await fleet_shown(pilot, box)

    assert snap_compare(make_app(tmp_path, box), terminal_size=SIZE, run_before=run_before)


def test_host_drilldown(snap_compare: SnapCompare, tmp_path: Path) -> None:
    box: SourceBox = {}

    async def run_before(pilot: Pilot[Any]) -> None:
        await fleet_shown(pilot, box)
        await pilot.press("down", "down")  # web06, cache01, then web01
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HostDrilldown), what="drill")
        await pilot.pause(0.2)

    assert snap_compare(make_app(tmp_path, box), terminal_size=SIZE, run_before=run_before)
