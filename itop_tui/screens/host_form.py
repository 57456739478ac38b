"""Add or edit one host, with validation errors shown beside their field."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from itop_tui.domain.models import (
    CRITICALITIES,
    HOST_CLASSES,
    HOST_STATUSES,
    Host,
    ValidationError,
    host_change_detail,
)
from itop_tui.screens.early_keys import KeepsEarlyKeys
from itop_tui.screens.worker_errors import ReportsWorkerErrors, describe_error
from itop_tui.services.context import ReadOnlyError, Services

CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "class": HOST_CLASSES,
    "status": HOST_STATUSES,
    "criticality": CRITICALITIES,
}
FIELD_ORDER = (
    "name", "address", "port", "user", "class", "status", "criticality", "groups", "tags", "notes",
)
_LIST_SPLIT = re.compile(r"[,\s]+")


def split_words(text: str) -> list[str]:
    """``"web, db  prod"`` -> ``["web", "db", "prod"]``, duplicates dropped."""
    words: list[str] = []
    for word in _LIST_SPLIT.split(text.strip()):
        if word and word not in words:
            words.append(word)
    return words


def build_host(values: dict[str, str], base: Host | None = None) -> Host:
    """A validated host from the form's text ``values``, on top of ``base`` when editing.

    Raises :class:`ValidationError` naming the first bad field (form field
    names: ``class`` for the host class).
    """
    port_text = values.get("port", "").strip()
    port: int | None = None
    if port_text:
        if not port_text.isdigit():
            raise ValidationError("port", f"must be a number from 1 to 65535, got {port_text!r}")
        port = int(port_text)
    fields: dict[str, Any] = {
        "name": values.get("name", "").strip(),
        "address": values.get("address", "").strip(),
        "port": port,
        "user": values.get("user", "").strip() or None,
        "host_class": values.get("class", "server"),
        "status": values.get("status", "development"),
        "criticality": values.get("criticality", "medium"),
        "groups": split_words(values.get("groups", "")),
        "tags": split_words(values.get("tags", "")),
        "notes": values.get("notes", "").strip(),
    }
    host = replace(base, **fields) if base is not None else Host(source="manual", **fields)
    host.validate()
    return host


def host_values(host: Host) -> dict[str, str]:
    """The form's text values for an existing ``host``."""
    return {
        "name": host.name,
        "address": host.address,
        "port": "" if host.port is None else str(host.port),
        "user": host.user or "",
        "class": host.host_class,
        "status": host.status,
        "criticality": host.criticality,
        "groups": ", ".join(host.groups),
        "tags": ", ".join(host.tags),
        "notes": host.notes,
    }


