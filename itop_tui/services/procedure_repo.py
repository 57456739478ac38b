"""Procedures and their runs, kept in TinyDB files in the data dir.

``procedures.json`` holds the library: each procedure as validated data with
its version, content hash, and when, by whom and from where it was imported.
``runs.json`` holds :class:`ProcedureRun` records: who ran what on which
hosts, the state of every step on every host with its evidence, approvals,
and a snapshot of the procedure as it ran (reports and replays use it, so
they stay true after the procedure changes).

Every change is one :meth:`JsonStore.write` transaction under the store's
exclusive lock, so the runner can persist each step result the moment it is
known while another itop process (an approver) records an approval in the
same file. No secret value is ever stored: :meth:`RunRepository.create`
refuses a run whose variables hold a secret, and the runner redacts host
output before handing it here.

:meth:`RunRepository.lock` is a per-run ``flock`` held by the process that
executes a run; the kernel releases it when that process dies, which is how
``resume`` tells a crashed run from one still running elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tinydb import Query

from itop_tui.domain.output import strip_control
from itop_tui.domain.procedure import Procedure
from itop_tui.domain.procedure_loader import ProcedureFormatError, procedure_from_dict
from itop_tui.services.store import JsonStore, StoreError

PROCEDURES_FILE = "procedures.json"
RUNS_FILE = "runs.json"
RUN_LOCK_DIR = "run-locks"
PROCEDURES_TABLE = "procedures"
RUNS_TABLE = "runs"
SEQUENCE_TABLE = "sequence"
RUN_PREFIX = "RUN-"

RUN_STATUSES = ("running", "waiting", "paused", "succeeded", "failed", "aborted")
FINAL_STATUSES = frozenset({"succeeded", "failed", "aborted"})
HOST_STATES = ("waiting", "running", "ok", "failed", "skipped", "cancelled")
# States a resumed run picks up again: never started, cut off by a crash, or
# cancelled by an interruption or a stop (a failed host's own steps are left out
# by the runner, which skips hosts with a failed step).
UNFINISHED_STATES = frozenset({"waiting", "running", "cancelled"})
MODES = ("normal", "check", "trainee")
APPROVAL_KINDS = ("approval", "signoff")
DECISIONS = ("approved", "rejected")

# Characters of each output stream kept per step and host (head and tail).
STORED_OUTPUT_LIMIT = 16 * 1024
NOTE_LIMIT = 2000
# Earlier results of a host's step kept as evidence when the step is rerun.
PREVIOUS_RESULTS_KEPT = 3

T = TypeVar("T")


class RunNotFound(KeyError):
    """No run has the id asked for; ``str()`` says which."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such run"


class RunBusy(Exception):
    """Another process holds the run's lock: it is executing the run right now."""


def utc_now() -> str:
    """Now as UTC ISO 8601 with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bounded_text(text: str, limit: int = STORED_OUTPUT_LIMIT) -> tuple[str, bool]:
    """``text`` stripped of control sequences and cut to ``limit`` characters.

    Keeps the head and the tail (errors usually come last) with a marker
    saying how much was left out. Returns (text, whether it was cut).
    """
    text = strip_control(text)
    if len(text) <= limit:
        return text, False
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters left out ...]\n{text[-half:]}", True


def normalize_run_id(text: str) -> str:
    """``RUN-7`` for ``RUN-7``, ``run-7`` or ``7``; ValueError otherwise."""
    match = re.fullmatch(r"(?:run-)?([0-9]{1,9})", text.strip(), re.IGNORECASE)
    if match is None:
        raise ValueError(f"{text!r} is not a run id (expected RUN-N, as `itop procedure runs` shows)")
    return f"{RUN_PREFIX}{int(match.group(1))}"


# -- the library ---------------------------------------------------------------------


@dataclass(frozen=True)
class StoredProcedure:
    """A procedure as kept in the library, with where it came from."""

    procedure: Procedure
    hash: str
    imported_at: str
    imported_by: str
    source: str

    @property
    def id(self) -> str:
        """The procedure's id."""
        return self.procedure.id

    @property
    def version(self) -> str:
        """The author's version string."""
        return self.procedure.version

    def to_dict(self) -> dict[str, Any]:
        """The stored record (the ``--json`` form of ``itop procedure show``)."""
        return {
            "id": self.id,
            "version": self.version,
            "hash": self.hash,
            "title": self.procedure.title,
            "imported_at": self.imported_at,
            "imported_by": self.imported_by,
            "source": self.source,
            "procedure": self.procedure.to_dict(),
        }


