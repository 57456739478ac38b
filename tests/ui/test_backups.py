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
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, Footer, Input, Log, Select, TextArea
from ui_fixtures import open_services, settle

import itop_tui.app as app_module
import itop_tui.screens.backups as backups_module
from itop_tui.app import ItopApp
from itop_tui.domain.backup import BackupJob, BackupRun, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupRunner
from itop_tui.screens.backup_job_form import BackupJobForm
from itop_tui.screens.backups import (
    BackupsScreen,
    RunHistoryTable,
    format_age,
    format_next_due,
    run_row,
)
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.restore_dialog import (
    RestoreDialog,
    count_text,
    file_lines,
    wrap_path,
)
from itop_tui.screens.scheduled_backups import ScheduledBackups
from itop_tui.services.backup_methods import FileEntry
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
        assert [before[i] for i in (0, 1, 7, 8)] == ["docs", "box", "tar", "manual"]
        assert before[4] == "never" and before[2] == "never"

        await run_backup(pilot, screen)

        after = row_text(screen)
        assert after[4] != "never" and after[2] == "ok"
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
        title = str(dialog.query_one("#restore-files-title").render())
        assert title.startswith("Dry run: 5 entries (3 files)") and str(target) in title
        # Every target path is there whole (a long one over two lines).
        shown = "".join(line.strip() for line in dialog.query_one(Log).lines)
        assert str(target / str(source).lstrip("/") / "sub" / "b.bin") in shown
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
        shown = "".join(line.strip() for line in dialog.query_one(Log).lines)
        assert str(source / "a.txt") in shown

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


# -- what the reviewer found -------------------------------------------------------------


