"""Pilot tests of the Procedures pane: library, run view, runs list, replay, approvals.

Real stores in a temp data dir, the real runner, and real commands on this
machine through the local transport (hosts with ``address="local"``). People
answer the runner's questions by pressing keys in the dialogs it opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procedure_fixtures import (
    SMALL,
    add_procedure,
    fixed_run,
    import_builtin,
    local_hosts,
    procedure_services,
    second_login,
    wait_for,
)
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Markdown, Static
from textual.widgets._markdown import MarkdownHeader
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.bundled import procedures_dir
from itop_tui.screens.help import HelpScreen
from itop_tui.screens.procedure_prompts import ApprovalWait, CommentDialog, StepQuestion
from itop_tui.screens.procedure_run import ProcedureRunScreen
from itop_tui.screens.procedure_runs import ProcedureRunsScreen, ReplayScreen
from itop_tui.screens.procedures import ProceduresScreen
from itop_tui.services.procedure_repo import ProcedureRun, RunRepository
from itop_tui.widgets.output_log import OutputLog
from itop_tui.widgets.run_form import RunForm
from itop_tui.widgets.step_list import StepDetail, StepList

SIZE = (160, 48)

TEST_PROCEDURE = """
id: ui-test
title: UI test procedure
version: "1"
description: A manual step, a command that changes things, a read-only check.
targets: all
variables:
  - name: marker
    description: File the changing command creates.
    required: true
    regex: '/[^\\n]+'
steps:
  - id: announce
    title: Tell the team about {{ host }}
    kind: manual
    instructions: Post in the **team channel** that {{ host }} gets a greeting.
  - id: greet
    title: Say hello
    kind: command
    mutates: true
    instructions: Prints hello and leaves a marker file, standing for a change.
    command: |
      m={{ marker }}
      echo hello && touch -- "$m"
  - id: verify
    title: The machine answers
    kind: check
    instructions: A read-only check.
    command: echo ok
    expect:
      regex: '^ok$'
"""

ROLES = {"tina": "trainee", "bob": "approver", "vic": "viewer"}


async def open_pane(pilot: Pilot[Any]) -> ProceduresScreen:
    """Switch to the Procedures pane by its key and wait for the library."""
    await settle(pilot)
    await pilot.press("3")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ProceduresScreen)
    await wait_for(pilot, lambda: screen.procedures is not None, "the library")
    return screen


async def open_runs(pilot: Pilot[Any]) -> ProcedureRunsScreen:
    """From the library, open the runs list (``u``) and wait until it is read."""
    await pilot.press("u")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ProcedureRunsScreen)
    await wait_for(pilot, lambda: screen.runs is not None, "the runs")
    return screen


def runs_in(tmp_path: Path) -> list[ProcedureRun]:
    return RunRepository.in_data_dir(tmp_path / "data").all()


def detail_lines(screen: Any) -> list[str]:
    return list(screen.query_one(StepDetail).query_one(OutputLog).lines)


async def test_library_lists_searches_and_shows_markdown(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"))
    ids = import_builtin(services)
    assert len(ids) >= 10
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        table = screen.query_one("#procedure-list", DataTable)
        assert table.row_count == len(ids)
        assert screen.status_text().startswith(f"{len(ids)} of {len(ids)} procedures")

        await pilot.press("slash", *"restart service")
        await settle(pilot)
        shown = [s.id for s in screen.view.shown]
        assert shown == ["restart-service"]
        assert table.row_count == 1
        doc = screen.query_one("#procedure-doc", Markdown)
        stored = screen.view.shown[0].procedure

        def shown_headers() -> list[str]:
            return [h.source or "" for h in doc.query(MarkdownHeader)]

        await wait_for(pilot, lambda: any(h.startswith(f"# {stored.title}")
                                          for h in shown_headers()[:1]), "the detail")
        headers = shown_headers()
        assert headers[0].startswith(f"# {stored.title}")
        assert any(h.startswith("## Variables") for h in headers)
        assert any(h.startswith("## Steps") for h in headers)
        for number, step in enumerate(stored.steps, 1):
            assert any(h.startswith(f"### {number}. {step.title}") for h in headers)
        for variable in stored.variables:
            assert f"`{variable.name}`" in doc.source

        # Escape clears the search: everything is back.
        await pilot.press("escape")
        await settle(pilot)
        assert table.row_count == len(ids)


async def answer(pilot: Pilot[Any], key: str, kind: type[Any], what: str) -> Any:
    """Wait for a dialog of ``kind``, then press ``key`` in it."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind), what)
    dialog = pilot.app.screen
    await pilot.press(key)
    await wait_for(pilot, lambda: pilot.app.screen is not dialog, f"{what} to close")
    return dialog


