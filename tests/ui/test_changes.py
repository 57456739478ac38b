"""Pilot tests of the Changes pane: the list and its filter, the form, the detail's actions.

Everything is real: the change store in a temp data dir, the workflow with
its guards, a second person's itop on the same data dir for the approver.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from change_fixtures import (
    TOMORROW_22,
    approved,
    as_person,
    change_services,
    fill,
    open_detail,
    open_pane,
    ready_spec,
    seed_changes,
    status_text,
    workflow,
)
from procedure_fixtures import SMALL, add_procedure, as_login, wait_for
from textual.pilot import Pilot
from textual.widgets import Input, Static
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.domain.change import PENDING_STATES
from itop_tui.domain.models import Host
from itop_tui.ops.change_workflow import ChangeWorkflow
from itop_tui.screens.change_detail import ChangeDetailScreen
from itop_tui.screens.change_form import ChangeEditScreen, ChangeFormScreen, FieldsDialog
from itop_tui.screens.change_upcoming import UpcomingScreen
from itop_tui.screens.changes import (
    ChangeFilterError,
    ChangesScreen,
    parse_change_filter,
)
from itop_tui.screens.confirm import ChoiceDialog, ConfirmDialog
from itop_tui.services.context import Services
from itop_tui.settings import Settings


def test_filter_parsing() -> None:
    wanted = parse_change_filter("state:scheduled,implement type:emergency host:web01 "
                                 "requester:alice Upgrade")
    assert wanted.states == ("scheduled", "implement")
    assert wanted.types == ("emergency",)
    assert wanted.hosts == ("web01",)
    assert wanted.requesters == ("alice",)
    assert wanted.words == ("upgrade",)
    with pytest.raises(ChangeFilterError, match="unknown state 'sheduled'"):
        parse_change_filter("state:sheduled")


async def test_list_pending_first_and_filters(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    refs = seed_changes(tmp_path, alice)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_pane(pilot)
        table = screen.table
        keys = table.view_keys
        assert len(keys) == 5
        states = [table.row(k).change.state for k in keys]  # type: ignore[union-attr]
        pending = [s in PENDING_STATES for s in states]
        assert pending == sorted(pending, reverse=True), states  # pending ones first
        assert keys[-1] == refs["draft"]
        # the two overlapping scheduled changes are flagged as a conflict
        assert table.cell_texts(refs["overlap"])["ref"].endswith("!")
        assert not table.cell_texts(refs["assess"])["ref"].endswith("!")

        filter_input = screen.query_one("#change-filter", Input)
        for text, expected in (
            ("state:scheduled", {refs["scheduled"], refs["overlap"]}),
            ("type:emergency", {refs["emergency"]}),
            ("host:web02", {refs["scheduled"], refs["overlap"]}),
            ("requester:carol", {refs["emergency"], refs["assess"]}),
            ("postgres", {refs["assess"]}),
        ):
            filter_input.value = text
            await settle(pilot)
            assert set(table.view_keys) == expected, text
        filter_input.value = "type:urgent"
        await settle(pilot)
        assert "unknown type 'urgent'" in status_text(app, "#changes-status")


async def test_create_submit_assess_approve_schedule(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_pane(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ChangeFormScreen)
        form.query_one("#field-hosts", Input).value = "web:&prod"
        await settle(pilot)
        assert status_text(app, "#hosts-match").startswith("3 hosts match: web01, web02, web03")
        await fill(pilot, {
            "title": "Upgrade openssl", "description": "apt-get install openssl",
            "justification": "CVE-2025-0001", "impact": "nginx restarts", "outage": "no",
            "backout_plan": "downgrade to the previous version", "test_plan": "openssl version",
        })
        detail = app.screen
        assert isinstance(detail, ChangeDetailScreen), app.screen
        assert detail.change is not None and detail.change.state == "draft"
        ref = detail.ref
        stored = workflow(alice).get(ref)
        assert stored.hosts == ("web01", "web02", "web03") and stored.outage is False

        # approving a draft is not allowed: the reason is shown, nothing happens
        await pilot.press("p")
        await settle(pilot)
        assert f"Approve: not now: cannot approve {ref} in state draft" in status_text(
            app, "#change-status")
        assert workflow(alice).get(ref).state == "draft"

        await pilot.press("s")  # submit
        await settle(pilot)
        assert detail.change.state == "assess"
        assert "draft → assess" in status_text(app, "#change-status")

        # the requester, an approver too, cannot assess her own change (nor approve it)
        reason = detail.view.actions["assess"] if detail.view else None
        assert reason is not None and "alice requested" in reason and "cannot assess" in reason
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ChangeDetailScreen)  # no dialog opened
        assert f"Assess: not now: {reason}" in status_text(app, "#change-status")
        body = str(detail.query_one("#change-body", Static).content)
        assert reason in body

        await pilot.press("escape")
        await settle(pilot)
        listed = app.screen
        assert isinstance(listed, ChangesScreen)
        assert listed.table.cell_texts(ref)["state"] == "assess"

    # bob, another approver, assesses and approves in his own itop
    bob = as_person(tmp_path, "bob")
    app = ItopApp(bob, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        bobs_detail = await open_detail(pilot, ref)
        await pilot.press("a")
        await settle(pilot)
        await fill(pilot, {"comment": "fine"})
        assert bobs_detail.change is not None and bobs_detail.change.state == "authorize"
        await pilot.press("p")
        await settle(pilot)
        await fill(pilot, {"comment": "go ahead"})
        assert bobs_detail.change is not None
        assert bobs_detail.change.approved_by == ["bob"]
        await pilot.press("w")  # schedule
        await settle(pilot)
        await fill(pilot, {"start": "2025-06-02T22:00Z", "end": "+1h"})
        assert bobs_detail.change.state == "scheduled"
        assert bobs_detail.change.window_end == "2025-06-02T23:00:00Z"
        body = str(bobs_detail.query_one("#change-body", Static).content)
        assert "authorize → scheduled" in body
        await pilot.press("escape")
        await settle(pilot)
        bobs_list = app.screen
        assert isinstance(bobs_list, ChangesScreen)
        assert bobs_list.table.cell_texts(ref)["state"] == "scheduled"
        assert bobs_list.table.cell_texts(ref)["window"].startswith("06-02 22:00→23:00")


async def test_refusals_from_the_workflow_are_shown(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    refs = seed_changes(tmp_path, alice)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, refs["draft"])
        # submitting a draft without a justification is not allowed, naming the field
        await pilot.press("s")
        await settle(pilot)
        assert "Submit: not now" in status_text(app, "#change-status")
        assert "justification is not set" in status_text(app, "#change-status")
        assert detail.change is not None and detail.change.state == "draft"
        await pilot.press("escape")
        await settle(pilot)
        detail = await open_detail(pilot, refs["assess"])
        # the workflow refuses to lower the computed risk: the refusal is shown
        await pilot.press("a")
        await settle(pilot)
        await fill(pilot, {"risk": "low"})
        assert "Assess refused" in status_text(app, "#change-status")
        assert detail.change is not None and detail.change.state == "assess"
        # a rejection needs a comment: the dialog will not close without one
        await pilot.press("x")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, FieldsDialog)
        await fill(pilot, {})
        assert app.screen is dialog
        assert "required" in status_text(app, "#fields-error")
        await fill(pilot, {"comment": "say which instances"})
        assert isinstance(app.screen, ChangeDetailScreen)
        assert detail.change is not None and detail.change.state == "draft"
        assert detail.change.last_rejection is not None


async def test_cancel_and_upcoming(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    refs = seed_changes(tmp_path, alice)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, refs["overlap"])
        await pilot.press("c")
        await settle(pilot)
        await fill(pilot, {"reason": "clashes with the openssl upgrade"})
        assert detail.change is not None and detail.change.state == "cancelled"
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        upcoming = app.screen
        assert isinstance(upcoming, UpcomingScreen)
        body = str(upcoming.query_one("#upcoming-body", Static).content)
        assert refs["scheduled"] in body and refs["overlap"] not in body
        assert "Conflicts\n  none" in body



async def test_edit_a_draft_and_not_after_it_left_draft(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    refs = seed_changes(tmp_path, alice)
    procedure = add_procedure(alice, SMALL)
    ref = refs["draft"]
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, ref)
        assert detail.view is not None and detail.view.actions["edit"] is None
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ChangeEditScreen)
        # The form shows the change as it is.
        assert form.query_one("#field-title", Input).value == "Rotate nginx logs daily"
        assert form.query_one("#field-hosts", Input).value == "stage"
        assert form.query_one("#field-type", Input).value == "normal"
        # Problems are shown on the form, which stays open.
        await fill(pilot, {"implementation": "no-such-procedure"})
        assert app.screen is form
        assert "no procedure 'no-such-procedure'" in status_text(app, "#fields-error")
        await fill(pilot, {"implementation": procedure, "start": "tomorrow"})
        assert app.screen is form and "invalid time 'tomorrow'" in status_text(app, "#fields-error")
        form.query_one("#field-hosts", Input).value = "web01, web02"
        await settle(pilot)
        assert status_text(app, "#hosts-match") == "2 hosts match: web01, web02"
        await fill(pilot, {
            "title": "Rotate nginx logs hourly", "description": "logrotate config, hourly",
            "justification": "disks fill up", "start": "2025-06-02T22:00Z", "end": "+2h",
            "impact": "none", "outage": "no", "backout_plan": "put the old config back",
        })
        assert isinstance(app.screen, ChangeDetailScreen), app.screen
        assert status_text(app, "#change-status") == (
            f"{ref} edited: backout_plan, description, hosts, impact, implementation, "
            "justification, outage, title, window_end, window_start")
        assert detail.change is not None and detail.change.title == "Rotate nginx logs hourly"
        body = str(detail.query_one("#change-body", Static).content)
        assert "2025-06-02T22:00:00Z → 2025-06-03T00:00:00Z" in body

        # Submitted, it is no longer a draft: the key says why and opens nothing.
        await pilot.press("s")
        await settle(pilot)
        assert detail.change.state == "assess"
        await pilot.press("e")
        await settle(pilot)
        assert app.screen is detail
        assert status_text(app, "#change-status") == (
            f"Edit: not now: {ref} can only be edited in draft (it is assess)")

    stored = workflow(alice).get(ref)
    assert (stored.title, stored.justification, stored.impact) == (
        "Rotate nginx logs hourly", "disks fill up", "none")
    assert stored.hosts == ("web01", "web02") and stored.selector == "web01, web02"
    assert (stored.window_start, stored.window_end) == ("2025-06-02T22:00:00Z",
                                                        "2025-06-03T00:00:00Z")
    assert stored.outage is False and stored.implementation == procedure
    assert stored.backout_plan == "put the old config back"
    assert [e.action for e in stored.work_log] == ["new", "edit", "submit"]
    edits = [e for e in alice.audit.events() if e.action == "change.edit" and e.target == ref]
    assert [e.result for e in edits] == ["ok"]


SSH_TIMEOUT = 60.0
"""Seconds a step of the run over SSH may take."""


async def press_yes(pilot: Pilot[Any], title: str) -> None:
    """Wait for the yes/no question titled ``title`` and answer yes."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog)
                   and pilot.app.screen._title == title, f"the question {title!r}", timeout=SSH_TIMEOUT)
    question = pilot.app.screen
    await pilot.press("y")
    await wait_for(pilot, lambda: pilot.app.screen is not question, "the question to close", timeout=SSH_TIMEOUT)


