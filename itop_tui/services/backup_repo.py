"""Backup jobs and runs in a :class:`JsonStore` at ``<data_dir>/backups.json``.

Jobs are ``BKJ-N`` and runs ``BKR-N``, numbered from counters kept in the
file and never reused. Jobs from the config file are synced in by name
(:meth:`BackupRepository.sync_config`): their definition is replaced, while
what itop keeps about a job (id, creation time, pause, schedule
bookkeeping) survives. Runs refer to their job by name.

Every method is one store block: blocking (file lock, fsync), so async
callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from itop_tui.domain.backup import (
    DEFINITION_FIELDS,
    JOB_ID_PREFIX,
    RUN_ID_PREFIX,
    BackupJob,
    BackupRun,
    utc_now_text,
)
from itop_tui.domain.models import ValidationError
from itop_tui.services.store import JsonStore

BACKUPS_FILE = "backups.json"
JOBS_TABLE = "jobs"
RUNS_TABLE = "runs"
SEQUENCE_TABLE = "sequence"


class BackupRecordError(Exception):
    """A job or run cannot be found or changed as asked; the message says why."""


@dataclass(frozen=True)
class SyncResult:
    """What a config sync changed, by job name."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the store was written."""
        return bool(self.added or self.updated or self.removed)


def parse_run_id(text: str) -> str:
    """The canonical ``BKR-N`` for ``BKR-N``, ``bkr-n`` or ``N``."""
    return _parse_id(text, RUN_ID_PREFIX, "run")


def parse_job_id(text: str) -> str:
    """The canonical ``BKJ-N`` for ``BKJ-N``, ``bkj-n`` or ``N``."""
    return _parse_id(text, JOB_ID_PREFIX, "job")


def _parse_id(text: str, prefix: str, what: str) -> str:
    raw = text.strip()
    digits = raw[len(prefix):] if raw.upper().startswith(prefix) else raw
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise BackupRecordError(f"{text!r} is not a {what} id (expected {prefix}N, e.g. {prefix}3)")
    return f"{prefix}{int(digits)}"


