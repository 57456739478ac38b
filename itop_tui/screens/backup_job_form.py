"""The backup job form: define a new job, or edit one made in itop.

Every field of a job (ARCHITECTURE.md section 4): name, hosts selector,
sources and excludes (one per line), method, destination, restic password
file, backup command, compression, schedule (cron, checked as you type,
with the next time it fires), retention counts, verify policy, RPO hours,
pre and post commands. The hosts selector shows the hosts it matches as
you type. Save checks the whole job with the domain's validation and points
at the offending field; the form dismisses with the :class:`BackupJob`
(not stored: the pane stores it), or None.

Config-file jobs are edited in the file; the pane does not open this form
for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Select, Static, TextArea

from itop_tui.domain.backup import (
    COMPRESSIONS,
    METHODS,
    SSH_SCHEME,
    VERIFY_SCOPES,
    VERIFY_WHEN,
    BackupJob,
    Retention,
    VerifyPolicy,
    parse_ssh_destination,
)
from itop_tui.domain.cron import CronError, parse_cron
from itop_tui.domain.models import Inventory, ValidationError
from itop_tui.domain.selectors import SelectorError, select_hosts

HOSTS_SHOWN = 6
KEEPS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")

# Which widget shows each field validation may name (``retention.keep_daily`` ...).
FIELD_WIDGETS = {
    "name": "job-name", "hosts": "job-hosts", "method": "job-method", "sources": "job-sources",
    "excludes": "job-excludes", "destination": "job-destination",
    "password_file": "job-password-file", "command": "job-command",
    "compression": "job-compression", "schedule": "job-schedule", "rpo_hours": "job-rpo",
    "pre_command": "job-pre", "post_command": "job-post",
    "verify.when": "job-verify-when", "verify.scope": "job-verify-scope",
    "verify.sample_percent": "job-verify-percent", "verify.schedule": "job-verify-schedule",
    **{f"retention.{k}": f"job-{k.replace('_', '-')}" for k in KEEPS},
}


def describe_schedule(text: str, now: datetime) -> str:
    """``next: 2025-06-01 02:30 UTC`` for a cron expression, the error, or ``manual only``."""
    if not text.strip():
        return "no schedule: runs only when started (r, or itop backup run)"
    try:
        nxt = parse_cron(text.strip()).next_after(now)
    except CronError as exc:
        return f"schedule: {exc}"
    return f"next run: {nxt:%Y-%m-%d %H:%M} UTC"


def describe_hosts(selector: str, inventory: Inventory | None) -> str:
    """The hosts ``selector`` matches now, or why it is not a selector."""
    if not selector.strip():
        return "hosts: a selector is needed (e.g. web*, tag:db, group:prod)"
    if inventory is None:
        return ""
    try:
        names = [h.name for h in select_hosts(inventory, selector.strip())]
    except SelectorError as exc:
        return f"hosts: {exc}"
    if not names:
        return "matches no host in the inventory (yet)"
    shown = ", ".join(names[:HOSTS_SHOWN]) + (" …" if len(names) > HOSTS_SHOWN else "")
    return f"matches {len(names)} host(s): {shown}"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _number(text: str, field_name: str, *, whole: bool = False) -> Any:
    text = text.strip()
    if not text:
        return 0 if whole else None
    try:
        return int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ValidationError(field_name, f"must be {kind}, got {text!r}") from None


def _optional(text: str) -> str | None:
    return text.strip() or None


class BackupJobForm(ModalScreen[BackupJob | None]):
    """Create a backup job, or edit ``job`` (its name then stays)."""

    AUTO_FOCUS = "#job-name"
    DEFAULT_CSS = """
    BackupJobForm #job-form { width: 100; max-width: 100%; height: auto; max-height: 46; }
    BackupJobForm #job-fields { height: auto; max-height: 36; }
    BackupJobForm #job-grid {
        grid-size: 2; grid-columns: 16 1fr; grid-rows: auto; height: auto; grid-gutter: 0 1;
    }
    BackupJobForm .job-label { color: $text-muted; height: 1; }
    BackupJobForm .job-hint {
        color: $text-muted; height: auto; column-span: 2; padding-left: 17; width: 1fr;
    }
    BackupJobForm TextArea { height: 3; }
    BackupJobForm #job-retention, BackupJobForm #job-verify { height: 1; }
    BackupJobForm #job-retention Input, BackupJobForm #job-verify Input { width: 8; }
    BackupJobForm #job-retention Static, BackupJobForm #job-verify Static {
        width: auto; padding: 0 1 0 1; color: $text-muted;
    }
    BackupJobForm #job-verify Select { width: 18; }
    BackupJobForm #job-error { color: $text-error; height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, job: BackupJob | None = None, *, inventory: Inventory | None = None,
                 now: datetime | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        """A blank form, or ``job``'s fields; ``inventory`` lets it show matching hosts.

        ``clock`` gives the time the schedule's next run is counted from, read
        each time the schedule changes; ``now`` fixes it (snapshots).
        """
        super().__init__()
        self.original = job
        self.inventory = inventory
        self._error_shown = False
        fixed = now
        self.clock: Callable[[], datetime] = clock or (
            (lambda: fixed) if fixed is not None else (lambda: datetime.now(UTC)))

    @property
    def editing(self) -> bool:
        """True when an existing job is edited."""
        return self.original is not None

    def compose(self) -> ComposeResult:
        """The fields in a scrolling grid, the error line and the buttons."""
        job = self.original or BackupJob(name="", hosts="")
        title = f"Edit backup job {job.name}" if self.editing else "New backup job"
        with Vertical(id="job-form", classes="dialog"):
            yield Static(title, classes="dialog-title", markup=False)
            with VerticalScroll(id="job-fields"), Grid(id="job-grid"):
                yield from self._row("Name", Input(job.name, id="job-name", compact=True,
                                                   disabled=self.editing,
                                                   placeholder="etc-nightly"))
                yield from self._row("Hosts", Input(job.hosts, id="job-hosts", compact=True,
                                                    placeholder="web* or tag:db"))
                yield Static("", id="job-hosts-hint", classes="job-hint", markup=False)
                yield from self._row("Sources", TextArea(
                    "\n".join(job.sources), id="job-sources", compact=True,
                    placeholder="one absolute path per line"))
                yield from self._row("Excludes", TextArea(
                    "\n".join(job.excludes), id="job-excludes", compact=True,
                    placeholder="one pattern per line"))
                yield from self._row("Method", Select(
                    [(m, m) for m in METHODS], value=job.method, allow_blank=False,
                    id="job-method", compact=True))
                yield from self._row("Destination", Input(
                    job.destination, id="job-destination", compact=True,
                    placeholder="tar: /dir here or ssh://HOST/dir · restic: repository"))
                yield from self._row("Password file", Input(
                    job.password_file or "", id="job-password-file", compact=True,
                    placeholder="restic: path on the host (itop never reads it)"))
                yield from self._row("Command", Input(
                    job.command or "", id="job-command", compact=True,
                    placeholder="command method: the backup command"))
                yield from self._row("Compression", Select(
                    [(c, c) for c in COMPRESSIONS], value=job.compression, allow_blank=False,
                    id="job-compression", compact=True))
                yield from self._row("Schedule", Input(
                    job.schedule or "", id="job-schedule", compact=True,
                    placeholder="cron in UTC, e.g. 30 2 * * *"))
                yield Static("", id="job-schedule-hint", classes="job-hint", markup=False)
                yield Static("Retention", classes="job-label")
                with Horizontal(id="job-retention"):
                    for key in KEEPS:
                        yield Static(key.removeprefix("keep_"))
                        value = getattr(job.retention, key)
                        yield Input(str(value) if value else "", id=f"job-{key.replace('_', '-')}",
                                    compact=True, placeholder="0")
                yield Static("Verify", classes="job-label")
                with Horizontal(id="job-verify"):
                    yield Select([(w, w) for w in VERIFY_WHEN], value=job.verify.when,
                                 allow_blank=False, id="job-verify-when", compact=True)
                    yield Select([(s, s) for s in VERIFY_SCOPES], value=job.verify.scope,
                                 allow_blank=False, id="job-verify-scope", compact=True)
                    yield Static("%")
                    yield Input(f"{job.verify.sample_percent:g}", id="job-verify-percent",
                                compact=True)
                yield from self._row("Verify schedule", Input(
                    job.verify.schedule or "", id="job-verify-schedule", compact=True,
                    placeholder="cron, when verify is 'schedule'"))
                yield from self._row("RPO hours", Input(
                    "" if job.rpo_hours is None else f"{job.rpo_hours:g}", id="job-rpo",
                    compact=True, placeholder="e.g. 26 (empty: no RPO)"))
                yield from self._row("Pre command", Input(
                    job.pre_command or "", id="job-pre", compact=True,
                    placeholder="run on the host first, e.g. a database dump"))
                yield from self._row("Post command", Input(
                    job.post_command or "", id="job-post", compact=True,
                    placeholder="run after ($ITOP_BACKUP_STATUS set)"))
            yield Static("", id="job-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="job-cancel")
                yield Button("Save", id="job-save", variant="primary")
        # The form's own keys (Save is Ctrl+S), over the pane's footer.
        yield Footer(compact=True)

    @staticmethod
    def _row(label: str, widget: Input | TextArea | Select[str]) -> ComposeResult:
        yield Static(label, classes="job-label", markup=False)
        yield widget

    def on_mount(self) -> None:
        """Show the hints of the initial values (none about an empty field not typed in yet)."""
        if self.query_one("#job-hosts", Input).value.strip():
            self._hosts_changed()
        self._schedule_changed()
        if self.editing:
            self.set_focus(self.query_one("#job-hosts", Input))

    @on(Input.Changed, "#job-hosts")
    def _hosts_changed(self) -> None:
        self.query_one("#job-hosts-hint", Static).update(
            describe_hosts(self.query_one("#job-hosts", Input).value, self.inventory))

    @on(Input.Changed, "#job-schedule")
    def _schedule_changed(self) -> None:
        self.query_one("#job-schedule-hint", Static).update(
            describe_schedule(self.query_one("#job-schedule", Input).value, self.clock()))

    @on(Input.Changed)
    @on(TextArea.Changed)
    @on(Select.Changed)
    def _recheck(self) -> None:
        """Once Save found a mistake, say at each change whether it is still there."""
        error = self.query_one("#job-error", Static)
        if not self._error_shown:
            return
        try:
            self.form_job()
        except ValidationError as exc:
            error.update(f"{exc.field}: {exc.message}")
            return
        error.update("")
        self._error_shown = False

    def _text(self, widget_id: str) -> str:
        widget = self.query_one(f"#{widget_id}")
        if isinstance(widget, TextArea):
            return widget.text
        if isinstance(widget, Select):
            return str(widget.value)
        assert isinstance(widget, Input)
        return widget.value

    def form_job(self) -> BackupJob:
        """The job the fields describe, validated; :class:`ValidationError` names the field."""
        text = self._text
        retention = Retention(**{k: _number(text(f"job-{k.replace('_', '-')}"),
                                            f"retention.{k}", whole=True) for k in KEEPS})
        percent = _number(text("job-verify-percent"), "verify.sample_percent")
        verify = VerifyPolicy(text("job-verify-when"), text("job-verify-scope"),
                              percent if percent is not None else 0,
                              _optional(text("job-verify-schedule")))
        fields: dict[str, Any] = {
            "name": text("job-name").strip(), "hosts": text("job-hosts").strip(),
            "method": text("job-method"), "sources": _lines(text("job-sources")),
            "excludes": _lines(text("job-excludes")),
            "destination": text("job-destination").strip(),
            "password_file": _optional(text("job-password-file")),
            "command": _optional(text("job-command")), "compression": text("job-compression"),
            "schedule": _optional(text("job-schedule")), "retention": retention,
            "verify": verify, "rpo_hours": _number(text("job-rpo"), "rpo_hours"),
            "pre_command": _optional(text("job-pre")), "post_command": _optional(text("job-post")),
        }
        job = replace(self.original, **fields) if self.original else BackupJob(**fields)
        job.validate()
        self._check_backup_host(job)
        return job

    def _check_backup_host(self, job: BackupJob) -> None:
        """The host of an ``ssh://HOST/DIR`` destination must be in the inventory."""
        if self.inventory is None or job.method != "tar" \
                or not job.destination.startswith(SSH_SCHEME):
            return
        backup_host, _directory = parse_ssh_destination(job.destination)
        if backup_host not in self.inventory.hosts:
            raise ValidationError("destination",
                                  f"the backup host {backup_host!r} is not in the inventory")

    @on(Button.Pressed, "#job-save")
    def action_save(self) -> None:
        """Check the job; dismiss with it, or show what is wrong and where."""
        try:
            job = self.form_job()
        except ValidationError as exc:
            self.query_one("#job-error", Static).update(f"{exc.field}: {exc.message}")
            self._error_shown = True
            widget_id = FIELD_WIDGETS.get(exc.field) or FIELD_WIDGETS.get(exc.field.split("[")[0])
            if widget_id:
                self.set_focus(self.query_one(f"#{widget_id}"))
            return
        self.dismiss(job)

    @on(Button.Pressed, "#job-cancel")
    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)