async def press_no(pilot: Pilot[Any], title: str) -> None:
    """Wait for the yes/no question titled ``title`` and answer no."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog)
                   and pilot.app.screen._title == title, f"the question {title!r}", timeout=SSH_TIMEOUT)
    question = pilot.app.screen
    await pilot.press("n")
    await wait_for(pilot, lambda: pilot.app.screen is not question, "the question to close", timeout=SSH_TIMEOUT)


def procedure_text(procedure_id: str, title: str, steps: str) -> str:
    return f'id: {procedure_id}\ntitle: {title}\nversion: "1"\nsteps:\n{steps}'


async def test_a_normal_change_from_draft_to_closed_over_ssh(
        tmp_path: Path, trusted_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Written, assessed, approved, scheduled, implemented (a step fails), backed out,
    reviewed and closed, all from the Changes pane, on a production host over SSH."""
    settings = replace(trusted_settings, roles={"alice": "operator", "bob": "approver"})

    def login(name: str) -> Services:
        # The OS login is the person (getpass reads LOGNAME), in the audit log too.
        monkeypatch.setenv("LOGNAME", name)
        monkeypatch.setenv("USER", name)
        return as_login(Services.open(settings, origin="tui"), name)

    alice = login("alice")
    alice.inventory.upsert_hosts([Host(name="testhost", status="production", criticality="low")])
    mark = tmp_path / "work" / "mark"
    mark.parent.mkdir()
    mark.write_text("v1\n")
    target = shlex.quote(str(mark))
    add_procedure(alice, procedure_text("deploy-mark", "Deploy version 2 of the mark", (
        "  - id: write\n    title: Write version 2\n    kind: command\n"
        f"    command: echo v2 > {target}\n"
        "  - id: verify\n    title: Version 3 is there\n    kind: check\n"
        f"    command: grep -qx v3 {target}\n")))
    add_procedure(alice, procedure_text("undo-mark", "Put version 1 back", (
        "  - id: restore\n    title: Write version 1\n    kind: command\n"
        f"    command: echo v1 > {target}\n")))

    app = ItopApp(alice)  # the real clock: the change gate decides with it
    async with app.run_test(size=(160, 48)) as pilot:
        await open_pane(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ChangeFormScreen)
        await fill(pilot, {
            "title": "Deploy mark v2", "description": "write version 2 of the mark",
            "justification": "OPS-7", "hosts": "testhost", "impact": "none", "outage": "no",
            "implementation": "deploy-mark", "backout": "undo-mark",
            "backout_plan": "write version 1 again", "test_plan": "read the mark",
        })
        detail = app.screen
        assert isinstance(detail, ChangeDetailScreen) and detail.change is not None
        ref = detail.ref
        # The window is written into the draft, then the draft submitted.
        await pilot.press("e")
        await settle(pilot)
        await fill(pilot, {"start": "now", "end": "+1h"})
        assert detail.change.window_start is not None
        await pilot.press("s")
        await settle(pilot)
        assert detail.change.state == "assess"

    bob = login("bob")
    app = ItopApp(bob)
    async with app.run_test(size=(160, 48)) as pilot:
        bobs = await open_detail(pilot, ref)
        await pilot.press("a")
        await settle(pilot)
        await fill(pilot, {"comment": "one host, no outage"})
        await pilot.press("p")
        await settle(pilot)
        await fill(pilot, {"comment": "go"})
        assert bobs.change is not None and bobs.change.state == "authorize"
        assert bobs.change.approved_by == ["bob"]

    app = ItopApp(alice)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, ref)
        await pilot.press("w")  # the window written in the draft is offered
        await settle(pilot)
        await fill(pilot, {})
        assert detail.change is not None and detail.change.state == "scheduled"

        # Implement: version 2 is written over SSH, the check fails; no backout yet.
        await pilot.press("i")
        await press_yes(pilot, f"Implement {ref}")
        await press_no(pilot, "RUN-1 failed")
        await wait_for(pilot, lambda: not detail.running and detail.change is not None
                       and detail.change.state == "failed", "the failed implementation", timeout=SSH_TIMEOUT)
        assert mark.read_text() == "v2\n"
        assert "RUN-1 failed" in status_text(app, "#change-status")

        # Back out from the pane: version 1 is written back.
        await pilot.press("b")
        await press_yes(pilot, f"Back out {ref}")
        await wait_for(pilot, lambda: not detail.running and detail.change is not None
                       and detail.change.state == "backed_out", "the backout", timeout=SSH_TIMEOUT)
        assert mark.read_text() == "v1\n"
        assert [(r.id, r.purpose, r.status) for r in detail.change.runs] == [
            ("RUN-1", "implementation", "failed"), ("RUN-2", "backout", "succeeded")]

        await pilot.press("v")
        await settle(pilot)
        await fill(pilot, {"what_happened": "the check found v2, not v3; backed out",
                           "incidents": "none", "lessons": "write the version we check"})
        assert detail.change.state == "review"
        await pilot.press("l")
        await settle(pilot)
        await fill(pilot, {"code": "unsuccessful", "notes": "backed out, mark is v1"})
        assert detail.change.state == "closed"
        body = str(detail.query_one("#change-body", Static).content)
        assert "backed_out → review" in body and "review → closed" in body

    change = workflow(alice).get(ref)
    assert (change.state, change.outcome, change.close_code) == (
        "closed", "backed_out", "unsuccessful")
    assert change.review is not None and change.review.by == "alice"
    history = [(e.actor, e.action, e.to_state) for e in change.work_log
               if e.kind in ("transition", "edit")]
    assert history == [
        ("alice", "new", "draft"), ("alice", "edit", "draft"), ("alice", "submit", "assess"),
        ("bob", "assess", "authorize"), ("bob", "approve", "authorize"),
        ("alice", "schedule", "scheduled"), ("alice", "implement", "implement"),
        ("alice", "fail", "failed"), ("alice", "backout", "backed_out"),
        ("alice", "review", "review"), ("alice", "close", "closed"),
    ]
    runs = [e.text for e in change.work_log if e.kind == "run"]
    assert runs[0].startswith("implementation run RUN-1 failed")
    assert runs[1] == "backout run RUN-2 succeeded"
    audited = [(e.action, e.actor) for e in alice.audit.events()
               if e.target == ref and e.action.startswith("change.")]
    assert audited == [(f"change.{a}", actor) for actor, a, _to in history]
    # The linked runs went through the gate's rule for them: no refusal on the production host.
    assert not [e for e in alice.audit.events()
                if e.action == "change.gate" and e.result == "refused"]


