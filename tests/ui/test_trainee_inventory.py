"""Pilot tests: a trainee in the Inventory pane is told why a/e/i/r/t are refused.

The services are real (a temp data dir); the login ``tina`` is mapped to
``trainee`` in the settings. Nothing may be stored or run: the inventory,
the audit log and a mark file on this machine are checked afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Select, Static
from ui_fixtures import fixed_clock, open_services, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.screens.host_form import HostForm
from itop_tui.screens.import_dialog import ImportDialog
from itop_tui.screens.inventory import InventoryScreen
from itop_tui.services.context import Services
from itop_tui.settings import Settings

SIZE = (160, 48)
BECAUSE = "the trainee role runs procedures (trainee mode) and read-only commands"


def trainee_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("LOGNAME", "tina")
    monkeypatch.setenv("USER", "tina")
    data = tmp_path / "data"
    settings = Settings(data_dir=data, roles={"tina": "trainee"})
    services = open_services(data, [Host(name="here", address="local", status="production")],
                             settings=settings)
    services.actor = "tina"
    assert services.role == "trainee"
    return services


def toasts(app: ItopApp) -> list[str]:
    return [render_text(t.render()) for t in app.screen.query("Toast")]  # type: ignore[arg-type]


def stored_hosts(services: Services) -> dict[str, str]:
    return {h.name: h.status for h in services.inventory.load().hosts.values()}


async def test_trainee_gets_the_refusal_for_each_action(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = trainee_services(tmp_path, monkeypatch)
    before = len(list(services.audit.events()))  # the seeded machine's inventory.add
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        for key, what in (("r", "run commands"), ("a", "add hosts"), ("e", "edit hosts"),
                          ("i", "import hosts")):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, InventoryScreen), key
            shown = " ".join(" ".join(toasts(app)).split())
            assert f"cannot {what}: {BECAUSE}" in shown, (key, shown)
    assert stored_hosts(services) == {"here": "production"}
    assert len(list(services.audit.events())) == before


async def test_forms_refuse_a_trainee_even_when_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The save paths refuse too: the pane's check is not the only guard."""
    services = trainee_services(tmp_path, monkeypatch)
    hosts_file = tmp_path / "hosts.csv"
    hosts_file.write_text("name,address\nweb01,127.0.9.1\n")
    before = len(list(services.audit.events()))
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = HostForm(services, services.inventory.get_host("here"))
        app.push_screen(form)
        await settle(pilot)
        form.query_one("#field-status", Select).value = "development"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        error = " ".join(str(form.query_one("#error-name", Static).content).split())
        assert f"cannot edit hosts: {BECAUSE}" in error
        form.dismiss(None)
        await settle(pilot)

        dialog = ImportDialog(services, str(hosts_file))
        app.push_screen(dialog)
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        result = " ".join(str(dialog.query_one("#import-result", Static).content).split())
        assert f"cannot import hosts: {BECAUSE}" in result
    assert stored_hosts(services) == {"here": "production"}
    assert len(list(services.audit.events())) == before
