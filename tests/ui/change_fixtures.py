"""Helpers for the Changes pane tests: real change stores in a temp data dir, fixed times.

Changes are written and moved with the real :class:`ChangeWorkflow` under
the tests' fixed clock, as the people of :data:`ROLES`, so that every time
in the records (and in the snapshots) is fixed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from procedure_fixtures import procedure_services, second_login
from textual.pilot import Pilot
from textual.widgets import Input, Static
from ui_fixtures import FIXED_NOW, fixed_clock, fleet, fleet_groups, settle

from itop_tui.app import ItopApp
from itop_tui.domain.change import Change
from itop_tui.ops.change_workflow import ChangeSpec, ChangeWorkflow
from itop_tui.screens.change_detail import ChangeDetailScreen
from itop_tui.screens.change_form import FieldsDialog
from itop_tui.screens.changes import ChangesScreen
from itop_tui.services.context import Services

ROLES = {"alice": "approver", "bob": "approver", "carol": "operator"}
"""alice writes changes (and approves others'); bob approves hers; carol operates."""

TOMORROW_22 = FIXED_NOW.replace(hour=22) + timedelta(days=1)


def change_services(tmp_path: Path, login: str = "alice") -> Services:
    """Services over the fixed fleet for ``login``, with :data:`ROLES`."""
    services = procedure_services(tmp_path, fleet(), roles=ROLES, login=login)
    services.inventory.upsert_groups(fleet_groups())
    return services


def as_person(tmp_path: Path, login: str) -> Services:
    """Another person's itop on the same data dir."""
    return second_login(tmp_path, login, ROLES)


def workflow(services: Services) -> ChangeWorkflow:
    """The workflow of ``services``' person under the fixed clock."""
    return ChangeWorkflow(services, clock=fixed_clock)


def ready_spec(title: str, hosts: str, **fields: object) -> ChangeSpec:
    """A normal change with everything submit and schedule need."""
    values: dict[str, object] = {
        "title": title, "description": f"{title}, step by step",
        "justification": "ticket OPS-42", "hosts": hosts, "impact": "a short restart",
        "outage": False, "backout_plan": "restore the previous package",
        "test_plan": "curl the health check",
    }
    values.update(fields)
    return ChangeSpec(**values)  # type: ignore[arg-type]


def approved(tmp_path: Path, alice: Services, spec: ChangeSpec, *, start_hours: float = 0,
             hours: float = 1) -> Change:
    """A change of alice, assessed and approved by bob, scheduled by alice."""
    mine = workflow(alice)
    bobs = workflow(as_person(tmp_path, "bob"))
    ref = mine.create(spec).ref
    mine.submit(ref)
    bobs.assess(ref, comment="looks fine")
    bobs.approve(ref, "go ahead")
    start = TOMORROW_22 + timedelta(hours=start_hours)
    return mine.schedule(ref, start, start + timedelta(hours=hours))


def seed_changes(tmp_path: Path, alice: Services) -> dict[str, str]:
    """Fixed changes in several states; returns their refs by role in the story.

    - ``draft``: a draft of alice;
    - ``scheduled``: approved and scheduled tomorrow 22:00-23:00 on web01-web03;
    - ``overlap``: approved, 22:30-23:30 on web02 (a conflict with ``scheduled``);
    - ``emergency``: an emergency of carol's, waiting for an approval;
    - ``assess``: a normal change of carol's, submitted, to assess.
    """
    mine = workflow(alice)
    carols = workflow(as_person(tmp_path, "carol"))
    refs: dict[str, str] = {}
    refs["draft"] = mine.create(ChangeSpec(title="Rotate nginx logs daily", hosts="stage",
                                           description="logrotate config")).ref
    refs["scheduled"] = approved(tmp_path, alice, ready_spec("Upgrade openssl", "web:&prod")).ref
    refs["overlap"] = approved(tmp_path, alice, ready_spec("Restart nginx", "web02"),
                               start_hours=0.5).ref
    emergency = carols.create(ChangeSpec(type="emergency", title="Disk full on db01",
                                         justification="replication stopped", hosts="db01"))
    refs["emergency"] = carols.submit(emergency.ref).ref
    normal = carols.create(ready_spec("Tune postgres shared_buffers", "db", outage=True))
    refs["assess"] = carols.submit(normal.ref).ref
    return refs


# -- driving the pane -------------------------------------------------------------------


def status_text(app: ItopApp, selector: str) -> str:
    """The text of the Static ``selector`` on the screen on top."""
    return str(app.screen.query_one(selector, Static).content)


async def open_pane(pilot: Pilot[Any]) -> ChangesScreen:
    """Switch to the Changes pane (key 4) and return it once settled."""
    await settle(pilot)
    await pilot.press("4")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ChangesScreen)
    return screen


async def open_detail(pilot: Pilot[Any], ref: str) -> ChangeDetailScreen:
    """Open the detail view of change ``ref`` from the pane."""
    screen = await open_pane(pilot)
    assert screen.table.move_to(ref)
    await pilot.press("enter")
    await settle(pilot)
    detail = pilot.app.screen
    assert isinstance(detail, ChangeDetailScreen) and detail.change is not None
    return detail


async def fill(pilot: Pilot[Any], values: dict[str, str]) -> None:
    """Set the fields of the dialog on top and save it with Ctrl+S."""
    dialog = pilot.app.screen
    assert isinstance(dialog, FieldsDialog)
    for name, value in values.items():
        dialog.query_one(f"#field-{name}", Input).value = value
    await pilot.pause()
    await pilot.press("ctrl+s")
    await settle(pilot)
