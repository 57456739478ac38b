"""Backup jobs and the runs they leave (ARCHITECTURE.md section 4).

A :class:`BackupJob` says what to back up (``sources`` minus ``excludes``)
on which hosts (a selector), how (``method``), where to, when (a cron
``schedule``), how many backups to keep (:class:`Retention`), how to verify
them (:class:`VerifyPolicy`) and how old the newest good backup may get
(``rpo_hours``). Every backup, verification, restore and prune is a
:class:`BackupRun` of one job on one host.

Methods:

* ``tar``: itop streams ``tar`` of the sources from the host into
  ``destination``, a directory on the machine running itop (default
  ``<backup root>/<job name>``) or ``ssh://HOST/DIR``, a directory on a
  backup host of the inventory;
* ``restic``: restic runs on the host; ``destination`` is the restic
  repository as the host sees it and ``password_file`` a path on the host
  (itop never reads the password);
* ``command``: ``command`` runs on the host; its exit status decides.

Pure: validation raises :class:`ValidationError` naming the field
(``sources[1]``, ``retention.keep_daily``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from itop_tui.domain.cron import CronError, parse_cron
from itop_tui.domain.models import ValidationError
from itop_tui.domain.selectors import SelectorError, parse_selector

METHODS = ("tar", "restic", "command")
COMPRESSIONS = ("gzip", "none")
VERIFY_WHEN = ("after-backup", "schedule", "never")
VERIFY_SCOPES = ("full", "sample")
RUN_KINDS = ("backup", "verify", "restore", "prune")
RUN_STATUSES = ("running", "succeeded", "warning", "failed", "cancelled")
GOOD_STATUSES = ("succeeded", "warning")
JOB_ORIGINS = ("config", "manual")
JOB_ID_PREFIX = "BKJ-"
RUN_ID_PREFIX = "BKR-"
# Job names become file names, restic tags and problem sources.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Host names as the inventory allows them (no user@, no port: those live in the inventory).
_HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
SSH_SCHEME = "ssh://"
MAX_KEEP = 100_000
MAX_RPO_HOURS = 24 * 366 * 10
MAX_TIMEOUT = 7 * 24 * 3600
DEFAULT_TIMEOUT = 6 * 3600.0
DEFAULT_SAMPLE_PERCENT = 10.0
LOG_LIMIT = 8 * 1024


def utc_now_text(moment: datetime | None = None) -> str:
    """UTC ISO 8601 with seconds and a ``Z`` (how backup records store times)."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """A stored time back as an aware UTC datetime (naive means UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Retention:
    """How many backups to keep, as restic's ``--keep-*`` options define them.

    All zero means "keep everything" (no policy), as with restic.
    """

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    @property
    def is_empty(self) -> bool:
        """True when no count is set: nothing is ever pruned."""
        return not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly)

    def describe(self) -> str:
        """``keep_last 3, keep_daily 7`` (or ``keep everything``)."""
        parts = [f"{f.name} {getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name)]
        return ", ".join(parts) if parts else "keep everything"

    def restic_options(self) -> list[str]:
        """The ``restic forget`` options for this policy."""
        options: list[str] = []
        for name in ("last", "daily", "weekly", "monthly"):
            count = getattr(self, f"keep_{name}")
            if count:
                options += [f"--keep-{name}", str(count)]
        return options

    def validate(self, prefix: str = "retention") -> None:
        """Raise :class:`ValidationError` naming the first bad count."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_KEEP:
                raise ValidationError(
                    f"{prefix}.{f.name}", f"must be a whole number 0-{MAX_KEEP}, got {value!r}"
                )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Retention:
        """From the stored form, ignoring unknown keys."""
        data = data or {}
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class VerifyPolicy:
    """When and how thoroughly backups are verified by a test restore.

    ``when``: ``after-backup`` (each successful backup), ``schedule`` (the
    cron ``schedule`` here, on the newest backup) or ``never``. ``scope``:
    ``full`` (every file) or ``sample`` (``sample_percent`` of the files;
    for restic also ``check --read-data-subset`` of that share).
    """

    when: str = "after-backup"
    scope: str = "full"
    sample_percent: float = DEFAULT_SAMPLE_PERCENT
    schedule: str | None = None

    def validate(self, prefix: str = "verify") -> None:
        """Raise :class:`ValidationError` naming the first bad field."""
        if self.when not in VERIFY_WHEN:
            raise ValidationError(f"{prefix}.when",
                                  f"must be one of {', '.join(VERIFY_WHEN)}, got {self.when!r}")
        if self.scope not in VERIFY_SCOPES:
            raise ValidationError(f"{prefix}.scope",
                                  f"must be one of {', '.join(VERIFY_SCOPES)}, got {self.scope!r}")
        percent = self.sample_percent
        if isinstance(percent, bool) or not isinstance(percent, int | float) \
                or not 0 < percent <= 100:
            raise ValidationError(f"{prefix}.sample_percent",
                                  f"must be a number above 0 and at most 100, got {percent!r}")
        if self.when == "schedule" and not self.schedule:
            raise ValidationError(f"{prefix}.schedule",
                                  "is needed when verify.when is 'schedule' (a cron expression)")
        if self.schedule:
            _check_cron(self.schedule, f"{prefix}.schedule")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> VerifyPolicy:
        """From the stored form, ignoring unknown keys."""
        data = data or {}
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# Fields that are the job's definition (config or `itop backup add`), as
# opposed to what the store keeps about it (id, pause, schedule bookkeeping).
DEFINITION_FIELDS = (
    "name", "hosts", "method", "sources", "excludes", "destination", "password_file",
    "command", "compression", "schedule", "retention", "verify", "rpo_hours",
    "pre_command", "post_command", "timeout", "enabled",
)


@dataclass
class BackupJob:
    """A defined backup: what, where from, how, where to, when, how long kept.

    ``origin`` is ``config`` for jobs from the config file (synced into the
    store by name) and ``manual`` for jobs added with ``itop backup add`` or
    the TUI. ``paused`` is set in itop (TUI "disable") and survives config
    syncs; a job runs on schedule only when ``enabled`` and not ``paused``.
    ``last_due`` and ``last_verify_due`` are the latest scheduled times
    already handled, so missed runs are caught up once.
    """

    name: str
    hosts: str
    method: str = "tar"
    sources: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    destination: str = ""
    password_file: str | None = None
    command: str | None = None
    compression: str = "gzip"
    schedule: str | None = None
    retention: Retention = field(default_factory=Retention)
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    rpo_hours: float | None = None
    pre_command: str | None = None
    post_command: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    enabled: bool = True
    id: str = ""
    origin: str = "manual"
    paused: bool = False
    created: str | None = None
    last_due: str | None = None
    last_verify_due: str | None = None

    @property
    def active(self) -> bool:
        """Runs on schedule: enabled in its definition and not paused in itop."""
        return self.enabled and not self.paused

    @property
    def problem_source(self) -> str:
        """The ``metric`` of this job's RPO problems: ``backup:<name>``."""
        return f"backup:{self.name}"

    def validate(self) -> None:
        """Raise :class:`ValidationError` naming the first bad field."""
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ValidationError(
                "name", f"must be 1-64 letters, digits, '.', '_' or '-' (starting with a "
                        f"letter or digit), got {self.name!r}")
        if not isinstance(self.hosts, str) or not self.hosts.strip():
            raise ValidationError("hosts", "needs a host selector, e.g. 'web*' or 'tag:db'")
        try:
            parse_selector(self.hosts)
        except SelectorError as exc:
            raise ValidationError("hosts", str(exc)) from None
        if self.method not in METHODS:
            raise ValidationError("method",
                                  f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        self._validate_paths()
        self._validate_method()
        if self.compression not in COMPRESSIONS:
            raise ValidationError(
                "compression",
                f"must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if self.schedule is not None:
            _check_cron(self.schedule, "schedule")
        self.retention.validate()
        self.verify.validate()
        if self.rpo_hours is not None:
            rpo = self.rpo_hours
            if isinstance(rpo, bool) or not isinstance(rpo, int | float) \
                    or not 0 < rpo <= MAX_RPO_HOURS:
                raise ValidationError("rpo_hours",
                                      f"must be a number of hours above 0, got {rpo!r}")
        for name in ("pre_command", "post_command"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValidationError(name, "must be a non-empty command (or left out)")
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not 0 < timeout <= MAX_TIMEOUT:
            raise ValidationError("timeout",
                                  f"must be seconds above 0 and at most {MAX_TIMEOUT}, got {timeout!r}")
        if self.origin not in JOB_ORIGINS:
            raise ValidationError("origin", f"must be one of {', '.join(JOB_ORIGINS)}")

    def _validate_paths(self) -> None:
        if not isinstance(self.sources, list) or not isinstance(self.excludes, list):
            raise ValidationError("sources", "sources and excludes must be lists of paths")
        if self.method != "command" and not self.sources:
            raise ValidationError("sources", f"the {self.method} method needs at least one path")
        for i, source in enumerate(self.sources):
            where = f"sources[{i}]"
            if not isinstance(source, str) or not source.startswith("/"):
                raise ValidationError(where, f"must be an absolute path on the host, got {source!r}")
            if "\n" in source or "\0" in source:
                raise ValidationError(where, "must not hold a newline or NUL")
            if any(part == ".." for part in source.split("/")):
                raise ValidationError(where, f"must not contain '..', got {source!r}")
        for i, pattern in enumerate(self.excludes):
            if not isinstance(pattern, str) or not pattern.strip() or "\n" in pattern:
                raise ValidationError(f"excludes[{i}]", f"must be a non-empty pattern, got {pattern!r}")

    def _validate_method(self) -> None:
        if self.method == "restic":
            if not self.destination:
                raise ValidationError("destination", "the restic method needs the repository "
                                                     "(as the host sees it, e.g. /srv/restic)")
            if not self.password_file or not self.password_file.startswith("/"):
                raise ValidationError("password_file",
                                      "the restic method needs the absolute path of the "
                                      "password file on the host (itop never reads it)")
        if self.method == "command" and (not self.command or not self.command.strip()):
            raise ValidationError("command", "the command method needs the backup command")
        if self.method == "tar" and self.destination:
            if self.destination.startswith(SSH_SCHEME):
                try:
                    parse_ssh_destination(self.destination)
                except ValueError as exc:
                    raise ValidationError("destination", str(exc)) from None
            elif not self.destination.startswith("/"):
                raise ValidationError(
                    "destination",
                    f"must be an absolute directory on this machine, or ssh://HOST/DIR on a "
                    f"backup host of the inventory, got {self.destination!r}")

    def definition(self) -> dict[str, Any]:
        """The defining fields only (what a config sync compares and replaces)."""
        data = self.to_dict()
        return {name: data[name] for name in DEFINITION_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """The stored and ``--json`` form."""
        data = asdict(self)
        data["sources"] = list(self.sources)
        data["excludes"] = list(self.excludes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackupJob:
        """Build a job from its stored form, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["retention"] = Retention.from_dict(data.get("retention"))
        values["verify"] = VerifyPolicy.from_dict(data.get("verify"))
        for key in ("sources", "excludes"):
            values[key] = list(values.get(key) or [])
        return cls(**values)


@dataclass
class BackupRun:
    """One backup, verification, restore or prune of a job on one host.

    ``job`` is the job's name (stable across config syncs); ``of_run`` is
    the backup run a verify or restore worked on. ``archive`` and ``sha256``
    are the tar archive on this machine; ``snapshot_id`` the restic
    snapshot. ``log`` is bounded and stripped of control sequences;
    ``detail`` holds method statistics (restic's summary, prune victims).
    A run is recorded ``running`` when it starts and gets its final status
    at the end; one left ``running`` by a process that died is reported as
    ``interrupted`` (see :func:`effective_status`).
    """

    id: str
    job: str
    host: str
    kind: str
    start: str
    status: str = "running"
    end: str | None = None
    bytes: int | None = None
    files: int | None = None
    archive: str | None = None
    sha256: str | None = None
    snapshot_id: str | None = None
    of_run: str | None = None
    log: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    actor: str = ""
    origin: str = ""

    @property
    def number(self) -> int:
        """The N of ``BKR-N``."""
        return int(self.id[len(RUN_ID_PREFIX):])

    @property
    def good(self) -> bool:
        """A finished run that did its job (``succeeded`` or ``warning``)."""
        return self.status in GOOD_STATUSES

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, None while running."""
        if self.end is None:
            return None
        return (parse_utc(self.end) - parse_utc(self.start)).total_seconds()

    def validate(self) -> None:
        """Raise :class:`ValidationError` naming the first bad field."""
        if self.kind not in RUN_KINDS:
            raise ValidationError("kind", f"must be one of {', '.join(RUN_KINDS)}, got {self.kind!r}")
        if self.status not in RUN_STATUSES:
            raise ValidationError("status",
                                  f"must be one of {', '.join(RUN_STATUSES)}, got {self.status!r}")
        if not self.job or not self.host:
            raise ValidationError("job", "a run needs a job and a host")

    def to_dict(self) -> dict[str, Any]:
        """The stored and ``--json`` form (with ``duration`` in seconds)."""
        data = asdict(self)
        data["duration"] = self.duration
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackupRun:
        """Build a run from its stored form, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["detail"] = dict(values.get("detail") or {})
        return cls(**values)


def parse_ssh_destination(text: str) -> tuple[str, str]:
    """``ssh://HOST/abs/dir`` as (inventory host name, absolute directory on it).

    Raises :class:`ValueError` with a message naming what is wrong.
    """
    if not text.startswith(SSH_SCHEME):
        raise ValueError(f"a backup host destination looks like ssh://HOST/DIR, got {text!r}")
    rest = text[len(SSH_SCHEME):]
    host, slash, path = rest.partition("/")
    if not host or not slash:
        raise ValueError(f"a backup host destination needs a host and an absolute directory: "
                         f"ssh://HOST/DIR, got {text!r}")
    if not _HOST_RE.fullmatch(host):
        raise ValueError(f"{host!r} is not an inventory host name (in ssh://HOST/DIR)")
    directory = "/" + path.strip("/")
    if any(part == ".." for part in directory.split("/")) or "\n" in directory \
            or "\0" in directory:
        raise ValueError(f"the directory of {text!r} must not contain '..' or control characters")
    if directory == "/":
        raise ValueError(f"give a directory below / on the backup host, got {text!r}")
    return host, directory


def effective_status(run: BackupRun, job_locked: bool) -> str:
    """The status to show: ``interrupted`` for a run left ``running`` by a dead process."""
    if run.status == "running" and not job_locked:
        return "interrupted"
    return run.status


def rpo_state(job: BackupJob, last_success: str | None, now: datetime) -> str:
    """``none`` (no RPO set), ``ok`` or ``breached`` for one job on one host.

    Without any successful backup the age counts from the job's creation,
    so a new job is given ``rpo_hours`` to produce its first backup.
    """
    if job.rpo_hours is None:
        return "none"
    reference = last_success or job.created
    if reference is None:
        return "breached"
    age_hours = (now - parse_utc(reference)).total_seconds() / 3600
    return "breached" if age_hours > job.rpo_hours else "ok"


def _check_cron(text: str, field_name: str) -> None:
    try:
        parse_cron(text)
    except CronError as exc:
        raise ValidationError(field_name, str(exc)) from None