class ProcedureRepository:
    """The procedure library in ``procedures.json``: one record per procedure id."""

    def __init__(self, store: JsonStore) -> None:
        self.store = store

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> ProcedureRepository:
        """The library of the data dir ``data_dir``."""
        return cls(JsonStore(Path(data_dir) / PROCEDURES_FILE))

    def all(self) -> list[StoredProcedure]:
        """Every stored procedure, by id."""
        with self.store.read() as db:
            docs = list(db.table(PROCEDURES_TABLE))
        return sorted((self._from_doc(doc) for doc in docs), key=lambda s: s.id)

    def get(self, procedure_id: str) -> StoredProcedure | None:
        """The stored procedure ``procedure_id``, or None."""
        with self.store.read() as db:
            doc = db.table(PROCEDURES_TABLE).get(Query().id == procedure_id)
        if doc is None or isinstance(doc, list):
            return None
        return self._from_doc(doc)

    def save_many(
        self, procedures: list[tuple[Procedure, str]], by: str
    ) -> list[tuple[str, StoredProcedure | None, StoredProcedure]]:
        """Store ``(procedure, source)`` pairs in one write.

        Returns ``(outcome, previous, stored)`` per procedure, where outcome is
        ``added``, ``updated`` or ``unchanged`` (same content hash: the record,
        its import time included, is left as it was).
        """
        results: list[tuple[str, StoredProcedure | None, StoredProcedure]] = []
        with self.store.write() as db:
            table = db.table(PROCEDURES_TABLE)
            for procedure, source in procedures:
                content_hash = procedure.content_hash()
                found = table.get(Query().id == procedure.id)
                previous = None if found is None or isinstance(found, list) else self._from_doc(found)
                if previous is not None and previous.hash == content_hash:
                    results.append(("unchanged", previous, previous))
                    continue
                stored = StoredProcedure(procedure, content_hash, utc_now(), by, source)
                doc = {
                    "id": procedure.id,
                    "version": procedure.version,
                    "hash": content_hash,
                    "procedure": procedure.to_dict(),
                    "imported_at": stored.imported_at,
                    "imported_by": by,
                    "source": source,
                }
                if previous is None:
                    table.insert(doc)
                    results.append(("added", None, stored))
                else:
                    table.update(doc, Query().id == procedure.id)
                    results.append(("updated", previous, stored))
        return results

    def save(self, procedure: Procedure, *, source: str, by: str) -> tuple[str, StoredProcedure]:
        """Store one procedure; (``added`` | ``updated`` | ``unchanged``, record)."""
        outcome, _previous, stored = self.save_many([(procedure, source)], by)[0]
        return outcome, stored

    def remove(self, procedure_id: str) -> bool:
        """Delete a procedure from the library; False when there was none."""
        with self.store.write() as db:
            return bool(db.table(PROCEDURES_TABLE).remove(Query().id == procedure_id))

    def _from_doc(self, doc: Mapping[str, Any]) -> StoredProcedure:
        where = f"{self.store.path}: procedure {doc.get('id')!r}"
        try:
            procedure = procedure_from_dict(doc["procedure"], source=where)
        except ProcedureFormatError as exc:
            raise StoreError(f"{exc}; re-import the procedure file") from None
        except (KeyError, TypeError) as exc:
            raise StoreError(f"{where}: damaged record ({exc}); re-import the procedure file") from None
        content_hash = procedure.content_hash()
        if doc.get("hash") != content_hash:
            raise StoreError(
                f"{where}: its content does not match its stored hash (changed outside itop?); "
                "re-import the procedure file"
            )
        return StoredProcedure(
            procedure,
            content_hash,
            str(doc.get("imported_at", "")),
            str(doc.get("imported_by", "")),
            str(doc.get("source", "")),
        )


