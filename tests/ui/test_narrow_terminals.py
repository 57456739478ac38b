"""Small terminals (80x24, 100x30): what on-call needs to go on is on screen, whole.

Each test reads the screen as the terminal shows it (the compositor's lines)
and checks that the words that matter are there unbroken: why a trainee's
run cannot start, the backup State and RPO, the change list's headers, the
host detail's values (word-wrapped, never a character or two per line), the
approval-wait dialog inside the screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from change_fixtures import approved, change_services, ready_spec, workflow
from perf_fixtures import wait_until
from procedure_fixtures import add_procedure, local_hosts, procedure_services, wait_for
from test_procedures import ROLES, TEST_PROCEDURE, start_run
from test_trainee_approval_wait import trainee_waits
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Static
from ui_fixtures import fixed_clock, fleet, fleet_groups, open_services, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.domain.backup import BackupJob, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupRunner
from itop_tui.screens.backups import BackupsScreen
from itop_tui.screens.changes import ChangesScreen
from itop_tui.screens.procedure_prompts import ApprovalWait
from itop_tui.widgets.host_detail import HostDetail
from itop_tui.widgets.host_facts import format_fact
from itop_tui.widgets.host_table import HostTable

SIZES = [(80, 24), (100, 30)]


def screen_lines(pilot: Pilot[Any]) -> list[str]:
    """The lines of the terminal as the app draws them now."""
    strips = pilot.app.screen._compositor.render_strips()
    return ["".join(segment.text for segment in strip) for strip in strips]


def words(text: str) -> set[str]:
    """The whitespace-separated words of ``text``."""
    return set(text.split())


def line_with(lines: list[str], text: str) -> str:
    """The first line holding ``text``."""
    found = [line for line in lines if text in line]
    assert found, f"{text!r} not on screen:\n" + "\n".join(lines)
    return found[0]


@pytest.mark.parametrize("size", SIZES)
async def test_trainee_sees_why_the_run_does_not_start(tmp_path: Path,
                                                        size: tuple[int, int]) -> None:
    services = procedure_services(tmp_path, local_hosts("here"), roles=ROLES, login="tina")
    add_procedure(services, TEST_PROCEDURE)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=size) as pilot:
        screen = await start_run(pilot, tmp_path / "changed")
        total = len(screen.steps.steps)
        await wait_for(pilot, lambda: len(screen.unread_steps()) == total, "the unread steps")
        status = line_with(screen_lines(pilot), "Trainee: read each step first")
        # The whole reason, the count included, is on the line.
        assert f"(Tab to the steps, ↓): 0 of {total} read" in status
        assert status.index("Trainee:") < 3


@pytest.mark.parametrize("size", SIZES)
async def test_approval_wait_fits_the_screen(tmp_path: Path, size: tuple[int, int]) -> None:
    services = procedure_services(tmp_path, local_hosts("here"), roles=ROLES, login="tina")
    add_procedure(services, TEST_PROCEDURE)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=size) as pilot:
        await trainee_waits(pilot, tmp_path / "changed")
        await pilot.pause()  # not settle(): the run's worker waits for the approver
        dialog = pilot.app.screen
        assert isinstance(dialog, ApprovalWait)
        box = dialog.query_one("#approval-wait")
        assert Region(0, 0, *size).contains_region(box.region), box.region
        shown = words("\n".join(screen_lines(pilot)))
        for part in (".dialog-text", "#approval-hint"):
            text = str(dialog.query_one(part, Static).content)
            missing = words(text) - shown
            assert not missing, f"{part}: {sorted(missing)} cut off"
        assert {"sign-off", "(Procedures,", "approve", dialog.run_id + "`."} <= shown


@pytest.mark.parametrize("size", SIZES)
async def test_backup_state_and_rpo_are_on_screen(tmp_path: Path,
                                                  size: tuple[int, int]) -> None:
    services = open_services(tmp_path / "data", [Host(name="box", address="local")])
    BackupRunner(services).add_job(BackupJob(
        name="docs", hosts="box", sources=[str(tmp_path)], destination=str(tmp_path / "dest"),
        schedule="30 2 * * *", rpo_hours=26, verify=VerifyPolicy(when="never")))
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackupsScreen), what="pane")
        screen = pilot.app.screen
        assert isinstance(screen, BackupsScreen)
        await wait_until(pilot, lambda: screen.table.row_count == 1, what="the job row")
        await settle(pilot)
        lines = screen_lines(pilot)
        header = line_with(lines, "Job")
        assert {"Job", "Host", "State", "RPO", "Last", "success"} <= words(header)
        row = line_with(lines, "docs")
        assert {"docs", "box", "never", "26h"} <= words(row)
        # The row's state and RPO sit under their headers.
        assert row.index("never") == header.index("State")
        assert row.index("26h") == header.index("RPO")


@pytest.mark.parametrize("size", SIZES)
async def test_change_list_headers_and_status_are_whole(tmp_path: Path,
                                                        size: tuple[int, int]) -> None:
    services = change_services(tmp_path)
    flow = workflow(services)
    flow.create(ready_spec("Upgrade nginx on the web tier", "web01"))
    if size[0] >= 100:  # a scheduled window widens its column; 100 columns still hold it all
        approved(tmp_path, services, ready_spec("Rotate the database certificates", "db"))
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ChangesScreen), what="pane")
        screen = pilot.app.screen
        assert isinstance(screen, ChangesScreen)
        await wait_until(pilot, lambda: screen.changes is not None and screen.table.row_count
                         == len(screen.changes), what="the changes")
        await settle(pilot)
        lines = screen_lines(pilot)
        header = line_with(lines, "Ref")
        labels = {"Ref", "Type", "Title", "Risk", "State", "Window", "(UTC)", "Hosts", "By"}
        assert labels <= words(header), header
        assert "alice" in words(line_with(lines, "CHG-1"))
        status = line_with(lines, "changes ·")
        assert status.rstrip().endswith("order: pending first, newest first"), status


def fact_words(host: Host) -> set[str]:
    """Every word of the host's values the detail shows."""
    values = [host.name, host.address, str(host.port), host.user, host.status,
              host.criticality, host.source, host.notes, ", ".join(host.groups),
              ", ".join(host.tags)]
    values += [format_fact(key, value) for key, value in host.facts.items()]
    return set().union(*(words(str(value)) for value in values if value))