async def start_run(
    pilot: Pilot[Any], marker: Path, *, check: bool = False, type_it: bool = False
) -> ProcedureRunScreen:
    """From the library, open the run view of the only procedure and fill in the form.

    ``type_it`` types the marker path key by key; otherwise the field is set.
    """
    screen = await open_pane(pilot)
    await pilot.press("c" if check else "r")
    await settle(pilot)
    run_screen = pilot.app.screen
    assert isinstance(run_screen, ProcedureRunScreen)
    await wait_for(pilot, lambda: run_screen.inventory is not None, "the inventory")
    assert screen is not run_screen
    if type_it:
        await pilot.press("tab", *str(marker))
    else:
        run_screen.query_one("#var-marker", Input).value = str(marker)
    await settle(pilot)
    return run_screen


async def test_run_through_the_pane_succeeds_with_states_then_runs_list_and_replay(
    tmp_path: Path,
) -> None:
    services = procedure_services(tmp_path, local_hosts("here", "there"))
    add_procedure(services, TEST_PROCEDURE)
    marker = tmp_path / "changed"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(pilot, marker, type_it=True)
        assert "CHECK MODE" not in screen.head_text().plain
        assert screen.steps.hosts == ["here", "there"]
        await pilot.press("ctrl+r")

        manual = await answer(pilot, "y", StepQuestion, "the manual step")
        assert "Tell the team" in manual._title
        assert "team channel" in manual._explanation
        confirm = await answer(pilot, "y", StepQuestion, "the confirmation of greet")
        assert "changes things" in confirm._title
        assert str(marker) in confirm._facts  # the command as it will run

        await wait_for(pilot, lambda: screen.phase == "view", "the end of the run")
        assert screen.status == "succeeded"
        states = screen.steps.states
        assert states == {step: {"here": "ok", "there": "ok"} for step in ("announce", "greet", "verify")}
        # The per-host states are what the list shows.
        table = screen.steps
        assert str(table.get_cell("greet", "host:here")) == "ok"
        assert screen.steps.progress() == (6, 6)
        screen.steps.move_to_step("greet")
        await wait_for(pilot, lambda: "hello" in detail_lines(screen), "the output of greet")
        lines = detail_lines(screen)
        assert any(line.startswith("── here: ok · exit 0") for line in lines)
        assert lines.count("hello") == 2
        assert marker.exists()

        runs = runs_in(tmp_path)
        assert [(r.status, r.mode, r.operator) for r in runs] == [("succeeded", "normal", "alice")]
        actions = [e.action for e in services.audit.events() if e.target == runs[0].id]
        assert actions.count("procedure.confirm") == 2

        # Back to the library, then the runs list: the run is there, filters work.
        await pilot.press("escape")
        await settle(pilot)
        runs_screen = await open_runs(pilot)
        assert [r.id for r in runs_screen.shown] == [runs[0].id]
        filters_seen: dict[str | None, list[str]] = {}
        for _ in range(10):
            await pilot.press("s")
            await settle(pilot)
            filters_seen[runs_screen.status_filter] = [r.id for r in runs_screen.shown]
            if runs_screen.status_filter is None:
                break
        assert filters_seen["succeeded"] == [runs[0].id]
        assert filters_seen["failed"] == [] and filters_seen["waiting"] == []
        assert filters_seen[None] == [runs[0].id]

        # Replay: step by step, read-only, with the outputs.
        await pilot.press("v")
        await settle(pilot)
        replay_screen = pilot.app.screen
        assert isinstance(replay_screen, ReplayScreen)
        assert replay_screen.current is not None and replay_screen.current.id == "announce"
        assert any("confirmed by alice" in line for line in detail_lines(replay_screen))
        await pilot.press("n")
        await settle(pilot)
        assert replay_screen.current.id == "greet"
        assert detail_lines(replay_screen).count("hello") == 2
        await pilot.press("n", "n")  # past the end stays on the last step
        await settle(pilot)
        assert replay_screen.current.id == "verify"
        assert replay_screen.query_one(StepList).current == "verify"
        assert "ok" in detail_lines(replay_screen)
        await pilot.press("p")
        await settle(pilot)
        assert replay_screen.current.id == "greet"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ProcedureRunsScreen)


