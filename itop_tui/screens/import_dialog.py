"""Import hosts from an Ansible inventory, an ssh config or a CSV file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from itop_tui.screens.early_keys import KeepsEarlyKeys
from itop_tui.screens.worker_errors import ReportsWorkerErrors, describe_error
from itop_tui.services.context import ReadOnlyError, Services
from itop_tui.services.importers import InventoryFileError, import_file

FORMATS: tuple[tuple[str, str], ...] = (
    ("detect from the file", "auto"),
    ("Ansible inventory (INI or YAML)", "ansible"),
    ("ssh config", "ssh-config"),
    ("CSV with a header row", "csv"),
)


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: the file, and how many hosts were added and updated."""

    path: str
    added: int
    updated: int
    groups: int
    warnings: tuple[str, ...] = ()


class ImportDialog(ReportsWorkerErrors, KeepsEarlyKeys, ModalScreen[ImportOutcome | None]):
    """Asks for a file and a format, imports in a worker, shows the counts or the error.

    Importing again updates hosts, it never duplicates them. The dialog
    stays open after an import so the result can be read; it dismisses with
    the last successful :class:`ImportOutcome` so the pane reloads.
    """

    AUTO_FOCUS = "#import-path"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
    ]

    class Imported(Message):
        """The file was imported."""

        def __init__(self, outcome: ImportOutcome) -> None:
            super().__init__()
            self.outcome = outcome

    class Failed(Message):
        """The file could not be imported; ``message`` names file and line when known."""

        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    def __init__(self, services: Services, initial_path: str = "") -> None:
        """Import into ``services``' inventory; the path input starts as ``initial_path``."""
        super().__init__()
        self.services = services
        self.initial_path = initial_path
        self.outcome: ImportOutcome | None = None
        self.importing = False

    def compose(self) -> ComposeResult:
        """Path, format, buttons and a result line."""
        with Vertical(classes="dialog", id="import-dialog"):
            yield Static("Import hosts from a file", classes="dialog-title")
            yield Label("file", classes="field-label")
            yield Input(self.initial_path, placeholder="~/.ssh/config, inventory.ini, hosts.csv", id="import-path")
            yield Label("format", classes="field-label")
            yield Select(FORMATS, value="auto", allow_blank=False, id="import-format")
            yield Static("", id="import-result", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close")
                yield Button("Import", id="import", variant="primary")
            yield Static("Enter imports, Esc closes. Importing again updates, never duplicates.", classes="dialog-hint")

    @on(Input.Submitted, "#import-path")
    @on(Button.Pressed, "#import")
    def _start(self) -> None:
        if self.importing:
            return
        path = self.query_one("#import-path", Input).value.strip()
        result = self.query_one("#import-result", Static)
        if not path:
            result.update("file: enter the path of the file to import")
            result.set_classes("field-error")
            return
        fmt = str(self.query_one("#import-format", Select).value)
        self.importing = True
        result.set_classes("")
        result.update(f"Importing {path}…")
        self._import(path, None if fmt == "auto" else fmt)

    @work(thread=True, exclusive=True, exit_on_error=False, group="import", description="Import")
    def _import(self, path: str, fmt: str | None) -> None:
        try:
            self.services.require_operator("import hosts")
            imported = import_file(Path(path).expanduser(), fmt)
            inventory = self.services.inventory
            if imported.groups:
                inventory.upsert_groups(list(imported.groups))
            added, updated = inventory.upsert_hosts(list(imported.hosts))
        except (InventoryFileError, ReadOnlyError, OSError) as exc:
            self.post_message(self.Failed(describe_error(exc)))
            return
        self.services.audit.append(
            "inventory.import",
            str(imported.source) if imported.source else path,
            {"format": fmt or "auto", "added": added, "updated": updated},
        )
        outcome = ImportOutcome(
            path, added, updated, len(imported.groups), tuple(imported.warnings)
        )
        self.post_message(self.Imported(outcome))

    def on_import_dialog_imported(self, message: Imported) -> None:
        """Show the counts."""
        self.importing = False
        self.outcome = message.outcome
        outcome = message.outcome
        result = self.query_one("#import-result", Static)
        result.set_classes("import-ok")
        text = f"{outcome.path}: {outcome.added} added, {outcome.updated} updated"
        if outcome.groups:
            text += f", {outcome.groups} groups"
        text += " · Esc closes and lists them (or import another file)"
        if outcome.warnings:
            text += f"\n{len(outcome.warnings)} skipped: " + "\n".join(outcome.warnings[:5])
        result.update(text)

    def on_import_dialog_failed(self, message: Failed) -> None:
        """Show the error (file:line: message)."""
        self.importing = False
        result = self.query_one("#import-result", Static)
        result.set_classes("field-error")
        result.update(message.message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An unexpected failure (reported by the mixin) leaves the dialog usable."""
        if event.worker.group == "import" and event.state is WorkerState.ERROR:
            self.importing = False
            self.query_one("#import-result", Static).update("")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Close, handing back the last successful import."""
        self.dismiss(self.outcome)
