"""The guided restore: pick a good backup, see its files, choose a new directory, dry run, confirm.

The dialog restores into a new directory on the backup's host (restoring in
place is left to the CLI, where the change gate and ``--yes`` apply). The
restore button stays disabled until a dry run of the current run and
directory has been shown; the restore itself asks for confirmation. It
dismisses with a one-line summary of the restore, or None.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Log, OptionList, Static
from textual.widgets.option_list import Option

from itop_tui.domain.backup import BackupRun
from itop_tui.domain.output import strip_control
from itop_tui.ops.backup_runner import BackupRunner, RestoreResult
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.backup_methods import FileEntry

FILES_SHOWN = 500
RESTORE_BASE = "/var/tmp/itop-restore"


def default_target(job: str, run_id: str) -> str:
    """A new directory for restoring ``run_id`` of ``job``: ``/var/tmp/itop-restore/JOB-RUN``."""
    return f"{RESTORE_BASE}/{job}-{run_id}"


def file_lines(entries: list[FileEntry], *, targets: bool = False) -> list[str]:
    """One line per file: type, mode, size and path (or where it would be written)."""
    lines = [
        f"{e.type[:4]:<4} {e.mode:>6} {e.size:>12,}  "
        f"{strip_control(e.target if targets and e.target else e.path)}"
        for e in entries[:FILES_SHOWN]
    ]
    if len(entries) > FILES_SHOWN:
        lines.append(f"… and {len(entries) - FILES_SHOWN} more")
    return lines


class RestoreDialog(ReportsWorkerErrors, ModalScreen[str | None]):
    """Restore one of a job's good backups on one host into a new directory."""

    AUTO_FOCUS = "#restore-runs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+d", "dry_run", "Dry run"),
    ]

    class RunsLoaded(Message):
        """The job's good backups on the host, oldest first."""

        def __init__(self, runs: list[BackupRun]) -> None:
            super().__init__()
            self.runs = runs

    class FilesShown(Message):
        """A file list (of a run, or of a dry run into ``target``) to show."""

        def __init__(self, run_id: str, lines: list[str], title: str,
                     dry_run_of: tuple[str, str] | None = None) -> None:
            super().__init__()
            self.run_id = run_id
            self.lines = lines
            self.title = title
            self.dry_run_of = dry_run_of

    def __init__(self, runner: BackupRunner, job: str, host: str) -> None:
        """Restore a backup of ``job`` made on ``host``."""
        super().__init__()
        self.runner = runner
        self.job = job
        self.host = host
        self.runs: list[BackupRun] = []
        self.dry_run_of: tuple[str, str] | None = None
        """(run id, target) of the dry run shown: the restore button needs it to match."""

    def compose(self) -> ComposeResult:
        """Runs, their files, the target directory and the buttons."""
        with Vertical(classes="dialog restore-dialog"):
            yield Static(f"Restore {self.job} on {self.host}", classes="dialog-title",
                         markup=False)
            yield Static("Backups (newest first):", classes="dialog-text")
            yield OptionList(id="restore-runs")
            yield Static("Files", id="restore-files-title", markup=False)
            yield Log(id="restore-files", max_lines=FILES_SHOWN + 1, auto_scroll=False)
            yield Static("Restore into (a new directory on the host):", classes="dialog-text")
            yield Input(id="restore-target")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="restore-close")
                yield Button("Dry run", id="restore-dry-run", variant="primary")
                yield Button("Restore", id="restore-go", variant="warning", disabled=True)

    def on_mount(self) -> None:
        """Read the job's good backups on the host."""
        self._load_runs()

    @work(thread=True, exit_on_error=False, group="restore-load", description="Load backups")
    def _load_runs(self) -> None:
        runs = [r for r in self.runner.history(self.job, self.host, "backup")
                if r.good and not r.detail.get("pruned_by")]
        self.post_message(self.RunsLoaded(runs))

    def on_restore_dialog_runs_loaded(self, message: RunsLoaded) -> None:
        """List the runs, newest first, and highlight the newest."""
        self.runs = list(reversed(message.runs))
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(
            Option(f"{r.id}  {r.start.replace('T', ' ').removesuffix('Z')}  "
                   f"{r.files if r.files is not None else '?'} files  {r.status}", id=r.id)
            for r in self.runs)
        if self.runs:
            options.highlighted = 0
        else:
            self.query_one("#restore-files-title", Static).update("No good backup to restore.")

    @property
    def run_id(self) -> str | None:
        """The highlighted run."""
        options = self.query_one(OptionList)
        index = options.highlighted
        if index is None or not 0 <= index < len(self.runs):
            return None
        return self.runs[index].id

    @on(OptionList.OptionHighlighted, "#restore-runs")
    def _run_highlighted(self) -> None:
        run_id = self.run_id
        if run_id is None:
            return
        self.query_one("#restore-target", Input).value = default_target(self.job, run_id)
        self._list_files(run_id)

    @work(exclusive=True, exit_on_error=False, group="restore-files", description="List files")
    async def _list_files(self, run_id: str) -> None:
        entries = await self.runner.list_files(self.job, run_id, limit=FILES_SHOWN + 1)
        self.post_message(self.FilesShown(run_id, file_lines(entries),
                                          f"Files of {run_id}: {len(entries)}"
                                          f"{'+' if len(entries) > FILES_SHOWN else ''}"))

    def on_restore_dialog_files_shown(self, message: FilesShown) -> None:
        """Show the list, and whether the restore may go ahead."""
        if message.run_id != self.run_id:
            return
        self.query_one("#restore-files-title", Static).update(message.title)
        log = self.query_one(Log)
        log.clear()
        log.write_lines(message.lines)
        log.scroll_home(animate=False)
        self.dry_run_of = message.dry_run_of
        self._update_restore_button()

    @on(Input.Changed, "#restore-target")
    def _update_restore_button(self) -> None:
        wanted = (self.run_id, self.query_one("#restore-target", Input).value.strip())
        self.query_one("#restore-go", Button).disabled = self.dry_run_of != wanted

    @on(Button.Pressed, "#restore-close")
    def action_close(self) -> None:
        """Close without restoring."""
        self.dismiss(None)

    @on(Button.Pressed, "#restore-dry-run")
    def action_dry_run(self) -> None:
        """Show what a restore of the run into the directory would write."""
        run_id = self.run_id
        if run_id is not None:
            self._dry_run(run_id, self.query_one("#restore-target", Input).value.strip())

    @work(exclusive=True, exit_on_error=False, group="restore-files", description="Dry run")
    async def _dry_run(self, run_id: str, target: str) -> None:
        result = await self.runner.restore(self.job, run_id, to=target, dry_run=True)
        self.post_message(self.FilesShown(
            run_id, file_lines(result.entries, targets=True),
            f"Dry run: {len(result.entries)} file(s) would be written on {result.host}",
            (run_id, target)))

    @on(Button.Pressed, "#restore-go")
    def _restore_pressed(self) -> None:
        if self.dry_run_of is not None:
            self._restore(*self.dry_run_of)

    @work(exclusive=True, exit_on_error=False, group="restore", description="Restore")
    async def _restore(self, run_id: str, target: str) -> None:
        question = f"Restore {run_id} of {self.job} into {target} on {self.host}?"
        if not await self.app.push_screen_wait(ConfirmDialog("Restore", question, yes="Restore")):
            return
        result: RestoreResult = await self.runner.restore(self.job, run_id, to=target)
        run = result.run
        status = run.status if run is not None else "unknown"
        files = run.files if run is not None and run.files is not None else "?"
        self.dismiss(f"Restore of {run_id} into {result.target} on {result.host}: "
                     f"{status} ({files} files)")
