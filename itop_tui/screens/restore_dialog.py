"""The guided restore: pick a good backup, see its files, choose where, dry run, confirm.

By default the dialog restores into a new directory on the backup's host;
another inventory host can be named, and "in place" puts the files back
where they came from, overwriting them. The restore button stays disabled
until a dry run of exactly the current choice (run, host, directory or in
place) has been shown; the restore itself asks for confirmation (in place:
an explicit one naming the host), and on a production host the change gate
decides (an approved change in its window; the change field names one).
A refusal is shown in the dialog, which stays open. While the restore
runs, a progress bar shows the bytes sent and the rate, and Cancel stops it
cleanly (recorded ``cancelled``). The dialog dismisses with a one-line
summary of the restore, or None.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Log, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from itop_tui.domain.backup import BackupRun
from itop_tui.domain.output import strip_control
from itop_tui.ops.backup_runner import BackupError, BackupRunner, Progress, RestoreResult
from itop_tui.ops.change_gate import ChangeRequired
from itop_tui.screens.confirm import ConfirmDialog
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.backup_methods import FileEntry

FILES_SHOWN = 500
RESTORE_BASE = "/var/tmp/itop-restore"


def default_target(job: str, run_id: str) -> str:
    """A new directory for restoring ``run_id`` of ``job``: ``/var/tmp/itop-restore/JOB-RUN``."""
    return f"{RESTORE_BASE}/{job}-{run_id}"


TYPE_WIDTH = 8  # "hardlink", "symlink"
LINE_PREFIX = TYPE_WIDTH + 1 + 6 + 1 + 12 + 2


def wrap_path(text: str, width: int) -> list[str]:
    """``text`` in pieces of at most ``width`` characters, broken after a ``/`` where one is
    near the end of a piece: a long path is shown whole, over several lines."""
    if width <= 0 or len(text) <= width:
        return [text]
    pieces: list[str] = []
    while len(text) > width:
        cut = text.rfind("/", 0, width) + 1
        if cut < width // 2:
            cut = width
        pieces.append(text[:cut])
        text = text[cut:]
    if text:
        pieces.append(text)
    return pieces


def file_lines(entries: list[FileEntry], *, targets: bool = False,
               width: int | None = None) -> list[str]:
    """Type, mode, size and path (or where it would be written) of each entry.

    With ``width`` (the list's width in cells) a long path goes on over
    indented lines, so that nothing is cut and nothing scrolls sideways.
    """
    room = None if width is None else max(12, width - LINE_PREFIX)
    lines = []
    for e in entries[:FILES_SHOWN]:
        path = strip_control(e.target if targets and e.target else e.path)
        first, *rest = wrap_path(path, room) if room is not None else [path]
        lines.append(f"{e.type:<{TYPE_WIDTH}} {e.mode:>6} {e.size:>12,}  {first}")
        lines.extend(" " * LINE_PREFIX + piece for piece in rest)
    if len(entries) > FILES_SHOWN:
        lines.append(f"… and {len(entries) - FILES_SHOWN} more")
    return lines


def count_text(entries: list[FileEntry]) -> str:
    """``7 entries (5 files)``: directories and links are entries, not files."""
    files = sum(1 for e in entries if e.type == "file")
    more = "+" if len(entries) > FILES_SHOWN else ""
    return f"{len(entries)}{more} entries ({files}{more} files)"


Choice = tuple[str, str, str, bool]
"""(run id, host, directory, in place): what a dry run showed and a restore may do."""


class RestoreDialog(ReportsWorkerErrors, ModalScreen[str | None]):
    """Restore one of a job's good backups into a new directory, onto any host, or in place."""

    AUTO_FOCUS = "#restore-runs"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+d", "dry_run", "Dry run"),
    ]

    class ProgressMade(Message):
        """The restore moved on."""

        def __init__(self, progress: Progress) -> None:
            super().__init__()
            self.progress = progress

    class RunsLoaded(Message):
        """The job's good backups on the host, oldest first."""

        def __init__(self, runs: list[BackupRun]) -> None:
            super().__init__()
            self.runs = runs

    class FilesShown(Message):
        """A file list (of a run, or of a dry run of a choice) to show."""

        def __init__(self, run_id: str, entries: list[FileEntry], title: str,
                     dry_run_of: Choice | None = None) -> None:
            super().__init__()
            self.run_id = run_id
            self.entries = entries
            self.title = title
            self.dry_run_of = dry_run_of

    def __init__(self, runner: BackupRunner, job: str, host: str) -> None:
        """Restore a backup of ``job`` made on ``host``."""
        super().__init__()
        self.runner = runner
        self.job = job
        self.host = host
        self.runs: list[BackupRun] = []
        self.dry_run_of: Choice | None = None
        self._default_target = ""
        """The directory last filled in for the highlighted run (not typed by anyone)."""
        """The choice the dry run shown was made for: the restore button needs it to match."""
        self.cancel_event: asyncio.Event | None = None
        """Set while a restore runs; setting it cancels the restore."""

    def compose(self) -> ComposeResult:
        """Runs, their files, the target directory and the buttons."""
        with Vertical(classes="dialog restore-dialog"):
            yield Static(f"Restore {self.job} on {self.host}", classes="dialog-title",
                         markup=False)
            yield Static("Backups (newest first):", classes="dialog-text")
            yield OptionList(id="restore-runs")
            yield Static("Files", id="restore-files-title", markup=False)
            yield Log(id="restore-files", max_lines=FILES_SHOWN + 1, auto_scroll=False)
            with Horizontal(id="restore-where"):
                yield Static("Onto host", classes="restore-label")
                yield Input(self.host, id="restore-host")
                yield Checkbox("In place (overwrite the files where they came from)",
                               id="restore-in-place")
            yield Static("Restore into (a new directory on the host):", classes="dialog-text",
                         id="restore-target-label")
            yield Input(id="restore-target")
            with Horizontal(id="restore-change-row"):
                yield Static("Change", classes="restore-label")
                yield Input(id="restore-change",
                            placeholder="CHG-N: the approved change for a production host "
                                        "(optional: the active one is found)")
            yield ProgressBar(id="restore-progress", show_eta=False)
            yield Static("", id="restore-status", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="restore-close")
                yield Button("Dry run", id="restore-dry-run", variant="primary")
                yield Button("Restore", id="restore-go", variant="warning", disabled=True)

    DEFAULT_CSS = """
    RestoreDialog #restore-where, RestoreDialog #restore-change-row { height: 1; }
    RestoreDialog .restore-label { width: 11; color: $text-muted; }
    RestoreDialog #restore-where Input { width: 24; border: none; height: 1; padding: 0; }
    RestoreDialog #restore-change { width: 1fr; border: none; height: 1; padding: 0; }
    RestoreDialog #restore-where Checkbox { border: none; height: 1; padding: 0 0 0 2; }
    RestoreDialog #restore-status { height: auto; color: $text-muted; }
    RestoreDialog #restore-progress { height: 1; }
    RestoreDialog #restore-files { overflow-x: hidden; scrollbar-size-vertical: 1; }
    """

    def on_mount(self) -> None:
        """Read the job's good backups on the host."""
        self.query_one(ProgressBar).display = False
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
        target = self.query_one("#restore-target", Input)
        # The directory follows the run only while nobody typed one: a run list
        # that loads late must not overwrite what is being typed.
        if target.value.strip() in ("", self._default_target):
            self._default_target = default_target(self.job, run_id)
            target.value = self._default_target
        self._list_files(run_id)

    @work(exclusive=True, exit_on_error=False, group="restore-files", description="List files")
    async def _list_files(self, run_id: str) -> None:
        entries = await self.runner.list_files(self.job, run_id, limit=FILES_SHOWN + 1)
        self.post_message(self.FilesShown(run_id, entries,
                                          f"Files of {run_id}: {count_text(entries)}"))

    def on_restore_dialog_files_shown(self, message: FilesShown) -> None:
        """Show the list, and whether the restore may go ahead."""
        if message.run_id != self.run_id:
            return
        self.query_one("#restore-files-title", Static).update(message.title)
        log = self.query_one(Log)
        log.clear()
        log.write_lines(file_lines(message.entries, targets=message.dry_run_of is not None,
                                   width=log.scrollable_content_region.width))
        log.scroll_home(animate=False)
        self.dry_run_of = message.dry_run_of
        self._update_restore_button()

    @property
    def choice(self) -> Choice | None:
        """What the fields ask for now: (run, host, directory, in place)."""
        run_id = self.run_id
        if run_id is None:
            return None
        in_place = self.query_one("#restore-in-place", Checkbox).value
        target = "" if in_place else self.query_one("#restore-target", Input).value.strip()
        host = self.query_one("#restore-host", Input).value.strip() or self.host
        return (run_id, host, target, in_place)

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _update_restore_button(self) -> None:
        in_place = self.query_one("#restore-in-place", Checkbox).value
        self.query_one("#restore-target", Input).disabled = in_place
        self.query_one("#restore-target-label", Static).update(
            "In place: the files go back to their own paths, overwriting what is there."
            if in_place else "Restore into (a new directory on the host):")
        self.query_one("#restore-go", Button).disabled = (
            self.cancel_event is not None or self.dry_run_of is None
            or self.dry_run_of != self.choice)

    @on(Button.Pressed, "#restore-close")
    def action_close(self) -> None:
        """Close without restoring, or cancel the running restore."""
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.query_one("#restore-status", Static).update("Cancelling…")
            return
        self.dismiss(None)

    @on(Button.Pressed, "#restore-dry-run")
    def action_dry_run(self) -> None:
        """Show what a restore of the current choice would write."""
        choice = self.choice
        if choice is not None and self.cancel_event is None:
            self._dry_run(choice)

    @work(exclusive=True, exit_on_error=False, group="restore-files", description="Dry run")
    async def _dry_run(self, choice: Choice) -> None:
        run_id, host, target, in_place = choice
        result = await self.runner.restore(
            self.job, run_id, to=None if in_place else target, in_place=in_place,
            to_host=host, dry_run=True)
        self.post_message(self.FilesShown(
            run_id, result.entries,
            f"Dry run: {count_text(result.entries)} would be written on {result.host}"
            f"{' IN PLACE' if in_place else f' into {target}'}", choice))

    @on(Button.Pressed, "#restore-go")
    def _restore_pressed(self) -> None:
        if self.dry_run_of is not None and self.cancel_event is None:
            self._restore(self.dry_run_of)

    def _progress(self, progress: Progress) -> None:
        self.post_message(self.ProgressMade(progress))

    def on_restore_dialog_progress_made(self, message: ProgressMade) -> None:
        """Move the bar; bytes and rate below it."""
        progress = message.progress
        self.query_one(ProgressBar).update(total=progress.total, progress=progress.done)
        self.query_one("#restore-status", Static).update(
            f"Restoring {progress.run_id}: {progress.describe()}")

    @work(exclusive=True, exit_on_error=False, group="restore", description="Restore")
    async def _restore(self, choice: Choice) -> None:
        run_id, host, target, in_place = choice
        if in_place:
            title = "Restore in place"
            question = (f"Overwrite the files on {host} with their copies from {run_id} of "
                        f"{self.job}? This changes the host.")
        else:
            title = "Restore"
            question = f"Restore {run_id} of {self.job} into {target} on {host}?"
        if not await self.app.push_screen_wait(ConfirmDialog(title, question, yes="Restore")):
            return
        change = self.query_one("#restore-change", Input).value.strip() or None
        status_line = self.query_one("#restore-status", Static)
        self._set_running(True)
        try:
            result: RestoreResult = await self.runner.restore(
                self.job, run_id, to=None if in_place else target, in_place=in_place,
                to_host=host, confirmed=in_place, change=change,
                on_progress=self._progress, cancel=self.cancel_event)
        except ChangeRequired as exc:
            status_line.update(f"Refused by the change gate: {exc}")
            self.app.notify(str(exc), title="Restore refused", severity="error", timeout=10,
                            markup=False)
            return
        except BackupError as exc:
            # Refused before anything was written (a directory not empty, an unknown change).
            status_line.update(f"Refused: {exc}")
            return
        finally:
            self._set_running(False)
        run = result.run
        status = run.status if run is not None else "unknown"
        files = run.files if run is not None and run.files is not None else "?"
        self.dismiss(f"Restore of {run_id} into {result.target} on {result.host}: "
                     f"{status} ({files} files)")

    def _set_running(self, running: bool) -> None:
        """Switch between choosing and restoring (Close becomes Cancel)."""
        self.cancel_event = asyncio.Event() if running else None
        self.query_one(ProgressBar).display = running
        if running:
            self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#restore-close", Button).label = "Cancel" if running else "Close"
        self.query_one("#restore-dry-run", Button).disabled = running
        self._update_restore_button()
