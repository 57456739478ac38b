"""Writing a streamed tar archive to disk while hashing it and listing its members.

The backup stream arrives in chunks on the event loop; an
:class:`ArchiveSink` hands them through a bounded queue to one worker
thread, which

* appends every chunk to the temporary archive file and to the archive's
  sha256,
* parses the same bytes as a tar stream (gunzipped first for ``gzip``),
  hashing each regular file's content, and writes one JSON line per member
  to a side file (so the member list is never held in memory),
* fsyncs the file when the stream ends.

So the manifest's per-file sha256 is computed from the archive itself, in
the same pass, at no extra read of the archive or the host. The queue
bounds memory: when the disk is slower than the network the feeder waits,
and with it the SSH channel's flow control slows the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import stat
import tarfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

QUEUE_CHUNKS = 64
HASH_BLOCK = 1024 * 1024
_END = b""


@dataclass(frozen=True)
class SinkResult:
    """What the worker found: archive size and sha256, member counts, any error.

    ``error`` is set when writing failed (the archive is unusable) or the
    stream was not a readable tar archive (``listing_error``).
    """

    size: int
    sha256: str
    entries: int
    files: int
    error: str | None


class ArchiveSink:
    """Receives a tar stream and writes ``archive_path`` and ``entries_path``.

    ``compression`` is ``gzip`` or ``none``. Use :meth:`feed` for every
    chunk, then :meth:`finish`; :meth:`abort` stops early. The files are
    left for the caller to rename or delete. With ``archive_path`` None the
    archive is only hashed and listed (it is written elsewhere, on a backup
    host).
    """

    def __init__(self, archive_path: Path | None, entries_path: Path, compression: str) -> None:
        self.archive_path = archive_path
        self.entries_path = entries_path
        self.compression = compression
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._result: SinkResult | None = None
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._work, name="archive-sink", daemon=True)
        self._thread.start()

    @property
    def failure(self) -> str | None:
        """Why writing failed so far (disk full...), or None."""
        return self._failure

    async def feed(self, chunk: bytes) -> None:
        """Queue one chunk for the worker, waiting while the queue is full."""
        if not chunk:
            return
        try:
            self._queue.put_nowait(chunk)
        except queue.Full:
            await asyncio.get_running_loop().run_in_executor(None, self._queue.put, chunk)

    async def finish(self) -> SinkResult:
        """Tell the worker the stream ended; wait for the file to be synced."""
        await asyncio.get_running_loop().run_in_executor(None, self._queue.put, _END)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        assert self._result is not None
        return self._result

    async def abort(self) -> None:
        """Stop the worker (its files are incomplete)."""
        self._failure = self._failure or "aborted"
        await self.finish()

    # -- the worker thread -----------------------------------------------------

    def _work(self) -> None:
        archive_hash = hashlib.sha256()
        entries = files = size = 0
        listing_error: str | None = None
        try:
            # Backups hold whatever the host holds: readable by this user only.
            target = os.devnull if self.archive_path is None else _private(self.archive_path)
            with open(target, "wb") as out, \
                    open(_private(self.entries_path), "w", encoding="utf-8") as listing:
                reader = _TeeReader(self._queue, out, archive_hash, self)
                try:
                    for entry in _members(reader, self.compression):
                        listing.write(json.dumps(entry, ensure_ascii=True) + "\n")
                        entries += 1
                        files += entry["type"] == "file"
                except _WriteFailed:
                    pass
                except (tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as exc:
                    listing_error = f"the stream is not a readable tar archive: {exc}"
                reader.drain()
                size = reader.size
                if self._failure is None:
                    out.flush()
                    if self.archive_path is not None:
                        os.fsync(out.fileno())
                    listing.flush()
        except OSError as exc:
            self._failure = self._failure or f"cannot write {self.archive_path}: {exc.strerror or exc}"
            # Keep consuming so the feeder never blocks on a dead worker.
            _discard(self._queue)
        self._result = SinkResult(
            size=size, sha256=archive_hash.hexdigest(), entries=entries, files=files,
            error=self._failure or listing_error,
        )


def _private(path: Path) -> int:
    """A new file descriptor for ``path``, created (or truncated) with mode 0600."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)


class _WriteFailed(Exception):
    """Writing the archive failed; the tar parse stops and the queue is drained."""


class _TeeReader:
    """A file-like reader over the queue that writes and hashes what it hands out."""

    def __init__(self, chunks: queue.Queue[bytes], out: IO[bytes], digest: Any,
                 sink: ArchiveSink) -> None:
        self._chunks = chunks
        self._out = out
        self._digest = digest
        self._sink = sink
        self._pending = memoryview(b"")
        self._ended = False
        self.size = 0
        """Bytes received so far."""

    def _pull(self) -> bool:
        if self._ended:
            return False
        chunk = self._chunks.get()
        if not chunk:
            self._ended = True
            return False
        if self._sink._failure is None:
            try:
                self._out.write(chunk)
            except OSError as exc:
                self._sink._failure = f"cannot write {self._sink.archive_path}: {exc.strerror or exc}"
        self._digest.update(chunk)
        self.size += len(chunk)
        self._pending = memoryview(chunk)
        return True

    def read(self, size: int = -1) -> bytes:
        if self._sink._failure is not None:
            raise _WriteFailed()
        if not self._pending and not self._pull():
            return b""
        if size < 0 or size >= len(self._pending):
            data = bytes(self._pending)
            self._pending = memoryview(b"")
        else:
            data = bytes(self._pending[:size])
            self._pending = self._pending[size:]
        return data

    def drain(self) -> None:
        """Consume (write and hash) whatever the tar parser did not need."""
        self._pending = memoryview(b"")
        while self._pull():
            self._pending = memoryview(b"")


def _discard(chunks: queue.Queue[bytes]) -> None:
    while chunks.get():
        pass


def _members(reader: _TeeReader, compression: str) -> Iterator[dict[str, Any]]:
    """One manifest entry per member of the tar stream ``reader`` delivers."""
    mode = "r|gz" if compression == "gzip" else "r|"
    with tarfile.open(fileobj=reader, mode=mode, encoding="utf-8",  # type: ignore[call-overload]
                      errors="surrogateescape") as archive:
        for member in archive:
            yield member_entry(member, archive)


def member_entry(member: tarfile.TarInfo, archive: tarfile.TarFile | None) -> dict[str, Any]:
    """The manifest entry of a tar member; regular files hashed from ``archive``."""
    entry: dict[str, Any] = {
        "path": member.name,
        "type": _type_name(member),
        "size": member.size if member.isfile() else 0,
        "mode": f"{stat.S_IMODE(member.mode):04o}",
        "mtime": int(member.mtime),
        "uid": member.uid,
        "gid": member.gid,
    }
    if member.issym() or member.islnk():
        entry["link"] = member.linkname
    if member.isfile() and archive is not None:
        content = archive.extractfile(member)
        digest = hashlib.sha256()
        if content is not None:
            with contextlib.closing(content):
                while block := content.read(HASH_BLOCK):
                    digest.update(block)
        entry["sha256"] = digest.hexdigest()
    return entry


def _type_name(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "other"
