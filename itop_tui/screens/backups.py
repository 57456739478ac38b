"""The Backups pane: every job on every host, its runs, and run/verify/prune/restore by key.

All store reads go through a :class:`~itop_tui.ops.backup_runner.BackupRunner`
built in a thread worker (it syncs the config's jobs into the store); the
runner's async operations run in async workers that report back with
messages. One operation runs at a time; ``c`` cancels it cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, Static
from textual.worker import Worker, WorkerState

from itop_tui.domain.backup import BackupJob, BackupRun, parse_utc
from itop_tui.ops.backup_runner import (
    NO_HOSTS,
    SCHEDULER_INTERVAL,
    BackupRunner,
    HostStatus,
    Progress,
)
from itop_tui.ops.backup_scheduler import SchedulerPass
from itop_tui.screens.backup_job_form import BackupJobForm
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.restore_dialog import RestoreDialog
from itop_tui.screens.scheduled_backups import scheduler_passes, scheduler_progress
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.context import Services
from itop_tui.widgets.fleet_table import Cell, CellTable, TableColumn
from itop_tui.widgets.host_table import Clock
from itop_tui.widgets.pane_tabs import PaneTabs

RunnerFactory = Callable[[Services], BackupRunner]
"""Builds the pane's runner (called in a thread); tests may pass their own."""

STATE_STYLES = {"ok": "ok", "running": "running", "paused": "muted", "never": "muted",
                "cancelled": "muted", NO_HOSTS: "failed", "failed": "failed",
                "breached": "breached"}
REFRESH_INTERVAL = 5.0
"""Seconds between two reads of the statuses while the pane is shown (runs of other
itop processes, and the ages, move on without a key)."""


def format_bytes(size: int | None) -> str:
    """``1.5 MiB`` style sizes; ``-`` when unknown."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def format_age(run: BackupRun | None, now: datetime) -> str:
    """``2025-06-01 10:00 (2h ago)`` for a run's end; ``never`` without one."""
    if run is None:
        return "never"
    moment = parse_utc(run.end or run.start)
    age = format_duration(max(0.0, (now - moment).total_seconds()))
    return f"{moment:%Y-%m-%d %H:%M} ({age} ago)"


@dataclass(frozen=True)
class JobRow:
    """One job on one host as the jobs table lists it."""

    status: HostStatus
    cells: tuple[Cell, ...]

    @property
    def key(self) -> str:
        """``job@host``."""
        return f"{self.status.job}@{self.status.host}"


def format_next_due(next_due: str | None, now: datetime) -> str:
    """``2025-06-01 02:30``; ``now`` for a slot just due, ``overdue`` for an older one.

    The next due time counts from the last slot handled, so it lies in the
    past while the job waits for a scheduler pass.
    """
    if not next_due:
        return "-"
    due = parse_utc(next_due)
    if due > now:
        return f"{due:%Y-%m-%d %H:%M}"
    if (now - due).total_seconds() < 2 * SCHEDULER_INTERVAL:
        return "now"
    return "overdue"


def job_row(status: HostStatus, now: datetime) -> JobRow:
    """The row of ``status``, its state cell coloured by state and RPO."""
    style = STATE_STYLES.get(status.state, "")
    rpo = f"{status.rpo_hours:g}h" if status.rpo_hours is not None else "-"
    # In the order of BackupJobTable.COLUMNS: what on-call needs first.
    return JobRow(status, (
        Cell(status.job, style),
        Cell(status.host if status.has_host else "(no host matches)",
             "" if status.has_host else "failed"),
        Cell(status.state, style),
        Cell(rpo, "breached" if status.rpo_state == "breached" else ""),
        Cell(format_age(status.last_success, now)),
        Cell(format_age(status.last_verified, now)),
        Cell(format_next_due(status.next_due, now)),
        Cell(status.method),
        Cell(status.schedule or "manual"),
    ))


