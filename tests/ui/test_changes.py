"""Pilot tests of the Changes pane: the list and its filter, the form, the detail's actions.

Everything is real: the change store in a temp data dir, the workflow with
its guards, a second person's itop on the same data dir for the approver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from change_fixtures import as_person, change_services, seed_changes, workflow
from textual.pilot import Pilot
from textual.widgets import Input, Static
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.domain.change import PENDING_STATES
from itop_tui.screens.change_detail import ChangeDetailScreen
from itop_tui.screens.change_form import ChangeFormScreen, FieldsDialog
from itop_tui.screens.change_upcoming import UpcomingScreen
from itop_tui.screens.changes import (
    ChangeFilterError,
    ChangesScreen,
    parse_change_filter,
)


def status_text(app: ItopApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def open_pane(pilot: Pilot[Any]) -> ChangesScreen:
    await settle(pilot)
    await pilot.press("4")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ChangesScreen)
    return screen


async def fill(pilot: Pilot[Any], values: dict[str, str]) -> None:
    """Set the fields of the dialog on top and save it with Ctrl+S."""
    dialog = pilot.app.screen
    assert isinstance(dialog, FieldsDialog)
    for name, value in values.items():
        dialog.query_one(f"#field-{name}", Input).value = value
    await pilot.pause()
    await pilot.press("ctrl+s")
    await settle(pilot)


async def open_detail(pilot: Pilot[Any], ref: str) -> ChangeDetailScreen:
    screen = await open_pane(pilot)
    assert screen.table.move_to(ref)
    await pilot.press("enter")
    await settle(pilot)
    detail = pilot.app.screen
    assert isinstance(detail, ChangeDetailScreen) and detail.change is not None
    return detail


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

        await pilot.press("a")  # assess (alice is an approver too)
        await settle(pilot)
        await fill(pilot, {"comment": "fine"})
        assert detail.change.state == "authorize"

        # the requester cannot approve her own change
        reason = detail.view.actions["approve"] if detail.view else None
        assert reason is not None and "alice" in reason
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, ChangeDetailScreen)  # no dialog opened
        assert f"Approve: not now: {reason}" in status_text(app, "#change-status")
        body = str(detail.query_one("#change-body", Static).content)
        assert reason in body

        await pilot.press("escape")
        await settle(pilot)
        listed = app.screen
        assert isinstance(listed, ChangesScreen)
        assert listed.table.cell_texts(ref)["state"] == "authorize"

    # bob, another approver, approves in his own itop
    bob = as_person(tmp_path, "bob")
    app = ItopApp(bob, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        bobs_detail = await open_detail(pilot, ref)
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