async def test_check_mode_shows_badge_and_changes_nothing(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"))
    add_procedure(services, TEST_PROCEDURE)
    marker = tmp_path / "changed"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(pilot, marker, check=True)
        assert screen.head_text().plain.startswith(" CHECK MODE ")
        await pilot.press("ctrl+r")
        # Check mode asks nothing: the manual step is shown, not confirmed, and
        # the mutating command does not run.
        await wait_for(pilot, lambda: screen.phase == "view", "the end of the run")
        assert screen.status == "succeeded"
        assert "CHECK MODE" in screen.head_text().plain
        assert not isinstance(pilot.app.screen, StepQuestion)
        assert screen.steps.states == {"announce": {"here": "skipped"},
                                       "greet": {"here": "skipped"}, "verify": {"here": "ok"}}
        screen.steps.move_to_step("greet")
        await wait_for(pilot, lambda: "would run:" in detail_lines(screen), "the detail of greet")
        lines = detail_lines(screen)
        assert any(str(marker) in line for line in lines)
        assert "hello" not in lines
    assert not marker.exists()
    run = runs_in(tmp_path)[0]
    assert run.mode == "check" and run.status == "succeeded"
    assert run.step("greet").hosts["here"].exit_code is None


async def test_trainee_waits_for_sign_off_approved_by_another_login(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"), roles=ROLES, login="tina")
    add_procedure(services, TEST_PROCEDURE)
    marker = tmp_path / "changed"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(pilot, marker)
        assert "TRAINEE" in screen.head_text().plain
        # A trainee reads every step's explanation before the run can start.
        assert screen.check_action("start", ()) is None
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert screen.phase == "form" and runs_in(tmp_path) == []
        while pilot.app.focused is not screen.steps:
            await pilot.press("tab")
            await settle(pilot)
        for _ in screen.steps.steps:
            await wait_for(pilot, lambda: screen.steps.cursor_step_id in screen.steps.read,
                           "the step under the cursor read")
            await pilot.press("down")
        await wait_for(pilot, lambda: not screen.unread_steps(), "every step read")
        await pilot.press("ctrl+r")

        await answer(pilot, "y", StepQuestion, "the manual step")
        # The mutating step needs an approver's sign-off: the run waits.
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ApprovalWait), "the wait")
        run = runs_in(tmp_path)[0]
        assert run.status == "waiting" and run.mode == "trainee"
        assert run.pending is not None and run.pending.kind == "signoff"
        assert run.pending.step == "greet" and run.pending.requested_by == "tina"
        assert run.step("greet").hosts["here"].state == "waiting"
        assert not marker.exists()
        # Stop waiting: the run stays waiting for its sign-off.
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen.phase == "view", "the run to stop")
        await wait_for(pilot, lambda: screen.status == "waiting", "the stored record")
        assert runs_in(tmp_path)[0].status == "waiting"

        # The trainee cannot approve their own run.
        await pilot.press("escape")
        await settle(pilot)
        runs_screen = await open_runs(pilot)
        assert runs_screen.check_action("approve", ()) is None
        waiting = runs_screen.selected
        assert waiting is not None and waiting.status == "waiting"
        assert "approver or admin role" in runs_screen.reasons(waiting)

    # Bob, an approver, signs it off from his own itop.
    bob = second_login(tmp_path, "bob", ROLES)
    app = ItopApp(bob, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await open_pane(pilot)
        runs_screen = await open_runs(pilot)
        assert runs_screen.check_action("approve", ()) is True
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommentDialog), "the comment")
        await pilot.press(*"looks fine", "enter")
        await wait_for(pilot, lambda: runs_in(tmp_path)[0].status == "paused", "the approval")
    approved = runs_in(tmp_path)[0]
    assert [(a.kind, a.by, a.decision, a.comment) for a in approved.approvals] == [
        ("signoff", "bob", "approved", "looks fine")]

    # Tina resumes it from the runs list; after the sign-off she confirms and it finishes.
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await open_pane(pilot)
        runs_screen = await open_runs(pilot)
        await pilot.press("r")
        await answer(pilot, "y", StepQuestion, "the confirmation after the sign-off")
        run_screen = pilot.app.screen
        assert isinstance(run_screen, ProcedureRunScreen)
        await wait_for(pilot, lambda: run_screen.phase == "view" and run_screen.status != "paused",
                       "the end of the run")
        assert run_screen.status == "succeeded"
        assert run_screen.steps.states["greet"] == {"here": "ok"}
    assert marker.exists()