class BackupJobTable(CellTable[JobRow]):
    """Jobs per host: last success, last verify, next due and state, coloured by RPO state."""

    # The state and RPO come right after the job and host, and the ages are
    # fitted to what they say: on an 80-column terminal the columns on-call
    # needs are on screen, the rest is a horizontal scroll away.
    COLUMNS: ClassVar[tuple[TableColumn, ...]] = (
        TableColumn("job", "Job", 6, max_width=24),
        TableColumn("host", "Host", 6, max_width=24),
        TableColumn("state", "State", 7, max_width=10),
        TableColumn("rpo", "RPO", 5, max_width=7),
        TableColumn("success", "Last success", 14, max_width=30),
        TableColumn("verify", "Last verify", 13, max_width=30),
        TableColumn("next", "Next due", 10, max_width=16),
        TableColumn("method", "Method", 7),
        TableColumn("schedule", "Schedule", 10, flex=True),
    )
    STYLE_PREFIX: ClassVar[str] = "backup-table"
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "backup-table--header", "backup-table--cursor", "backup-table--ok",
        "backup-table--running", "backup-table--muted", "backup-table--failed",
        "backup-table--breached",
    }
    DEFAULT_CSS = """
    BackupJobTable {
        background: $surface;
        scrollbar-gutter: stable;
        & > .backup-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .backup-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .backup-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .backup-table--ok { color: $text-success; }
        & > .backup-table--running { color: $text-accent; text-style: bold; }
        & > .backup-table--muted { color: $text-muted; }
        & > .backup-table--failed { color: $text-warning; text-style: bold; }
        & > .backup-table--breached { color: $text-error; text-style: bold; }
    }
    """


@dataclass(frozen=True)
class RunRow:
    """One run of the cursor job as the history lists it."""

    run: BackupRun
    cells: tuple[Cell, ...]

    @property
    def key(self) -> str:
        """The run id (``BKR-N``); zero-padded sorting comes from the start column."""
        return self.run.id


def run_row(run: BackupRun) -> RunRow:
    """The history row of ``run``."""
    good = run.good
    style = "ok" if good else ("running" if run.status == "running" else "failed")
    return RunRow(run, (
        Cell(run.start.replace("T", " ").removesuffix("Z")),
        Cell(run.id),
        Cell(run.kind),
        Cell(run.host),
        Cell(format_bytes(run.bytes)),
        Cell("-" if run.files is None else str(run.files)),
        Cell(format_duration(run.duration)),
        Cell(run.status + (" (pruned)" if run.detail.get("pruned_by") else ""), style),
    ))


class RunHistoryTable(CellTable[RunRow]):
    """The runs of one job, newest first: size, files, duration and status."""

    COLUMNS: ClassVar[tuple[TableColumn, ...]] = (
        TableColumn("start", "Started", 19),
        TableColumn("id", "Run", 6, max_width=10),
        TableColumn("kind", "Kind", 7),
        TableColumn("host", "Host", 8, max_width=24),
        TableColumn("size", "Size", 10, right_align=True),
        TableColumn("files", "Files", 6, right_align=True),
        TableColumn("duration", "Duration", 8, right_align=True),
        TableColumn("status", "Status", 10, flex=True),
    )
    STYLE_PREFIX: ClassVar[str] = "run-table"
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "run-table--header", "run-table--cursor", "run-table--ok", "run-table--running",
        "run-table--failed",
    }
    DEFAULT_CSS = """
    RunHistoryTable {
        background: $surface;
        scrollbar-gutter: stable;
        & > .run-table--header { text-style: bold; color: $text-accent; background: $panel; }
        & > .run-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .run-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
        }
        & > .run-table--ok { color: $text-success; }
        & > .run-table--running { color: $text-accent; }
        & > .run-table--failed { color: $text-warning; }
    }
    """

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """Newest first: by start, reversed (the header's arrow then points down)."""
        super().__init__(name=name, id=id, classes=classes)
        self.sort_reverse = True

    def sort_key(self, column: str) -> tuple[Callable[[RunRow], object], bool]:
        """By start time and run number (oldest first unless reversed, as by default)."""
        return (lambda row: (row.run.start, row.run.number)), False


