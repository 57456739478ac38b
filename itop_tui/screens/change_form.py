"""Forms of the Changes pane: a small dialog of text fields, the new-change and edit forms.

:class:`FieldsDialog` asks for a few values (a comment, a window, a close
code and notes); it checks required fields and fixed choices itself and
dismisses with the values by name. :class:`ChangeFormScreen` writes a new
change: blank (normal or emergency) or standard from a template of the
config, its hosts chosen with the selector syntax (the count of matching
hosts shown as you type) and its procedures from the library.
:class:`ChangeEditScreen` edits a draft the same way, its fields filled in
from the change; only what the person changed is written.

Keys: the first field has the cursor as soon as a dialog opens (keys typed
right after the key that opened it land there). Ctrl+S saves and Escape
cancels, as the dialog's own footer says. In the new-change and edit forms
Enter moves to the next field (after the last one, to the Save button) and
never saves a half-filled form; in the small dialogs (a comment, a window)
Enter in the last field saves. A field's text is not selected when the
cursor enters it, so typing adds to it rather than replacing it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static

from itop_tui.domain.change import CHANGE_TYPES, Change, ChangeRefused
from itop_tui.domain.models import Inventory
from itop_tui.domain.selectors import SelectorError, select_hosts
from itop_tui.domain.timespec import TimeSpecError, parse_when
from itop_tui.ops.change_workflow import ChangeSpec, ChangeWorkflow
from itop_tui.screens.worker_errors import ReportsWorkerErrors, describe_error
from itop_tui.services.context import ReadOnlyError
from itop_tui.services.procedure_repo import ProcedureRepository


@dataclass(frozen=True)
class FormField:
    """One text field: its name, label, hint, initial value and rules.

    ``choices`` (when given) lists the only values accepted; an empty value
    is accepted unless ``required``. A ``secret`` field hides what is typed.
    """

    name: str
    label: str
    placeholder: str = ""
    value: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    secret: bool = False


def check_values(fields: Sequence[FormField], values: dict[str, str]) -> str | None:
    """Why ``values`` do not fill ``fields`` (the first problem), or None."""
    for spec in fields:
        value = values.get(spec.name, "").strip()
        if spec.required and not value:
            return f"{spec.label}: required"
        if value and spec.choices and value not in spec.choices:
            return f"{spec.label}: one of {', '.join(spec.choices)}, got {value!r}"
    return None


class FieldsDialog(ReportsWorkerErrors, ModalScreen[dict[str, str] | None]):
    """A few labelled inputs; Ctrl+S or Enter in the last one saves, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", show=True),
        Binding("escape", "cancel", "Cancel", show=True),
    ]
    # Focused while the dialog is composed, before any queued key is handled.
    AUTO_FOCUS = ".change-fields Input"
    ENTER_SAVES = True
    """Enter in the last field saves (small dialogs); else Enter only moves on."""

    def __init__(self, title: str, fields: Sequence[FormField], *, intro: str = "",
                 save_label: str = "Save") -> None:
        """Ask for ``fields`` under ``title``; ``intro`` explains what happens."""
        super().__init__()
        self._title = title
        self.fields = list(fields)
        self._intro = intro
        self._save_label = save_label

    def compose(self) -> ComposeResult:
        """Title, intro, the fields, an error line, the buttons."""
        with Vertical(classes="dialog change-dialog"):
            yield Static(self._title, classes="dialog-title", markup=False)
            if self._intro:
                yield Static(self._intro, classes="dialog-text", markup=False)
            with VerticalScroll(classes="change-fields"):
                for spec in self.fields:
                    label = spec.label + (" *" if spec.required else "")
                    if spec.choices:
                        label += f" ({' / '.join(spec.choices)})"
                    yield Static(label, classes="field-label", markup=False)
                    field = Input(spec.value, placeholder=spec.placeholder, password=spec.secret,
                                  id=f"field-{spec.name}", select_on_focus=False)
                    field.cursor_blink = False  # a steady cursor keeps snapshots stable
                    yield field
                    yield from self.extra_after(spec)
            yield Static("", id="fields-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self._save_label, id="save", variant="primary")
        yield Footer()

    def extra_after(self, spec: FormField) -> ComposeResult:
        """Widgets shown under the field ``spec`` (none here; subclasses add hints)."""
        yield from ()

    def values(self) -> dict[str, str]:
        """The current text of each field, by name, stripped."""
        return {spec.name: self.query_one(f"#field-{spec.name}", Input).value.strip()
                for spec in self.fields}

    def show_error(self, text: str) -> None:
        """Say what is wrong under the fields."""
        self.query_one("#fields-error", Static).update(text)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        last = bool(self.fields) and event.input.id == f"field-{self.fields[-1].name}"
        if last and self.ENTER_SAVES:
            self.action_save()
        elif last:
            self.set_focus(self.query_one("#save", Button))
        else:
            self.focus_next()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        """Check the values and dismiss with them, or show the first problem."""
        values = self.values()
        problem = check_values(self.fields, values)
        if problem is not None:
            self.show_error(problem)
            return
        self.accept(values)

    def accept(self, values: dict[str, str]) -> None:
        """Values are complete: dismiss with them (subclasses save first)."""
        self.dismiss(values)

    def action_cancel(self) -> None:
        """Close without values."""
        self.dismiss(None)


def change_fields(templates: Sequence[str]) -> list[FormField]:
    """The fields of a new change; the template field only when templates are configured
    (an empty field that takes no value would only catch what was typed for the title)."""
    template = [
        FormField("template", "Standard template (standard changes only)",
                  ", ".join(templates), choices=tuple(templates)),
    ] if templates else []
    return [
        FormField("type", "Type", "normal", "normal", required=True, choices=CHANGE_TYPES),
        *template,
        FormField("title", "Title", "what changes, in a few words"),
        FormField("description", "Description", "what will be done"),
        FormField("justification", "Justification", "why (a ticket, a CVE, a request)"),
        FormField("hosts", "Hosts (a selector)", "web, db01, tag:nginx:&status:production"),
        FormField("impact", "Impact", "what users will notice"),
        FormField("outage", "Outage", "yes or no", choices=("yes", "no")),
        FormField("implementation", "Implementation procedure", "a procedure id from the library"),
        FormField("backout", "Backout procedure", "a procedure id from the library"),
        FormField("variables", VARIABLES_LABEL, VARIABLES_HINT),
        FormField("backout_plan", "Backout plan", "how to undo it"),
        FormField("test_plan", "Test plan", "how to check it worked"),
    ]


VARIABLES_LABEL = "Variables of the procedures (NAME=VALUE ...; secrets are asked at implement)"
VARIABLES_HINT = "dir=/srv/app text='hello world'"


def parse_variables(text: str) -> dict[str, str]:
    """``NAME=VALUE`` pairs separated by spaces (quote a value with spaces) as a mapping.

    Raises ValueError naming the field and the bad pair.
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"Variables: {exc} (quote values with spaces: text='a b')") from None
    values: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"Variables: NAME=VALUE pairs separated by spaces, got {word!r}")
        values[name.strip()] = value
    return values


def variables_text(variables: Mapping[str, str]) -> str:
    """The variables as the form shows them: ``NAME=VALUE`` pairs, values quoted when needed."""
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())


WINDOW_START_HINT = "2025-06-03T22:00Z, now or +30m (UTC unless an offset is given)"
WINDOW_END_HINT = "an ISO time, or +1h after the start"


def edit_form_fields(change: Change) -> list[FormField]:
    """The fields of the edit form, filled in from ``change``."""
    outage = "" if change.outage is None else "yes" if change.outage else "no"
    return [
        FormField("type", "Type", value=change.type, required=True, choices=CHANGE_TYPES),
        FormField("title", "Title", "what changes, in a few words", change.title, required=True),
        FormField("description", "Description", "what will be done", change.description),
        FormField("justification", "Justification", "why (a ticket, a CVE, a request)",
                  change.justification),
        FormField("hosts", "Hosts (a selector)", "web, db01, tag:nginx&status:production",
                  change.selector or ", ".join(change.hosts)),
        FormField("start", "Window start", WINDOW_START_HINT, change.window_start or ""),
        FormField("end", "Window end", WINDOW_END_HINT, change.window_end or ""),
        FormField("impact", "Impact", "what users will notice", change.impact),
        FormField("outage", "Outage", "yes or no", outage, choices=("yes", "no")),
        FormField("implementation", "Implementation procedure",
                  "a procedure id from the library", change.implementation or ""),
        FormField("backout", "Backout procedure", "a procedure id from the library",
                  change.backout or ""),
        FormField("variables", VARIABLES_LABEL, VARIABLES_HINT, variables_text(change.variables)),
        FormField("backout_plan", "Backout plan", "how to undo it", change.backout_plan),
        FormField("test_plan", "Test plan", "how to check it worked", change.test_plan),
    ]


_TEXT_FIELDS = ("title", "description", "justification", "impact", "backout_plan", "test_plan")


def edited_fields(change: Change, before: dict[str, str], after: dict[str, str],
                  now: datetime) -> dict[str, Any]:
    """What the edit form changed, as ``ChangeWorkflow.edit`` takes it.

    Only fields whose text differs from what the form showed are given.
    The hosts are a selector, resolved again by the workflow (emptied: no
    hosts). The window takes ``now``, ``+30m`` or an ISO time; an end of
    ``+1h`` counts from the start. The variables replace the change's.
    Raises ``TimeSpecError`` for a bad time, ValueError for bad variables.
    """
    changed = {name for name, value in after.items() if value != before.get(name, "")}
    fields: dict[str, Any] = {name: after[name] for name in _TEXT_FIELDS if name in changed}
    if "type" in changed:
        fields["type"] = after["type"]
    if "hosts" in changed:
        fields["selector"] = after["hosts"]
        if not after["hosts"]:
            fields["hosts"] = []
    if "outage" in changed:
        fields["outage"] = None if not after["outage"] else after["outage"] == "yes"
    for name in ("implementation", "backout"):
        if name in changed:
            fields[name] = after[name] or None
    if "variables" in changed:
        fields["variables"] = parse_variables(after["variables"])
    start = change.start
    if "start" in changed:
        start = parse_when(after["start"], now) if after["start"] else None
        fields["window_start"] = start
    if "end" in changed:
        text = after["end"]
        if not text:
            fields["window_end"] = None
        else:
            base = start if text.startswith("+") and start is not None else now
            fields["window_end"] = parse_when(text, base)
    return fields


class ChangeFieldsScreen(FieldsDialog):
    """A change's fields: the host count under the selector, the library under the procedures."""

    def __init__(self, workflow: ChangeWorkflow, title: str, fields: Sequence[FormField], *,
                 intro: str, save_label: str) -> None:
        """Ask for ``fields`` of a change of ``workflow``."""
        super().__init__(title, fields, intro=intro, save_label=save_label)
        self.workflow = workflow
        self.inventory: Inventory | None = None
        self.procedure_ids: list[str] = []

    def extra_after(self, spec: FormField) -> ComposeResult:
        """The host count under the selector, the library under the procedures."""
        if spec.name == "hosts":
            yield Static("", id="hosts-match", classes="dialog-hint", markup=False)
        elif spec.name == "backout":
            yield Static("", id="procedure-library", classes="dialog-hint", markup=False)

    def on_mount(self) -> None:
        """Read the inventory and the procedure library for the hints."""
        self.load_references()

    @work(thread=True, exit_on_error=False, group="form", description="Read the inventory")
    def load_references(self) -> None:
        """Inventory and procedure ids (in a thread)."""
        inventory = self.workflow.services.inventory.load()
        data_dir = self.workflow.services.settings.data_dir
        ids = sorted(p.id for p in ProcedureRepository.in_data_dir(data_dir).all())
        self.app.call_from_thread(self._references_loaded, inventory, ids)

    def _references_loaded(self, inventory: Inventory, ids: list[str]) -> None:
        self.inventory = inventory
        self.procedure_ids = ids
        self.query_one("#procedure-library", Static).update(
            "Library: " + (", ".join(ids) if ids else "empty (import procedures first)"))
        self._count_hosts()

    @on(Input.Changed, "#field-hosts")
    def _count_hosts(self) -> None:
        if self.inventory is None:
            return
        text = self.query_one("#field-hosts", Input).value.strip()
        hint = self.query_one("#hosts-match", Static)
        if not text:
            hint.update(f"{len(self.inventory.hosts)} hosts in the inventory")
            return
        try:
            found = select_hosts(self.inventory, text)
        except SelectorError as exc:
            hint.update(str(exc))
            return
        names = ", ".join(h.name for h in found[:8]) + (" …" if len(found) > 8 else "")
        count = f"{len(found)} host matches" if len(found) == 1 else f"{len(found)} hosts match"
        hint.update(count + (f": {names}" if found else ""))

    # Many fields: Enter moves on and never saves a half-filled form.
    ENTER_SAVES = False

    def library_problem(self, values: dict[str, str]) -> str | None:
        """A procedure id that is not in the library, said for the form (None: all known)."""
        for name in ("implementation", "backout"):
            proc = values.get(name, "")
            if proc and self.procedure_ids and proc not in self.procedure_ids:
                return f"{name}: no procedure {proc!r} in the library"
        return None


class ChangeFormScreen(ChangeFieldsScreen):
    """Write a new change as a draft; dismisses with ``{"ref": CHG-N}`` (None when cancelled)."""

    def __init__(self, workflow: ChangeWorkflow) -> None:
        """A blank form for ``workflow``'s person."""
        templates = sorted(workflow.services.settings.changes.templates)
        super().__init__(
            workflow, "New change", change_fields(templates), save_label="Create draft",
            intro="A draft: submit it from its detail. A standard change takes everything "
                  "left blank from its template.")

    def accept(self, values: dict[str, str]) -> None:
        """Check the procedure ids and write the change in a thread."""
        problem = self.library_problem(values)
        if problem is not None:
            self.show_error(problem)
            return
        template = values.get("template", "")
        if template and values["type"] != "standard":
            self.show_error("Type: a change from a template is standard")
            return
        try:
            variables = parse_variables(values["variables"])
        except ValueError as exc:
            self.show_error(str(exc))
            return
        spec = ChangeSpec(
            type=values["type"],
            template=template or None,
            title=values["title"], description=values["description"],
            justification=values["justification"], hosts=values["hosts"],
            impact=values["impact"],
            outage=None if not values["outage"] else values["outage"] == "yes",
            implementation=values["implementation"] or None,
            backout=values["backout"] or None,
            backout_plan=values["backout_plan"], test_plan=values["test_plan"],
            variables=variables,
        )
        self.show_error("Writing the change…")
        self.create(spec)

    @work(thread=True, exclusive=True, exit_on_error=False, group="save",
          description="Write the change")
    def create(self, spec: ChangeSpec) -> None:
        """Write the draft (in a thread); refusals are shown on the form."""
        try:
            change = self.workflow.create(spec)
        except (ChangeRefused, SelectorError, ValueError, ReadOnlyError) as exc:
            self.app.call_from_thread(self.show_error, describe_error(exc))
            return
        self.app.call_from_thread(self.dismiss, {"ref": change.ref})


class ChangeEditScreen(ChangeFieldsScreen):
    """Edit a draft change; dismisses with ``{"ref": CHG-N, "fields": "a, b"}`` once saved.

    The workflow checks again that the change is a draft and that this
    person may edit it; a refusal is shown on the form, which stays open.
    """

    def __init__(self, workflow: ChangeWorkflow, change: Change) -> None:
        """The form for ``change``, filled in from it."""
        fields = edit_form_fields(change)
        super().__init__(
            workflow, f"Edit {change.ref}", fields, save_label="Save draft",
            intro="Only what you change is written. Hosts take the selector syntax; the "
                  "window may be left empty until the change is scheduled.")
        self.change = change
        self.before = {spec.name: spec.value for spec in fields}

    def accept(self, values: dict[str, str]) -> None:
        """Work out what changed and write it in a thread."""
        problem = self.library_problem(values)
        if problem is not None:
            self.show_error(problem)
            return
        try:
            fields = edited_fields(self.change, self.before, values, self.workflow.clock())
        except (TimeSpecError, ValueError) as exc:
            self.show_error(str(exc))
            return
        if not fields:
            self.show_error("Nothing changed.")
            return
        self.show_error("Saving the change…")
        self.save(fields)

    @work(thread=True, exclusive=True, exit_on_error=False, group="save",
          description="Edit the change")
    def save(self, fields: dict[str, Any]) -> None:
        """Write the edit (in a thread); refusals are shown on the form."""
        try:
            change = self.workflow.edit(self.change.ref, fields)
        except (ChangeRefused, SelectorError, ValueError, ReadOnlyError) as exc:
            self.app.call_from_thread(self.show_error, describe_error(exc))
            return
        names = ", ".join(sorted("hosts" if n == "selector" else n for n in fields
                                 if not (n == "hosts" and "selector" in fields)))
        self.app.call_from_thread(self.dismiss, {"ref": change.ref, "fields": names})
