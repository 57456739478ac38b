"""The Problems / Audit pane (key 6): the audit log filtered, its chain checked, what
another itop appends followed, and stored problems acknowledged from there."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ItopCli
from perf_fixtures import wait_until
from textual.pilot import Pilot
from textual.widgets import Input, Static
from ui_fixtures import FIXED_NOW, fixed_clock, fleet, fleet_groups, open_services, settle

from itop_tui.app import ItopApp
from itop_tui.screens.audit import AuditScreen, audit_matches, audit_row, parse_audit_filter
from itop_tui.screens.problems import AcknowledgeDialog
from itop_tui.screens.store_follow import STORE_POLL_SECONDS
from itop_tui.services.audit import GENESIS_HASH, AuditEvent, event_hash
from itop_tui.services.context import Services
from itop_tui.services.problem_repo import ProblemRepository

SIZE = (160, 48)
FOLLOW_TIMEOUT = 10 * STORE_POLL_SECONDS

# (at, actor, origin, action, target, detail, result)
EVENTS: list[tuple[str, str, str, str, str, Any, str]] = [
    ("2025-06-01T08:00:00+00:00", "alice", "cli", "inventory.import", "hosts.yml",
     {"added": 10}, "ok"),
    ("2025-06-01T09:15:00+00:00", "alice", "tui", "run", "web01",
     {"command": "uptime", "exit_status": 0}, "ok"),
    ("2025-06-01T09:15:01+00:00", "alice", "tui", "run", "web02",
     {"command": "uptime", "exit_status": 255, "error": "connection refused"}, "failed"),
    ("2025-06-01T10:00:00+00:00", "bob", "cli", "change.approve", "CHG-3",
     {"comment": "go"}, "ok"),
    ("2025-06-01T11:30:00+00:00", "bob", "scheduler", "backup.run", "site@db01",
     {"run": "BKR-4", "bytes": 1048576}, "ok"),
]


def write_log(path: Path) -> None:
    """A valid hash-chained log of :data:`EVENTS`, at fixed times (for snapshots)."""
    prev = GENESIS_HASH
    lines = []
    for seq, (at, actor, origin, action, target, detail, result) in enumerate(EVENTS, 1):
        body: dict[str, Any] = {"seq": seq, "at": at, "actor": actor, "origin": origin,
                                "action": action, "target": target, "detail": detail,
                                "result": result, "prev_hash": prev}
        body["hash"] = prev = event_hash(body)
        lines.append(json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n")
    path.write_text("".join(lines))


@pytest.fixture
def audited(tmp_path: Path) -> Services:
    """Services over the fixed fleet whose audit log holds exactly :data:`EVENTS`."""
    services = open_services(tmp_path / "data", fleet(), fleet_groups())
    write_log(services.audit.path)
    return services


async def open_audit(pilot: Pilot[Any]) -> AuditScreen:
    await settle(pilot)
    await pilot.press("6")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, AuditScreen)
    await wait_until(pilot, lambda: screen.total > 0, what="the audit log read")
    return screen


def status(screen: AuditScreen) -> str:
    return str(screen.query_one("#audit-status", Static).content)


def test_filter_terms_and_words() -> None:
    rows = [audit_row(AuditEvent(i, at, actor, origin, action, target, detail, result, "", ""))
            for i, (at, actor, origin, action, target, detail, result) in enumerate(EVENTS, 1)]

    def keys(text: str) -> list[str]:
        wanted = parse_audit_filter(text)
        return [r.key for r in rows if audit_matches(r, wanted)]

    assert keys("") == ["1", "2", "3", "4", "5"]
    assert keys("action:run") == ["2", "3"]  # not backup.run: an action term matches its start
    assert keys("action:change") == ["4"]
    assert keys("result:failed") == ["3"]
    assert keys("actor:bob origin:scheduler") == ["5"]
    assert keys("actor:alice actor:bob target:web02") == ["3"]
    assert keys("refused") == ["3"]  # free text searches the detail too
    assert keys("uptime web01") == ["2"]
    assert keys("colour:red") == []  # not a key: a word that appears nowhere


async def test_events_newest_first_filtered_with_their_detail(audited: Services) -> None:
    app = ItopApp(audited, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_audit(pilot)
        assert screen.table.view_keys == ["5", "4", "3", "2", "1"]
        assert status(screen).startswith("5 of 5 events")
        await pilot.press("slash", *"result:failed")
        await wait_until(pilot, lambda: screen.table.view_keys == ["3"], what="the failed run")
        detail = str(screen.query_one("#audit-detail", Static).content)
        assert "#3 2025-06-01T09:15:01+00:00 alice@tui run web02 failed" in detail
        assert '"error": "connection refused"' in detail
        assert status(screen).startswith("1 of 5 events")


async def test_verify_says_intact_then_names_the_edited_line(audited: Services) -> None:
    app = ItopApp(audited, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_audit(pilot)
        await pilot.press("v")
        await wait_until(pilot, lambda: "chain intact (5 events)" in status(screen),
                         what="the chain checked")
        log = audited.audit.path
        lines = log.read_text().splitlines(keepends=True)
        lines[2] = lines[2].replace("web02", "web09")  # someone hides a failed run
        log.write_text("".join(lines))
        await pilot.press("v")
        await wait_until(pilot, lambda: "CHAIN BROKEN" in status(screen), what="the break")
        assert "line 3" in status(screen)


async def test_an_action_of_another_itop_shows_up_by_itself(
    tmp_path: Path, audited: Services
) -> None:
    config = tmp_path / "itop.yaml"
    config.write_text("{}\n")
    cli = ItopCli(config, Path(audited.settings.data_dir), user="bob")
    app = ItopApp(audited, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_audit(pilot)
        await asyncio.to_thread(cli.ok, "inventory", "add", "zz-new", "--address", "127.0.0.9")
        await wait_until(pilot, lambda: screen.table.view_keys[:1] == ["6"], FOLLOW_TIMEOUT,
                         "the new event on top")
        row = screen.table.row("6")
        assert row is not None
        assert (row.event.actor, row.event.action, row.event.target) == (
            "bob", "inventory.add", "zz-new")


async def test_a_stored_problem_is_acknowledged_from_the_pane(audited: Services) -> None:
    repo = ProblemRepository.in_data_dir(audited.settings.data_dir)
    problem, _ = repo.open("web01", "cpu_percent", "critical", 1_748_770_000.0, 97.0, 95.0)
    app = ItopApp(audited, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_audit(pilot)
        await wait_until(pilot, lambda: screen.problem_table.row_count == 1, what="the problem")
        title = str(screen.query_one("#audit-problems-title", Static).content)
        assert title.startswith("Open problems: 1 (1 not acknowledged)")
        await pilot.press("o", "a")
        await wait_until(pilot, lambda: isinstance(app.screen, AcknowledgeDialog), what="dialog")
        await pilot.press(*"looking, INC-9", "enter")
        await wait_until(
            pilot,
            lambda: (r := screen.problem_table.row(problem.id)) is not None
            and r.acknowledged_by == "alice",
            FOLLOW_TIMEOUT, "the acknowledgement listed",
        )
        stored = repo.get(problem.id)
        assert stored is not None and stored.note == "looking, INC-9"
        # Its audit event is in the list too.
        await wait_until(
            pilot, lambda: any(r.event.action == "problem.acknowledge" for r in screen.rows),
            FOLLOW_TIMEOUT, "the audit event listed",
        )


def test_audit_pane_snapshot(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    services = open_services(tmp_path / "data", fleet(), fleet_groups())
    write_log(services.audit.path)
    repo = ProblemRepository.in_data_dir(services.settings.data_dir)
    repo.open("web01", "cpu_percent", "critical", FIXED_NOW.timestamp() - 300, 97.0, 95.0)

    async def shown(pilot: Pilot[Any]) -> None:
        screen = await open_audit(pilot)
        await wait_until(pilot, lambda: screen.problem_table.row_count == 1, what="the problem")
        for widget in screen.query(Input):
            widget.cursor_blink = False
        await settle(pilot)

    assert snap_compare(ItopApp(services, clock=fixed_clock), terminal_size=SIZE,
                        run_before=shown)
