"""Snapshot tests: the Backups pane and the restore dialog, over fixed jobs and runs.

Jobs are added with a fixed clock and their runs recorded straight into the
backup store with fixed times (the one tar run has a real archive file and
manifest, written here), so every run draws the same screen. Update the
stored SVGs after an intended change with
``pytest tests/ui/test_backup_snapshots.py --snapshot-update`` and review them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from perf_fixtures import wait_until
from textual.pilot import Pilot
from textual.widgets import Input, Log, TextArea
from ui_fixtures import FIXED_NOW, fixed_clock, fleet, fleet_groups, open_services, settle

from itop_tui.app import ItopApp
from itop_tui.domain.backup import BackupJob, BackupRun, VerifyPolicy, utc_now_text
from itop_tui.ops.backup_runner import BackupRunner
from itop_tui.screens.backup_job_form import BackupJobForm
from itop_tui.screens.backups import BackupsScreen
from itop_tui.screens.restore_dialog import RestoreDialog
from itop_tui.services.backup_methods import manifest_path

SIZE = (160, 48)

SnapCompare = Callable[..., bool]

MANIFEST_FILES = [
    {"path": "etc/hostname", "type": "file", "size": 6, "mode": "0644"},
    {"path": "etc/nginx", "type": "dir", "size": 0, "mode": "0755"},
    {"path": "etc/nginx/nginx.conf", "type": "file", "size": 2412, "mode": "0644"},
    {"path": "etc/nginx/sites-enabled/default", "type": "symlink", "size": 0, "mode": "0777"},
]


def at(hours: float) -> str:
    return utc_now_text(FIXED_NOW - timedelta(hours=hours))


def record(runner: BackupRunner, job: str, host: str, kind: str, status: str, started: float,
           seconds: float, **fields: Any) -> BackupRun:
    run = runner.repo.start_run(BackupRun(id="", job=job, host=host, kind=kind,
                                          start=at(started), actor="alice", origin="tui"))
    run.status = status
    run.end = at(started - seconds / 3600)
    for name, value in fields.items():
        setattr(run, name, value)
    return runner.repo.finish_run(run)


def make_app(tmp_path: Path) -> ItopApp:
    services = open_services(tmp_path / "data", fleet(), fleet_groups())
    runner = BackupRunner(services, clock=lambda: FIXED_NOW - timedelta(days=3))
    never = VerifyPolicy(when="never")
    runner.add_job(BackupJob(name="etc", hosts="web01", sources=["/etc"],
                             schedule="30 2 * * *", rpo_hours=26, verify=never))
    runner.add_job(BackupJob(name="pgdump", hosts="db01", method="command",
                             command="pg_dumpall -f /srv/dump.sql", schedule="0 * * * *",
                             rpo_hours=24, verify=never))
    runner.add_job(BackupJob(name="home", hosts="cache01", sources=["/home"], verify=never))
    runner.set_paused("home", True)

    archive = tmp_path / "archives" / "etc-web01-BKR-1.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"")
    manifest_path(archive).write_text(json.dumps({"host": "web01", "files": MANIFEST_FILES}))
    backup = record(runner, "etc", "web01", "backup", "succeeded", 3, 42, bytes=5_321_004,
                    files=len(MANIFEST_FILES), archive=str(archive), sha256="0" * 64)
    record(runner, "etc", "web01", "verify", "succeeded", 2, 12, files=2, of_run=backup.id)
    record(runner, "pgdump", "db01", "backup", "succeeded", 30, 300, bytes=81_000_000)
    record(runner, "pgdump", "db01", "backup", "failed", 1, 7, log="pg_dumpall: connection refused")
    return ItopApp(services, clock=fixed_clock)


async def pane_shown(pilot: Pilot[Any]) -> BackupsScreen:
    await settle(pilot)
    await pilot.press("5")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackupsScreen), what="pane")
    screen = pilot.app.screen
    assert isinstance(screen, BackupsScreen)
    await wait_until(pilot, lambda: screen.table.row_count == 3, what="rows")
    await settle(pilot)
    return screen


def test_backups_pane(snap_compare: SnapCompare, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await pane_shown(pilot)
        assert screen.table.cursor_key == "etc@web01"  # its history below
        await wait_until(pilot, lambda: screen.history_table.row_count == 2, what="history")
        await settle(pilot)

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_restore_dialog(snap_compare: SnapCompare, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pane_shown(pilot)
        await pilot.press("R")  # etc, the first row
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RestoreDialog), what="dialog")
        dialog = pilot.app.screen
        await wait_until(pilot, lambda: dialog.query_one(Log).line_count == len(MANIFEST_FILES),
                         what="files")
        for widget in dialog.query(Input):
            widget.cursor_blink = False
        await pilot.pause(0.2)  # (an exclusive worker was replaced: settle() would raise)

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_job_form(snap_compare: SnapCompare, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pane_shown(pilot)
        await pilot.press("e")  # etc, the first row
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackupJobForm), what="form")
        form = pilot.app.screen
        await wait_until(pilot, lambda: "matches" in str(form.query_one("#job-hosts-hint").render()),
                         what="hosts hint")
        for widget in form.query(Input):
            widget.cursor_blink = False
        for area in form.query(TextArea):
            area.cursor_blink = False
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=run_before)