async def test_viewer_sees_everything_but_every_action_is_disabled(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"), roles=ROLES, login="vic")
    add_procedure(services, TEST_PROCEDURE)
    fixed_run(services, finished=False)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        assert screen.selected is not None
        for action in ("run", "check_run", "import_builtin"):
            assert screen.check_action(action, ()) is None, action
        assert "running disabled: the viewer role" in screen.status_text()
        await pilot.press("r")
        await settle(pilot)
        assert pilot.app.screen is screen  # nothing opened
        # The help, made from the bindings, shows the same: run greyed out, runs open.
        await pilot.press("question_mark")
        await settle(pilot)
        help_screen = pilot.app.screen
        assert isinstance(help_screen, HelpScreen)
        entries = {e.description: e for s in help_screen.sections for e in s.entries}
        assert not entries["Run"].enabled and not entries["Check run"].enabled
        assert entries["Runs"].enabled and entries["Search"].enabled
        await pilot.press("escape")
        await settle(pilot)
        runs_screen = await open_runs(pilot)
        waiting = runs_screen.selected
        assert waiting is not None and waiting.status == "waiting"
        for action in ("resume", "abort", "approve", "reject"):
            assert runs_screen.check_action(action, ()) is None, action
        assert runs_screen.check_action("open", ()) is True
        reasons = runs_screen.reasons(waiting)
        assert "resume, abort: the viewer role reads procedures and runs" in reasons
        assert "approve, reject: deciding needs the approver or admin role; vic is viewer" in reasons


SECRET_PROCEDURE = """
id: secret-test
title: Uses a token
version: "1"
targets: all
variables:
  - name: token
    description: An API token.
    required: true
    secret: true
  - name: count
    default: "3"
    regex: '[0-9]+'
steps:
  - id: use
    title: Use the token
    kind: check
    command: |
      t={{ token }}; n={{ count }}
      echo "token is $t, count $n"
"""

CANARY = "canary-7f3a91"


async def test_form_checks_values_and_secrets_stay_secret(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"))
    add_procedure(services, SECRET_PROCEDURE)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await open_pane(pilot)
        await pilot.press("r")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ProcedureRunScreen)
        await wait_for(pilot, lambda: screen.inventory is not None, "the inventory")
        form = screen.query_one(RunForm)
        assert form.query_one("#var-token", Input).password
        # Refused before anything runs: a selector matching nothing, a missing secret, a bad count.
        target = form.query_one("#run-target", Input)
        target.value = "nosuchhost"
        await pilot.press("tab", "tab", "ctrl+a", "backspace", "x", "ctrl+r")
        await settle(pilot)
        assert "matches no host" in str(form.query_one("#hint-target", Static).content)
        assert "token is required" in str(form.query_one("#hint-token", Static).content)
        assert "count must match" in str(form.query_one("#hint-count", Static).content)
        assert screen.phase == "form" and runs_in(tmp_path) == []

        target.value = "all"
        form.query_one("#var-count", Input).value = "7"
        form.focus_field("token")
        await pilot.press(*CANARY, "ctrl+r")
        await wait_for(pilot, lambda: screen.phase == "view", "the end of the run")
        assert screen.status == "succeeded"
        assert form.query_one("#var-token", Input).value == ""  # the form forgot it
        head = screen.head_text().plain
        assert "token=***" in head and "count=7" in head and CANARY not in head
        lines = detail_lines(screen)
        assert "token is ***, count 7" in lines
        assert not any(CANARY in line for line in lines)
    for name in ("runs.json", "audit.jsonl"):
        text = (tmp_path / "data" / name).read_text(encoding="utf-8")
        assert CANARY not in text, name
    assert runs_in(tmp_path)[0].secret_names == ["token"]


RETRY_PROCEDURE = """
id: retry-test
title: Ready, then a person confirms
version: "1"
targets: all
variables:
  - name: flag
    required: true
    regex: '/[^\\n]+'
steps:
  - id: ready
    title: The flag file exists
    kind: check
    command: |
      f={{ flag }}
      test -e "$f" && echo ready
  - id: confirm
    title: A person confirms
    kind: manual
    instructions: Confirm that the host is ready.
"""


async def test_failed_run_is_retried_then_paused_then_aborted(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"))
    add_procedure(services, RETRY_PROCEDURE)
    flag = tmp_path / "flag"
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await open_pane(pilot)
        await pilot.press("r")
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ProcedureRunScreen)
        screen.query_one("#var-flag", Input).value = str(flag)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.phase == "view", "the failed run")
        assert screen.status == "failed"
        assert screen.steps.states == {"ready": {"here": "failed"}, "confirm": {"here": "cancelled"}}
        assert "t retries the failed hosts" in screen.status_text()

        flag.touch()
        await pilot.press("t")
        # Declining the manual step pauses the run.
        await answer(pilot, "n", StepQuestion, "the manual step")
        await wait_for(pilot, lambda: screen.phase == "view" and screen.status == "paused",
                       "the paused run")
        assert screen.steps.states["ready"] == {"here": "ok"}
        run = runs_in(tmp_path)[0]
        assert run.status == "paused" and run.resumes[0]["kind"] == "retry"
        previous = run.step("ready").hosts["here"].previous
        assert [p["state"] for p in previous] == ["failed"]  # the first attempt kept as evidence

        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommentDialog), "the abort")
        await pilot.press(*"not today", "enter")
        await wait_for(pilot, lambda: screen.status == "aborted", "the aborted run")
        assert screen.check_action("resume", ()) is False
    run = runs_in(tmp_path)[0]
    assert run.status == "aborted" and run.reason == "aborted by alice: not today"
    assert run.step("confirm").hosts["here"].state == "cancelled"