@pytest.mark.parametrize("size", SIZES)
async def test_host_detail_keeps_values_whole(tmp_path: Path, size: tuple[int, int]) -> None:
    services = open_services(tmp_path / "data", fleet(), fleet_groups())
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        table = pilot.app.screen.query_one(HostTable)
        detail = pilot.app.screen.query_one(HostDetail)
        assert table.move_to_host("db02")
        await wait_until(pilot, lambda: detail.host is not None and detail.host.name == "db02",
                         what="the detail of db02")
        await settle(pilot)
        assert detail.detail_layout == ("stacked" if size[0] < 100 else "split")
        body = detail.body
        content = render_text(body.content, body.content_size.width)  # type: ignore[arg-type]
        # Word-wrapped at most: every word of every value is whole somewhere.
        missing = fact_words(detail.host) - words(content)
        assert not missing, f"split or lost: {sorted(missing)}\n{content}"
        # What the panel shows first is on the terminal, the values beside their keys.
        lines = screen_lines(pilot)
        assert {"name", "db02"} <= words(line_with(lines, " name "))
        assert {"address", "127.0.2.2"} <= words(line_with(lines, " address "))
        for line in content.splitlines():
            for word in line.split():
                # A fact like "arch x8 / 6_ / 64" would leave one- or two-cell pieces.
                assert len(word) > 2 or word in fact_words(detail.host) | {"/", "-"}, line
