"""Pilot tests: the run dialog and the change gate, on this machine.

The host ``here`` (address ``local``, status production) runs commands
through the local transport. Changes are written and moved with the real
:class:`ChangeWorkflow` by two people (alice writes, bob approves) under the
real clock, since the gate decides with the real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from procedure_fixtures import procedure_services, second_login
from rich.text import Text
from textual.widgets import DataTable, Static
from ui_fixtures import fixed_clock, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.ops.change_workflow import ChangeSpec, ChangeWorkflow
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.run_dialog import RunDialog
from itop_tui.services.context import Services

SIZE = (160, 48)
ROLES = {"alice": "operator", "bob": "approver"}


def production_services(tmp_path: Path) -> Services:
    """alice's itop over one production host reached through the local transport."""
    host = Host(name="here", address="local", status="production")
    return procedure_services(tmp_path, [host], roles=ROLES, login="alice")


def active_change(tmp_path: Path, alice: Services) -> str:
    """A change on ``here`` written by alice, approved by bob, in its window now."""
    mine = ChangeWorkflow(alice)
    bobs = ChangeWorkflow(second_login(tmp_path, "bob", ROLES))
    spec = ChangeSpec(
        title="Touch a mark", description="touch a file", justification="test the gate",
        hosts="here", impact="none", outage=False, backout_plan="remove the file",
    )
    ref = mine.create(spec).ref
    mine.submit(ref)
    bobs.assess(ref, comment="harmless")
    bobs.approve(ref, "go")
    start = datetime.now(UTC)
    mine.schedule(ref, start, start + timedelta(hours=1))
    return ref


def text_of(dialog: RunDialog, selector: str) -> str:
    return render_text(dialog.query_one(selector, Static).content)  # type: ignore[arg-type]


def state_of(dialog: RunDialog) -> str:
    value = dialog.query_one("#run-results", DataTable).get_cell("here", "state")
    return value.plain if isinstance(value, Text) else str(value)


async def run_in_dialog(app: ItopApp, pilot: object, command: str) -> RunDialog:
    """Open the dialog, wait for the change lookup, run ``command``, confirm production."""
    await settle(pilot)  # type: ignore[arg-type]
    await pilot.press("r")  # type: ignore[attr-defined]
    await app.workers.wait_for_complete()
    await settle(pilot)  # type: ignore[arg-type]
    dialog = app.screen
    assert isinstance(dialog, RunDialog)
    await pilot.press(*command, "enter")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    assert isinstance(app.screen, ConfirmDialog)
    await pilot.press("tab", "enter")  # type: ignore[attr-defined]  # "No" has the focus
    await app.workers.wait_for_complete()
    await settle(pilot)  # type: ignore[arg-type]
    assert app.screen is dialog
    return dialog


async def test_refused_without_a_change_with_the_reason_shown(tmp_path: Path) -> None:
    services = production_services(tmp_path)
    mark = tmp_path / "refused"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await run_in_dialog(app, pilot, f"touch {mark}")
        assert "No active change covers the production hosts" in text_of(dialog, "#run-change")
        assert dialog.change_ref is None
        error = text_of(dialog, "#run-error")
        assert error.startswith("Refused by the change gate: here is a production host"), error
        assert state_of(dialog) == "refused"
        assert not dialog.running
    assert not mark.exists()
    gate = [(e.target, e.result) for e in services.audit.events() if e.action == "change.gate"]
    assert gate == [("here", "refused")]


async def test_runs_under_the_active_change_and_says_so(tmp_path: Path) -> None:
    services = production_services(tmp_path)
    ref = active_change(tmp_path, services)
    mark = tmp_path / "allowed"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await run_in_dialog(app, pilot, f"touch {mark}")
        note = text_of(dialog, "#run-change")
        assert note.startswith(f"Recorded against {ref} Touch a mark (") and "m left)" in note
        assert dialog.change_ref == ref
        assert state_of(dialog) == "ok"
        assert text_of(dialog, "#run-error").strip() == ""
    assert mark.exists()
    runs = [e for e in services.audit.events() if e.action == "run"]
    assert [e.detail.get("change") for e in runs] == [ref]


async def test_header_shows_the_active_change_with_time_left(tmp_path: Path) -> None:
    services = production_services(tmp_path)
    identity = f"alice (operator) · {services.settings.config_label}"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert app.sub_title == identity
    ref = active_change(tmp_path, services)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await settle(pilot)
        prefix = f"{identity} · {ref} active, "
        assert app.sub_title.startswith(prefix), app.sub_title
        minutes = app.sub_title.removeprefix(prefix).removesuffix("m left")
        assert minutes.isdigit() and 55 <= int(minutes) <= 59, app.sub_title