# -- runs ------------------------------------------------------------------------------


@dataclass
class HostResult:
    """What one step did on one host: the evidence a report shows.

    ``state`` is one of :data:`HOST_STATES`. ``command`` is the rendered
    command in its redacted form (secrets as ``***``); for a step skipped in
    check mode it is what *would* run. ``output``/``stderr`` are bounded,
    stripped of control sequences and redacted. ``reason`` says why a step
    failed, was skipped or cancelled. ``confirmed_by``/``note`` record who
    confirmed a mutating or manual step (or approved an approval step).
    ``previous`` keeps earlier finished results when the step was rerun.
    """

    state: str = "waiting"
    start: str | None = None
    end: str | None = None
    duration: float | None = None
    exit_code: int | None = None
    attempts: int = 0
    output: str = ""
    stderr: str = ""
    truncated: bool = False
    command: str | None = None
    reason: str | None = None
    confirmed_by: str | None = None
    note: str | None = None
    previous: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostResult:
        """The inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class StepRecord:
    """One step of a run and its result on each target host (in target order)."""

    id: str
    title: str
    kind: str
    mutates: bool
    hosts: dict[str, HostResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "mutates": self.mutates,
            "hosts": {name: result.to_dict() for name, result in self.hosts.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        """The inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            title=str(data.get("title", "")),
            kind=str(data.get("kind", "")),
            mutates=bool(data.get("mutates", False)),
            hosts={str(k): HostResult.from_dict(v) for k, v in dict(data.get("hosts", {})).items()},
        )


