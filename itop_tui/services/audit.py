"""The tamper-evident audit log: append-only JSON lines, each chained to the last by sha256.

Every event carries ``prev_hash`` (the previous event's ``hash``, 64 zeros for
the first) and ``hash``, the sha256 of the event's canonical JSON without
``hash``. Editing, deleting, inserting or reordering a line breaks the chain at
that line, which :meth:`AuditLog.verify` reports. Appending reads only the tail
of the file, so it costs the same whatever the log's length.
:meth:`AuditLog.append_many` records a batch with one write and one fsync
(a fan-out's results), and can run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

GENESIS_HASH = "0" * 64
REDACTED = "***"
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential", re.IGNORECASE
)
_TAIL_CHUNK = 4096
_FIELDS = (
    "seq",
    "at",
    "actor",
    "origin",
    "action",
    "target",
    "detail",
    "result",
    "prev_hash",
    "hash",
)


class AuditError(Exception):
    """The audit log cannot be read or appended to; the message names the file and line."""


@dataclass(frozen=True)
class AuditEvent:
    """One audited action: who (actor, origin) did what (action) to what (target), and how it went."""

    seq: int
    at: str
    actor: str
    origin: str
    action: str
    target: str
    detail: Any
    result: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """The stored form, one JSON object per line."""
        return asdict(self)

    @property
    def time(self) -> datetime:
        """``at`` as an aware UTC datetime."""
        return _parse_time(self.at)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEvent:
        """Build an event from its stored form; ``KeyError`` if a field is missing."""
        return cls(**{name: data[name] for name in _FIELDS})


class AuditEntry(NamedTuple):
    """An event to record, before it gets its time, sequence number and hashes."""

    action: str
    target: str
    detail: Any = None
    result: str = "ok"


@dataclass(frozen=True)
class AuditVerification:
    """The result of checking the chain: ``broken_line`` is 1-based, None when ok."""

    ok: bool
    checked: int
    broken_line: int | None
    message: str


def redact(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with secret-looking keys' values replaced by ``***``.

    Keys named like password, passphrase, secret, token, api key, private key
    or credential are masked at any depth. Values JSON cannot hold exactly
    (sets, paths, NaN, objects) become strings, so the stored line hashes the
    same when it is read back.
    """
    if isinstance(value, dict):
        return {
            str(k): REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, set | frozenset):
        return [redact(v) for v in sorted(value, key=str)]
    return str(value)