async def test_implement_key_in_implement_asks_for_the_outcome_not_to_start(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    ref = approved(tmp_path, alice, ready_spec("Restart nginx", "web02")).ref
    in_window = TOMORROW_22.replace(minute=10)
    ChangeWorkflow(alice, clock=lambda: in_window).act(ref, "implement")
    app = ItopApp(alice, clock=lambda: in_window)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, ref)
        assert detail.change is not None and detail.change.state == "implement"
        body = status_text(app, "#change-body")
        assert "i  Record outcome" in body and "i  Implement" not in body
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), "the outcome question")
        title = str(app.screen.query_one(".dialog-title", Static).content)
        assert f"{ref} is being implemented by hand on web02: how did it go?" in title
        assert "Start implementing" not in title
        await pilot.click("#choice-0")  # Succeeded
        await wait_for(pilot, lambda: not detail.running and detail.change is not None
                       and detail.change.state == "review", "the recorded outcome")
    log = [e.text for e in workflow(alice).get(ref).work_log]
    # The key recorded the outcome; it did not start (or "continue") implementing again.
    assert sum("implementation started" in t for t in log) == 1
    assert not any("implementation continued" in t for t in log)


async def test_implement_key_in_implement_with_a_procedure_offers_to_continue(
        tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    procedure = add_procedure(alice, SMALL)
    ref = approved(tmp_path, alice, ready_spec("Restart nginx", "web02", implementation=procedure)).ref
    in_window = TOMORROW_22.replace(minute=10)
    ChangeWorkflow(alice, clock=lambda: in_window).act(ref, "implement")
    app = ItopApp(alice, clock=lambda: in_window)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, ref)
        assert "i  Continue" in status_text(app, "#change-body")
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the question")
        texts = " ".join(str(w.content) for w in app.screen.query(Static))
        assert f"{ref} is being implemented. Continue with {procedure} on web02 now?" in texts
        assert "Start implementing" not in texts
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is detail, "the question to close")
    assert workflow(alice).get(ref).state == "implement"

