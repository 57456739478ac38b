"""A trainee's run waiting for a sign-off goes on by itself once another login approves it.

The trainee's itop shows the waiting dialog; bob, an approver, approves
through the same code path as ``itop procedure approve`` (a runner over his
own services on the same data dir). The waiting dialog then closes by
itself and the step's confirmation comes up on top; Escape pressed as the
approval lands never crashes itop and leaves the run resumable.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from procedure_fixtures import (
    add_procedure,
    local_hosts,
    procedure_services,
    second_login,
    wait_for,
)
from test_procedures import ROLES, SIZE, TEST_PROCEDURE, runs_in, start_run
from textual.pilot import Pilot
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.ops.procedure_runner import ProcedureRunner
from itop_tui.screens.help import HelpScreen
from itop_tui.screens.procedure_prompts import ApprovalWait, StepQuestion
from itop_tui.screens.procedure_run import ProcedureRunScreen
from itop_tui.services.context import Services

RESUMABLE = ("paused", "waiting")


def waiting_dialogs(pilot: Pilot[Any]) -> list[ApprovalWait]:
    """Every waiting dialog still in the app's screen stack (on top or under another)."""
    return [s for s in pilot.app.screen_stack if isinstance(s, ApprovalWait)]


async def trainee_waits(pilot: Pilot[Any], marker: Path) -> ProcedureRunScreen:
    """Tina starts the run, reads every step, confirms the manual one; the run waits."""
    screen = await start_run(pilot, marker)
    while pilot.app.focused is not screen.steps:
        await pilot.press("tab")
        await settle(pilot)
    for _ in screen.steps.steps:
        await wait_for(pilot, lambda: screen.steps.cursor_step_id in screen.steps.read,
                       "the step under the cursor read")
        await pilot.press("down")
    await wait_for(pilot, lambda: not screen.unread_steps(), "every step read")
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, StepQuestion), "the manual step")
    await pilot.press("y")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ApprovalWait), "the wait")
    assert runs_in(marker.parent)[0].status == "waiting"
    return screen


def trainee_app(tmp_path: Path) -> tuple[Services, Path, ItopApp]:
    """tina's (trainee) itop on this machine with the test procedure, and the file
    its mutating step writes."""
    services = procedure_services(tmp_path, local_hosts("here"), roles=ROLES, login="tina")
    add_procedure(services, TEST_PROCEDURE)
    return services, tmp_path / "changed", ItopApp(services, clock=fixed_clock)


def bob_approves(tmp_path: Path, run_id: str) -> None:
    """Bob signs the run off from his own itop (what `itop procedure approve` does)."""
    bob = second_login(tmp_path, "bob", ROLES)
    ProcedureRunner(bob).approve(run_id, comment="looks fine")


async def test_waiting_dialog_closes_by_itself_and_the_confirmation_comes_up(
    tmp_path: Path,
) -> None:
    services, marker, app = trainee_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await trainee_waits(pilot, marker)
        run_id = runs_in(tmp_path)[0].id
        bob_approves(tmp_path, run_id)

        # No key pressed: the wait ends by itself, the confirmation is on top.
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, StepQuestion),
                       "the confirmation after the approval")
        await wait_for(pilot, lambda: screen.status == "running", "the approval seen")
        await settle_screens(pilot)
        assert waiting_dialogs(pilot) == []
        confirm = pilot.app.screen
        assert isinstance(confirm, StepQuestion)
        assert "Say hello" in confirm._title and "changes things" in confirm._title
        assert not marker.exists()

        await pilot.press("y")
        await wait_for(pilot, lambda: screen.phase == "view", "the end of the run")
        assert screen.status == "succeeded"
        assert pilot.app.screen is screen
        assert waiting_dialogs(pilot) == []
    assert marker.exists()
    run = runs_in(tmp_path)[0]
    assert run.status == "succeeded"
    assert run.step("greet").hosts["here"].confirmed_by == "tina"
    assert [(a.by, a.decision) for a in run.approvals] == [("bob", "approved")]


async def settle_screens(pilot: Pilot[Any]) -> None:
    """Let pending screen pops and pushes finish (the run's worker keeps going)."""
    for _ in range(3):
        await pilot.pause()


async def test_escape_as_the_approval_lands_does_not_crash_and_the_run_resumes(
    tmp_path: Path,
) -> None:
    services, marker, app = trainee_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await trainee_waits(pilot, marker)
        run_id = runs_in(tmp_path)[0].id
        wait_dialog = pilot.app.screen
        assert isinstance(wait_dialog, ApprovalWait)
        bob_approves(tmp_path, run_id)
        # The runner has taken the approval (the stored run goes on): Escape now.
        await wait_for(pilot, lambda: runs_in(tmp_path)[0].status == "running",
                       "the runner to take the approval")
        await pilot.press("escape")
        # And Escape on the waiting dialog itself, whose wait has ended.
        wait_dialog.action_leave("stop")
        await settle_screens(pilot)
        assert app.return_code is None and app.is_running  # itop is still up
        # The confirmation (if Escape did not answer it) says no: the run pauses.
        deadline = time.monotonic() + 30
        while screen.phase == "running":
            assert time.monotonic() < deadline, "timed out waiting for the run to stop"
            if isinstance(pilot.app.screen, StepQuestion):
                await pilot.press("n")
            await pilot.pause(0.05)
        await wait_for(pilot, lambda: screen.status in RESUMABLE, "the run to pause")
        assert waiting_dialogs(pilot) == []
        assert pilot.app.screen is screen
        stored = runs_in(tmp_path)[0]
        assert stored.status in RESUMABLE and "interrupted" not in (stored.reason or "")
        assert not marker.exists()

        # Resumable: resume it here, confirm, and it finishes.
        await wait_for(pilot, lambda: screen.check_action("resume", ()) is True, "resume allowed")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, StepQuestion),
                       "the confirmation on resume")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.phase == "view" and screen.status == "succeeded",
                       "the end of the resumed run")
    assert marker.exists()
    assert runs_in(tmp_path)[0].status == "succeeded"


async def test_approval_landing_under_the_help_screen_closes_the_wait_once_shown(
    tmp_path: Path,
) -> None:
    services, marker, app = trainee_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await trainee_waits(pilot, marker)
        wait_dialog = pilot.app.screen
        assert isinstance(wait_dialog, ApprovalWait)
        # Help over the waiting dialog (its key does not reach through a modal dialog).
        pilot.app.action_help()
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help")
        help_screen = pilot.app.screen
        bob_approves(tmp_path, runs_in(tmp_path)[0].id)

        # The question comes up on top; the waiting dialog, under the help, is over.
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, StepQuestion),
                       "the confirmation after the approval")
        assert wait_dialog.withdrawn and not wait_dialog.answered
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.phase == "view", "the end of the run")
        assert screen.status == "succeeded"
        assert pilot.app.screen is help_screen
        # Closing the help shows the waiting dialog again: it closes by itself.
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen, "the run view on top")
        assert waiting_dialogs(pilot) == []
        # Escape on the closed dialog does nothing.
        wait_dialog.action_leave("stop")
        await settle_screens(pilot)
        assert pilot.app.screen is screen and app.is_running
    assert marker.exists()
    assert runs_in(tmp_path)[0].status == "succeeded"
