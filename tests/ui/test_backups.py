"""Pilot tests of the Backups pane: a real tar job on this machine, run, verified and restored.

The host is this machine through the local transport (``address="local"``);
the job's archives go to the test's temp dir. Nothing is mocked: the pane's
runner streams ``tar`` from a real subprocess and restores with ``tar -x``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from perf_fixtures import wait_until
from textual.pilot import Pilot
from textual.widgets import Button, Input, Log
from ui_fixtures import open_services, settle

from itop_tui.app import ItopApp
from itop_tui.domain.backup import BackupJob, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupRunner
from itop_tui.screens.backups import BackupsScreen
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.restore_dialog import RestoreDialog
from itop_tui.services.context import Services

SIZE = (160, 48)
FILES = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 40, "sub/empty": b""}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def setup_job(tmp_path: Path) -> tuple[Services, Path]:
    """Services with host ``box`` (this machine) and tar job ``docs`` of a small tree."""
    services = open_services(tmp_path / "data", [Host(name="box", address="local")])
    source = tmp_path / "source"
    for name, data in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    BackupRunner(services).add_job(BackupJob(
        name="docs", hosts="box", sources=[str(source)], destination=str(tmp_path / "dest"),
        verify=VerifyPolicy(when="never")))
    return services, source


async def open_pane(pilot: Pilot[Any]) -> BackupsScreen:
    await settle(pilot)
    await pilot.press("5")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackupsScreen), what="pane")
    screen = pilot.app.screen
    assert isinstance(screen, BackupsScreen)
    await wait_until(pilot, lambda: screen.table.row_count == 1, what="job row")
    return screen


def row_text(screen: BackupsScreen) -> list[str]:
    row = screen.table.row("docs@box")
    assert row is not None
    return [cell.text for cell in row.cells]


async def run_backup(pilot: Pilot[Any], screen: BackupsScreen) -> None:
    await pilot.press("r")
    await wait_until(pilot, lambda: screen.operation is None and
                     screen.statuses["docs@box"].last_success is not None, what="backup")
    await settle(pilot)


async def test_run_then_verify_from_the_pane(tmp_path: Path) -> None:
    services, _source = setup_job(tmp_path)
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        before = row_text(screen)
        assert before[:4] == ["docs", "box", "tar", "manual"]
        assert before[4] == "never" and before[8] == "never"

        await run_backup(pilot, screen)

        after = row_text(screen)
        assert after[4] != "never" and after[8] == "ok"
        history = [r.run for r in screen.history_table.rows()]
        assert [(r.kind, r.status) for r in history] == [("backup", "succeeded")]
        assert history[0].archive and Path(history[0].archive).is_file()
        assert (tmp_path / "dest") in Path(history[0].archive).parents

        await pilot.press("v")
        await wait_until(pilot, lambda: screen.operation is None and
                         screen.statuses["docs@box"].last_verified is not None, what="verify")
        await settle(pilot)
        assert row_text(screen)[5] != "never"
        kinds = sorted((r.run.kind, r.run.status) for r in screen.history_table.rows())
        assert kinds == [("backup", "succeeded"), ("verify", "succeeded")]

        # Prune of a job without retention: refused with a message, the pane not left busy.
        await pilot.press("p")
        await wait_until(pilot, lambda: screen.operation is None and any(
            "no retention policy" in n.message for n in app._notifications), what="refusal")
        assert screen.operation is None


async def test_restore_dialog_dry_run_then_restore(tmp_path: Path) -> None:
    services, source = setup_job(tmp_path)
    app = ItopApp(services)
    target = tmp_path / "restored"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        await run_backup(pilot, screen)

        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RestoreDialog), what="dialog")
        dialog = pilot.app.screen
        assert isinstance(dialog, RestoreDialog)
        await wait_until(pilot, lambda: dialog.query_one(Log).line_count >= len(FILES),
                         what="file list")
        listed = "\n".join(dialog.query_one(Log).lines)
        assert all(name.rsplit("/", 1)[-1] in listed for name in FILES)
        target_input = dialog.query_one("#restore-target", Input)
        assert target_input.value.startswith("/var/tmp/itop-restore/docs-BKR-")
        restore_button = dialog.query_one("#restore-go", Button)
        assert restore_button.disabled  # no dry run yet

        target_input.value = str(target)
        await pilot.pause()
        await pilot.click("#restore-dry-run")
        await wait_until(pilot, lambda: not restore_button.disabled, what="dry run")
        assert "Dry run" in str(dialog.query_one("#restore-files-title").render())
        assert str(target) in "\n".join(dialog.query_one(Log).lines)
        assert not target.exists()  # a dry run writes nothing

        await pilot.click("#restore-go")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: pilot.app.screen is screen, what="dialog closed")
        await settle(pilot)

    restored = {p.name: digest(p) for p in target.rglob("*") if p.is_file()}
    expected = {Path(n).name: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert restored == expected
    originals = {p.name: digest(p) for p in source.rglob("*") if p.is_file()}
    assert restored == originals