@dataclass
class Approval:
    """A decision on an approval step or a trainee sign-off."""

    step: str
    kind: str  # approval | signoff
    by: str
    decision: str  # approved | rejected
    at: str
    comment: str = ""
    requested_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Approval:
        """The inverse of :meth:`to_dict`."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class PendingApproval:
    """The approval a waiting run asks for: which step, of what kind, by whom."""

    step: str
    kind: str  # approval | signoff
    requested_by: str
    requested_at: str
    hosts: list[str]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingApproval:
        """The inverse of :meth:`to_dict`."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class ProcedureRun:
    """One run of a procedure (ARCHITECTURE.md section 4, ProcedureRun).

    ``procedure`` is a snapshot of the procedure's data as run (it holds no
    secret values). ``variables`` holds the non-secret values only;
    ``secret_names`` the names whose values were never stored. ``answered``
    lists the variables the operator gave (at start or in an input step), so
    an input step asks only for what was not given. ``batches`` are the
    serial batches of host names, fixed when the run starts.
    """

    id: str
    procedure_id: str
    procedure_version: str
    procedure_hash: str
    procedure_title: str
    procedure: dict[str, Any]
    operator: str
    mode: str
    selector: str
    targets: list[str]
    batches: list[list[str]]
    variables: dict[str, str]
    secret_names: list[str]
    status: str
    started: str
    steps: list[StepRecord]
    answered: list[str] = field(default_factory=list)
    change_id: str | None = None
    ended: str | None = None
    reason: str | None = None
    approvals: list[Approval] = field(default_factory=list)
    pending: PendingApproval | None = None
    resumes: list[dict[str, Any]] = field(default_factory=list)
    dropped_steps: list[StepRecord] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """True for succeeded, failed and aborted runs."""
        return self.status in FINAL_STATUSES

    @property
    def number(self) -> int:
        """N of ``RUN-N`` (0 before the run is stored)."""
        tail = self.id[len(RUN_PREFIX):]
        return int(tail) if tail.isdigit() else 0

    def step(self, step_id: str) -> StepRecord:
        """The record of step ``step_id``; KeyError when there is none."""
        for record in self.steps:
            if record.id == step_id:
                return record
        raise KeyError(step_id)

    def result(self, step_id: str, host: str) -> HostResult:
        """The result of ``step_id`` on ``host``."""
        return self.step(step_id).hosts[host]

    def failed_hosts(self) -> list[str]:
        """Hosts with a failed step, in target order."""
        return [h for h in self.targets if any(s.hosts.get(h, HostResult()).state == "failed" for s in self.steps)]

    def decision(self, step_id: str, kind: str) -> Approval | None:
        """The latest decision on ``step_id`` of ``kind``, or None."""
        for approval in reversed(self.approvals):
            if approval.step == step_id and approval.kind == kind:
                return approval
        return None

    def counts(self) -> dict[str, int]:
        """How many step/host results are in each state."""
        counts = dict.fromkeys(HOST_STATES, 0)
        for record in self.steps:
            for result in record.hosts.values():
                counts[result.state] = counts.get(result.state, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The stored record, also the ``--json`` form of the CLI."""
        return {
            "id": self.id,
            "procedure_id": self.procedure_id,
            "procedure_version": self.procedure_version,
            "procedure_hash": self.procedure_hash,
            "procedure_title": self.procedure_title,
            "procedure": self.procedure,
            "change_id": self.change_id,
            "operator": self.operator,
            "mode": self.mode,
            "selector": self.selector,
            "targets": list(self.targets),
            "batches": [list(b) for b in self.batches],
            "variables": dict(self.variables),
            "secret_names": list(self.secret_names),
            "answered": list(self.answered),
            "status": self.status,
            "started": self.started,
            "ended": self.ended,
            "reason": self.reason,
            "steps": [s.to_dict() for s in self.steps],
            "approvals": [a.to_dict() for a in self.approvals],
            "pending": None if self.pending is None else self.pending.to_dict(),
            "resumes": list(self.resumes),
            "dropped_steps": [s.to_dict() for s in self.dropped_steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcedureRun:
        """The inverse of :meth:`to_dict`."""
        pending = data.get("pending")
        return cls(
            id=str(data["id"]),
            procedure_id=str(data["procedure_id"]),
            procedure_version=str(data.get("procedure_version", "")),
            procedure_hash=str(data["procedure_hash"]),
            procedure_title=str(data.get("procedure_title", "")),
            procedure=dict(data.get("procedure") or {}),
            change_id=data.get("change_id"),
            operator=str(data["operator"]),
            mode=str(data["mode"]),
            selector=str(data.get("selector", "")),
            targets=[str(t) for t in data.get("targets", [])],
            batches=[[str(h) for h in b] for b in data.get("batches", [])],
            variables={str(k): str(v) for k, v in dict(data.get("variables", {})).items()},
            secret_names=[str(n) for n in data.get("secret_names", [])],
            answered=[str(n) for n in data.get("answered", [])],
            status=str(data["status"]),
            started=str(data["started"]),
            ended=data.get("ended"),
            reason=data.get("reason"),
            steps=[StepRecord.from_dict(s) for s in data.get("steps", [])],
            approvals=[Approval.from_dict(a) for a in data.get("approvals", [])],
            pending=None if not pending else PendingApproval.from_dict(pending),
            resumes=list(data.get("resumes", [])),
            dropped_steps=[StepRecord.from_dict(s) for s in data.get("dropped_steps", [])],
        )


class RunRepository:
    """Procedure runs in ``runs.json``, ids ``RUN-N`` from a counter never reused."""

    def __init__(self, store: JsonStore, lock_dir: Path | None = None) -> None:
        self.store = store
        self.lock_dir = lock_dir if lock_dir is not None else store.path.parent / RUN_LOCK_DIR

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> RunRepository:
        """The runs of the data dir ``data_dir``."""
        return cls(JsonStore(Path(data_dir) / RUNS_FILE), Path(data_dir) / RUN_LOCK_DIR)

    def create(self, run: ProcedureRun) -> ProcedureRun:
        """Store a new run, giving it the next ``RUN-N`` id; returns it with the id."""
        leaked = set(run.variables) & set(run.secret_names)
        if leaked:
            raise ValueError(f"refusing to store secret variables: {', '.join(sorted(leaked))}")
        with self.store.write() as db:
            sequence = db.table(SEQUENCE_TABLE)
            counter = sequence.get(doc_id=1)
            number = int(counter["runs"]) + 1 if counter and not isinstance(counter, list) else 1
            if counter:
                sequence.update({"runs": number}, doc_ids=[1])
            else:
                sequence.insert({"runs": number})
            run.id = f"{RUN_PREFIX}{number}"
            db.table(RUNS_TABLE).insert(run.to_dict())
        return run

    def get(self, run_id: str) -> ProcedureRun | None:
        """The run ``run_id`` (``RUN-N``, ``run-n`` or ``N``), or None."""
        try:
            run_id = normalize_run_id(run_id)
        except ValueError:
            return None
        with self.store.read() as db:
            doc = db.table(RUNS_TABLE).get(Query().id == run_id)
        if doc is None or isinstance(doc, list):
            return None
        return self._from_doc(doc)

    def require(self, run_id: str) -> ProcedureRun:
        """The run ``run_id``; :class:`RunNotFound` (or ValueError for a malformed id)."""
        normalized = normalize_run_id(run_id)
        run = self.get(normalized)
        if run is None:
            raise RunNotFound(f"no run {normalized} (see `itop procedure runs`)")
        return run

    def all(self, status: str | None = None) -> list[ProcedureRun]:
        """Runs, oldest first, only those in ``status`` when given."""
        with self.store.read() as db:
            docs = list(db.table(RUNS_TABLE))
        runs = [self._from_doc(doc) for doc in docs]
        if status is not None:
            runs = [r for r in runs if r.status == status]
        return sorted(runs, key=lambda r: r.number)

    def update(self, run_id: str, change: Callable[[ProcedureRun], T]) -> tuple[ProcedureRun, T]:
        """Apply ``change`` to the stored run in one transaction; (new run, change's result).

        ``change`` edits the :class:`ProcedureRun` in place and may raise to
        leave the record untouched. Another process's update in between is
        never lost: the record is read under the exclusive lock.
        """
        run_id = normalize_run_id(run_id)
        with self.store.write() as db:
            table = db.table(RUNS_TABLE)
            doc = table.get(Query().id == run_id)
            if doc is None or isinstance(doc, list):
                raise RunNotFound(f"no run {run_id} (see `itop procedure runs`)")
            run = self._from_doc(doc)
            outcome = change(run)
            leaked = set(run.variables) & set(run.secret_names)
            if leaked:
                raise ValueError(f"refusing to store secret variables: {', '.join(sorted(leaked))}")
            table.update(run.to_dict(), doc_ids=[doc.doc_id])
        return run, outcome

    def set_host_results(self, run_id: str, step_id: str, results: Mapping[str, HostResult]) -> ProcedureRun:
        """Record the results of ``step_id`` on some hosts, in one write."""

        def change(run: ProcedureRun) -> None:
            record = run.step(step_id)
            for host, result in results.items():
                record.hosts[host] = result

        return self.update(run_id, change)[0]

    def set_host_result(self, run_id: str, step_id: str, host: str, result: HostResult) -> ProcedureRun:
        """Record the result of ``step_id`` on ``host`` (one write, as soon as it is known)."""
        return self.set_host_results(run_id, step_id, {host: result})

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run's execution lock; :class:`RunBusy` when another process holds it.

        The lock is an ``flock`` on ``run-locks/RUN-N.lock`` in the data dir,
        released by the kernel when the holder exits, however it exits.
        """
        run_id = normalize_run_id(run_id)
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.lock_dir / f"{run_id}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise RunBusy(
                    f"{run_id} is being run by another itop process{who}; "
                    "wait for it, or stop that process first"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
            yield
        finally:
            os.close(fd)

    def is_locked(self, run_id: str) -> bool:
        """True when some process executes ``run_id`` right now."""
        try:
            with self.lock(run_id):
                return False
        except RunBusy:
            return True

    def _from_doc(self, doc: Mapping[str, Any]) -> ProcedureRun:
        try:
            return ProcedureRun.from_dict(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(
                f"{self.store.path}: run {doc.get('id')!r} is damaged ({type(exc).__name__}: {exc})"
            ) from None


def note_text(note: str | None) -> str | None:
    """An operator's note as stored: control sequences removed, bounded."""
    if note is None:
        return None
    text = strip_control(note).strip()
    return text[:NOTE_LIMIT] if text else None
