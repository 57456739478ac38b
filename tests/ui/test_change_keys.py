"""Pilot tests of what the reviewer found using the Changes pane as people do.

Keys typed fast after the one that opens a form, the forms' own footer and
Enter, guards judged again as time passes, the status line's wording and
width, the list's order, the variables field, and the values `i` asks for
before a procedure runs (implemented over SSH on the real sshd).
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from change_fixtures import (
    TOMORROW_22,
    approved,
    change_services,
    open_detail,
    open_pane,
    ready_spec,
    seed_changes,
    status_text,
    workflow,
)
from procedure_fixtures import add_procedure, as_login, wait_for
from textual import events
from textual.widgets import Button, Footer, Input, Static
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.ops.change_workflow import ChangeSpec, ChangeWorkflow
from itop_tui.screens.change_detail import ChangeDetailScreen
from itop_tui.screens.change_form import (
    ChangeEditScreen,
    ChangeFormScreen,
    FieldsDialog,
    change_fields,
)
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.services.context import Services
from itop_tui.settings import Settings


class MovingClock:
    """A clock the test moves forward."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def value(app: ItopApp, name: str) -> str:
    return app.screen.query_one(f"#field-{name}", Input).value


# -- guards judged again as time passes ---------------------------------------------------


async def test_implement_is_judged_when_pressed_and_the_list_refreshes(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    ref = approved(tmp_path, alice, ready_spec("Restart nginx", "web02")).ref  # window at 22:00
    clock = MovingClock(TOMORROW_22 - timedelta(seconds=10))
    app = ItopApp(alice, clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, ref)
        await pilot.press("i")
        await settle(pilot)
        assert "Implement: not now" in status_text(app, "#change-status")
        assert "opens at" in status_text(app, "#change-status")

        # 12 s later the window is open: the key judges the guards again and acts.
        clock.now = TOMORROW_22 + timedelta(seconds=2)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog),
                       "the implement question")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is detail, "the question to close")
        assert "not now" not in status_text(app, "#change-status")

        # Without a key: the window closes at 23:00; within a second or two the list
        # of actions and the status line say so.
        clock.now = TOMORROW_22 + timedelta(hours=1, seconds=1)
        await wait_for(pilot, lambda: detail.view is not None
                       and detail.view.actions["implement"] is not None, "the refreshed guards")
        body = status_text(app, "#change-body")
        assert "closed at" in body
        assert f"{ref} is scheduled" in status_text(app, "#change-status")


