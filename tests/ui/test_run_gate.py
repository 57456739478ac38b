"""Pilot tests: the run dialog, the Procedures pane and the change gate, on this machine.

The host ``here`` (address ``local``, status production) runs commands
through the local transport. Changes are written and moved with the real
:class:`ChangeWorkflow` by two people (alice writes, bob approves) under the
real clock, since the gate decides with the real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from procedure_fixtures import add_procedure, procedure_services, second_login, wait_for
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static
from ui_fixtures import fixed_clock, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.ops.change_workflow import ChangeSpec, ChangeWorkflow
from itop_tui.screens.confirm import ChoiceDialog, ConfirmDialog
from itop_tui.screens.procedure_prompts import StepQuestion
from itop_tui.screens.procedure_run import ProcedureRunScreen
from itop_tui.screens.procedures import ProceduresScreen
from itop_tui.screens.run_dialog import RunDialog
from itop_tui.services.change_repo import ChangeRepository
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import RunRepository

SIZE = (160, 48)
ROLES = {"alice": "operator", "bob": "approver"}


def production_services(tmp_path: Path) -> Services:
    """alice's itop over one production host reached through the local transport."""
    host = Host(name="here", address="local", status="production")
    return procedure_services(tmp_path, [host], roles=ROLES, login="alice")


def active_change(tmp_path: Path, alice: Services, title: str = "Touch a mark") -> str:
    """A change on ``here`` written by alice, approved by bob, in its window now."""
    mine = ChangeWorkflow(alice)
    bobs = ChangeWorkflow(second_login(tmp_path, "bob", ROLES))
    spec = ChangeSpec(
        title=title, description="touch a file", justification="test the gate",
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
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RunDialog)
        assert "No active change covers the production hosts" in text_of(dialog, "#run-change")
        await pilot.press(*f"touch {mark}", "enter")
        await settle(pilot)
        # The gate is certain to refuse: no "Run on production?" first, the reason at once.
        assert app.screen is dialog
        assert dialog.change_ref is None
        error = " ".join(text_of(dialog, "#run-error").split())
        assert error.startswith("Refused by the change gate: here is a production host"), error
        assert "Turn on Observe (ctrl+o)" in error and "--" not in error, error
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


async def test_run_dialog_asks_which_of_several_active_changes(tmp_path: Path) -> None:
    services = production_services(tmp_path)
    first = active_change(tmp_path, services, "First change")
    second = active_change(tmp_path, services, "Second change")
    mark = tmp_path / "chosen"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RunDialog)
        assert text_of(dialog, "#run-change").startswith(
            f"Several active changes cover these hosts ({first}, {second}): you choose")
        assert dialog.change_ref is None
        await pilot.press(*f"touch {mark}", "enter")
        await pilot.pause()
        choice = app.screen
        assert isinstance(choice, ChoiceDialog)
        labels = [str(b.label) for b in choice.query("Button")]
        assert labels[0].startswith(f"{first} First change (") and labels[2] == "Cancel"
        await pilot.press("down", "enter")  # the second change
        await pilot.pause()
        question = app.screen
        assert isinstance(question, ConfirmDialog)
        assert question._question.endswith(f"(here) under {second}?")
        await pilot.press("tab", "enter")  # "No" has the focus
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert app.screen is dialog and state_of(dialog) == "ok"
    assert mark.exists()
    runs = [e for e in services.audit.events() if e.action == "run"]
    assert [e.detail.get("change") for e in runs] == [second]
    assert run_log(services, second) == [f"run: touch {mark} on here"]
    assert run_log(services, first) == []


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


MARK_PROCEDURE = """
id: mark-here
title: Write a mark
version: "1"
targets: all
variables:
  - name: marker
    required: true
    regex: '/[^\\n]+'
steps:
  - id: look
    title: Look around
    kind: check
    command: echo ok
  - id: write
    title: Append to the mark
    kind: command
    command: |
      m={{ marker }}; echo marked >> "$m"
"""