class HostForm(ReportsWorkerErrors, KeepsEarlyKeys, ModalScreen[Host | None]):
    """A form for one host; saves through the inventory and dismisses with the saved host.

    The save runs in a thread worker while the form stays open, so that an
    error from the store (a duplicate name, a value it refuses) is shown at
    its field and nothing typed is lost.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    class Saved(Message):
        """The host was written to the inventory."""

        def __init__(self, host: Host) -> None:
            super().__init__()
            self.host = host

    class Refused(Message):
        """The inventory refused the host; ``field`` names where the problem is."""

        def __init__(self, field: str, message: str) -> None:
            super().__init__()
            self.field = field
            self.message = message

    def __init__(self, services: Services, host: Host | None = None) -> None:
        """Add a new host (``host`` None) or edit ``host``."""
        super().__init__()
        self.services = services
        self.original = host
        self.saving = False

    @property
    def editing(self) -> bool:
        """True when editing an existing host."""
        return self.original is not None

    def compose(self) -> ComposeResult:
        """One labelled input per field, each with an error line under it."""
        values = host_values(self.original) if self.original else {}
        title = f"Edit host {self.original.name}" if self.original else "Add a host"
        with Vertical(classes="dialog", id="host-form"):
            yield Static(title, classes="dialog-title", markup=False)
            with VerticalScroll(id="host-form-fields"), Grid(id="host-form-grid"):
                for name in FIELD_ORDER:
                    yield Label(name, classes="field-label")
                    with Vertical(classes="field"):
                        if name in CHOICE_FIELDS:
                            choices = CHOICE_FIELDS[name]
                            default = values.get(name) or Host(name="x").to_dict()[name]
                            yield Select(
                                [(c, c) for c in choices],
                                value=default,
                                allow_blank=False,
                                id=f"field-{name}",
                            )
                        else:
                            yield Input(
                                values.get(name, ""),
                                placeholder=_PLACEHOLDERS.get(name, ""),
                                id=f"field-{name}",
                                disabled=name == "name" and self.editing,
                            )
                        yield Static("", id=f"error-{name}", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")
            yield Static("ctrl+s saves, Esc cancels, Tab moves between fields.", classes="dialog-hint")

    def values(self) -> dict[str, str]:
        """The current text of every field."""
        result: dict[str, str] = {}
        for name in FIELD_ORDER:
            widget = self.query_one(f"#field-{name}")
            if isinstance(widget, Select):
                result[name] = str(widget.value)
            elif isinstance(widget, Input):
                result[name] = widget.value
        return result

    def show_error(self, field: str, message: str) -> None:
        """Show ``message`` under ``field`` (the name field for unknown ones) and focus it."""
        field = {"host_class": "class"}.get(field, field)
        if field not in FIELD_ORDER:
            field, message = "name", f"{field}: {message}"
        self.clear_errors()
        self.query_one(f"#error-{field}", Static).update(message)
        self.set_focus(self.query_one(f"#field-{field}"))

    def clear_errors(self) -> None:
        """Remove every error message."""
        for name in FIELD_ORDER:
            self.query_one(f"#error-{name}", Static).update("")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        """Validate the fields; when they are fine, save in a worker."""
        if self.saving:
            return
        try:
            host = build_host(self.values(), self.original)
        except ValidationError as exc:
            self.show_error(exc.field, exc.message)
            return
        self.clear_errors()
        self.saving = True
        self._save(host)

    @work(thread=True, exclusive=True, exit_on_error=False, group="host-form", description="Save host")
    def _save(self, host: Host) -> None:
        inventory = self.services.inventory
        try:
            if self.original is None:
                self.services.require_operator("add hosts")
                if inventory.get_host(host.name) is not None:
                    raise ValidationError("name", f"a host called {host.name!r} exists already")
                inventory.upsert_hosts([host])
                self.services.audit.append(
                    "inventory.add", host.name, {"address": host.address, "source": "tui"}
                )
                saved = host
            else:
                self.services.require_operator("edit hosts")
                changes = {
                    "address": host.address,
                    "port": host.port,
                    "user": host.user,
                    "host_class": host.host_class,
                    "status": host.status,
                    "criticality": host.criticality,
                    "groups": host.groups,
                    "tags": host.tags,
                    "notes": host.notes,
                }
                before = self.original.to_dict()
                changed = {
                    k: v for k, v in changes.items() if before.get("class" if k == "host_class" else k) != v
                }
                saved = inventory.update_host(self.original.name, **changed) if changed else self.original
                if changed:
                    self.services.audit.append(
                        "inventory.set", self.original.name,
                        host_change_detail(self.original, changed),
                    )
        except ValidationError as exc:
            self.post_message(self.Refused(exc.field, exc.message))
            return
        except ReadOnlyError as exc:
            self.post_message(self.Refused("", describe_error(exc)))
            return
        self.post_message(self.Saved(saved))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """After an unexpected failure (reported by the mixin) the form can be saved again."""
        if event.worker.group == "host-form" and event.state is WorkerState.ERROR:
            self.saving = False

    def on_host_form_saved(self, message: Saved) -> None:
        """Close with the saved host."""
        self.saving = False
        self.dismiss(message.host)

    def on_host_form_refused(self, message: Refused) -> None:
        """Show why the save was refused, at its field when there is one."""
        self.saving = False
        if message.field:
            self.show_error(message.field, message.message)
        else:
            self.query_one("#error-name", Static).update(message.message)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)


_PLACEHOLDERS = {
    "name": "web01 (one word)",
    "address": "IP, DNS name, or 'local' for this machine",
    "port": "22",
    "user": "login (default from ~/.ssh/config)",
    "groups": "web, prod",
    "tags": "db, eu-west",
    "notes": "free text",
}
