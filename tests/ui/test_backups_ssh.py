"""The Backups pane against the real test sshd: a tar job and a restic job, each
backed up twice, verified by a test restore, pruned to one once the job keeps
only the last, and restored from the pane into a new directory whose files match
the source.

The host is ``testhost`` (this machine over SSH, strict host keys); restic runs
on the host with a repository and password file made in the test's temp dir.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from perf_fixtures import wait_until
from textual.pilot import Pilot
from textual.widgets import Button, Input
from ui_fixtures import settle

from itop_tui.app import ItopApp
from itop_tui.domain.backup import BackupJob, Retention, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupRunner
from itop_tui.screens.backups import BackupsScreen
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.restore_dialog import RestoreDialog
from itop_tui.services.context import Services
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

RESTIC = shutil.which("restic")
SIZE = (160, 48)
SSH_TIMEOUT = 120.0
FILES = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 64, "sub/\u00e9t\u00e9.txt": b"summer\n"}


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for name, data in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    return source


def tar_job(tmp_path: Path, source: Path) -> BackupJob:
    return BackupJob(
        name="docs", hosts="testhost", sources=[str(source)], destination=str(tmp_path / "dest"),
        verify=VerifyPolicy(when="never"))


def restic_job(tmp_path: Path, source: Path) -> BackupJob:
    assert RESTIC is not None
    repo, password_file = tmp_path / "restic repo", tmp_path / "restic-password"
    password_file.write_text("not-in-itop-pane\n")
    password_file.chmod(0o600)
    subprocess.run([RESTIC, "init", "-q", "-r", str(repo), "--password-file", str(password_file)],
                   check=True, capture_output=True)
    return BackupJob(
        name="docs", hosts="testhost", method="restic", sources=[str(source)],
        destination=str(repo), password_file=str(password_file),
        verify=VerifyPolicy(when="never"))


async def idle(pilot: Pilot[Any], screen: BackupsScreen, what: str) -> None:
    await wait_until(pilot, lambda: screen.operation is None, what=what, timeout=SSH_TIMEOUT)
    await settle(pilot)


async def run_and_wait(pilot: Pilot[Any], screen: BackupsScreen, successes: int) -> None:
    await pilot.press("r")
    await wait_until(pilot, lambda: screen.operation is None and sum(
        1 for r in screen.history_table.rows()
        if (r.run.kind, r.run.status) == ("backup", "succeeded")) == successes,
        what=f"backup {successes}", timeout=SSH_TIMEOUT)
    await settle(pilot)


@pytest.mark.parametrize("method", ["tar", "restic"])
async def test_back_up_verify_prune_and_restore_over_ssh_from_the_pane(
        tmp_path: Path, trusted_settings: Settings, method: str) -> None:
    if method == "restic" and RESTIC is None:
        pytest.skip("restic is not installed: apt-get install restic (the test command installs it)")
    services = Services.open(trusted_settings, origin="tui")
    services.inventory.upsert_hosts([Host(name="testhost", ssh_alias="testhost")])
    source = make_source(tmp_path)
    job = tar_job(tmp_path, source) if method == "tar" else restic_job(tmp_path, source)
    BackupRunner(services).add_job(job)
    target = tmp_path / "restored"

    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await wait_until(pilot, lambda: isinstance(app.screen, BackupsScreen), what="pane")
        screen = app.screen
        assert isinstance(screen, BackupsScreen)
        await wait_until(pilot, lambda: screen.table.row("docs@testhost") is not None, what="row")

        await run_and_wait(pilot, screen, 1)
        (source / "a.txt").write_bytes(b"alpha, second version\n")
        await run_and_wait(pilot, screen, 2)

        # Verify: a test restore of the newest backup, compared with what was backed up.
        await pilot.press("v")
        await wait_until(pilot, lambda: screen.operation is None and any(
            (r.run.kind, r.run.status) == ("verify", "succeeded")
            for r in screen.history_table.rows()), what="verify", timeout=SSH_TIMEOUT)
        await settle(pilot)
        assert screen.statuses["docs@testhost"].last_verified is not None

        # Keep only the last backup from now on (as the job form's edit would);
        # prune's dry run names the older backup, then it goes.
        BackupRunner(services).edit_job("docs", replace(job, retention=Retention(keep_last=1)))
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog),
                         what="prune question", timeout=SSH_TIMEOUT)
        await pilot.press("y")
        await idle(pilot, screen, "prune")
        await wait_until(pilot, lambda: any(
            r.run.detail.get("pruned_by") for r in screen.history_table.rows()), what="pruned")
        backups = sorted((r.run for r in screen.history_table.rows() if r.run.kind == "backup"),
                         key=lambda run: run.number)
        assert [bool(run.detail.get("pruned_by")) for run in backups] == [True, False]

        # Restore the kept (newest) backup into a new directory.
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, RestoreDialog), what="dialog")
        dialog = app.screen
        assert isinstance(dialog, RestoreDialog)
        dialog.query_one("#restore-target", Input).value = str(target)
        await pilot.pause()
        go = dialog.query_one("#restore-go", Button)
        await pilot.click("#restore-dry-run")
        await wait_until(pilot, lambda: not go.disabled, what="dry run", timeout=SSH_TIMEOUT)
        assert not target.exists()
        await pilot.click("#restore-go")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.screen is screen, what="dialog closed",
                         timeout=SSH_TIMEOUT)
        await settle(pilot)

    # The restored tree holds the source's files as of the second backup.
    restored_root = target / str(source).lstrip("/")
    assert digests(restored_root) == digests(source)
    await services.close()
