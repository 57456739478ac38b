"""Unknown host keys met by a run are offered for trust, with their fingerprint.

Uses the session's real sshd on 127.0.0.1 (``sshd`` fixture in tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import Button, DataTable, Static
from ui_fixtures import fixed_clock, open_services, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.screens.inventory import InventoryScreen
from itop_tui.screens.run_dialog import RunDialog
from itop_tui.screens.trust_dialog import TrustDialog

pytestmark = pytest.mark.integration

SIZE = (160, 48)


def state_of(dialog: RunDialog, host: str) -> str:
    value = dialog.query_one("#run-results", DataTable).get_cell(host, "state")
    return value.plain if isinstance(value, Text) else str(value)


async def run_true(pilot: object, app: ItopApp) -> RunDialog:
    await pilot.press("r", *"true", "enter")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    dialog = app.screen
    assert isinstance(dialog, RunDialog)
    return dialog


async def test_unknown_key_is_shown_and_trusted_on_yes(tmp_path: Path, sshd: object) -> None:
    settings = sshd.itop_settings(tmp_path / "data", config_files=[])  # type: ignore[attr-defined]
    (tmp_path / "data" / "known_hosts").write_text("")  # the key is unknown to itop
    host = Host(
        name="sshtest",
        address=sshd.host,  # type: ignore[attr-defined]
        port=sshd.port,  # type: ignore[attr-defined]
        user=sshd.user,  # type: ignore[attr-defined]
    )
    services = open_services(tmp_path / "data", [host], settings=settings)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        dialog = await run_true(pilot, app)
        assert state_of(dialog, "sshtest") == "error"
        assert "sshtest" in dialog.outcome.unknown_keys
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        assert "1 unknown host keys (t)" in app.screen.status_text()
        await pilot.press("t")
        await pilot.pause()
        trust = app.screen
        assert isinstance(trust, TrustDialog)
        question = render_text(trust.query_one(".dialog-text", Static).content)  # type: ignore[arg-type]
        assert sshd.host_key_fingerprint() in question  # type: ignore[attr-defined]
        assert f"port {sshd.port}" in question  # type: ignore[attr-defined]
        assert app.focused is trust.query_one("#no", Button)
        await pilot.press("y")  # no single-key yes: nothing happens
        assert app.screen is trust
        await pilot.press("tab", "enter")  # to "Trust this key", press it
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        known = (tmp_path / "data" / "known_hosts").read_text()
        assert sshd.host_key_data().split()[1] in known  # type: ignore[attr-defined]
        # The same command now reaches the host.
        dialog = await run_true(pilot, app)
        assert state_of(dialog, "sshtest") == "ok", dialog.results["sshtest"].error
    trusts = [e for e in services.audit.events() if e.action == "host.trust"]
    assert len(trusts) == 1 and trusts[0].origin == "tui"


async def test_unknown_key_refused_stores_nothing(tmp_path: Path, sshd: object) -> None:
    settings = sshd.itop_settings(tmp_path / "data", config_files=[])  # type: ignore[attr-defined]
    (tmp_path / "data" / "known_hosts").write_text("")
    host = Host(name="sshtest", address=sshd.host, port=sshd.port, user=sshd.user)  # type: ignore[attr-defined]
    services = open_services(tmp_path / "data", [host], settings=settings)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await run_true(pilot, app)
        await pilot.press("escape", "t")
        await pilot.pause()
        assert isinstance(app.screen, TrustDialog)
        await pilot.press("enter")  # "No" has the focus
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        assert "unknown host keys" not in app.screen.status_text()
    assert (tmp_path / "data" / "known_hosts").read_text() == ""
    assert not [e for e in services.audit.events() if e.action == "host.trust"]
