"""Panes follow the store: what a second ``itop`` process writes shows up without a key.

The second process is the real CLI (``python -m itop_tui``) over the same data dir.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from change_fixtures import open_pane
from cli_helpers import ItopCli
from perf_fixtures import SourceBox, open_performance, perf_app, scripted_factory, wait_until
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.screens.inventory import InventoryScreen
from itop_tui.screens.procedures import ProceduresScreen
from itop_tui.screens.store_follow import STORE_POLL_SECONDS
from itop_tui.services.context import Services
from itop_tui.widgets.host_table import HostTable

SIZE = (160, 48)
# A poll, the read in a worker and the repaint, on a loaded 2-core machine.
FOLLOW_TIMEOUT = 10 * STORE_POLL_SECONDS


@pytest.fixture
def cli(tmp_path: Path, fleet_services: Services) -> ItopCli:
    """The CLI over the data dir of ``fleet_services``, as another OS process."""
    config = tmp_path / "itop.yaml"
    config.write_text("{}\n")
    return ItopCli(config, Path(fleet_services.settings.data_dir), user="bob")


def names(table: HostTable) -> list[str]:
    """The hosts the table shows, in order."""
    return [h.name for h in table.visible_hosts]


async def in_another_process(cli: ItopCli, *args: str) -> None:
    """Run ``itop ARGS`` to success without holding up the app."""
    await asyncio.to_thread(cli.ok, *args)


async def test_inventory_shows_a_host_added_elsewhere_and_keeps_the_cursor(
    fleet_services: Services, cli: ItopCli
) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, InventoryScreen)
        table = screen.query_one(HostTable)
        assert table.move_to_host("db02")
        await in_another_process(cli, "inventory", "add", "zz-new", "--address", "127.0.0.9",
                                 "--group", "web")
        await wait_until(pilot, lambda: "zz-new" in names(table),
                         FOLLOW_TIMEOUT, "the new host")
        assert table.cursor_host is not None and table.cursor_host.name == "db02"
        assert "11 of 11 hosts" in screen.status_text()
        # A host removed elsewhere goes too.
        await in_another_process(cli, "inventory", "remove", "zz-new")
        await wait_until(pilot, lambda: "zz-new" not in names(table),
                         FOLLOW_TIMEOUT, "the host gone")


async def test_a_pane_under_a_dialog_waits_until_it_is_shown(
    fleet_services: Services, cli: ItopCli
) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(HostTable)
        await pilot.press("question_mark")  # the help screen covers the pane
        await settle(pilot)
        await in_another_process(cli, "inventory", "add", "zz-new", "--address", "127.0.0.9")
        await asyncio.sleep(3 * STORE_POLL_SECONDS)
        assert "zz-new" not in names(table)
        await pilot.press("escape")
        await wait_until(pilot, lambda: "zz-new" in names(table),
                         FOLLOW_TIMEOUT, "the new host after the dialog closed")


async def test_changes_pane_shows_a_change_written_elsewhere(
    fleet_services: Services, cli: ItopCli
) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        assert screen.changes == []
        await in_another_process(cli, "change", "new", "--title", "Rotate the web certs",
                                 "--hosts", "web")
        await wait_until(pilot, lambda: bool(screen.changes), FOLLOW_TIMEOUT, "the new change")
        assert screen.changes is not None
        assert [c.title for c in screen.changes] == ["Rotate the web certs"]
        assert screen.changes[0].requester == "bob"


async def test_performance_pane_monitors_a_host_added_elsewhere(
    fleet_services: Services, cli: ItopCli
) -> None:
    box = SourceBox()
    app = perf_app(fleet_services, scripted_factory(box), fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_performance(pilot, box)
        source = box["source"]
        assert "zz-new" not in source.host_names
        await in_another_process(cli, "inventory", "add", "zz-new", "--address", "127.0.0.9")
        await wait_until(pilot, lambda: "zz-new" in source.host_names, FOLLOW_TIMEOUT,
                         "the monitor told of the new host")
        await wait_until(pilot, lambda: "zz-new" in screen.hosts, FOLLOW_TIMEOUT, "its row")


async def test_procedures_pane_shows_a_procedure_imported_elsewhere(
    tmp_path: Path, fleet_services: Services, cli: ItopCli
) -> None:
    source = tmp_path / "disk.yaml"
    source.write_text(
        "id: disk-look\ntitle: Look at the disks\nversion: '1'\n"
        "steps:\n  - id: df\n    title: Free space\n    kind: check\n    command: df -h\n"
    )
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ProceduresScreen)
        before = {p.id for p in screen.procedures or []}
        assert "disk-look" not in before
        await in_another_process(cli, "procedure", "import", str(source))
        await wait_until(pilot, lambda: "disk-look" in {p.id for p in screen.procedures or []},
                         FOLLOW_TIMEOUT, "the imported procedure")