def event_hash(event: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``event`` without its ``hash`` key."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


class AuditLog:
    """An append-only, hash-chained JSON-lines file of :class:`AuditEvent`.

    ``actor`` is who runs itop (the OS login), ``origin`` where the action came
    from (``tui``, ``cli``, ``scheduler``). Appends from several processes are
    serialized by an exclusive ``flock`` on ``<path>.lock`` and each line is
    fsynced before ``append`` (or ``append_many``) returns. Both are
    blocking and thread-safe (the lock is taken per call on its own file
    descriptor), so async callers may run them in a worker thread.
    """

    def __init__(self, path: str | os.PathLike[str], actor: str, origin: str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.actor = actor
        self.origin = origin

    def append(
        self, action: str, target: str, detail: Any = None, result: str = "ok"
    ) -> AuditEvent:
        """Record one event and return it; constant time in the log's length."""
        return self.append_many([AuditEntry(action, target, detail, result)])[0]

    def append_many(self, entries: Iterable[AuditEntry]) -> list[AuditEvent]:
        """Record events in order, chained, with one write and one fsync; return them.

        The events are on disk when this returns. The batch is written under
        one lock, so no other process's event comes between them.
        """
        redacted = [(e.action, e.target, redact(e.detail), e.result) for e in entries]
        if not redacted:
            return []
        bodies: list[dict[str, Any]] = []
        with self._locked(fcntl.LOCK_EX):
            last = self._last_event()
            seq = last.seq if last else 0
            prev_hash = last.hash if last else GENESIS_HASH
            at = datetime.now(UTC).isoformat(timespec="microseconds")
            for action, target, detail, result in redacted:
                seq += 1
                body: dict[str, Any] = {
                    "seq": seq,
                    "at": at,
                    "actor": self.actor,
                    "origin": self.origin,
                    "action": action,
                    "target": target,
                    "detail": detail,
                    "result": result,
                    "prev_hash": prev_hash,
                }
                body["hash"] = prev_hash = event_hash(body)
                bodies.append(body)
            self._write(b"".join(_canonical(body) + b"\n" for body in bodies))
        return [AuditEvent.from_dict(body) for body in bodies]

    def events(self, since: datetime | None = None) -> Iterator[AuditEvent]:
        """Every event in order (those at or after ``since`` when given).

        A naive ``since`` is taken as UTC. Raises ``AuditError`` naming the
        line when a line is not a readable event; ``verify`` says more.
        """
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        for number, line in self._lines():
            try:
                event = AuditEvent.from_dict(json.loads(line))
                when = event.time
            except (ValueError, KeyError, TypeError) as exc:
                raise AuditError(
                    f"{self.path}, line {number}: not a valid audit event ({exc})"
                ) from exc
            if since is None or when >= since:
                yield event

    def verify(self) -> AuditVerification:
        """Check the whole chain and name the first broken line (1-based)."""
        previous_hash = GENESIS_HASH
        previous_seq = 0
        checked = 0
        try:
            for number, line in self._lines():
                problem = _check_line(line, previous_hash, previous_seq)
                if problem is not None:
                    return AuditVerification(
                        False, checked, number, f"{self.path}, line {number}: {problem}"
                    )
                event = json.loads(line)
                previous_hash, previous_seq = event["hash"], event["seq"]
                checked += 1
        except OSError as exc:
            return AuditVerification(
                False, checked, None, f"{self.path}: cannot read: {exc.strerror}"
            )
        if checked == 0:
            return AuditVerification(True, 0, None, f"{self.path}: no events yet")
        return AuditVerification(
            True, checked, None, f"{self.path}: {checked} events, the hash chain is intact"
        )

    # -- file access ---------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(
                f"{self.lock_path}: cannot open the lock file: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """(1-based number, line without newline) under a shared lock.

        The shared lock keeps a half-written line from being read; the whole
        file is read first so the lock is not held while the caller works.
        """
        with self._locked(fcntl.LOCK_SH):
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        yield from enumerate(lines, start=1)

    def _last_event(self) -> AuditEvent | None:
        """The last event, read by seeking back from the end of the file."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return None
        with handle:
            tail = read_last_line(handle)
        if tail is None:
            return None
        if not tail.endswith(b"\n"):
            raise AuditError(
                f"{self.path}: the last line is incomplete (a write was interrupted); "
                f"check the log with `itop audit verify` and move it aside to start a new one"
            )
        try:
            return AuditEvent.from_dict(json.loads(tail))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"{self.path}: the last line is not a valid audit event ({exc}); "
                f"check the log with `itop audit verify`"
            ) from exc

    def _write(self, data: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


class AuditQueue:
    """Appends audit events for async code, in batches, from a worker thread.

    :meth:`add` queues an event and returns a future that is resolved once
    the event is on disk. One batch is written at a time
    (:meth:`AuditLog.append_many`: one lock, one write, one fsync); events
    queued meanwhile form the next batch, so the number of fsyncs adapts to
    the rate of events and the event loop never waits for the disk.
    Call :meth:`drain` before the loop ends: events still queued then
    would be lost.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.batches = 0
        self._queue: list[tuple[AuditEntry, asyncio.Future[AuditEvent]]] = []
        self._writer: asyncio.Task[None] | None = None

    def add(
        self, action: str, target: str, detail: Any = None, result: str = "ok"
    ) -> asyncio.Future[AuditEvent]:
        """Queue an event; the future gives the stored event, or the error that kept it out."""
        future: asyncio.Future[AuditEvent] = asyncio.get_running_loop().create_future()
        # A caller that stopped waiting (cancelled) must not leave an
        # "exception never retrieved" behind; callers that wait still get it.
        future.add_done_callback(_retrieve)
        self._queue.append((AuditEntry(action, target, detail, result), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_batches())
        return future

    async def drain(self) -> None:
        """Return once every event queued so far was written (or failed).

        If the caller is cancelled while waiting, what is still queued is
        written before the cancellation goes on (blocking, once).
        """
        try:
            while self._writer is not None and not self._writer.done():
                await asyncio.shield(self._writer)
        except asyncio.CancelledError:
            self._write(self._take())
            raise
        # Left over only when the writer itself was cancelled (the loop is closing).
        self._write(self._take())

    def _take(self) -> list[tuple[AuditEntry, asyncio.Future[AuditEvent]]]:
        batch, self._queue = self._queue, []
        return batch

    async def _write_batches(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                events = await asyncio.to_thread(self.log.append_many, [e for e, _ in batch])
            except asyncio.CancelledError:
                # The loop is shutting down: the thread finishes the batch on its own.
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._settle(batch, events)

    def _write(self, batch: list[tuple[AuditEntry, asyncio.Future[AuditEvent]]]) -> None:
        if not batch:
            return
        try:
            events = self.log.append_many([e for e, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._settle(batch, events)

    def _settle(
        self,
        batch: list[tuple[AuditEntry, asyncio.Future[AuditEvent]]],
        events: list[AuditEvent],
    ) -> None:
        self.batches += 1
        for (_, future), event in zip(batch, events, strict=True):
            if not future.done():
                future.set_result(event)


def _retrieve(future: asyncio.Future[AuditEvent]) -> None:
    if not future.cancelled():
        future.exception()


def read_last_line(handle: Any) -> bytes | None:
    """The last line of a binary file (with its newline, if any), or None if empty.

    Reads backwards in chunks from the end, so the cost depends on the length
    of the last line only, not of the file.
    """
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None
    pos = end
    buffer = b""
    while pos > 0:
        size = min(_TAIL_CHUNK, pos)
        pos -= size
        handle.seek(pos)
        buffer = handle.read(size) + buffer
        # The final byte may be the last line's own newline: search before it.
        newline = buffer.rfind(b"\n", 0, len(buffer) - 1)
        if newline >= 0:
            return buffer[newline + 1 :]
    return buffer


def _check_line(line: bytes, previous_hash: str, previous_seq: int) -> str | None:
    """Why ``line`` breaks the chain after (previous_hash, previous_seq), or None."""
    if not line.strip():
        return "empty line"
    try:
        event = json.loads(line)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(event, dict):
        return "not a JSON object"
    missing = [name for name in _FIELDS if name not in event]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    if event_hash(event) != event["hash"]:
        return "the event was modified: its hash does not match its content"
    if event["prev_hash"] != previous_hash:
        return (
            "the chain is broken: prev_hash does not match the event before it "
            "(a line was deleted, inserted or reordered)"
        )
    if event["seq"] != previous_seq + 1:
        return f"sequence number {event['seq']} does not follow {previous_seq}"
    return None


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