class MovingClock:
    """A clock the test moves on (the pane's ages are counted from it)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_pane_refreshes_without_a_key(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(backups_module, "REFRESH_INTERVAL", 0.2)
    services, _source = setup_job(tmp_path)
    clock = MovingClock()
    app = ItopApp(services, clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        assert row_text(screen)[4] == "never"
        # Another itop (here: another runner on the same data dir) backs the job up.
        other = BackupRunner(services)
        (run,) = await other.run_job("docs")
        assert run.status == "succeeded", run.log
        await wait_until(pilot, lambda: row_text(screen)[4] == format_age(run, clock.now),
                         what="the other itop's run")
        clock.now += timedelta(minutes=10)
        later = format_age(run, clock.now)
        assert later != format_age(run, clock.now - timedelta(minutes=10))
        await wait_until(pilot, lambda: row_text(screen)[4] == later, what="the age moving on")


async def test_running_then_cancelled_state(tmp_path: Path) -> None:
    services, source = setup_job(tmp_path)
    go = tmp_path / "go"
    runner = BackupRunner(services)
    job = runner.job("docs")
    # The pre command holds the run until the test lets it go (a file, not a sleep here).
    job.pre_command = f"i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"
    runner.edit_job("docs", job)
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        await pilot.press("r")
        await wait_until(pilot, lambda: row_text(screen)[2] == "running", what="running")
        await pilot.press("c")
        go.write_text("")
        await wait_until(pilot, lambda: screen.operation is None
                         and screen.statuses["docs@box"].last_run is not None, what="cancelled")
        await settle(pilot)
        assert row_text(screen)[2] == "cancelled"
        status_line = str(screen.query_one("#backup-status").render())
        assert "1 cancelled" in status_line and "failed" not in status_line
    (run,) = BackupRunner(services).history("docs")
    assert run.status == "cancelled"


async def test_job_without_hosts_is_listed_and_editable(tmp_path: Path) -> None:
    services, source = setup_job(tmp_path)
    BackupRunner(services).add_job(BackupJob(name="orphan", hosts="nohost",
                                             sources=[str(source)]))
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, BackupsScreen), what="pane")
        screen = pilot.app.screen
        assert isinstance(screen, BackupsScreen)
        await wait_until(pilot, lambda: screen.table.row_count == 2, what="both jobs")
        await settle(pilot)
        orphan = screen.table.row("orphan@")
        assert orphan is not None
        assert [c.text for c in orphan.cells][1:2] + [orphan.cells[2].text] == [
            "(no host matches)", "no hosts"]
        assert str(screen.query_one("#backup-status").render()).startswith("2 job(s)")
        assert screen.table.move_to("orphan@")
        await pilot.pause()
        await pilot.press("r")  # nothing to run: said so, the pane not busy
        await wait_until(pilot, lambda: any("matches no host" in n.message
                                            for n in app._notifications), what="refusal")
        assert screen.operation is None
        form = await open_form(pilot, "e")
        fill(form, hosts="box")
        await pilot.click("#job-save")
        await wait_until(pilot, lambda: "orphan@box" in screen.statuses, what="edited job")


async def test_job_form_hints_errors_and_keys(tmp_path: Path) -> None:
    services, source = setup_job(tmp_path)
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        await open_pane(pilot)
        form = await open_form(pilot, "n")
        # Nothing typed yet: no complaint about the empty hosts field.
        assert str(form.query_one("#job-hosts-hint").render()).strip() == ""
        # The form's own footer shows Save (ctrl+s), not the pane's keys.
        footer = form.query_one(Footer)
        await pilot.pause()
        shown = {b.binding.description for b in form.active_bindings.values() if b.binding.show}
        assert "Save" in shown and "Run now" not in shown
        assert footer.screen is form

        fill(form, name="n1", hosts="bo*", sources="relative/path")
        await pilot.click("#job-save")
        await pilot.pause()
        assert str(form.query_one("#job-error").render()).startswith("sources[0]:")
        fill(form, sources=str(source))
        await wait_until(pilot, lambda: str(form.query_one("#job-error").render()).strip() == "",
                         what="the error gone once fixed")
        fill(form, destination="ssh://nohost/srv/x")
        await pilot.click("#job-save")
        await pilot.pause()
        assert "backup host 'nohost' is not in the inventory" in str(
            form.query_one("#job-error").render())
        assert pilot.app.screen is form


async def test_job_form_counts_the_next_run_from_the_current_time(tmp_path: Path) -> None:
    clock = MovingClock()
    clock.now = datetime(2026, 11, 25, 22, 37, 50, tzinfo=UTC)

    class FormApp(App[None]):
        def on_mount(self) -> None:
            self.push_screen(BackupJobForm(clock=clock))

    app = FormApp()
    async with app.run_test(size=(70, 40)) as pilot:
        await pilot.pause()
        form = app.screen
        assert isinstance(form, BackupJobForm)
        clock.now = datetime(2026, 11, 25, 22, 38, 19, tzinfo=UTC)  # typed a little later
        fill(form, schedule="* * * * *")
        await pilot.pause()
        assert "next run: 2026-11-25 22:39 UTC" in str(form.query_one("#job-schedule-hint").render())
        # In a 70-column terminal the form fits, and a long hint wraps rather than being cut.
        fill(form, hosts="x")
        await pilot.pause()
        fill(form, hosts="")
        await pilot.pause()
        hint = form.query_one("#job-hosts-hint")
        assert "group:prod)" in str(hint.render())
        await wait_until(pilot, lambda: hint.size.height == 2, timeout=3, what="wrapped hint")
        assert hint.region.right <= 70


def test_next_due_says_now_or_overdue() -> None:
    now = datetime(2026, 11, 25, 22, 46, tzinfo=UTC)
    assert format_next_due("2026-11-25T22:47:00Z", now) == "2026-11-25 22:47"
    assert format_next_due("2026-11-25T22:46:00Z", now) == "now"
    assert format_next_due("2026-11-25T22:35:00Z", now) == "overdue"
    assert format_next_due(None, now) == "-"


def test_restore_dialog_lines_keep_types_and_both_ends_of_paths() -> None:
    long_path = "srv/www/" + "a-long-directory/" * 10 + "index.html"
    entries = [FileEntry("etc/link", "symlink", 0, "0777"), FileEntry("etc", "dir", 0, "0755"),
               FileEntry(long_path, "file", 10, "0644"), FileEntry("etc/h", "hardlink", 0, "0644")]
    lines = file_lines(entries, width=80)
    assert lines[0].split()[0] == "symlink" and lines[-1].split()[0] == "hardlink"
    assert all(len(line) <= 80 for line in lines)
    # The long path goes on over indented lines, each broken after a "/".
    pieces = lines[2:-1]
    assert len(pieces) > 1 and all(line.startswith(" " * 30) for line in pieces[1:])
    assert "".join(line.strip() for line in pieces).endswith(long_path)
    assert all(line.rstrip().endswith("/") for line in pieces[:-1])
    assert count_text(entries) == "4 entries (1 files)"
    assert wrap_path("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_history_is_newest_first_with_the_arrow_down(tmp_path: Path) -> None:
    table = RunHistoryTable()
    runs = [BackupRun(id=f"BKR-{n}", job="j", host="h", kind="backup", start=f"2025-06-0{n}T00:00:00Z",
                      status="succeeded", end=f"2025-06-0{n}T00:01:00Z") for n in (1, 2, 3)]
    table.set_rows(run_row(r) for r in runs)
    assert [r.run.id for r in table.rows()] == ["BKR-3", "BKR-2", "BKR-1"]
    assert table.sort_reverse  # drawn as "Started ▼"


async def test_restore_directory_typed_is_kept_when_the_run_list_comes_late(
    tmp_path: Path,
) -> None:
    services, _source = setup_job(tmp_path)
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pane(pilot)
        await run_backup(pilot, screen)
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RestoreDialog), what="dialog")
        dialog = pilot.app.screen
        assert isinstance(dialog, RestoreDialog)
        target_input = dialog.query_one("#restore-target", Input)
        await wait_until(pilot, lambda: target_input.value.startswith("/var/tmp/itop-restore/"),
                         what="the default directory")
        target_input.value = "/srv/restore-here"
        # The run list read again (as when it arrives after the typing started).
        dialog.post_message(RestoreDialog.RunsLoaded(list(reversed(dialog.runs))))
        await settle(pilot)
        assert target_input.value == "/srv/restore-here"
        # Left at its default, the directory follows the run.
        target_input.value = ""
        dialog.post_message(RestoreDialog.RunsLoaded(list(reversed(dialog.runs))))
        await wait_until(pilot, lambda: target_input.value.startswith("/var/tmp/itop-restore/"),
                         what="the default again")
