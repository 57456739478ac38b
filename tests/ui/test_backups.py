"""Pilot tests of the Backups pane: a real tar job on this machine, run, verified and restored.

The host is this machine through the local transport (``address="local"``);
the job's archives go to the test's temp dir. Nothing is mocked: the pane's
runner streams ``tar`` from a real subprocess and restores with ``tar -x``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from perf_fixtures import wait_until
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Input, Log, Select, TextArea
from ui_fixtures import open_services, settle

import itop_tui.app as app_module
from itop_tui.app import ItopApp
from itop_tui.domain.backup import BackupJob, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupRunner
from itop_tui.screens.backup_job_form import BackupJobForm
from itop_tui.screens.backups import BackupsScreen
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.restore_dialog import RestoreDialog
from itop_tui.screens.scheduled_backups import ScheduledBackups
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


# -- the scheduler while the TUI runs ---------------------------------------------------

SHORT_INTERVAL = 0.2


class ScheduledApp(ItopApp):
    """The app with its backup scheduler on a short interval (started as app.py does)."""

    CSS_PATH = str(Path(app_module.__file__ or "").with_name("app.tcss"))
    BACKUP_SCHEDULER_INTERVAL = SHORT_INTERVAL


def add_due_job(services: Services, source: Path, dest: Path) -> None:
    """Tar job ``due`` that runs every minute, created minutes ago: due now."""
    created = datetime.now(UTC) - timedelta(minutes=3)
    BackupRunner(services, clock=lambda: created).add_job(BackupJob(
        name="due", hosts="box", sources=[str(source)], destination=str(dest),
        schedule="* * * * *", verify=VerifyPolicy(when="never")))


async def test_open_app_runs_a_due_job_without_a_key(tmp_path: Path) -> None:
    services, source = setup_job(tmp_path)
    app = ScheduledApp(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        scheduled = ScheduledBackups.of(app)
        assert scheduled is not None
        # The job is added while the pane is shown: only the scheduler can run it,
        # and only its pass message can bring the new row and its success to the pane.
        passes = scheduled.scheduler.passes
        await wait_until(pilot, lambda: scheduled.scheduler.passes > passes, what="a pass")
        lock = BackupRunner(services).lock_for(BackupJob(name="due", hosts="box"))
        assert lock.acquire()  # another itop "runs" it: the scheduler must leave it alone
        add_due_job(services, source, tmp_path / "dest-due")
        try:
            held = scheduled.scheduler.passes
            await wait_until(pilot, lambda: scheduled.scheduler.passes >= held + 2,
                             what="passes while the lock is held")
            assert BackupRunner(services).history("due") == []
            assert screen.statuses["due@box"].last_success is None  # shown, not run
        finally:
            lock.release()

        await wait_until(pilot, lambda: "due@box" in screen.statuses
                         and screen.statuses["due@box"].last_success is not None,
                         what="the scheduled backup shown")
        runs = BackupRunner(services).history("due")
        assert [(r.kind, r.status, r.origin) for r in runs] == [("backup", "succeeded", "scheduler")]
        assert Path(runs[0].archive or "").is_file()
        # Handled: not run again by the next passes (caught up once).
        after = scheduled.scheduler.passes
        await wait_until(pilot, lambda: scheduled.scheduler.passes >= after + 2, what="more passes")
        assert len(BackupRunner(services).history("due")) == 1
        # The pane's other job has no schedule: never run by the scheduler.
        assert BackupRunner(services).history("docs") == []


# -- the job form -----------------------------------------------------------------------


def fill(form: BackupJobForm, **values: str) -> None:
    """Type ``values`` into the form's fields (ids without the ``job-`` prefix)."""
    for key, value in values.items():
        widget = form.query_one(f"#job-{key}")
        if isinstance(widget, TextArea):
            widget.load_text(value)
        elif isinstance(widget, Select):
            widget.value = value
        else:
            assert isinstance(widget, Input)
            widget.value = value


async def open_form(pilot: Pilot[Any], key: str) -> BackupJobForm:
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackupJobForm), what="form")
    form = pilot.app.screen
    assert isinstance(form, BackupJobForm)
    await pilot.pause()
    return form