class BackupsScreen(ReportsWorkerErrors, Screen[None]):
    """The jobs table, the cursor job's run history, and the running operation's progress."""

    TITLE = "Backups"
    AUTO_FOCUS = "#backup-jobs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run now"),
        Binding("v", "verify", "Verify"),
        Binding("p", "prune", "Prune"),
        Binding("R", "restore", "Restore"),
        Binding("c", "cancel", "Cancel run"),
        Binding("d", "toggle_paused", "Disable/enable"),
        Binding("n", "new_job", "New job"),
        Binding("e", "edit_job", "Edit job"),
        Binding("h", "focus_history", "History"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    class StatusLoaded(Message):
        """The runner (first time) and every job's status on every host were read."""

        def __init__(self, runner: BackupRunner, rows: list[HostStatus]) -> None:
            super().__init__()
            self.runner = runner
            self.rows = rows

    class HistoryLoaded(Message):
        """The runs of one job were read."""

        def __init__(self, job: str, runs: list[BackupRun]) -> None:
            super().__init__()
            self.job = job
            self.runs = runs

    class ProgressMade(Message):
        """The running operation moved on."""

        def __init__(self, progress: Progress) -> None:
            super().__init__()
            self.progress = progress

    class OperationDone(Message):
        """An operation ended: what to say, and how."""

        def __init__(self, text: str, severity: str = "information") -> None:
            super().__init__()
            self.text = text
            self.severity = severity

    def __init__(
        self,
        services: Services,
        clock: Clock | None = None,
        *,
        runner_factory: RunnerFactory | None = None,
    ) -> None:
        """The pane over ``services``; ``runner_factory`` builds the runner (tests pass one)."""
        super().__init__()
        self.services = services
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.runner_factory: RunnerFactory = runner_factory or BackupRunner
        self.runner: BackupRunner | None = None
        self.statuses: dict[str, HostStatus] = {}
        self.cancel_event: asyncio.Event | None = None
        self.operation: str | None = None
        self._history_job: str | None = None
        self._child_open = False
        self._scheduled: Progress | None = None
        """The latest progress of a run the scheduler started, until its pass ends."""
        self._working_on: str | None = None
        """``job@host`` of the pane's running operation (shown ``running`` at once)."""
        self.refresh_interval = REFRESH_INTERVAL

    def compose(self) -> ComposeResult:
        """Jobs table, status line, progress, then the history of the cursor job."""
        yield Header(icon="≡")
        yield PaneTabs()
        yield BackupJobTable(id="backup-jobs")
        yield Static("Loading the backup jobs…", id="backup-status", markup=False)
        yield ProgressBar(id="backup-progress", show_eta=False)
        yield Static("History", id="backup-history-title", markup=False)
        yield RunHistoryTable(id="backup-history")
        yield Footer()

    @property
    def table(self) -> BackupJobTable:
        """The jobs table."""
        return self.query_one("#backup-jobs", BackupJobTable)

    @property
    def history_table(self) -> RunHistoryTable:
        """The history table."""
        return self.query_one("#backup-history", RunHistoryTable)

    def on_mount(self) -> None:
        """Hide the progress bar, follow the scheduler, read the jobs (in a thread)."""
        self.query_one(ProgressBar).display = False
        scheduler_passes(self.app).subscribe(self, self._scheduler_passed)
        scheduler_progress(self.app).subscribe(self, self._scheduler_progressed)
        self.set_interval(self.refresh_interval, self._refresh_tick, name="backup-refresh")
        self.reload()

    def _refresh_tick(self) -> None:
        """Read the statuses again while the pane is shown: runs of other itop processes
        show up, and the ages move on. A read is cheap (one store file)."""
        if self.runner is not None and self.is_current:
            self.reload()

    def _scheduler_passed(self, done: SchedulerPass) -> None:
        """After every scheduler pass: its runs, and the next due times, changed."""
        self._scheduled = None
        if self.runner is not None:
            self.reload()
        elif self.operation is None:
            self._show_status()

    def _scheduler_progressed(self, progress: Progress) -> None:
        """A scheduled run moved on: say so while no operation of the pane runs."""
        self._scheduled = progress
        if self.operation is None:
            self._show_status()

    def on_screen_resume(self) -> None:
        """Back from another pane or a dialog: runs may have happened meanwhile."""
        if self._child_open:
            self._child_open = False
            return
        if self.runner is not None:
            self.reload()

    # -- loading --------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load",
          description="Load backup jobs")
    def reload(self) -> None:
        """Build the runner the first time, then read every job's status."""
        runner = self.runner or self.runner_factory(self.services)
        self.post_message(self.StatusLoaded(runner, runner.status(self.clock())))

    def on_backups_screen_status_loaded(self, message: StatusLoaded) -> None:
        """Show the rows; load the history of the cursor job."""
        self.runner = message.runner
        now = self.clock()
        rows = [replace(s, running=True) if f"{s.job}@{s.host}" == self._working_on else s
                for s in message.rows]
        self.statuses = {f"{s.job}@{s.host}": s for s in rows}
        self.table.set_rows(job_row(s, now) for s in rows)
        self._show_status()
        self._load_history()

    @on(CellTable.CursorMoved, "#backup-jobs")
    def _cursor_moved(self) -> None:
        self._load_history()

    @property
    def cursor_status(self) -> HostStatus | None:
        """The job and host under the cursor."""
        key = self.table.cursor_key
        return self.statuses.get(key) if key else None

    def _load_history(self) -> None:
        status = self.cursor_status
        if status is None or self.runner is None:
            self.history_table.set_rows([])
            return
        self._read_history(self.runner, status.job)

    @work(thread=True, exclusive=True, exit_on_error=False, group="history",
          description="Load the history")
    def _read_history(self, runner: BackupRunner, job: str) -> None:
        self.post_message(self.HistoryLoaded(job, runner.history(job)))

    def on_backups_screen_history_loaded(self, message: HistoryLoaded) -> None:
        """Show the runs of the cursor job."""
        self._history_job = message.job
        self.query_one("#backup-history-title", Static).update(
            f"History of {message.job}: {len(message.runs)} run(s)")
        self.history_table.set_rows(run_row(r) for r in message.runs)

    def _show_status(self, extra: str = "") -> None:
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[status.state] = counts.get(status.state, 0) + 1
        jobs = len({s.job for s in self.statuses.values()})
        text = f"{jobs} job(s), {len(self.statuses)} job/host row(s)"
        if counts:
            text += ": " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        if self.operation:
            text += f" · {self.operation} (c cancels)"
        elif self._scheduled is not None:
            scheduled = self._scheduled
            text += (f" · scheduled {scheduled.kind} of {scheduled.job} on {scheduled.host}: "
                     f"{scheduled.describe()}")
        if extra:
            text += f" · {extra}"
        if self.services.read_only:
            text += " · READ-ONLY"
        self.query_one("#backup-status", Static).update(text)

    # -- operations -------------------------------------------------------------------

    def _ready(self, *, needs_host: bool = True) -> tuple[BackupRunner, HostStatus] | None:
        status = self.cursor_status
        if self.runner is None or status is None:
            self.app.notify("No backup job under the cursor.", severity="warning")
            return None
        if needs_host and not status.has_host:
            self.app.notify(f"The hosts selector of {status.job} matches no host: edit it (e).",
                            severity="warning", markup=False)
            return None
        if self.operation is not None:
            self.app.notify(f"Busy: {self.operation}. Press c to cancel it.", severity="warning",
                            markup=False)
            return None
        return self.runner, status

    def _begin(self, what: str, key: str | None = None) -> asyncio.Event:
        self.operation = what
        self._working_on = key
        if key is not None and key in self.statuses:
            # Running from now on, without waiting for the next read of the store.
            self.statuses[key] = replace(self.statuses[key], running=True)
            self.table.set_rows(job_row(s, self.clock()) for s in self.statuses.values())
        self.cancel_event = asyncio.Event()
        bar = self.query_one(ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        self._show_status()
        return self.cancel_event

    def _progress(self, progress: Progress) -> None:
        self.post_message(self.ProgressMade(progress))

    def on_backups_screen_progress_made(self, message: ProgressMade) -> None:
        """Move the bar; bytes and rate on the status line."""
        progress = message.progress
        self.query_one(ProgressBar).update(total=progress.total, progress=progress.done)
        self._show_status(f"{progress.host}: {progress.describe()}")

    def on_backups_screen_operation_done(self, message: OperationDone) -> None:
        """Say how it went and read the statuses again."""
        self.operation = None
        self._working_on = None
        self.cancel_event = None
        self.query_one(ProgressBar).display = False
        severity = message.severity
        self.app.notify(message.text, severity=severity, markup=False,  # type: ignore[arg-type]
                        timeout=8)
        self.reload()

    def _finished(self, what: str, runs: list[BackupRun]) -> None:
        bad = [r for r in runs if not r.good]
        summary = ", ".join(f"{r.id} {r.kind} {r.host} {r.status}" for r in runs) or "no runs"
        self.post_message(self.OperationDone(f"{what}: {summary}",
                                             "warning" if bad else "information"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed operation must not leave the pane busy."""
        if event.worker.group == "operation" \
                and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.operation = None
            self._working_on = None
            self.cancel_event = None
            self.query_one(ProgressBar).display = False
            self._show_status()

    def action_run(self) -> None:
        """Back up the cursor job on the cursor host now."""
        ready = self._ready()
        if ready is not None:
            runner, status = ready
            self._run(runner, status.job, status.host,
                      self._begin(f"backing up {status.job}", f"{status.job}@{status.host}"))

    @work(exclusive=True, exit_on_error=False, group="operation", description="Backup")
    async def _run(self, runner: BackupRunner, job: str, host: str, cancel: asyncio.Event) -> None:
        runs = await runner.run_job(job, host, on_progress=self._progress, cancel=cancel)
        self._finished(f"Backup of {job}", runs)

    def action_verify(self) -> None:
        """Verify the newest good backup of the cursor job on the cursor host by restoring it."""
        ready = self._ready()
        if ready is not None:
            runner, status = ready
            self._verify(runner, status.job, status.host,
                         self._begin(f"verifying {status.job}", f"{status.job}@{status.host}"))

    @work(exclusive=True, exit_on_error=False, group="operation", description="Verify")
    async def _verify(self, runner: BackupRunner, job: str, host: str,
                      cancel: asyncio.Event) -> None:
        runs = await runner.verify(job, host=host, on_progress=self._progress, cancel=cancel)
        self._finished(f"Verify of {job}", runs)

    def action_cancel(self) -> None:
        """Cancel the running operation cleanly (recorded as cancelled)."""
        if self.cancel_event is None:
            self.app.notify("Nothing is running.")
            return
        self.cancel_event.set()
        self._show_status("cancelling…")

    def action_prune(self) -> None:
        """List what retention would remove, then ask before removing it."""
        ready = self._ready()
        if ready is not None:
            runner, status = ready
            self._begin(f"pruning {status.job} (dry run)")
            self._prune(runner, status.job)

    @work(exclusive=True, exit_on_error=False, group="operation", description="Prune")
    async def _prune(self, runner: BackupRunner, job: str) -> None:
        reports = await runner.prune(job, dry_run=True)
        victims = [f"{r.host}: {i.run_id or i.time}" for r in reports for i in r.outcome.remove]
        kept = sum(len(r.outcome.keep) for r in reports)
        self.operation = None
        self.query_one(ProgressBar).display = False
        self._show_status()
        if not victims:
            self.app.notify(f"Prune of {job}: nothing to remove ({kept} kept).")
            return
        question = (f"Retention of {job} keeps {kept} backup(s) and removes {len(victims)}:\n"
                    + "\n".join(victims[:20]) + ("\n…" if len(victims) > 20 else ""))
        self._child_open = True
        if await self.app.push_screen_wait(
                ConfirmDialog(f"Prune {job}", question, yes="Remove")):
            cancel = self._begin(f"pruning {job}")
            done = await runner.prune(job, dry_run=False, on_progress=self._progress,
                                      cancel=cancel)
            self._finished(f"Prune of {job}", [r.run for r in done if r.run is not None])

    def action_restore(self) -> None:
        """Open the guided restore dialog for the cursor job and host."""
        ready = self._ready()
        if ready is None:
            return
        runner, status = ready
        self._child_open = True

        def done(text: str | None) -> None:
            if text:
                self.post_message(self.OperationDone(text))

        self.app.push_screen(RestoreDialog(runner, status.job, status.host), done)

    def action_toggle_paused(self) -> None:
        """Pause the cursor job's schedule, or resume it."""
        ready = self._ready(needs_host=False)
        if ready is not None:
            runner, status = ready
            self._set_paused(runner, status.job, status.active)

    @work(thread=True, exit_on_error=False, group="pause", description="Pause job")
    def _set_paused(self, runner: BackupRunner, job: str, paused: bool) -> None:
        runner.set_paused(job, paused)
        self.post_message(self.OperationDone(
            f"{'Paused' if paused else 'Resumed'} backup job {job}."))

    def action_new_job(self) -> None:
        """Define a new job in the form; stored in itop (origin ``manual``)."""
        if self.runner is None:
            return
        self._open_form(self.runner, None)

    def action_edit_job(self) -> None:
        """Edit the cursor job in the form (config-file jobs are edited in the file)."""
        ready = self._ready(needs_host=False)
        if ready is None:
            return
        runner, status = ready
        self._open_form(runner, status.job)

    @work(thread=True, exclusive=True, exit_on_error=False, group="job-form",
          description="Open the job form")
    def _open_form(self, runner: BackupRunner, name: str | None) -> None:
        job = runner.job(name) if name is not None else None
        if job is not None and job.origin == "config":
            self.app.call_from_thread(
                self.app.notify, f"{job.name} is defined in the config file "
                f"{self.services.settings.config_label}: edit it there.",
                severity="warning", markup=False)
            return
        inventory = self.services.inventory.load()

        def saved(result: BackupJob | None) -> None:
            if result is not None:
                self._save_job(runner, result, name)

        self._child_open = True
        self.app.call_from_thread(
            self.app.push_screen, BackupJobForm(job, inventory=inventory, clock=self.clock),
            saved)

    @work(thread=True, exit_on_error=False, group="job-save", description="Save the job")
    def _save_job(self, runner: BackupRunner, job: BackupJob, name: str | None) -> None:
        if name is None:
            stored = runner.add_job(job)
            self.post_message(self.OperationDone(f"Added backup job {stored.name} ({stored.id})."))
        else:
            stored = runner.edit_job(name, job)
            self.post_message(self.OperationDone(f"Saved backup job {stored.name}."))

    def action_focus_history(self) -> None:
        """Move between the jobs table and the history."""
        target = self.table if self.focused is self.history_table else self.history_table
        self.set_focus(target)

    def action_reload(self) -> None:
        """Read the statuses again."""
        self.reload()
