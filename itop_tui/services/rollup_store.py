"""Persisted metrics history: one-minute rollups and threshold breaches in SQLite.

The file (``metrics.sqlite`` in the data dir) is shared by every itop process
on the machine: the headless ``itop collect`` service and any number of TUIs
may write to it at once. That works because

- the database runs in WAL mode, so readers never block the writer;
- every write opens with ``BEGIN IMMEDIATE``, taking the write lock before
  reading anything, so a transaction never has to upgrade a read lock (an
  upgrade fails at once with "database is locked" whatever the busy timeout);
- the busy timeout makes a writer wait for the other one instead of failing.

Rollups are upserted on (host, metric, minute): writing the same minute twice
keeps the latest figures instead of counting the samples twice, so a retried
flush or two collectors watching one host never inflate the statistics.

``synchronous=NORMAL`` (in WAL mode) may lose the last transactions on power
loss but never corrupts the file: the right trade for statistics.

How the period statistics are computed is described in
:mod:`itop_tui.domain.rollup`; :meth:`RollupStore.summarize` computes the same
figures in SQL so that reports over weeks of rows do not pull every row into
Python.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itop_tui.domain.rollup import P95_PERCENT, Breach, MetricSummary, Rollup

DB_FILENAME = "metrics.sqlite"
SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT = 10.0
DEFAULT_RETENTION_DAYS = 30


class RollupStoreError(Exception):
    """The metrics database cannot be opened, read or written; says which and why."""


@dataclass(frozen=True, slots=True)
class PruneResult:
    """How many rows :meth:`RollupStore.prune` deleted."""

    rollups: int
    breaches: int


def _create_v1(conn: sqlite3.Connection) -> None:
    """Schema version 1: the rollups and breaches tables."""
    conn.execute(
        """
        CREATE TABLE rollups (
            host TEXT NOT NULL,
            metric TEXT NOT NULL,
            minute INTEGER NOT NULL,
            min REAL NOT NULL,
            avg REAL NOT NULL,
            max REAL NOT NULL,
            p95 REAL NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (host, metric, minute)
        ) WITHOUT ROWID
        """
    )
    # Pruning and "all hosts since" reports select by time alone.
    conn.execute("CREATE INDEX rollups_by_minute ON rollups (minute)")
    conn.execute(
        """
        CREATE TABLE breaches (
            id INTEGER PRIMARY KEY,
            host TEXT NOT NULL,
            metric TEXT NOT NULL,
            severity TEXT NOT NULL,
            opened REAL NOT NULL,
            resolved REAL,
            UNIQUE (host, metric, severity, opened)
        )
        """
    )
    conn.execute("CREATE INDEX breaches_by_opened ON breaches (opened)")


# MIGRATIONS[n] takes a database from schema version n to n + 1; version 0 is
# a new, empty file. Append a step (never edit one) when the schema changes.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1,)


class RollupStore:
    """The SQLite file of one-minute rollups and threshold breaches.

    Safe to share between processes (see the module notes) and between the
    threads of one process (calls are serialized on one connection).
    Usable as a context manager; :meth:`close` when done.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Callable[[sqlite3.Connection], None]] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self._migrations = tuple(migrations)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are opened explicitly, so
            # that writes can use BEGIN IMMEDIATE.
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise RollupStoreError(f"{self.path}: cannot open metrics database: {exc}") from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._enable_wal(busy_timeout)
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.OperationalError as exc:
            # Locked past the busy timeout, read-only file, disk full...
            self._conn.close()
            raise RollupStoreError(f"{self.path}: cannot open metrics database: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise RollupStoreError(
                f"{self.path}: not a usable metrics database ({exc}); "
                "move it aside and itop starts a new one"
            ) from None
        except RollupStoreError:
            self._conn.close()
            raise

    def _enable_wal(self, busy_timeout: float) -> None:
        """Switch the file to WAL mode, waiting out another process doing the same.

        Two processes opening a new file at once race to switch it; SQLite
        answers the loser "database is locked" at once, without the busy
        timeout, so the wait is done here.
        """
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @classmethod
    def in_data_dir(cls, data_dir: Path, **kwargs: Any) -> RollupStore:
        """The store at ``<data_dir>/metrics.sqlite``."""
        return cls(Path(data_dir) / DB_FILENAME, **kwargs)

    def __enter__(self) -> RollupStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; further calls raise :class:`RollupStoreError`."""
        with self._lock:
            self._conn.close()

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the file (``PRAGMA user_version``)."""
        with self._reading() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        target = len(self._migrations)
        # Cheap check first: most opens find the file up to date.
        if self._user_version() == target:
            return
        with self._writing() as conn:
            # Read again under the write lock: another process may have
            # migrated the file since the check above.
            version = self._user_version()
            if version > target:
                raise RollupStoreError(
                    f"{self.path}: schema version {version} is newer than this itop "
                    f"understands ({target}); upgrade itop"
                )
            for step in self._migrations[version:]:
                step(conn)
            conn.execute(f"PRAGMA user_version = {target}")

    def _user_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database write lock throughout."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("cannot start a write", exc) from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise self._error("cannot commit", exc) from None

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from None

    def _error(self, doing: str, exc: sqlite3.Error) -> RollupStoreError:
        return RollupStoreError(f"{self.path}: {doing}: {exc}")

    def add_rollups(self, rows: Iterable[Rollup]) -> int:
        """Store rollups in one transaction, replacing any for the same minute.

        Returns the number of rows written.
        """
        params = [(r.host, r.metric, r.minute, r.min, r.avg, r.max, r.p95, r.count) for r in rows]
        if not params:
            return 0
        with self._writing() as conn:
            try:
                conn.executemany(
                    """
                    INSERT INTO rollups (host, metric, minute, min, avg, max, p95, count)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (host, metric, minute) DO UPDATE SET
                        min = excluded.min, avg = excluded.avg, max = excluded.max,
                        p95 = excluded.p95, count = excluded.count
                    """,
                    params,
                )
            except sqlite3.Error as exc:
                raise self._error("cannot store rollups", exc) from None
        return len(params)

    def rollups(
        self,
        hosts: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        since: float = 0,
        until: float | None = None,
    ) -> list[Rollup]:
        """Rollups whose minute starts in ``[since, until)``, by host, metric, minute.

        ``hosts`` and ``metrics`` restrict the result when given (``None``
        means all); ``until=None`` means no upper bound.
        """
        where, params = _filters(hosts, since, until)
        if metrics is not None:
            where.append("metric IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(metrics)))
        sql = (
            "SELECT host, metric, minute, min, avg, max, p95, count FROM rollups"
            f" WHERE {' AND '.join(where)} ORDER BY host, metric, minute"
        )
        with self._reading() as conn:
            return [Rollup(*row) for row in conn.execute(sql, params)]

    def summarize(
        self,
        hosts: Sequence[str] | None = None,
        since: float = 0,
        until: float | None = None,
    ) -> list[MetricSummary]:
        """Statistics per host and metric over the rollups in ``[since, until)``.

        The same figures as :func:`itop_tui.domain.rollup.summarize` (exact min,
        max and count-weighted avg; p95 the count-weighted 95th percentile of
        the per-minute p95 values), sorted by host, then metric.
        """
        where, params = _filters(hosts, since, until)
        sql = f"""
            WITH period AS (
                SELECT * FROM rollups WHERE {" AND ".join(where)}
            ),
            ranked AS (
                SELECT host, metric, p95,
                    SUM(count) OVER (
                        PARTITION BY host, metric ORDER BY p95, minute
                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                    ) AS below,
                    SUM(count) OVER (PARTITION BY host, metric) AS total
                FROM period
            ),
            percentile AS (
                SELECT host, metric, MIN(p95) AS p95 FROM ranked
                WHERE below * 100 >= ? * total
                GROUP BY host, metric
            )
            SELECT period.host, period.metric, MIN(period.min),
                SUM(period.avg * period.count) / SUM(period.count),
                percentile.p95, MAX(period.max), SUM(period.count)
            FROM period JOIN percentile USING (host, metric)
            GROUP BY period.host, period.metric
            ORDER BY period.host, period.metric
        """
        params.append(P95_PERCENT)
        with self._reading() as conn:
            return [MetricSummary(*row) for row in conn.execute(sql, params)]

    def record_breach(self, breach: Breach) -> None:
        """Store a breach, or update its ``resolved`` time if already stored.

        A breach is identified by host, metric, severity and opened time, so
        the caller records it when it opens and again when it resolves.
        Recording it again as open does not undo a resolution.

        A new breach overlapping a stored one of the same host, metric and
        severity is merged into it (the span covering both): two monitors
        of one host (the TUI and ``itop collect``) record one breach, not
        two a second apart that a report would count twice.
        """
        key = (breach.host, breach.metric, breach.severity)
        with self._writing() as conn:
            try:
                stored = conn.execute(
                    "SELECT 1 FROM breaches WHERE host = ? AND metric = ? AND severity = ?"
                    " AND opened = ?",
                    (*key, breach.opened),
                ).fetchone()
                if stored is None and self._merge_breach(conn, breach):
                    return
                conn.execute(
                    """
                    INSERT INTO breaches (host, metric, severity, opened, resolved)
                    VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (host, metric, severity, opened) DO UPDATE SET
                        resolved = COALESCE(excluded.resolved, breaches.resolved)
                    """,
                    (*key, breach.opened, breach.resolved),
                )
            except sqlite3.Error as exc:
                raise self._error("cannot store breach", exc) from None

    @staticmethod
    def _merge_breach(conn: sqlite3.Connection, breach: Breach) -> bool:
        """Widen a stored breach overlapping ``breach`` to cover it; False if none overlaps."""
        end = math.inf if breach.resolved is None else breach.resolved
        row = conn.execute(
            "SELECT opened, resolved FROM breaches WHERE host = ? AND metric = ?"
            " AND severity = ? AND opened <= ? AND (resolved IS NULL OR resolved >= ?)"
            " ORDER BY opened LIMIT 1",
            (breach.host, breach.metric, breach.severity, end, breach.opened),
        ).fetchone()
        if row is None:
            return False
        opened, resolved = row
        merged_resolved = (
            None if resolved is None or breach.resolved is None else max(resolved, breach.resolved)
        )
        conn.execute(
            "UPDATE breaches SET opened = ?, resolved = ? WHERE host = ? AND metric = ?"
            " AND severity = ? AND opened = ?",
            (min(opened, breach.opened), merged_resolved, breach.host, breach.metric,
             breach.severity, opened),
        )
        return True

    def breaches(
        self,
        since: float = 0,
        until: float | None = None,
        hosts: Sequence[str] | None = None,
    ) -> list[Breach]:
        """Breaches that held at some time in ``[since, until)``, oldest first.

        That includes those opened before ``since`` and resolved after it, and
        those still open.
        """
        where = ["(resolved IS NULL OR resolved >= ?)"]
        params: list[Any] = [since]
        if until is not None:
            where.append("opened < ?")
            params.append(until)
        if hosts is not None:
            where.append("host IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(hosts)))
        sql = (
            "SELECT host, metric, severity, opened, resolved FROM breaches"
            f" WHERE {' AND '.join(where)} ORDER BY opened, host, metric, severity"
        )
        with self._reading() as conn:
            return [Breach(*row) for row in conn.execute(sql, params)]

    def prune(self, retention_days: float, now: float) -> PruneResult:
        """Delete rollups and resolved breaches older than ``retention_days``.

        A rollup goes once its whole minute lies before the cutoff; a breach
        once it resolved before the cutoff (open breaches stay).
        """
        if not retention_days > 0:
            raise RollupStoreError(f"retention must be more than 0 days, got {retention_days}")
        cutoff = now - retention_days * 86400
        with self._writing() as conn:
            try:
                rollups = conn.execute(
                    "DELETE FROM rollups WHERE minute <= ?", (cutoff - 60,)
                ).rowcount
                breaches = conn.execute(
                    "DELETE FROM breaches WHERE resolved IS NOT NULL AND resolved < ?", (cutoff,)
                ).rowcount
            except sqlite3.Error as exc:
                raise self._error("cannot prune", exc) from None
        return PruneResult(rollups=rollups, breaches=breaches)


def _filters(
    hosts: Sequence[str] | None, since: float, until: float | None
) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters selecting rollups by host and minute."""
    where = ["minute >= ?"]
    params: list[Any] = [since]
    if until is not None:
        where.append("minute < ?")
        params.append(until)
    if hosts is not None:
        # json_each takes any number of names in one parameter, where an
        # IN (?, ?, ...) list would hit SQLite's parameter limit.
        where.append("host IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(hosts)))
    return where, params