class BackupRepository:
    """Jobs and runs of backups; see the module docstring."""

    def __init__(self, store: JsonStore) -> None:
        self.store = store

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> BackupRepository:
        """The repository at ``<data_dir>/backups.json``."""
        return cls(JsonStore(Path(data_dir) / BACKUPS_FILE))

    # -- jobs ----------------------------------------------------------------

    def jobs(self) -> list[BackupJob]:
        """Every job, by name."""
        with self.store.read() as db:
            jobs = [BackupJob.from_dict(doc) for doc in db.table(JOBS_TABLE)]
        return sorted(jobs, key=lambda j: j.name)

    def get_job(self, key: str) -> BackupJob | None:
        """The job with this name, or this id (``BKJ-N``)."""
        for job in self.jobs():
            if key in (job.name, job.id) or (job.id and key.upper() == job.id):
                return job
        return None

    def add_job(self, job: BackupJob, now: str | None = None) -> BackupJob:
        """Store a new job (validated) and return it with its id; the name must be free."""
        job.validate()
        with self.store.write() as db:
            table = db.table(JOBS_TABLE)
            if any(doc.get("name") == job.name for doc in table):
                raise BackupRecordError(f"a backup job named {job.name!r} exists already")
            number = _next_number(db, JOBS_TABLE)
            job.id = f"{JOB_ID_PREFIX}{number}"
            job.created = job.created or now or utc_now_text()
            table.insert(Document(job.to_dict(), doc_id=number))
        return job

    def remove_job(self, name: str) -> BackupJob | None:
        """Remove a job (its runs stay, as history); the removed job or None."""
        with self.store.write() as db:
            table = db.table(JOBS_TABLE)
            for doc in table:
                if doc.get("name") == name:
                    table.remove(doc_ids=[doc.doc_id])
                    return BackupJob.from_dict(doc)
        return None

    def update_job(self, name: str, **changes: Any) -> BackupJob:
        """Change fields of a job (validated); raises :class:`BackupRecordError` if unknown."""
        with self.store.write() as db:
            table = db.table(JOBS_TABLE)
            for doc in table:
                if doc.get("name") == name:
                    data = {**doc, **_plain(changes)}
                    job = BackupJob.from_dict(data)
                    job.validate()
                    table.update(job.to_dict(), doc_ids=[doc.doc_id])
                    return job
        raise BackupRecordError(f"no backup job named {name!r}")

    def sync_config(self, config_jobs: Iterable[BackupJob], now: str | None = None) -> SyncResult:
        """Make the store's config jobs equal the config file's, by name.

        A config job whose definition changed is updated (id, creation,
        pause and schedule bookkeeping kept); one no longer in the file is
        removed (its runs stay). A manual job with the name of a config job
        is taken over by the config. Writes only when something changed.
        """
        wanted = {job.name: job for job in config_jobs}
        with self.store.read() as db:
            current = {doc["name"]: (doc.doc_id, BackupJob.from_dict(doc))
                       for doc in db.table(JOBS_TABLE)}
        plan_add = [n for n in wanted if n not in current]
        plan_update = [n for n in wanted if n in current and (
            current[n][1].definition() != wanted[n].definition() or current[n][1].origin != "config")]
        plan_remove = [n for n, (_id, job) in current.items()
                       if job.origin == "config" and n not in wanted]
        if not (plan_add or plan_update or plan_remove):
            return SyncResult()
        stamp = now or utc_now_text()
        with self.store.write() as db:
            table = db.table(JOBS_TABLE)
            by_name = {doc["name"]: doc for doc in table}
            for name in plan_remove:
                doc = by_name.get(name)
                if doc is not None and doc.get("origin") == "config":
                    table.remove(doc_ids=[doc.doc_id])
            for name in plan_update + plan_add:
                job = wanted[name]
                job.origin = "config"
                doc = by_name.get(name)
                if doc is None:
                    number = _next_number(db, JOBS_TABLE)
                    job.id = f"{JOB_ID_PREFIX}{number}"
                    job.created = stamp
                    table.insert(Document(job.to_dict(), doc_id=number))
                else:
                    kept = BackupJob.from_dict(doc)
                    for key in DEFINITION_FIELDS:
                        setattr(kept, key, getattr(job, key))
                    kept.origin = "config"
                    table.update(kept.to_dict(), doc_ids=[doc.doc_id])
        return SyncResult(tuple(plan_add), tuple(plan_update), tuple(plan_remove))

    # -- runs ----------------------------------------------------------------

    def start_run(self, run: BackupRun) -> BackupRun:
        """Record a run as it starts; its ``id`` is assigned here."""
        with self.store.write() as db:
            number = _next_number(db, RUNS_TABLE)
            run.id = f"{RUN_ID_PREFIX}{number}"
            run.validate()
            db.table(RUNS_TABLE).insert(Document(_run_doc(run), doc_id=number))
        return run

    def finish_run(self, run: BackupRun) -> BackupRun:
        """Store the final state of a run started with :meth:`start_run`."""
        run.validate()
        with self.store.write() as db:
            table = db.table(RUNS_TABLE)
            if table.get(doc_id=run.number) is None:
                raise BackupRecordError(f"no run {run.id}")
            table.update(_run_doc(run), doc_ids=[run.number])
        return run

    def get_run(self, run_id: str) -> BackupRun | None:
        """The run with this id (``BKR-N`` or ``N``), or None."""
        number = int(parse_run_id(run_id)[len(RUN_ID_PREFIX):])
        with self.store.read() as db:
            doc = db.table(RUNS_TABLE).get(doc_id=number)
        if doc is None:
            return None
        return BackupRun.from_dict(doc[0] if isinstance(doc, list) else doc)

    def runs(self, job: str | None = None, host: str | None = None,
             kind: str | None = None) -> list[BackupRun]:
        """Runs, oldest first, of one job, host and kind when given."""
        with self.store.read() as db:
            docs = list(db.table(RUNS_TABLE))
        runs = [BackupRun.from_dict(doc) for doc in docs
                if (job is None or doc.get("job") == job)
                and (host is None or doc.get("host") == host)
                and (kind is None or doc.get("kind") == kind)]
        runs.sort(key=lambda r: r.number)
        return runs

    def mark_interrupted(self, job: str, at: str | None = None) -> list[BackupRun]:
        """Fail the runs of ``job`` still marked running (their process died).

        Call only while holding the job's lock, so no live run is touched.
        """
        stamp = at or utc_now_text()
        changed: list[BackupRun] = []
        with self.store.write() as db:
            table = db.table(RUNS_TABLE)
            for doc in table:
                if doc.get("job") == job and doc.get("status") == "running":
                    run = BackupRun.from_dict(doc)
                    run.status = "failed"
                    run.end = stamp
                    run.log = (run.log + "\ninterrupted: the itop process running it stopped").strip()
                    table.update(_run_doc(run), doc_ids=[doc.doc_id])
                    changed.append(run)
        return changed

    def last_good_backups(self) -> dict[str, BackupRun]:
        """The newest good backup run of every host, over all jobs (for the change gate)."""
        latest: dict[str, BackupRun] = {}
        for run in self.runs(kind="backup"):
            if run.good:
                latest[run.host] = run  # runs come oldest first
        return latest


def _run_doc(run: BackupRun) -> dict[str, Any]:
    data = run.to_dict()
    data.pop("duration", None)
    return data


def _plain(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dataclasses (retention, verify) as dicts, so ``from_dict`` reads them."""
    plain: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("id", "created"):
            raise ValidationError(key, "cannot be changed")
        plain[key] = value.__dict__.copy() if hasattr(value, "__dataclass_fields__") else value
    return plain


def _next_number(db: TinyDB, table_name: str) -> int:
    """Take the next id number of a table (its counter kept so ids are never reused)."""
    sequence = db.table(SEQUENCE_TABLE)
    doc = sequence.get(doc_id=1)
    if isinstance(doc, list):
        doc = doc[0]
    current = int(doc.get(table_name, 0)) if doc is not None else 0
    highest = max((d.doc_id for d in db.table(table_name)), default=0)
    number = max(current, highest) + 1
    if doc is None:
        sequence.insert(Document({table_name: number}, doc_id=1))
    else:
        sequence.update({table_name: number}, doc_ids=[1])
    return number