async def test_empty_library_imports_the_builtin_procedures_by_key(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"))
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        assert screen.procedures == []
        doc = screen.query_one("#procedure-doc", Markdown)
        await wait_for(pilot, lambda: "No procedures yet" in doc.source, "the empty library's hint")
        await pilot.press("i")
        await wait_for(pilot, lambda: bool(screen.procedures), "the imported library")
        await settle(pilot)
        assert screen.query_one("#procedure-list", DataTable).row_count == len(screen.procedures or [])
    imported = [e for e in services.audit.events() if e.action == "procedure.import"]
    assert len(imported) == len(list(procedures_dir().glob("*.yaml"))) >= 10
    assert {e.detail["outcome"] for e in imported} == {"added"}


async def test_approver_sees_the_command_hosts_and_variables_before_signing_off(
        tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("web01", "web02"), roles=ROLES,
                                  login="alice")
    add_procedure(services, SMALL)
    waiting = fixed_run(services, finished=False)  # alice's trainee run, waiting for a sign-off

    def with_secret(run: ProcedureRun) -> None:
        run.secret_names = ["token"]  # a secret the run uses: only its name is stored

    RunRepository.in_data_dir(tmp_path / "data").update(waiting.id, with_secret)
    bob = second_login(tmp_path, "bob", ROLES)
    app = ItopApp(bob, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await open_pane(pilot)
        runs_screen = await open_runs(pilot)
        assert runs_screen.check_action("approve", ()) is True
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommentDialog), "the dialog")
        dialog = pilot.app.screen
        text = str(dialog.query_one(".dialog-text", Static).content)
        assert "Sign-off of step greet (Print the greeting) of small-test 1.0" in text
        assert "Hosts: 2 hosts (web01, web02)" in text
        # The command as the trainee's confirmation renders it, on the first host.
        assert "Command as it will run:\n  g=hello\n  echo \"$g\"\n(on web01;" in text
        assert "Variables: greeting=hello, token=*** (secret)" in text
        assert "asked by alice" in text.lower()
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is runs_screen, "the dialog to close")
    assert runs_in(tmp_path)[0].status == "waiting"  # Escape decided nothing


async def test_detail_shows_empty_defaults_and_regexes_readably(tmp_path: Path) -> None:
    services = procedure_services(tmp_path, local_hosts("here"))
    import_builtin(services)
    add_procedure(services, TEST_PROCEDURE)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        sources: dict[str, str] = {}
        table = screen.query_one("#procedure-list", DataTable)
        for row in range(table.row_count):
            table.move_cursor(row=row)
            await wait_for(pilot, lambda: screen.selected is not None, "a selection")
            selected = screen.selected
            assert selected is not None
            wanted = selected.id
            if wanted in ("add-user-ssh-key", "ui-test"):
                await wait_for(pilot, lambda w=wanted: f"`{w}`" in screen.query_one(
                    "#procedure-doc", Markdown).source, f"the detail of {wanted}")
                sources[wanted] = screen.query_one("#procedure-doc", Markdown).source
    assert set(sources) == {"add-user-ssh-key", "ui-test"}
    assert "default ``" not in "".join(sources.values())
    assert ("- **`full_name`** (optional, matching regex `[^:\\n\\r]{0,100}`, default empty)"
            in sources["add-user-ssh-key"])
    assert "default `/bin/bash`" in sources["add-user-ssh-key"]
    # The regex as typed in the YAML, one slash (its own), no added delimiters.
    assert "- **`marker`** (required, matching regex `/[^\\n]+`)" in sources["ui-test"]
    assert "//" not in sources["ui-test"].split("## Steps")[0]