async def test_a_stale_refusal_is_cleared_when_the_window_opens(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    ref = approved(tmp_path, alice, ready_spec("Restart nginx", "web02")).ref
    clock = MovingClock(TOMORROW_22 - timedelta(seconds=5))
    app = ItopApp(alice, clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, ref)
        await pilot.press("i")
        await settle(pilot)
        assert "Implement: not now" in status_text(app, "#change-status")
        clock.now = TOMORROW_22 + timedelta(seconds=1)
        # No key pressed: the 1-second check near the boundary notices.
        await wait_for(pilot, lambda: "not now" not in status_text(app, "#change-status"),
                       "the status line to be refreshed")
        assert "Implement" in status_text(app, "#change-status")
        assert detail.view is not None and detail.view.actions["implement"] is None


# -- wording, width, order ------------------------------------------------------------------


async def test_status_line_says_the_state_in_words_and_wraps(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    refs = seed_changes(tmp_path, alice)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(60, 40)) as pilot:
        await open_detail(pilot, refs["assess"])
        assert status_text(app, "#change-status").startswith(f"{refs['assess']} is in assess. ")
        await pilot.press("escape")
        await settle(pilot)
        await open_detail(pilot, refs["draft"])
        assert status_text(app, "#change-status").startswith(f"{refs['draft']} is a draft. ")
        await pilot.press("s")  # refused: a long reason
        await settle(pilot)
        status = app.screen.query_one("#change-status", Static)
        assert len(str(status.content)) > 60
        assert status.size.height >= 2  # wrapped, not cut at the edge


async def test_list_header_shows_the_real_order(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    seed_changes(tmp_path, alice)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_pane(pilot)
        table = screen.table
        header = table.render_line(0).text
        assert "▲" not in header and "▼" not in header  # no column holds this order
        assert "order: pending first, newest first" in status_text(app, "#changes-status")
        pending_first = table.view_keys
        await pilot.press("s")  # by Ref, oldest first
        await settle(pilot)
        assert "Ref ▲" in table.render_line(0).text
        assert table.view_keys == sorted(pending_first, key=lambda r: int(r.split("-")[1]))
        assert "order: by Ref ▲" in status_text(app, "#changes-status")
        for _ in range(len(table.COLUMNS)):
            await pilot.press("s")
        await settle(pilot)
        assert table.view_keys == pending_first  # back to the workflow's order
        assert "order: pending first, newest first" in status_text(app, "#changes-status")


# -- the forms: focus, footer, Enter, selection, variables ------------------------------


async def test_keys_typed_right_after_n_land_in_the_form(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_pane(pilot)
        # As a terminal sends them: every key queued at once behind the one that opens
        # the form (Pilot.press would wait for the app between keys).
        # No templates configured: no template field, so one Tab reaches the title.
        for key in ("n", "tab", *"Fast title"):
            char = key if len(key) == 1 else "\t"
            app.post_message(events.Key("space" if key == " " else key, char))
        await wait_for(pilot, lambda: isinstance(app.screen, ChangeFormScreen)
                       and value(app, "title").endswith("title"), "the typed title")
        await settle(pilot)
        assert isinstance(app.screen, ChangeFormScreen)
        assert (value(app, "type"), value(app, "title")) == ("normal", "Fast title")
        assert not app.screen.query("#field-template")


async def test_forms_show_save_and_cancel_and_enter_moves_on(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    refs = seed_changes(tmp_path, alice)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_pane(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ChangeFormScreen)
        footer = form.query_one(Footer)
        shown = {b.description for _key, (_node, b, enabled, _tip)
                 in form.active_bindings.items() if b.show and enabled}
        assert {"Save", "Cancel"} <= shown and footer.is_mounted
        # Enter moves to the next field and does not save, even on the last field.
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is form and form.focused is form.query_one("#field-title", Input)
        form.query_one("#field-test_plan", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is form and form.focused is form.query_one("#save", Button)
        await pilot.press("escape")
        await settle(pilot)

        await open_detail(pilot, refs["draft"])
        await pilot.press("e")
        await settle(pilot)
        edit = app.screen
        assert isinstance(edit, ChangeEditScreen)
        assert {"Save", "Cancel"} <= {b.description for _k, (_n, b, enabled, _t)
                                      in edit.active_bindings.items() if b.show and enabled}
        await pilot.press("enter", "enter")  # type -> title -> description
        await settle(pilot)
        assert app.screen is edit and edit.focused is edit.query_one("#field-description", Input)
        # The cursor entering a filled field does not select its text: typing adds to it.
        await pilot.press("shift+tab", *" now")
        await settle(pilot)
        assert value(app, "title") == "Rotate nginx logs daily now"


SECRET_PROCEDURE = """\
id: greet
title: Write a greeting
version: "1"
variables:
  - name: text
    required: true
  - name: token
    secret: true
  - name: colour
    choices: [red, blue]
    default: red
steps:
  - id: write
    title: Write it
    kind: command
    command: echo {{ text }}
"""


async def test_variables_field_of_the_forms(tmp_path: Path) -> None:
    alice = change_services(tmp_path)
    add_procedure(alice, SECRET_PROCEDURE)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_pane(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ChangeFormScreen)
        base = {"title": "Greet", "hosts": "web01", "implementation": "greet"}

        async def save(values: dict[str, str]) -> str:
            for name, text in {**base, **values}.items():
                form.query_one(f"#field-{name}", Input).value = text
            await pilot.press("ctrl+s")
            await settle(pilot)
            return status_text(app, "#fields-error") if app.screen is form else ""

        problem = await save({"variables": "token=s3cret"})
        assert "token is a secret variable of procedure greet and is never stored" in problem
        assert "ITOP_VAR_token" in problem
        problem = await save({"variables": "size=3"})
        assert "size is not a variable of greet" in problem
        problem = await save({"variables": "colour=green"})
        assert "colour (implementation procedure greet) must be one of red, blue" in problem
        problem = await save({"variables": "text"})
        assert "Variables: NAME=VALUE pairs" in problem
        assert await save({"variables": "text='hello world'"}) == ""
        detail = app.screen
        assert isinstance(detail, ChangeDetailScreen)
        ref = detail.ref
        assert workflow(alice).get(ref).variables == {"text": "hello world"}

        await pilot.press("e")
        await settle(pilot)
        assert value(app, "variables") == "text='hello world'"
        app.screen.query_one("#field-variables", Input).value = "text=bye colour=blue"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is detail
    assert workflow(alice).get(ref).variables == {"text": "bye", "colour": "blue"}
    assert not any("s3cret" in line for line in
                   (tmp_path / "data" / "changes.json").read_text().splitlines())


# -- `i` asks for the values a procedure needs, before the change moves --------------------


def test_workflow_refuses_a_missing_variable_before_the_change_moves(tmp_path: Path) -> None:
    import asyncio

    from itop_tui.domain.change import ChangeRefused

    alice = change_services(tmp_path)
    add_procedure(alice, SECRET_PROCEDURE)
    change = approved(tmp_path, alice, ready_spec("Greet", "web01", implementation="greet"))
    mine = ChangeWorkflow(alice, clock=lambda: TOMORROW_22 + timedelta(minutes=1))
    with pytest.raises(ChangeRefused) as refused:
        asyncio.run(mine.implement(change.ref))
    assert refused.value.reason.startswith(
        f"text is a variable of procedure greet (the implementation of {change.ref}) and is "
        "required: give it with --var text=VALUE")
    assert mine.get(change.ref).state == "scheduled"
    needed = mine.missing_variables(mine.get(change.ref))
    assert [(n.name, n.procedure, n.variable.secret) for n in needed] == [
        ("text", "greet", False), ("token", "greet", True)]


async def test_implement_asks_for_missing_values_and_runs_over_ssh(
        tmp_path: Path, trusted_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = replace(trusted_settings, roles={"alice": "operator", "bob": "approver"})

    def login(name: str) -> Services:
        monkeypatch.setenv("LOGNAME", name)
        monkeypatch.setenv("USER", name)
        return as_login(Services.open(settings, origin="tui"), name)

    alice = login("alice")
    alice.inventory.upsert_hosts([Host(name="testhost", status="production", criticality="low")])
    mark = tmp_path / "work" / "mark"
    mark.parent.mkdir()
    target = shlex.quote(str(mark))
    add_procedure(alice, (
        'id: write-text\ntitle: Write a text\nversion: "1"\n'
        "variables:\n  - name: text\n    required: true\n  - name: token\n    secret: true\n"
        "steps:\n  - id: write\n    title: Write it\n    kind: command\n"
        f"    command: t={{{{ text }}}}; printf '%s\\n' \"$t\" > {target}\n"))
    mine = ChangeWorkflow(alice)
    now = mine.clock()
    ref = mine.create(ChangeSpec(
        title="Write the text", description="d", justification="j", hosts="testhost",
        impact="none", outage=False, implementation="write-text", backout_plan="rm it",
        start=now - timedelta(minutes=1), end=now + timedelta(hours=1))).ref
    mine.submit(ref)
    bob = login("bob")
    ChangeWorkflow(bob).assess(ref)
    ChangeWorkflow(bob).approve(ref)
    alice = login("alice")
    ChangeWorkflow(alice).schedule(ref)

    app = ItopApp(alice)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await open_detail(pilot, ref)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, FieldsDialog),
                       "the values dialog")
        dialog = app.screen
        assert isinstance(dialog, FieldsDialog)
        assert [f.name for f in dialog.fields] == ["text", "token"]
        assert dialog.query_one("#field-token", Input).password
        # Escape: nothing happens, the change stays scheduled (not stuck in implement).
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is detail, "the dialog to close")
        assert ChangeWorkflow(alice).get(ref).state == "scheduled"

        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, FieldsDialog), "the values dialog")
        app.screen.query_one("#field-text", Input).value = "hello from the pane"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: not detail.running and detail.change is not None
                       and detail.change.state == "review", "the implementation")
    assert mark.read_text() == "hello from the pane\n"
    # Given for this run only: not stored on the change.
    assert ChangeWorkflow(alice).get(ref).variables == {}


def test_the_template_field_is_there_only_when_templates_are_configured() -> None:
    assert "template" not in [f.name for f in change_fields([])]
    with_templates = {f.name: f for f in change_fields(["os-patch", "restart"])}
    assert with_templates["template"].choices == ("os-patch", "restart")
    assert list(with_templates)[:3] == ["type", "template", "title"]
