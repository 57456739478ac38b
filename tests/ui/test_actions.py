"""Pilot tests of the Inventory pane's actions against real services.

The run and discovery tests use this machine through the local transport
(``address="local"``); nothing leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

from perf_fixtures import wait_until
from rich.text import Text
from textual.widgets import DataTable, Static
from ui_fixtures import fixed_clock, fleet, fleet_groups, open_services, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.screens.confirm import ChoiceDialog
from itop_tui.screens.host_form import HostForm
from itop_tui.screens.import_dialog import ImportDialog
from itop_tui.screens.inventory import InventoryScreen
from itop_tui.screens.result_view import ResultView
from itop_tui.screens.run_dialog import RunDialog
from itop_tui.services.context import Services
from itop_tui.widgets.host_table import HostTable
from itop_tui.widgets.output_log import OutputLog

SIZE = (160, 48)


def local_services(tmp_path: Path, *, read_only: bool = False, **host: object) -> Services:
    fields: dict[str, object] = {"name": "here", "address": "local", **host}
    return open_services(tmp_path / "data", [Host(**fields)], read_only=read_only)  # type: ignore[arg-type]


def cell_text(table: DataTable[object], row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


async def test_run_dialog_runs_on_local_host_and_audits(tmp_path: Path) -> None:
    services = local_services(tmp_path)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RunDialog)
        await pilot.press(*"echo hello", "enter")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RunDialog)
        table = dialog.query_one("#run-results", DataTable)
        assert cell_text(table, "here", "state") == "ok"
        assert cell_text(table, "here", "exit") == "0"
        assert cell_text(table, "here", "line") == "hello"
        assert "1/1 done" in render_text(dialog.query_one("#run-summary", Static).content)  # type: ignore[arg-type]
        # Enter on the result shows the full output.
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ResultView)
        assert app.screen.query_one(OutputLog).lines == ["hello"]
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
    runs = [e for e in services.audit.events() if e.action == "run"]
    assert len(runs) == 1
    assert runs[0].target == "here" and runs[0].origin == "tui" and runs[0].result == "ok"
    assert runs[0].detail["command"] == "echo hello" and runs[0].detail["exit_status"] == 0
    stored = services.inventory.get_host("here")
    assert stored is not None and stored.last_seen is not None


async def test_run_dialog_validates_and_cancels(tmp_path: Path) -> None:
    services = local_services(tmp_path)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, RunDialog)
        await pilot.press("enter")  # no command yet
        assert "command:" in str(dialog.query_one("#run-error", Static).content)
        await pilot.press(*"sleep 30", "enter")
        await wait_until(pilot, lambda: dialog.running, what="the run to start")
        await pilot.press("ctrl+c")  # cancels the run (as Escape does), does not close
        await settle(pilot)
        assert not dialog.running
        assert app.screen is dialog
        table = dialog.query_one("#run-results", DataTable)
        assert cell_text(table, "here", "state") == "cancelled"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, InventoryScreen)
    results = [e.result for e in services.audit.events() if e.action == "run"]
    assert results == ["cancelled"]


async def test_production_run_without_a_change_is_refused_at_once(tmp_path: Path) -> None:
    services = local_services(tmp_path, status="production")
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r", *"true", "enter")
        await settle(pilot)
        # No change covers "here": no "Run on production?" question, the gate's reason at once.
        dialog = app.screen
        assert isinstance(dialog, RunDialog) and not dialog.running
        error = render_text(dialog.query_one("#run-error", Static).content)  # type: ignore[arg-type]
        assert error.startswith("Refused by the change gate: here is a production host"), error
    assert not [e for e in services.audit.events() if e.action == "run"]


async def test_read_only_blocks_mutating_actions(tmp_path: Path) -> None:
    services = local_services(tmp_path, read_only=True)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert "READ-ONLY" in str(app.format_title(app.title, app.sub_title))
        for key in ("r", "a", "e", "i", "d"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, InventoryScreen), key
        screen = app.screen
        assert isinstance(screen, InventoryScreen)
        assert "READ-ONLY" in screen.status_text()
        toasts = [render_text(t.render()) for t in app.screen.query("Toast")]  # type: ignore[arg-type]
        assert sum("Read-only mode" in t for t in toasts) == 5, toasts
    assert not [e for e in services.audit.events() if e.action == "run"]


async def test_add_host_form_shows_errors_by_field(tmp_path: Path) -> None:
    services = open_services(tmp_path / "data", fleet(), fleet_groups())
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, HostForm)
        form.query_one("#field-name").value = "new host"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "non-empty word" in str(form.query_one("#error-name", Static).content)
        form.query_one("#field-name").value = "web01"  # type: ignore[attr-defined]
        form.query_one("#field-port").value = "99999"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert str(form.query_one("#error-name", Static).content) == ""
        assert "1-65535" in str(form.query_one("#error-port", Static).content)
        assert app.focused is form.query_one("#field-port")
        form.query_one("#field-port").value = "2200"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot)
        # web01 exists: the store side refuses, shown at the name field.
        assert isinstance(app.screen, HostForm)
        assert "exists already" in str(form.query_one("#error-name", Static).content)
        form.query_one("#field-name").value = "web07"  # type: ignore[attr-defined]
        form.query_one("#field-groups").value = "web, stage"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        table = app.screen.query_one(HostTable)
        assert table.cursor_host is not None and table.cursor_host.name == "web07"
    stored = services.inventory.get_host("web07")
    assert stored is not None and stored.port == 2200 and stored.groups == ["web", "stage"]
    assert [e.target for e in services.audit.events() if e.action == "inventory.add"][-1] == "web07"


async def test_edit_host_saves_changed_fields(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"cache01", "enter", "e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, HostForm) and form.editing
        assert form.query_one("#field-name").disabled
        form.query_one("#field-status").value = "production"  # type: ignore[attr-defined]
        form.query_one("#field-notes").value = "moved to prod"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
    stored = fleet_services.inventory.get_host("cache01")
    assert stored is not None and stored.status == "production" and stored.notes == "moved to prod"
    edits = [e for e in fleet_services.audit.events() if e.action == "inventory.set"]
    assert edits[-1].target == "cache01"
    # What it became and what it was, as the CLI records an edit.
    assert edits[-1].detail == {"notes": "moved to prod", "status": "production",
                                "previous": {"notes": "", "status": "staging"}}


async def test_import_dialog_shows_counts_then_file_line_errors(tmp_path: Path) -> None:
    services = local_services(tmp_path)
    good = tmp_path / "hosts.csv"
    good.write_text("name,address,groups\nweb01,127.0.9.1,web\nweb02,127.0.9.2,web\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,address,port\nweb03,127.0.9.3,22\nweb04,127.0.9.4,notaport\n")
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ImportDialog)
        path_input = dialog.query_one("#import-path")
        path_input.value = str(good)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)
        result = str(dialog.query_one("#import-result", Static).content)
        assert "2 added, 0 updated" in result
        await pilot.press("enter")  # importing again updates, never duplicates
        await settle(pilot)
        assert "0 added" in str(dialog.query_one("#import-result", Static).content)
        path_input.value = str(bad)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot)
        error = str(dialog.query_one("#import-result", Static).content)
        assert error.startswith(f"{bad}:3:"), error
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        assert app.screen.query_one(HostTable).row_count == 3
    assert [e.action for e in services.audit.events()].count("inventory.import") == 2


async def test_discover_facts_of_local_host(tmp_path: Path) -> None:
    services = local_services(tmp_path)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        table = app.screen.query_one(HostTable)
        cpus = table.row_cells(0)[5]
        assert cpus.isdigit() and int(cpus) >= 1
        assert not app.screen.query_one("#operation").display
    stored = services.inventory.get_host("here")
    assert stored is not None and stored.facts.get("cpu_count") and stored.facts_at
    assert [e.action for e in services.audit.events()].count("discover") == 1


async def test_selection_choice_for_many_shown_hosts(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"web:&prod", "enter", "r")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("down", "enter")  # "All 3 shown hosts"
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, RunDialog)
        assert [h.name for h in dialog.hosts] == ["web01", "web02", "web03"]
