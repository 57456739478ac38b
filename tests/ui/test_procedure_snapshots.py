"""Snapshot tests of the Procedures pane, the runs list, a run in progress and a replay.

The data is fixed: test procedures with a fixed import time, and run records
built with fixed times and outputs (nothing runs). Update the stored SVGs
after an intended change with
``pytest tests/ui/test_procedure_snapshots.py --snapshot-update`` and review them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procedure_fixtures import (
    DISK,
    SMALL,
    add_procedure,
    fixed_run,
    procedure_services,
)
from textual.pilot import Pilot
from textual.widgets import Input, Markdown
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.screens.procedure_run import ProcedureRunScreen
from itop_tui.screens.procedure_runs import ProcedureRunsScreen, ReplayScreen
from itop_tui.screens.procedures import ProceduresScreen

SIZE = (160, 48)

SnapCompare = Callable[..., bool]


def make_app(tmp_path: Path) -> ItopApp:
    hosts = [Host(name="web01", address="127.0.1.1"), Host(name="web02", address="127.0.1.2")]
    services = procedure_services(tmp_path, hosts)
    add_procedure(services, SMALL)
    add_procedure(services, DISK, fixed_time=True)
    fixed_run(services, finished=True)
    fixed_run(services, finished=False)
    return ItopApp(services, clock=fixed_clock)


async def steady(pilot: Pilot[Any]) -> None:
    """Let workers finish and markdown render; stop input cursors from blinking."""
    await settle(pilot)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        docs = list(pilot.app.screen.query(Markdown))
        if all(doc.children or not doc.source.strip() for doc in docs):
            break
        await pilot.pause(0.05)
    await pilot.pause(0.3)
    await settle(pilot)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False


async def to_runs(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("3")
    await steady(pilot)
    assert isinstance(pilot.app.screen, ProceduresScreen)
    await pilot.press("u")
    await steady(pilot)
    assert isinstance(pilot.app.screen, ProcedureRunsScreen)


def test_procedures_library(snap_compare: SnapCompare, tmp_path: Path) -> None:
    async def library(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("3")
        await pilot.press("down")  # the detail follows the cursor
        await steady(pilot)
        assert isinstance(pilot.app.screen, ProceduresScreen)

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=library)


def test_procedure_runs_list(snap_compare: SnapCompare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=to_runs)


def test_procedure_run_in_progress(snap_compare: SnapCompare, tmp_path: Path) -> None:
    async def open_waiting_run(pilot: Pilot[Any]) -> None:
        await to_runs(pilot)
        await pilot.press("enter")  # the newest run, waiting for a sign-off
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ProcedureRunScreen) and screen.status == "waiting"

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=open_waiting_run)


def test_procedure_run_replay(snap_compare: SnapCompare, tmp_path: Path) -> None:
    async def replay_finished(pilot: Pilot[Any]) -> None:
        await to_runs(pilot)
        await pilot.press("down", "v", "n")  # the finished run, its second step
        await steady(pilot)
        assert isinstance(pilot.app.screen, ReplayScreen)

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=replay_finished)
