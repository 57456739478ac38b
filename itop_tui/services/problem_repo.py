"""Problems (ARCHITECTURE.md section 4) kept in a :class:`JsonStore` at ``problems.json``.

A problem is opened when a threshold breach has lasted long enough (or by
another source of failures, named in ``metric``), changes severity while it
lasts, may be acknowledged by an operator with a note, and is resolved when
the value recovers. There is at most one open problem per host and metric:
opening one that is already open returns the open one, so two itop
processes watching the same host (the TUI and ``itop collect``) share it.

Ids are ``PRB-N`` from a counter kept in the file, never reused. Times are
UTC ISO 8601 with milliseconds (``2024-05-01T12:00:00.000Z``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document, Table

from itop_tui.domain.output import strip_control
from itop_tui.services.store import JsonStore

PROBLEMS_FILE = "problems.json"
PROBLEMS_TABLE = "problems"
SEQUENCE_TABLE = "sequence"
ID_PREFIX = "PRB-"
SEVERITIES = ("warning", "critical")
NOTE_LIMIT = 2000


class ProblemError(Exception):
    """A problem cannot be found or changed as asked; the message says why."""


def iso_time(epoch: float) -> str:
    """UTC ISO 8601 with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_of(text: str) -> float:
    """Epoch seconds of a time written by :func:`iso_time` (naive means UTC)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class Problem:
    """A lasting threshold breach, or another failure, on one host.

    ``metric`` is the metric name for threshold problems, or the source of
    the failure otherwise. ``value`` and ``limit`` are the figures at the
    latest severity change; ``changed`` is when that happened.
    """

    id: str
    host: str
    metric: str
    severity: str
    opened: str
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    note: str = ""
    resolved: str | None = None
    value: float | None = None
    limit: float | None = None
    changed: str | None = None

    @property
    def is_open(self) -> bool:
        """Not resolved yet."""
        return self.resolved is None

    @property
    def is_acknowledged(self) -> bool:
        """An operator has acknowledged it."""
        return self.acknowledged_by is not None

    @property
    def number(self) -> int:
        """The N of ``PRB-N``."""
        return int(self.id[len(ID_PREFIX) :])

    @property
    def opened_epoch(self) -> float:
        """``opened`` in epoch seconds."""
        return epoch_of(self.opened)

    def to_dict(self) -> dict[str, Any]:
        """The stored and ``--json`` form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        """Build a problem from its stored form, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_problem_id(text: str) -> str:
    """The canonical ``PRB-N`` for ``PRB-N``, ``prb-N`` or ``N``."""
    raw = text.strip()
    digits = raw[len(ID_PREFIX) :] if raw.upper().startswith(ID_PREFIX) else raw
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise ProblemError(f"{text!r} is not a problem id (expected {ID_PREFIX}N, e.g. {ID_PREFIX}3)")
    return f"{ID_PREFIX}{int(digits)}"


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")


def _figure(value: float | None) -> float | None:
    # JSON has no NaN or infinity; a figure that is not finite is unknown.
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 3)


class ProblemRepository:
    """Problems in a :class:`JsonStore`; every method is one store block.

    Blocking (file locks and fsync): call it from a thread in async code.
    """

    def __init__(self, store: JsonStore) -> None:
        self.store = store

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ProblemRepository:
        """The repository at ``<data_dir>/problems.json``."""
        return cls(JsonStore(Path(data_dir) / PROBLEMS_FILE))

    # -- reading ---------------------------------------------------------

    def problems(self, *, include_resolved: bool = True) -> list[Problem]:
        """Every problem, oldest id first."""
        with self.store.read() as db:
            rows = [_problem(doc) for doc in db.table(PROBLEMS_TABLE)]
        rows.sort(key=lambda p: p.number)
        return [p for p in rows if include_resolved or p.is_open]

    def open_problems(self, host: str | None = None) -> list[Problem]:
        """Problems not resolved yet (of one host when given), oldest first."""
        return [p for p in self.problems(include_resolved=False) if host is None or p.host == host]

    def get(self, problem_id: str) -> Problem | None:
        """The problem with this id (``PRB-N``, or ``N``), or None."""
        key = parse_problem_id(problem_id)
        with self.store.read() as db:
            doc = db.table(PROBLEMS_TABLE).get(doc_id=int(key[len(ID_PREFIX) :]))
        return None if doc is None else _problem(_one(doc))

    def find_open(self, host: str, metric: str) -> Problem | None:
        """The open problem of a host metric, or None."""
        with self.store.read() as db:
            doc = _open_doc(db.table(PROBLEMS_TABLE), host, metric)
        return None if doc is None else _problem(doc)

    # -- changing --------------------------------------------------------

    def open(
        self,
        host: str,
        metric: str,
        severity: str,
        opened: float,
        value: float | None = None,
        limit: float | None = None,
    ) -> tuple[Problem, bool]:
        """Open a problem; return it and whether it was created.

        When the host metric already has an open problem, that one is
        returned (its severity raised if ``severity`` is higher) and nothing
        new is created.
        """
        _check_severity(severity)
        if not host or not metric:
            raise ValueError("a problem needs a host and a metric or source")
        with self.store.write() as db:
            table = db.table(PROBLEMS_TABLE)
            existing = _open_doc(table, host, metric)
            if existing is not None:
                problem = _problem(existing)
                if severity == "critical" and problem.severity != "critical":
                    problem = self._change(table, problem, severity, opened, value, limit)
                return problem, False
            number = _next_number(db)
            problem = Problem(
                id=f"{ID_PREFIX}{number}",
                host=host,
                metric=metric,
                severity=severity,
                opened=iso_time(opened),
                value=_figure(value),
                limit=_figure(limit),
                changed=iso_time(opened),
            )
            table.insert(Document(problem.to_dict(), doc_id=number))
        return problem, True

    def set_severity(
        self,
        host: str,
        metric: str,
        severity: str,
        at: float,
        value: float | None = None,
        limit: float | None = None,
    ) -> tuple[Problem | None, bool]:
        """Set the severity of a host metric's open problem; return it and whether it changed.

        A problem already at ``severity`` is left as it is (another itop
        process watching the host changed it first): ``(problem, False)``.
        ``(None, False)`` when none is open.
        """
        _check_severity(severity)
        with self.store.write() as db:
            table = db.table(PROBLEMS_TABLE)
            doc = _open_doc(table, host, metric)
            if doc is None:
                return None, False
            problem = _problem(doc)
            if problem.severity == severity:
                return problem, False
            return self._change(table, problem, severity, at, value, limit), True

    def resolve(self, host: str, metric: str, at: float) -> Problem | None:
        """Resolve a host metric's open problem; None when none was open."""
        with self.store.write() as db:
            table = db.table(PROBLEMS_TABLE)
            doc = _open_doc(table, host, metric)
            if doc is None:
                return None
            problem = _problem(doc)
            problem.resolved = iso_time(max(at, problem.opened_epoch))
            table.update({"resolved": problem.resolved}, doc_ids=[problem.number])
        return problem

    def acknowledge(
        self, problem_id: str, actor: str, note: str = "", at: float | None = None
    ) -> Problem:
        """Record that ``actor`` acknowledged a problem, with a note.

        Acknowledging again replaces the actor, time and note. The note is
        stripped of control characters and cut at :data:`NOTE_LIMIT`.
        Raises :class:`ProblemError` for an unknown or resolved problem.
        """
        key = parse_problem_id(problem_id)
        if not actor.strip():
            raise ValueError("acknowledging needs the actor's name")
        clean = strip_control(note).strip()[:NOTE_LIMIT]
        when = iso_time(datetime.now(UTC).timestamp() if at is None else at)
        with self.store.write() as db:
            table = db.table(PROBLEMS_TABLE)
            doc = table.get(doc_id=int(key[len(ID_PREFIX) :]))
            if doc is None:
                raise ProblemError(f"no problem {key}")
            problem = _problem(_one(doc))
            if not problem.is_open:
                raise ProblemError(f"{key} was resolved at {problem.resolved}; nothing to acknowledge")
            problem.acknowledged_by = actor.strip()
            problem.acknowledged_at = when
            problem.note = clean
            table.update(
                {"acknowledged_by": problem.acknowledged_by, "acknowledged_at": when, "note": clean},
                doc_ids=[problem.number],
            )
        return problem

    @staticmethod
    def _change(
        table: Table,
        problem: Problem,
        severity: str,
        at: float,
        value: float | None,
        limit: float | None,
    ) -> Problem:
        problem.severity = severity
        problem.value = _figure(value)
        problem.limit = _figure(limit)
        problem.changed = iso_time(at)
        table.update(
            {
                "severity": severity,
                "value": problem.value,
                "limit": problem.limit,
                "changed": problem.changed,
            },
            doc_ids=[problem.number],
        )
        return problem


def _one(doc: Document | list[Document]) -> Document:
    # Table.get(doc_id=...) is typed as maybe returning a list (for doc_ids=).
    return doc[0] if isinstance(doc, list) else doc


def _problem(doc: Mapping[str, Any]) -> Problem:
    return Problem.from_dict(doc)


def _open_doc(table: Table, host: str, metric: str) -> Document | None:
    for doc in table:
        if doc.get("host") == host and doc.get("metric") == metric and doc.get("resolved") is None:
            return doc
    return None


def _next_number(db: TinyDB) -> int:
    """Take the next id number (kept in its own table so ids are never reused)."""
    sequence = db.table(SEQUENCE_TABLE)
    doc = sequence.get(doc_id=1)
    current = int(_one(doc).get("problems", 0)) if doc is not None else 0
    # A file edited by hand may hold problems past the counter.
    highest = max((d.doc_id for d in db.table(PROBLEMS_TABLE)), default=0)
    number = max(current, highest) + 1
    if doc is None:
        sequence.insert(Document({"problems": number}, doc_id=1))
    else:
        sequence.update({"problems": number}, doc_ids=[1])
    return number