async def start_from_pane(pilot: Pilot[Any], mark: Path) -> ProcedureRunScreen:
    """Procedures pane, ``r`` on the procedure, the marker filled in, Ctrl+R."""
    await settle(pilot)
    await pilot.press("3")
    await settle(pilot)
    pane = pilot.app.screen
    assert isinstance(pane, ProceduresScreen)
    await wait_for(pilot, lambda: pane.procedures is not None, "the library")
    await pilot.press("r")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ProcedureRunScreen)
    await wait_for(pilot, lambda: screen.inventory is not None, "the inventory")
    screen.query_one("#var-marker", Input).value = str(mark)
    await settle(pilot)
    await pilot.press("ctrl+r")
    return screen


async def confirm_step(pilot: Pilot[Any]) -> None:
    """Say yes to the runner's question before the mutating step."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, StepQuestion), "the step question")
    question = pilot.app.screen
    await pilot.press("y")
    await wait_for(pilot, lambda: pilot.app.screen is not question, "the question to close")


def run_log(services: Services, ref: str) -> list[str]:
    change = ChangeRepository.in_data_dir(services.settings.data_dir).require(ref)
    return [e.text for e in change.work_log if e.kind == "run"]


async def test_procedures_pane_asks_without_a_change_then_resumes_under_the_active_one(
        tmp_path: Path) -> None:
    services = production_services(tmp_path)
    add_procedure(services, MARK_PROCEDURE)
    mark = tmp_path / "mark"
    runs = RunRepository.in_data_dir(services.settings.data_dir)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_from_pane(pilot, mark)
        # No active change: the pane says what will happen and asks.
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the question")
        question = app.screen
        assert isinstance(question, ConfirmDialog)
        assert question._title == "No active change"
        assert "No approved change covering here (production)" in question._question
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.phase == "view", "the end of the run")
        assert screen.status == "paused", screen.reason
        assert "refused by the change gate" in (screen.reason or "")
        assert screen.steps.states["look"] == {"here": "ok"}
        assert not mark.exists()
        (run,) = runs.all()
        assert run.change_id is None

        # A change becomes active: resuming picks it, passes it and names it.
        ref = active_change(tmp_path, services)
        await pilot.press("r")
        await confirm_step(pilot)
        await wait_for(pilot, lambda: screen.phase == "view" and screen.status == "succeeded",
                       "the resumed run")
        assert screen.change_ref == ref
        assert f"under {ref}" in screen.head_text().plain
        assert mark.read_text() == "marked\n"
        resumed = runs.require(run.id)
        assert resumed.change_id == ref and resumed.resumes[-1]["change"] == ref
    assert run_log(services, ref) == [f"procedure mark-here step write ({run.id}) on here"]
    gate = [(e.target, e.result) for e in services.audit.events() if e.action == "change.gate"]
    assert gate == [("here", "refused"), (ref, "ok")]


async def test_procedures_pane_runs_under_the_change_the_person_chooses(tmp_path: Path) -> None:
    services = production_services(tmp_path)
    add_procedure(services, MARK_PROCEDURE)
    first = active_change(tmp_path, services, "First change")
    second = active_change(tmp_path, services, "Second change")
    mark = tmp_path / "mark"
    runs = RunRepository.in_data_dir(services.settings.data_dir)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_from_pane(pilot, mark)
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), "the choice")
        choice = app.screen
        labels = [str(b.label) for b in choice.query("Button")]
        assert labels[0].startswith(f"{first} First change (") and labels[0].endswith("m left)")
        assert labels[1].startswith(f"{second} Second change (")
        assert labels[2] == "Cancel: do not start"
        # Cancelling starts nothing; the form stays.
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen and screen.phase == "form" and runs.all() == []
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), "the choice again")
        await pilot.press("down", "enter")
        await confirm_step(pilot)
        await wait_for(pilot, lambda: screen.phase == "view", "the end of the run")
        assert screen.status == "succeeded", screen.reason
        assert f"under {second}" in screen.head_text().plain
    (run,) = runs.all()
    assert run.change_id == second
    assert mark.read_text() == "marked\n"
    assert run_log(services, second) == [f"procedure mark-here step write ({run.id}) on here"]
    assert run_log(services, first) == []
