"""Pilot tests: Observe (read-only runs) in the run dialog, on a production host with no change.

The host ``here`` (address ``local``, status production) runs commands
through the local transport, as in ``test_run_gate.py``. Read-only runs go
through the real :class:`FleetRunner` (``mutating=False``), so the
read-only allowlist and the audit are the real ones.
"""

from __future__ import annotations

from pathlib import Path

from procedure_fixtures import wait_for
from test_run_gate import active_change, production_services, run_log, state_of
from test_run_gate import text_of as wrapped_text_of
from textual.pilot import Pilot
from textual.widgets import Checkbox
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.ops.change_gate import ChangeGate, ObserveRefused, observe_command
from itop_tui.screens.confirm import ChoiceDialog, ConfirmDialog
from itop_tui.screens.run_dialog import RunDialog, gate_refusal, observe_refusal
from itop_tui.services.context import Services

SIZE = (160, 48)
CLI_REMEDIES = (". Run under a change with --change CHG-N, open an emergency change with "
                "--emergency REASON, or use --observe for a read-only command")


async def open_dialog(pilot: Pilot[None]) -> RunDialog:
    """``r`` on the Inventory pane, once the change lookup is done."""
    await settle(pilot)
    await pilot.press("r")
    await settle(pilot)
    dialog = pilot.app.screen
    assert isinstance(dialog, RunDialog)
    return dialog


async def submit(pilot: Pilot[None], command: str) -> None:
    """Type ``command`` into the (focused) command field and press Enter."""
    await pilot.press(*command, "enter")
    await settle(pilot)


def text_of(dialog: RunDialog, selector: str) -> str:
    """The text of a Static in the dialog, on one line (as wrapped lines joined)."""
    return " ".join(wrapped_text_of(dialog, selector).split())


def events(services: Services, action: str) -> list[dict[str, object]]:
    return [e.detail for e in services.audit.events() if e.action == action]


async def test_observe_runs_on_production_without_a_change_or_a_question(
        tmp_path: Path) -> None:
    services = production_services(tmp_path)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        note = text_of(dialog, "#run-change")
        assert note.startswith("No active change covers the production hosts"), note
        assert "Turn on Observe (ctrl+o)" in note and "--" not in note, note
        assert not dialog.query_one("#run-observe", Checkbox).value

        await pilot.press("ctrl+o")
        await settle(pilot)
        assert dialog.observe and dialog.query_one("#run-observe", Checkbox).value
        assert text_of(dialog, "#run-change").startswith("Observe: one program from the")
        assert text_of(dialog, "#run-observe-hint").startswith("on: one read-only program")

        await submit(pilot, "df -h /")
        await wait_for(pilot, lambda: not dialog.running and "here" in dialog.results,
                       "the read-only run")
        assert app.screen is dialog  # no "Run on production?" question
        assert state_of(dialog) == "ok", text_of(dialog, "#run-error")
        assert "Filesystem" in dialog.results["here"].stdout
        assert text_of(dialog, "#run-error") == ""
    (run,) = events(services, "run")
    assert run["observe"] is True and "change" not in run
    assert run["command"] == "df -h /"
    # Read-only work is never blocked, so the gate records no decision.
    assert events(services, "change.gate") == []


async def test_observe_refuses_commands_off_the_list_with_the_lists_reason(
        tmp_path: Path) -> None:
    services = production_services(tmp_path)
    mark = tmp_path / "mark"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await pilot.press("ctrl+o")
        await submit(pilot, f"touch {mark}")
        assert app.screen is dialog and not dialog.running
        error = text_of(dialog, "#run-error")
        assert error.startswith(
            "Not run: Observe refuses this command: touch is not on the read-only list"
        ), error
        assert "--observe" not in error
        assert "df" in error  # the list of read-only programs is shown

        await pilot.press("ctrl+u")  # empty the command field
        await submit(pilot, f"df -h / ; touch {mark}")
        error = text_of(dialog, "#run-error")
        assert error.startswith("Not run: Observe runs one read-only program"), error
        assert "';' is shell syntax" in error
        assert not isinstance(app.screen, ConfirmDialog)
    assert not mark.exists()
    assert events(services, "run") == []


async def test_observe_off_again_is_a_mutating_run_refused_at_once(tmp_path: Path) -> None:
    services = production_services(tmp_path)
    mark = tmp_path / "mark"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await pilot.press("ctrl+o", "ctrl+o")
        await settle(pilot)
        assert not dialog.observe
        assert text_of(dialog, "#run-change").startswith("No active change covers")
        await submit(pilot, f"touch {mark}")
        assert app.screen is dialog  # refused without asking first
        error = text_of(dialog, "#run-error")
        assert error.startswith("Refused by the change gate: here is a production host"), error
        assert error.endswith("or run it under an approved change covering the hosts "
                              "(Changes pane, 4)"), error
        assert "--" not in error
        assert state_of(dialog) == "refused"
    assert not mark.exists()
    (refusal,) = events(services, "change.gate")
    assert refusal["what"] == f"run: touch {mark}"


async def test_observe_under_an_active_change_is_not_recorded_against_it(
        tmp_path: Path) -> None:
    services = production_services(tmp_path)
    first = active_change(tmp_path, services, "First change")
    second = active_change(tmp_path, services, "Second change")
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot)
        note = text_of(dialog, "#run-change")
        assert f"(turn Observe off to run under {first}, {second})" in note, note
        await submit(pilot, "uptime")
        await wait_for(pilot, lambda: not dialog.running and "here" in dialog.results,
                       "the read-only run")
        # Neither "which change?" nor "Run on production?".
        assert app.screen is dialog
        assert not isinstance(app.screen, (ChoiceDialog, ConfirmDialog))
        assert state_of(dialog) == "ok"
    (run,) = events(services, "run")
    assert run["observe"] is True and "change" not in run
    assert run_log(services, first) == [] and run_log(services, second) == []


def test_the_cli_keeps_its_wording_and_the_dialog_words_its_own(tmp_path: Path) -> None:
    services = production_services(tmp_path)
    host = Host(name="here", address="local", status="production")
    decision = ChangeGate(services).check([host], mutating=True, change_ref=None)
    assert not decision.allowed and decision.reason.endswith(CLI_REMEDIES)
    shown = gate_refusal(decision.reason)
    assert "--" not in shown and "Turn on Observe (ctrl+o)" in shown
    assert shown.startswith("Refused by the change gate: here is a production host: a mutating")

    try:
        observe_command("rm -rf /tmp/x")
    except ObserveRefused as exc:
        assert str(exc).startswith("--observe refuses this command: rm is not on the")
        assert observe_refusal(exc).startswith(
            "Not run: Observe refuses this command: rm is not on the")
    else:
        raise AssertionError("rm passed as read-only")