async def test_create_edit_and_disable_a_job_in_the_pane(tmp_path: Path) -> None:
    services, source = setup_job(tmp_path)
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        form = await open_form(pilot, "n")
        fill(form, name="nightly", hosts="bo*", sources=f"{source}\n{source}/sub\n",
             excludes="*.tmp\n", destination=str(tmp_path / "nightly"), schedule="30 2 * * *",
             **{"keep-last": "3", "keep-daily": "7", "verify-when": "after-backup",
                "verify-scope": "sample", "verify-percent": "25", "rpo": "26",
                "pre": "true", "post": "echo done"})
        await pilot.pause()
        assert "matches 1 host(s): box" in str(form.query_one("#job-hosts-hint").render())
        assert "next run:" in str(form.query_one("#job-schedule-hint").render())

        # A bad cron expression is refused in the form, naming the field.
        fill(form, schedule="61 * * * *")
        await pilot.pause()
        assert "schedule:" in str(form.query_one("#job-schedule-hint").render())
        await pilot.click("#job-save")
        await pilot.pause()
        assert pilot.app.screen is form
        assert str(form.query_one("#job-error").render()).startswith("schedule:")
        assert form.focused is form.query_one("#job-schedule")

        fill(form, schedule="30 2 * * *")
        await pilot.click("#job-save")
        await wait_until(pilot, lambda: "nightly@box" in screen.statuses, what="new job row")
        stored = BackupRunner(services).job("nightly")
        assert (stored.origin, stored.hosts, stored.method) == ("manual", "bo*", "tar")
        assert stored.sources == [str(source), f"{source}/sub"] and stored.excludes == ["*.tmp"]
        assert (stored.retention.keep_last, stored.retention.keep_daily) == (3, 7)
        assert (stored.verify.scope, stored.verify.sample_percent) == ("sample", 25.0)
        assert (stored.rpo_hours, stored.pre_command, stored.post_command) == (26.0, "true",
                                                                               "echo done")

        # Edit: the cursor on the new job, its name fixed, the schedule changed.
        assert screen.table.move_to("nightly@box")
        await pilot.pause()
        form = await open_form(pilot, "e")
        assert form.query_one("#job-name", Input).disabled
        assert form.query_one("#job-sources", TextArea).text.splitlines()[0] == str(source)
        fill(form, schedule="@hourly", rpo="2")
        await pilot.click("#job-save")
        await wait_until(pilot, lambda: screen.statuses["nightly@box"].schedule == "@hourly",
                         what="edited row")
        edited = BackupRunner(services).job("nightly")
        assert (edited.id, edited.rpo_hours, edited.sources) == (stored.id, 2.0, stored.sources)

        # Disable, then enable again.
        await pilot.press("d")
        await wait_until(pilot, lambda: screen.statuses["nightly@box"].state == "paused",
                         what="paused")
        assert BackupRunner(services).job("nightly").paused
        await pilot.press("d")
        await wait_until(pilot, lambda: screen.statuses["nightly@box"].state != "paused",
                         what="resumed")
        assert not BackupRunner(services).job("nightly").paused


async def test_restore_in_place_on_production_meets_the_change_gate(tmp_path: Path) -> None:
    services, source = setup_job(tmp_path)
    box = services.inventory.get_host("box")
    assert box is not None
    box.status = "production"
    services.inventory.upsert_hosts([box])
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        await run_backup(pilot, screen)
        (source / "a.txt").write_bytes(b"changed\n")

        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RestoreDialog), what="dialog")
        dialog = pilot.app.screen
        assert isinstance(dialog, RestoreDialog)
        await wait_until(pilot, lambda: dialog.run_id is not None, what="runs")
        dialog.query_one("#restore-in-place", Checkbox).value = True
        await pilot.pause()
        assert dialog.query_one("#restore-target", Input).disabled
        await pilot.click("#restore-dry-run")
        restore_button = dialog.query_one("#restore-go", Button)
        await wait_until(pilot, lambda: not restore_button.disabled, what="dry run")
        assert str(source / "a.txt") in "\n".join(dialog.query_one(Log).lines)

        await pilot.click("#restore-go")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), what="confirm")
        assert "Overwrite the files on box" in str(pilot.app.screen.query_one(".dialog-text")
                                                    .render())
        await pilot.press("y")
        await wait_until(pilot, lambda: "Refused by the change gate" in str(
            dialog.query_one("#restore-status").render()), what="refusal")
        assert pilot.app.screen is dialog  # stays open
        assert (source / "a.txt").read_bytes() == b"changed\n"

        # Not production any more: the same restore goes ahead and puts the file back.
        box.status = "staging"
        services.inventory.upsert_hosts([box])
        await pilot.click("#restore-go")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: pilot.app.screen is screen, what="dialog closed")
    assert (source / "a.txt").read_bytes() == FILES["a.txt"]
