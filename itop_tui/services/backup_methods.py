"""How each backup method backs up, verifies, restores, lists and prunes.

* :class:`TarMethod` streams ``tar`` from the host into a directory on this
  machine (see :mod:`itop_tui.services.archive_sink`). The archive is
  written under a hidden ``.partial`` name and renamed only when the stream
  ended cleanly *and* tar exited 0 on the host; the manifest (host, job,
  times, size, file count, sha256 of the archive and of every file) is
  renamed into place first, so an archive under its final name always has
  its manifest. A broken connection, a failed tar, a full disk or a cancel
  leaves nothing under a final name.
* :class:`ResticMethod` drives restic on the host with the repository and
  password file configured there (itop passes the file's path, never reads
  it) and parses ``--json`` output.
* :class:`CommandMethod` runs a custom command; its exit status decides.

Every method gets a :class:`MethodContext` (the host, the job, the run
being recorded, a progress callback and a cancel event) and returns a
:class:`MethodOutcome` for the runner to record. Nothing here touches the
store or the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from itop_tui.domain.backup import (
    LOG_LIMIT,
    SSH_SCHEME,
    BackupJob,
    BackupRun,
    parse_ssh_destination,
    parse_utc,
)
from itop_tui.domain.models import Host
from itop_tui.domain.output import decode_output, strip_control
from itop_tui.domain.retention import Snapshot, apply_policy
from itop_tui.services.archive_sink import ArchiveSink, SinkResult
from itop_tui.services.local_transport import LineSplitter
from itop_tui.services.remote_stream import RemoteExit, RemoteProcess, open_remote
from itop_tui.services.transport import TransportError
from itop_tui.services.transport_pool import TransportPool

MANIFEST_FORMAT = "itop-backup-manifest/1"
FEED_CHUNK = 256 * 1024
HASH_CHUNK = 1024 * 1024
# Longest gap between two progress reports.
PROGRESS_EVERY = 0.25
# Bounded command output parsed as JSON (restic forget, version).
JSON_OUTPUT_LIMIT = 4 * 1024 * 1024
MISMATCHES_SHOWN = 20

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes expected or None) while a method works."""


class MethodError(Exception):
    """A method cannot do what was asked (unsupported, missing archive); a message for people."""


@dataclass
class MethodContext:
    """What a method works with for one host: see the module docstring.

    ``expected_bytes`` is an estimate of a backup stream's size (the last
    good backup's), reported as the progress total when the method has none.
    ``resolve_host`` finds an inventory host by name (a tar job's backup
    host, ``ssh://HOST/DIR``).
    """

    pool: TransportPool
    host: Host
    job: BackupJob
    run: BackupRun
    progress: Progress = field(default=lambda done, total: None)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    expected_bytes: int | None = None
    resolve_host: Callable[[str], Host] | None = None

    def backup_host(self, name: str) -> Host:
        """The inventory host ``name`` (a backup host); :class:`MethodError` when unknown."""
        if self.resolve_host is None:
            raise MethodError(f"cannot reach the backup host {name!r}: no inventory given")
        try:
            return self.resolve_host(name)
        except Exception as exc:  # noqa: BLE001 - the runner's own "not in the inventory"
            raise MethodError(f"backup host {name!r}: {exc}") from None


@dataclass
class MethodOutcome:
    """The result of one method call, to be recorded on the run."""

    status: str
    log: str = ""
    bytes: int | None = None
    files: int | None = None
    archive: str | None = None
    sha256: str | None = None
    snapshot_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RestoreRequest:
    """Where to restore: ``target`` a new directory on the host, or None for in place.

    ``paths`` limits the restore to these members (as the manifest or
    ``restic ls`` names them); empty means everything.
    """

    target: str | None
    paths: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def in_place(self) -> bool:
        """Files go back where they came from."""
        return self.target is None


@dataclass(frozen=True)
class FileEntry:
    """One file of a backup: its path in the backup, type, size, mode and where it would go."""

    path: str
    type: str
    size: int
    mode: str
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {"path": self.path, "type": self.type, "size": self.size, "mode": self.mode,
                "target": self.target}


@dataclass(frozen=True)
class PruneItem:
    """A backup a prune keeps or removes, with the policy's reasons."""

    time: str
    reasons: tuple[str, ...]
    run_id: str | None = None
    snapshot_id: str | None = None
    archive: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {"run": self.run_id, "snapshot_id": self.snapshot_id, "archive": self.archive,
                "time": self.time, "reasons": list(self.reasons)}


@dataclass
class PruneOutcome:
    """What a prune kept and removed (or would, in a dry run).

    ``deleted`` lists the runs whose backups were actually deleted when that
    may be fewer than ``remove`` (a failure or a cancel part way); None
    means all of ``remove`` when the status is ``succeeded``.
    """

    status: str
    keep: list[PruneItem] = field(default_factory=list)
    remove: list[PruneItem] = field(default_factory=list)
    log: str = ""
    deleted: list[str] | None = None


class BackupMethod(Protocol):
    """What every method offers the runner."""

    name: str

    async def backup(self, ctx: MethodContext) -> MethodOutcome:
        """Make a backup of ``ctx.host`` for ``ctx.job``."""
        ...

    async def verify(self, ctx: MethodContext, target: BackupRun) -> MethodOutcome:
        """Check the backup of ``target`` by a test restore."""
        ...

    async def restore(self, ctx: MethodContext, target: BackupRun,
                      request: RestoreRequest) -> MethodOutcome:
        """Restore ``target`` onto its host."""
        ...

    async def list_files(self, ctx: MethodContext, target: BackupRun,
                         request: RestoreRequest | None = None,
                         limit: int | None = None) -> list[FileEntry]:
        """The files of ``target`` (with their restore targets when ``request`` is given)."""
        ...

    async def prune(self, ctx: MethodContext, backups: list[BackupRun],
                    dry_run: bool) -> PruneOutcome:
        """Apply the job's retention to its backups of ``ctx.host``."""
        ...


def method_for(job: BackupJob, backup_root: Path) -> BackupMethod:
    """The method object for ``job`` (tar archives go below ``backup_root`` by default)."""
    if job.method == "tar":
        return TarMethod(backup_root)
    if job.method == "restic":
        return ResticMethod()
    return CommandMethod()


class RunLog:
    """A bounded, sanitized log for a run: the head is kept, the rest counted."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.dropped = 0

    def add(self, text: str | bytes) -> None:
        """Append a line or block (bytes are decoded as UTF-8)."""
        if isinstance(text, bytes):
            text = decode_output(text)
        clean = strip_control(text).strip("\n")
        if not clean:
            return
        room = self.limit - self._size
        if room <= 0:
            self.dropped += len(clean)
            return
        piece = clean[:room]
        self.dropped += len(clean) - len(piece)
        self._parts.append(piece)
        self._size += len(piece) + 1

    def text(self) -> str:
        """The log so far."""
        text = "\n".join(self._parts)
        if self.dropped:
            text += f"\n[{self.dropped} more characters not kept]"
        return text


class _Pacer:
    """Calls ``progress`` at most every :data:`PROGRESS_EVERY` seconds, and at the end."""

    def __init__(self, progress: Progress, total: int | None = None) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self._last = 0.0

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY:
            self._last = now
            self.progress(self.done, self.total)

    def end(self) -> None:
        self.progress(self.done, self.total)


@contextlib.asynccontextmanager
async def _stop_on_cancel(proc: RemoteProcess, cancel: asyncio.Event) -> AsyncIterator[None]:
    """Stop ``proc`` as soon as ``cancel`` is set, even while it is silent."""

    async def watch() -> None:
        await cancel.wait()
        await proc.stop()

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _stream_tar(
    proc: RemoteProcess,
    sink: ArchiveSink,
    pacer: _Pacer,
    timeout: float,
    cancel: asyncio.Event,
    forward: Callable[[bytes], Awaitable[str | None]] | None = None,
) -> tuple[RemoteExit, str | None]:
    """Feed tar's stream to ``sink`` (and ``forward`` each chunk) until it ends.

    Stops the remote tar when the sink fails, ``forward`` returns an error,
    ``timeout`` passes or ``cancel`` is set. Returns how tar ended and the
    error of ``forward``, if any. On any other exception the tar is stopped
    and the sink aborted before it propagates.
    """
    forward_error: str | None = None
    try:
        async with asyncio.timeout(timeout), _stop_on_cancel(proc, cancel):
            while chunk := await proc.read():
                await sink.feed(chunk)
                if forward is not None:
                    forward_error = await forward(chunk)
                    if forward_error is not None:
                        await proc.stop()
                        break
                pacer.add(len(chunk))
                if sink.failure is not None:
                    await proc.stop()
                    break
            ended = await proc.wait()
    except TimeoutError:
        await proc.stop()
        ended = RemoteExit(None, f"timed out after {timeout:g}s", b"")
    except BaseException:
        await proc.stop()
        await sink.abort()
        raise
    return ended, forward_error


def _exit_text(outcome: RemoteExit, what: str) -> str:
    if outcome.error is not None:
        return f"{what}: {outcome.error}"
    return f"{what} exited with status {outcome.status}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stamp(run: BackupRun) -> str:
    return parse_utc(run.start).strftime("%Y%m%dT%H%M%SZ")


# -- where archives are ------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveRef:
    """An archive (or its manifest): a path on this machine, or on a backup host.

    Stored on runs as the plain path, or as ``ssh://HOST/path``.
    """

    host: str | None
    path: str

    @classmethod
    def parse(cls, text: str) -> ArchiveRef:
        """From the run's ``archive`` field."""
        if text.startswith(SSH_SCHEME):
            host, path = parse_ssh_destination(text)
            return cls(host, path)
        return cls(None, text)

    def __str__(self) -> str:
        return self.path if self.host is None else f"{SSH_SCHEME}{self.host}{self.path}"

    @property
    def name(self) -> str:
        """The file name."""
        return PurePosixPath(self.path).name

    def manifest(self) -> ArchiveRef:
        """The manifest beside this archive."""
        return ArchiveRef(self.host, str(manifest_path(Path(self.path))))


async def _host_command(ctx: MethodContext, host: Host, command: str,
                        timeout: float = 300) -> str | None:
    """Run a short command on ``host``; why it failed, or None."""
    try:
        result = await ctx.pool.for_host(host).run(command, timeout=timeout)
    except TransportError as exc:
        return str(exc)
    if result.ok:
        return None
    return (result.stderr.strip()[-500:] or result.error
            or f"exit status {result.exit_status}")


async def _read_archive(ctx: MethodContext, ref: ArchiveRef,
                        digest: Any | None = None) -> AsyncGenerator[bytes, None]:
    """The bytes of ``ref`` in chunks (from the backup host over SSH when it is there).

    Raises :class:`MethodError` when the file cannot be read to its end.
    """
    if ref.host is None:
        with open(ref.path, "rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, FEED_CHUNK):
                if digest is not None:
                    digest.update(chunk)
                yield chunk
        return
    host = ctx.backup_host(ref.host)
    try:
        proc = await open_remote(ctx.pool, host, f"cat -- {shlex.quote(ref.path)}")
    except TransportError as exc:
        raise MethodError(f"cannot read {ref}: {exc}") from None
    try:
        while chunk := await proc.read():
            if digest is not None:
                digest.update(chunk)
            yield chunk
        ended = await proc.wait()
    except BaseException:
        await proc.stop()
        raise
    if not ended.ok:
        raise MethodError(f"reading {ref} on {host.name} failed: "
                          f"{decode_output(ended.stderr).strip() or _exit_text(ended, 'cat')}")


@contextlib.asynccontextmanager
async def _local_manifest(ctx: MethodContext, ref: ArchiveRef,
                          staging: Path) -> AsyncIterator[Path]:
    """A manifest as a local file: itself, or a private copy fetched from the backup host."""
    if ref.host is None:
        yield Path(ref.path)
        return
    await asyncio.to_thread(_prepare_staging, staging)
    copy = staging / f".fetch-{secrets.token_hex(6)}.manifest.json"
    try:
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as out:
            async with contextlib.aclosing(_read_archive(ctx, ref)) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def _prepare_staging(staging: Path) -> None:
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)


async def _refs_exist(ctx: MethodContext, refs: list[ArchiveRef]) -> str | None:
    """Why one of ``refs`` cannot be used (missing, host unreachable), or None."""
    for ref in refs:
        if ref.host is None and not Path(ref.path).is_file():
            return f"{ref} is missing"
    remote = [r for r in refs if r.host is not None]
    if remote:
        host = ctx.backup_host(remote[0].host or "")
        test = " && ".join(f"test -f {shlex.quote(r.path)}" for r in remote)
        problem = await _host_command(ctx, host, test, timeout=60)
        if problem is not None:
            return f"{', '.join(str(r) for r in remote)}: missing or unreadable on {host.name}"
    return None


async def _remove_refs(ctx: MethodContext, refs: list[ArchiveRef]) -> str | None:
    """Delete ``refs`` (missing ones are fine); why it failed, or None."""
    for ref in refs:
        if ref.host is None:
            try:
                Path(ref.path).unlink(missing_ok=True)
            except OSError as exc:
                return f"cannot delete {ref}: {exc.strerror or exc}"
    remote = [r for r in refs if r.host is not None]
    if remote:
        host = ctx.backup_host(remote[0].host or "")
        words = " ".join(shlex.quote(r.path) for r in remote)
        directory = shlex.quote(str(PurePosixPath(remote[0].path).parent))
        problem = await _host_command(
            ctx, host, f"rm -f -- {words} && {{ sync -- {directory} 2>/dev/null || sync; }}")
        if problem is not None:
            return f"cannot delete {', '.join(str(r) for r in remote)}: {problem}"
    return None


# -- tar -------------------------------------------------------------------------


def tar_members(sources: list[str]) -> list[str]:
    """Archive member names for absolute sources (``/etc`` -> ``etc``), run from ``/``."""
    members = []
    for source in sources:
        relative = source.strip("/") or "."
        # A name starting with '-' would be read as an option by tar.
        members.append(f"./{relative}" if relative.startswith("-") else relative)
    return members


def tar_create_command(job: BackupJob) -> str:
    """The command run on the host: the archive on stdout, errors on stderr."""
    words = ["tar", "-c", "-f", "-", "-C", "/"]
    if job.compression == "gzip":
        words.append("-z")
    words += [f"--exclude={pattern.strip().lstrip('/') or pattern}" for pattern in job.excludes]
    words += tar_members(job.sources)
    return " ".join(shlex.quote(w) for w in words)


class TarMethod:
    """Archives streamed from the host into ``<destination>/<host>/`` on this machine."""

    name = "tar"

    def __init__(self, backup_root: Path) -> None:
        self.backup_root = Path(backup_root)

    def directory(self, job: BackupJob, host: str) -> Path:
        """Where the archives of ``job`` on ``host`` are kept."""
        base = Path(job.destination) if job.destination else self.backup_root / job.name
        return base / host

    # -- backup ---------------------------------------------------------------

    @property
    def staging(self) -> Path:
        """Scratch space on this machine for archives kept on a backup host."""
        return self.backup_root / ".staging"

    async def backup(self, ctx: MethodContext) -> MethodOutcome:
        if ctx.job.destination.startswith(SSH_SCHEME):
            return await self._backup_to_host(ctx)
        job, run = ctx.job, ctx.run
        log = RunLog()
        directory = self.directory(job, ctx.host.name)
        try:
            await asyncio.to_thread(_prepare_directory, directory)
        except OSError as exc:
            return MethodOutcome("failed", f"cannot use {directory}: {exc.strerror or exc}")
        ext = ".tar.gz" if job.compression == "gzip" else ".tar"
        stem = f"{_stamp(run)}-{run.id}"
        final = directory / f"{stem}{ext}"
        manifest_final = directory / f"{stem}.manifest.json"
        partial = directory / f".{stem}{ext}.partial"
        entries = directory / f".{stem}.entries.partial"
        manifest_partial = directory / f".{stem}.manifest.partial"
        command = tar_create_command(job)
        log.add(f"$ {command}")
        renamed = False
        try:
            try:
                proc = await open_remote(ctx.pool, ctx.host, command)
            except TransportError as exc:
                return MethodOutcome("failed", f"{log.text()}\n{exc}".strip())
            sink = ArchiveSink(partial, entries, job.compression)
            pacer = _Pacer(ctx.progress, ctx.expected_bytes)
            ended, _ = await _stream_tar(proc, sink, pacer, job.timeout, ctx.cancel)
            result = await sink.finish()
            pacer.end()
            log.add(ended.stderr)
            if ctx.cancel.is_set():
                return MethodOutcome("cancelled", _with(log, "cancelled; nothing was kept"),
                                     bytes=pacer.done)
            if not ended.ok:
                return MethodOutcome(
                    "failed", _with(log, _exit_text(ended, "tar on the host")
                                    + "; the partial archive was deleted"), bytes=pacer.done)
            if result.error is not None:
                return MethodOutcome("failed", _with(log, result.error), bytes=pacer.done)
            header = _manifest_header(ctx, command, final.name, result)
            await asyncio.to_thread(_write_manifest, manifest_partial, header, entries)
            # Manifest first: an archive under its final name always has one.
            os.replace(manifest_partial, manifest_final)
            os.replace(partial, final)
            renamed = True
            await asyncio.to_thread(_fsync_dir, directory)
            status = "warning" if ended.stderr.strip() else "succeeded"
            log.add(f"wrote {final} ({result.size} bytes, {result.files} files, sha256 {result.sha256})")
            return MethodOutcome(
                status, log.text(), bytes=result.size, files=result.files, archive=str(final),
                sha256=result.sha256,
                detail={"manifest": str(manifest_final), "entries": result.entries,
                        "streamed_bytes": pacer.done},
            )
        finally:
            for path in (partial, entries, manifest_partial):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if not renamed:
                with contextlib.suppress(FileNotFoundError):
                    manifest_final.unlink()

    async def _backup_to_host(self, ctx: MethodContext) -> MethodOutcome:
        """Stream the source host's tar through this machine into a file on the backup host.

        The archive is hashed and listed here as it passes (for the manifest)
        and written there by ``dd conv=fsync`` under a hidden ``.partial``
        name; the manifest is uploaded the same way; both are renamed, and
        the directory synced, only after the stream ended cleanly, tar exited
        0 on the source host and dd exited 0 on the backup host.
        """
        job, run = ctx.job, ctx.run
        log = RunLog()
        backup_name, base = parse_ssh_destination(job.destination)
        try:
            backup_host = ctx.backup_host(backup_name)
        except MethodError as exc:
            return MethodOutcome("failed", str(exc))
        directory = f"{base}/{ctx.host.name}"
        ext = ".tar.gz" if job.compression == "gzip" else ".tar"
        stem = f"{_stamp(run)}-{run.id}"
        final = f"{directory}/{stem}{ext}"
        partial = f"{directory}/.{stem}{ext}.partial"
        manifest_final = f"{directory}/{stem}.manifest.json"
        manifest_partial = f"{directory}/.{stem}.manifest.partial"
        q = shlex.quote
        try:
            await asyncio.to_thread(_prepare_staging, self.staging)
        except OSError as exc:
            return MethodOutcome("failed", f"cannot use {self.staging}: {exc.strerror or exc}")
        entries = self.staging / f".{job.name}-{run.id}.entries.partial"
        manifest_local = self.staging / f".{job.name}-{run.id}.manifest.partial"
        command = tar_create_command(job)
        log.add(f"$ {command}")
        log.add(f"into {backup_host.name}:{final}")
        # Left-overs of a run that died go first (the job lock is held: no live run owns them).
        writer_command = (f"umask 077 && mkdir -p -- {q(directory)} && "
                          f"rm -f -- {q(directory)}/.*.partial && "
                          f"exec dd of={q(partial)} bs=1048576 conv=fsync status=none")
        reached_commit = committed = False
        try:
            try:
                writer = await open_remote(ctx.pool, backup_host, writer_command)
            except TransportError as exc:
                return MethodOutcome("failed", _with(log, f"backup host {backup_host.name}: {exc}"))
            try:
                proc = await open_remote(ctx.pool, ctx.host, command)
            except TransportError as exc:
                await writer.stop()
                return MethodOutcome("failed", _with(log, str(exc)))
            sink = ArchiveSink(None, entries, job.compression)
            pacer = _Pacer(ctx.progress, ctx.expected_bytes)

            async def forward(chunk: bytes) -> str | None:
                try:
                    await writer.write(chunk)
                except TransportError as exc:
                    return f"writing to {backup_host.name} failed: {exc}"
                return None

            try:
                ended, write_error = await _stream_tar(proc, sink, pacer, job.timeout,
                                                       ctx.cancel, forward)
            except BaseException:
                await writer.stop()
                raise
            result = await sink.finish()
            pacer.end()
            log.add(ended.stderr)
            failure: str | None = None
            status = "failed"
            if ctx.cancel.is_set():
                failure, status = "cancelled; nothing was kept", "cancelled"
            elif write_error is not None:
                failure = write_error + "; the partial archive was deleted"
            elif not ended.ok:
                failure = (_exit_text(ended, "tar on the host")
                           + "; the partial archive was deleted")
            elif result.error is not None:
                failure = result.error
            if failure is not None:
                await writer.stop()
                return MethodOutcome(status, _with(log, failure), bytes=pacer.done)
            await writer.write_eof()
            stored = await writer.wait(timeout=job.timeout)
            if not stored.ok:
                log.add(stored.stderr)
                return MethodOutcome("failed", _with(log, _exit_text(
                    stored, f"writing the archive on {backup_host.name} (dd)")), bytes=pacer.done)
            header = _manifest_header(ctx, command, PurePosixPath(final).name, result)
            await asyncio.to_thread(_write_manifest, manifest_local, header, entries)
            upload = await open_remote(
                ctx.pool, backup_host,
                f"umask 077 && exec dd of={q(manifest_partial)} conv=fsync status=none")
            uploaded = await _feed(upload, _read_archive(ctx, ArchiveRef(None, str(manifest_local))),
                                   None, ctx, report=False)
            if not uploaded.ok:
                log.add(uploaded.stderr)
                return MethodOutcome("failed", _with(log, _exit_text(
                    uploaded, f"writing the manifest on {backup_host.name}")))
            reached_commit = True
            # Manifest first: an archive under its final name always has one.
            problem = await _host_command(
                ctx, backup_host,
                f"mv -f -- {q(manifest_partial)} {q(manifest_final)} && "
                f"mv -f -- {q(partial)} {q(final)} && "
                f"{{ sync -- {q(directory)} 2>/dev/null || sync; }}")
            if problem is not None:
                return MethodOutcome("failed", _with(log, f"renaming on {backup_host.name} "
                                                          f"failed: {problem}"))
            committed = True
            ref = ArchiveRef(backup_host.name, final)
            status = "warning" if ended.stderr.strip() else "succeeded"
            log.add(f"wrote {ref} ({result.size} bytes, {result.files} files, "
                    f"sha256 {result.sha256})")
            return MethodOutcome(
                status, log.text(), bytes=result.size, files=result.files, archive=str(ref),
                sha256=result.sha256,
                detail={"manifest": str(ref.manifest()), "entries": result.entries,
                        "streamed_bytes": pacer.done, "backup_host": backup_host.name},
            )
        finally:
            for path in (entries, manifest_local):
                path.unlink(missing_ok=True)
            if not committed:
                leftovers = [partial, manifest_partial] + ([manifest_final] if reached_commit
                                                           else [])
                # Best effort: a broken connection leaves hidden .partial names only,
                # which the next backup of this host deletes.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(60):
                        await _host_command(ctx, backup_host, "rm -f -- " + " ".join(
                            q(p) for p in leftovers), timeout=60)

    # -- verify ---------------------------------------------------------------

    async def verify(self, ctx: MethodContext, target: BackupRun) -> MethodOutcome:
        log = RunLog()
        ref = await self._ref_of(ctx, target)
        async with _local_manifest(ctx, ref.manifest(), self.staging) as manifest:
            return await self._verify_with(ctx, target, ref, manifest, log)

    async def _verify_with(self, ctx: MethodContext, target: BackupRun, ref: ArchiveRef,
                           manifest: Path, log: RunLog) -> MethodOutcome:
        header = await asyncio.to_thread(load_manifest_header, manifest)
        policy = ctx.job.verify
        chosen = await asyncio.to_thread(
            _choose_entries, manifest, policy.scope, policy.sample_percent)
        # Beside the archives (same disk, not a small /tmp); for a backup host, in staging.
        base = Path(ref.path).parent if ref.host is None else self.staging
        await asyncio.to_thread(_prepare_staging, base)
        scratch = base / f".verify-{ctx.run.id}-{secrets.token_hex(4)}"
        scratch.mkdir(mode=0o700)
        digest = hashlib.sha256()
        try:
            members = None if policy.scope == "full" else [e["path"] for e in chosen]
            extracted = await self._extract_locally(ctx, ref, header, scratch, members, log,
                                                    digest)
            actual = digest.hexdigest()
            cancelled = extracted is not None and extracted.status == "cancelled"
            expected = {target.sha256, header.get("sha256")}
            # A damaged archive also makes tar fail: say the first cause.
            if not cancelled and expected != {actual}:
                return MethodOutcome(
                    "failed", f"archive {ref} is damaged: sha256 {actual}, the run recorded "
                              f"{target.sha256} and the manifest {header.get('sha256')}\n"
                              + log.text(), sha256=actual)
            if extracted is not None:
                return extracted
            log.add(f"archive sha256 ok: {actual}")
            mismatches, checked = await asyncio.to_thread(
                compare_tree, scratch, chosen, policy.scope == "full")
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        files = sum(1 for e in chosen if e["type"] == "file")
        size = int(header.get("size") or 0)
        detail = {"checked_entries": checked, "checked_files": files, "scope": policy.scope,
                  "mismatches": len(mismatches), "archive_sha256": actual}
        if mismatches:
            for line in mismatches[:MISMATCHES_SHOWN]:
                log.add(line)
            if len(mismatches) > MISMATCHES_SHOWN:
                log.add(f"... and {len(mismatches) - MISMATCHES_SHOWN} more differences")
            return MethodOutcome("failed", log.text(), bytes=size, files=files,
                                 archive=str(ref), sha256=actual, detail=detail)
        log.add(f"test restore ok: {checked} entries ({files} files) match the manifest")
        return MethodOutcome("succeeded", log.text(), bytes=size, files=files,
                             archive=str(ref), sha256=actual, detail=detail)

    async def _extract_locally(self, ctx: MethodContext, ref: ArchiveRef, header: dict[str, Any],
                               into: Path, members: list[str] | None,
                               log: RunLog, digest: Any) -> MethodOutcome | None:
        """Extract ``ref`` with this machine's tar, hashing it; an outcome only on failure.

        The whole archive is read (and hashed) even when tar needs only part of it.
        """
        words = ["tar", "-x", "-f", "-", "-C", str(into)]
        if header.get("compression") == "gzip":
            words.append("-z")
        list_file: Path | None = None
        if members is not None:
            list_file = into.parent / f"{into.name}.list"
            list_file.write_bytes(b"".join(os.fsencode(m) + b"\0" for m in members))
            words += ["--null", "--no-recursion", "-T", str(list_file)]
        local = Host(name="this machine", address="local")
        try:
            proc = await open_remote(ctx.pool, local, " ".join(shlex.quote(w) for w in words))
            ended = await _feed(proc, _read_archive(ctx, ref, digest),
                                int(header.get("size") or 0) or None, ctx, drain=True)
        finally:
            if list_file is not None:
                list_file.unlink(missing_ok=True)
        if ctx.cancel.is_set():
            return MethodOutcome("cancelled", _with(log, "cancelled"))
        if not ended.ok:
            log.add(ended.stderr)
            return MethodOutcome("failed", _with(log, _exit_text(ended, "the test restore (tar)")))
        return None

    # -- restore --------------------------------------------------------------

    async def restore(self, ctx: MethodContext, target: BackupRun,
                      request: RestoreRequest) -> MethodOutcome:
        ref = await self._ref_of(ctx, target)
        async with _local_manifest(ctx, ref.manifest(), self.staging) as manifest:
            return await self._restore_with(ctx, target, request, ref, manifest)

    async def _restore_with(self, ctx: MethodContext, target: BackupRun,
                            request: RestoreRequest, ref: ArchiveRef,
                            manifest: Path) -> MethodOutcome:
        header = await asyncio.to_thread(load_manifest_header, manifest)
        destination = request.target or "/"
        log = RunLog()
        if not request.in_place:
            refusal = await _probe_directory(ctx, destination)
            if refusal:
                return MethodOutcome("failed", refusal)
        words = ["tar", "-x", "-f", "-"]
        if header.get("compression") == "gzip":
            words.append("-z")
        words += [_member_word(p) for p in request.paths]
        command = (f"mkdir -p -- {shlex.quote(destination)} && cd -- {shlex.quote(destination)} "
                   f"&& {' '.join(shlex.quote(w) for w in words)}")
        log.add(f"$ {command}")
        try:
            proc = await open_remote(ctx.pool, ctx.host, command)
        except TransportError as exc:
            return MethodOutcome("failed", _with(log, str(exc)))
        ended = await _feed(proc, _read_archive(ctx, ref), int(header.get("size") or 0) or None,
                            ctx)
        log.add(ended.stderr)
        if ctx.cancel.is_set():
            return MethodOutcome("cancelled", _with(log, "cancelled: the restore is incomplete"))
        if not ended.ok:
            return MethodOutcome("failed", _with(log, _exit_text(ended, "tar on the host")))
        entries = [e for e in iter_manifest_files(manifest) if _selected(e["path"], request.paths)]
        files = sum(1 for e in entries if e["type"] == "file")
        log.add(f"restored {len(entries)} entries ({files} files) to {destination} on {ctx.host.name}")
        return MethodOutcome("succeeded", log.text(), bytes=int(header.get("size") or 0),
                             files=files, archive=str(ref), detail={"target": destination})

    async def list_files(self, ctx: MethodContext, target: BackupRun,
                         request: RestoreRequest | None = None,
                         limit: int | None = None) -> list[FileEntry]:
        ref = await self._ref_of(ctx, target)
        async with _local_manifest(ctx, ref.manifest(), self.staging) as manifest:
            return await self._list_with(manifest, request, limit)

    async def _list_with(self, manifest: Path, request: RestoreRequest | None,
                         limit: int | None) -> list[FileEntry]:
        paths = request.paths if request else ()
        base = (request.target or "/") if request else None

        def collect() -> list[FileEntry]:
            found: list[FileEntry] = []
            for entry in iter_manifest_files(manifest):
                if not _selected(entry["path"], paths):
                    continue
                where = None if base is None else str(PurePosixPath(base) / entry["path"])
                found.append(FileEntry(entry["path"], entry["type"], int(entry.get("size", 0)),
                                       entry.get("mode", ""), where))
                if limit is not None and len(found) >= limit:
                    break
            return found

        return await asyncio.to_thread(collect)

    # -- prune ----------------------------------------------------------------

    async def prune(self, ctx: MethodContext, backups: list[BackupRun],
                    dry_run: bool) -> PruneOutcome:
        # Newest first: runs started within the same second keep this order
        # (the policy sorts stably by time), so the later run counts as newer.
        present = sorted((r for r in backups if r.archive and r.good),
                         key=lambda r: r.number, reverse=True)
        by_id = {r.id: r for r in present}
        plan = apply_policy(
            [Snapshot(r.id, parse_utc(r.start), r.status == "succeeded") for r in present],
            ctx.job.retention)

        def item(decision_id: str, reasons: tuple[str, ...]) -> PruneItem:
            run = by_id[decision_id]
            return PruneItem(run.start, reasons, run_id=run.id, archive=run.archive)

        keep = [item(d.snapshot.id, d.reasons) for d in plan.keep]
        remove = [item(d.snapshot.id, d.reasons) for d in plan.remove]
        log = RunLog()
        if dry_run:
            return PruneOutcome("succeeded", keep, remove, "dry run: nothing deleted")
        victim_done: list[str] = []
        failed = False
        pacer = _Pacer(ctx.progress, len(remove))
        for victim in remove:
            if ctx.cancel.is_set():
                log.add(f"cancelled: {len(remove) - pacer.done} backup(s) not deleted")
                pacer.end()
                return PruneOutcome("cancelled", keep, remove, log.text())
            run = by_id[victim.run_id or ""]
            ref = ArchiveRef.parse(run.archive or "")
            problem = await _remove_refs(ctx, [ref, ref.manifest()])
            if problem is None:
                log.add(f"deleted {ref.name} ({run.id})")
                victim_done.append(run.id)
            else:
                failed = True
                log.add(problem)
            pacer.add(1)
        pacer.end()
        local_dirs = {Path(r.archive or "").parent for r in by_id.values()
                      if r.id in victim_done and not (r.archive or "").startswith(SSH_SCHEME)}
        for directory in local_dirs:
            await asyncio.to_thread(_fsync_dir, directory)
        return PruneOutcome("failed" if failed else "succeeded", keep, remove, log.text(),
                            deleted=victim_done)

    # -- helpers --------------------------------------------------------------

    async def _ref_of(self, ctx: MethodContext, run: BackupRun) -> ArchiveRef:
        """Where ``run``'s archive is, after checking it and its manifest are there."""
        if run.kind != "backup" or not run.archive:
            raise MethodError(f"{run.id} is not a tar backup with an archive")
        if run.detail.get("pruned_by"):
            raise MethodError(f"the archive of {run.id} was deleted by the prune {run.detail['pruned_by']}")
        try:
            ref = ArchiveRef.parse(run.archive)
        except ValueError as exc:
            raise MethodError(f"{run.id}: {exc}") from None
        problem = await _refs_exist(ctx, [ref, ref.manifest()])
        if problem is not None:
            raise MethodError(f"{problem}: the backup {run.id} cannot be used")
        return ref


def _manifest_header(ctx: MethodContext, command: str, archive_name: str,
                     result: SinkResult) -> dict[str, Any]:
    """The manifest's fields besides the member list."""
    job, run = ctx.job, ctx.run
    finished = datetime.now(UTC)
    return {
        "format": MANIFEST_FORMAT,
        "job": job.name,
        "job_id": job.id,
        "host": ctx.host.name,
        "run": run.id,
        "method": "tar",
        "compression": job.compression,
        "started": run.start,
        "finished": finished.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "sources": list(job.sources),
        "excludes": list(job.excludes),
        "command": command,
        "archive": archive_name,
        "size": result.size,
        "sha256": result.sha256,
        "file_count": result.files,
        "entry_count": result.entries,
    }


def _prepare_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Left-overs of a run that died (the job lock is held: no live run owns them).
    for stale in directory.glob(".*.partial"):
        stale.unlink(missing_ok=True)
    for stale in directory.glob(".verify-*"):
        shutil.rmtree(stale, ignore_errors=True)


def manifest_path(archive: Path) -> Path:
    """The manifest beside an archive: ``X.manifest.json`` for ``X.tar.gz`` or ``X.tar``."""
    name = archive.name
    for ext in (".tar.gz", ".tar"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return archive.with_name(f"{name}.manifest.json")


def _write_manifest(path: Path, header: dict[str, Any], entries: Path) -> None:
    """Write the manifest JSON, streaming the member lines into its ``files`` list."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "w", encoding="utf-8") as out:
        head = json.dumps(header, indent=1, ensure_ascii=True)
        out.write(head[:-2] + ',\n "files": [')
        first = True
        with open(entries, encoding="utf-8") as lines:
            for line in lines:
                out.write(("\n  " if first else ",\n  ") + line.rstrip("\n"))
                first = False
        out.write("\n ]\n}\n")
        out.flush()
        os.fsync(out.fileno())


def load_manifest_header(path: Path) -> dict[str, Any]:
    """The manifest without its ``files`` list."""
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    data.pop("files", None)
    return data


def iter_manifest_files(path: Path) -> Iterator[dict[str, Any]]:
    """The ``files`` entries of a manifest."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    yield from data.get("files", [])


def _choose_entries(manifest: Path, scope: str, percent: float) -> list[dict[str, Any]]:
    entries = list(iter_manifest_files(manifest))
    if scope == "full":
        return entries
    candidates = [e for e in entries if e["type"] in ("file", "symlink")]
    if not candidates:
        return []
    count = max(1, round(len(candidates) * percent / 100))
    return secrets.SystemRandom().sample(candidates, min(count, len(candidates)))


def compare_tree(root: Path, entries: list[dict[str, Any]], whole: bool) -> tuple[list[str], int]:
    """Differences between a restored tree and manifest entries, and entries checked.

    ``whole``: the tree must also hold nothing the manifest does not list.
    """
    problems: list[str] = []
    for entry in entries:
        path = root / entry["path"]
        problem = _compare_entry(path, entry)
        if problem:
            problems.append(f"{entry['path']}: {problem}")
    if whole:
        listed: set[str] = set()
        for entry in entries:
            member = PurePosixPath(entry["path"])
            listed.add(member.as_posix())
            # tar creates the parents of the members too (tmp/ for tmp/x/y).
            listed.update(p.as_posix() for p in member.parents if p.as_posix() != ".")
        for found in _walk(root):
            relative = found.relative_to(root).as_posix()
            if relative not in listed:
                problems.append(f"{relative}: restored but not in the manifest")
    return problems, len(entries)


def _compare_entry(path: Path, entry: dict[str, Any]) -> str | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "missing after restore"
    kind = entry["type"]
    expected_kind = {"file": stat.S_ISREG, "hardlink": stat.S_ISREG, "dir": stat.S_ISDIR,
                     "symlink": stat.S_ISLNK}.get(kind)
    if expected_kind is not None and not expected_kind(info.st_mode):
        return f"restored as another type, expected {kind}"
    if kind in ("file", "dir") and f"{stat.S_IMODE(info.st_mode):04o}" != entry["mode"]:
        return f"mode {stat.S_IMODE(info.st_mode):04o}, expected {entry['mode']}"
    if kind == "symlink" and os.readlink(path) != entry.get("link"):
        return f"points to {os.readlink(path)!r}, expected {entry.get('link')!r}"
    if kind == "file":
        if info.st_size != entry["size"]:
            return f"size {info.st_size}, expected {entry['size']}"
        if _sha256_file(path) != entry.get("sha256"):
            return "content differs (sha256)"
    return None


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        base = Path(directory)
        for name in dirs + files:
            yield base / name


def _selected(path: str, wanted: tuple[str, ...]) -> bool:
    if not wanted:
        return True
    clean = path.rstrip("/")
    for prefix in wanted:
        stripped = prefix.strip("/")
        if clean == stripped or clean.startswith(stripped + "/"):
            return True
    return False


def _member_word(path: str) -> str:
    relative = path.strip("/")
    return f"./{relative}" if relative.startswith("-") else relative


async def _feed(proc: RemoteProcess, chunks: AsyncGenerator[bytes, None], total: int | None,
                ctx: MethodContext, *, report: bool = True, drain: bool = False) -> RemoteExit:
    """Send ``chunks`` to ``proc``'s stdin with progress and cancel; its exit.

    ``drain``: when the command stops reading early, keep consuming
    ``chunks`` (whose reader hashes them) to their end.
    """
    pacer = _Pacer(ctx.progress if report else (lambda done, total: None), total)

    async def drain_stdout() -> None:
        while await proc.read():
            pass

    drainer = asyncio.ensure_future(drain_stdout())
    open_stdin = True
    try:
        async with _stop_on_cancel(proc, ctx.cancel), contextlib.aclosing(chunks) as stream:
            async for chunk in stream:
                if ctx.cancel.is_set():
                    break
                if open_stdin:
                    try:
                        await proc.write(chunk)
                    except TransportError:
                        open_stdin = False  # the command ended early: wait() says how
                        if not drain:
                            break
                pacer.add(len(chunk))
            if open_stdin:
                await proc.write_eof()
            ended = await proc.wait(timeout=ctx.job.timeout)
    except BaseException:
        await proc.stop()
        raise
    finally:
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
    pacer.end()
    return ended


async def check_new_directory(ctx: MethodContext, directory: str) -> str | None:
    """Why ``directory`` on ``ctx.host`` cannot be a restore target (exists and is not empty,
    or is not a directory), or None when it can, or when the host could not tell.

    Raises :class:`TransportError` when the host cannot be reached.
    """
    answer = await _probe_directory(ctx, directory)
    return None if answer is None or answer.startswith("cannot check") else answer


async def _probe_directory(ctx: MethodContext, directory: str) -> str | None:
    quoted = shlex.quote(directory)
    result = await ctx.pool.for_host(ctx.host).run(
        f"if [ -e {quoted} ] && [ ! -d {quoted} ]; then echo not-a-directory; "
        f"elif [ -d {quoted} ] && [ -n \"$(ls -A -- {quoted} 2>/dev/null)\" ]; then echo not-empty; "
        f"else echo ok; fi", timeout=60)
    if not result.ok:
        return f"cannot check {directory} on {ctx.host.name}: {result.error or result.stderr.strip()}"
    answer = result.stdout.strip()
    if answer == "not-empty":
        return (f"{directory} on {ctx.host.name} exists and is not empty: restore into a new "
                f"directory, or in place (with confirmation)")
    if answer == "not-a-directory":
        return f"{directory} on {ctx.host.name} exists and is not a directory"
    return None


def _with(log: RunLog, line: str) -> str:
    log.add(line)
    return log.text()


# -- restic ----------------------------------------------------------------------


def restic_base(job: BackupJob) -> str:
    """``restic -r REPO --password-file FILE``, quoted (values are the job's, on the host)."""
    return (f"restic -r {shlex.quote(job.destination)} "
            f"--password-file {shlex.quote(job.password_file or '')}")


def restic_tag(job: BackupJob) -> str:
    """The tag that marks snapshots of this job (restic tags cannot hold commas)."""
    return f"itop-job={job.name}"


def restic_pattern(path: str) -> str:
    """A restic include pattern matching exactly ``path`` (glob characters escaped)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", path)


class ResticMethod:
    """restic run on the host; itop only reads its JSON output."""

    name = "restic"

    async def backup(self, ctx: MethodContext) -> MethodOutcome:
        job = ctx.job
        words = [restic_base(job), "backup", "--json", "--host", shlex.quote(ctx.host.name),
                 "--tag", "itop", "--tag", shlex.quote(restic_tag(job))]
        words += [f"--exclude {shlex.quote(p)}" for p in job.excludes]
        words += [shlex.quote(s) for s in job.sources]
        command = " ".join(words)
        log = RunLog()
        log.add(f"$ {command}")
        summary: dict[str, Any] = {}
        errors: list[str] = []

        def on_line(message: dict[str, Any]) -> None:
            kind = message.get("message_type")
            if kind == "status":
                # total_bytes is what restic's scanner found so far: it grows while
                # the backup runs and is no total to show, so none is given.
                ctx.progress(int(message.get("bytes_done") or 0), None)
            elif kind == "summary":
                summary.update(message)
                processed = int(message.get("total_bytes_processed") or 0)
                ctx.progress(processed, processed or None)
            elif kind == "error":
                errors.append(f"{message.get('item', '')}: {message.get('error', message)}")

        ended = await self._json_lines(ctx, command, on_line, log)
        for line in errors[:MISMATCHES_SHOWN]:
            log.add(line)
        if ctx.cancel.is_set():
            return MethodOutcome("cancelled", _with(log, "cancelled"))
        snapshot = summary.get("snapshot_id")
        # restic exits 3 when the snapshot was made but some files could not be read.
        if ended.error is None and ended.status in (0, 3) and snapshot:
            status = "succeeded" if ended.status == 0 and not errors else "warning"
            log.add(f"snapshot {snapshot}: {summary.get('total_files_processed')} files, "
                    f"{summary.get('total_bytes_processed')} bytes, "
                    f"{summary.get('data_added')} bytes added")
            return MethodOutcome(
                status, log.text(), bytes=summary.get("total_bytes_processed"),
                files=summary.get("total_files_processed"), snapshot_id=str(snapshot),
                detail={"paths": list(job.sources),
                        "restic": {k: v for k, v in summary.items() if k != "message_type"}})
        return MethodOutcome("failed", _with(log, _exit_text(ended, "restic backup")))

    async def _json_lines(self, ctx: MethodContext, command: str,
                          on_line: Callable[[dict[str, Any]], None], log: RunLog,
                          timeout: float | None = None) -> RemoteExit:
        """Run ``command``, parse stdout as JSON lines; non-JSON lines go to the log."""
        try:
            proc = await open_remote(ctx.pool, ctx.host, command)
        except TransportError as exc:
            return RemoteExit(None, str(exc), b"")
        splitter = LineSplitter(64 * 1024)
        try:
            async with asyncio.timeout(timeout or ctx.job.timeout), \
                    _stop_on_cancel(proc, ctx.cancel):
                while chunk := await proc.read():
                    for line in splitter.feed(chunk):
                        _dispatch(line, on_line, log)
                last = splitter.flush()
                if last is not None:
                    _dispatch(last, on_line, log)
                ended = await proc.wait()
        except TimeoutError:
            await proc.stop()
            ended = RemoteExit(None, f"timed out after {timeout or ctx.job.timeout:g}s", b"")
        except BaseException:
            await proc.stop()
            raise
        log.add(ended.stderr)
        return ended

    async def _ls(self, ctx: MethodContext, snapshot: str, log: RunLog,
                  on_node: Callable[[dict[str, Any]], None]) -> RemoteExit:
        command = f"{restic_base(ctx.job)} ls --json {shlex.quote(snapshot)}"

        def on_line(message: dict[str, Any]) -> None:
            if message.get("struct_type") == "node":
                on_node(message)

        return await self._json_lines(ctx, command, on_line, log)

    async def verify(self, ctx: MethodContext, target: BackupRun) -> MethodOutcome:
        snapshot = _snapshot_of(target)
        policy = ctx.job.verify
        log = RunLog()
        subset = ("--read-data" if policy.scope == "full"
                  else f"--read-data-subset={policy.sample_percent:g}%")
        check = f"{restic_base(ctx.job)} check {subset}"
        log.add(f"$ {check}")
        checked = await self._plain(ctx, check, log)
        if ctx.cancel.is_set():
            return MethodOutcome("cancelled", _with(log, "cancelled"))
        if not checked.ok:
            return MethodOutcome("failed", _with(log, _exit_text(checked, "restic check")))
        sampler = _Reservoir(policy.sample_percent if policy.scope == "sample" else None)
        files = 0

        def on_node(node: dict[str, Any]) -> None:
            nonlocal files
            if node.get("type") == "file":
                files += 1
                sampler.offer(str(node.get("path")))

        listed = await self._ls(ctx, snapshot, log, on_node)
        if not listed.ok:
            return MethodOutcome("failed", _with(log, _exit_text(listed, "restic ls")))
        chosen = sampler.chosen()
        includes = "" if chosen is None else " ".join(
            f"--include {shlex.quote(restic_pattern(p))}" for p in chosen)
        expected = files if chosen is None else len(chosen)
        restore = (
            f"d=$(mktemp -d) || exit 1; "
            f"{restic_base(ctx.job)} restore {shlex.quote(snapshot)} --target \"$d\" --verify "
            f"{includes}; rc=$?; n=$(find \"$d\" -type f | wc -l); rm -rf -- \"$d\"; "
            f"echo \"itop-restored-files $n\"; exit $rc")
        log.add(f"$ restic restore {snapshot} --target (temporary directory) --verify "
                f"({'all' if chosen is None else len(chosen)} files)")
        out = RunLog(limit=JSON_OUTPUT_LIMIT)
        restored = await self._plain(ctx, restore, out)
        text = out.text()
        match = re.search(r"itop-restored-files\s+(\d+)", text)
        count = int(match.group(1)) if match else -1
        log.add("\n".join(line for line in text.splitlines() if "itop-restored-files" not in line))
        detail = {"snapshot_id": snapshot, "scope": policy.scope, "files_in_snapshot": files,
                  "files_expected": expected, "files_restored": count}
        if ctx.cancel.is_set():
            return MethodOutcome("cancelled", _with(log, "cancelled"), detail=detail)
        if not restored.ok:
            return MethodOutcome("failed", _with(log, _exit_text(restored, "restic restore --verify")),
                                 snapshot_id=snapshot, detail=detail)
        if count != expected:
            return MethodOutcome(
                "failed", _with(log, f"test restore wrote {count} files, the snapshot lists {expected}"),
                snapshot_id=snapshot, detail=detail)
        log.add(f"test restore ok: {count} files restored and verified by restic")
        return MethodOutcome("succeeded", log.text(), files=count, snapshot_id=snapshot,
                             detail=detail)

    async def _plain(self, ctx: MethodContext, command: str, log: RunLog) -> RemoteExit:
        """Run ``command``, all output into ``log``, with cancel and the job's timeout."""
        try:
            proc = await open_remote(ctx.pool, ctx.host, f"{command} 2>&1")
        except TransportError as exc:
            return RemoteExit(None, str(exc), b"")
        splitter = LineSplitter(4096)
        try:
            async with asyncio.timeout(ctx.job.timeout), _stop_on_cancel(proc, ctx.cancel):
                while chunk := await proc.read():
                    for line in splitter.feed(chunk):
                        log.add(line)
                last = splitter.flush()
                if last:
                    log.add(last)
                ended = await proc.wait()
        except TimeoutError:
            await proc.stop()
            ended = RemoteExit(None, f"timed out after {ctx.job.timeout:g}s", b"")
        except BaseException:
            await proc.stop()
            raise
        return ended

    async def restore(self, ctx: MethodContext, target: BackupRun,
                      request: RestoreRequest) -> MethodOutcome:
        snapshot = _snapshot_of(target)
        log = RunLog()
        includes = " ".join(f"--include {shlex.quote(restic_pattern(p))}" for p in request.paths)
        restore = (f"{restic_base(ctx.job)} restore {shlex.quote(snapshot)} --target "
                   f"{{target}} {includes}").rstrip()
        if request.in_place:
            # restic before 0.17 cannot replace existing symlinks and loses hard
            # links restored over existing files; tar can. So restic restores
            # into a scratch directory on the host and tar moves the backed-up
            # paths (never their parents) into place. Sources are absolute and
            # restic keeps them whole, so the scratch tree mirrors /.
            paths = request.paths or tuple(target.detail.get("paths") or ctx.job.sources)
            members = " ".join(shlex.quote(_member_word(p)) for p in paths)
            destination = "/"
            command = (
                'd=$(mktemp -d "${TMPDIR:-/var/tmp}/itop-restore.XXXXXX") || exit 1; '
                + restore.format(target='"$d"') + "; rc=$?; "
                + f'if [ $rc -eq 0 ]; then (cd "$d" && tar -cf - {members}) | tar -xpf - -C /; '
                + 'rc=$?; fi; rm -rf -- "$d"; exit $rc')
            log.add(f"$ {restore.format(target='(scratch directory)')} && tar (scratch) -> /")
        else:
            destination = request.target or ""
            refusal = await _probe_directory(ctx, destination)
            if refusal:
                return MethodOutcome("failed", refusal)
            command = restore.format(target=shlex.quote(destination))
            log.add(f"$ {command}")
        ended = await self._plain(ctx, command, log)
        if ctx.cancel.is_set():
            return MethodOutcome("cancelled", _with(log, "cancelled: the restore is incomplete"))
        if not ended.ok:
            return MethodOutcome("failed", _with(log, _exit_text(ended, "the restore")),
                                 snapshot_id=snapshot)
        return MethodOutcome("succeeded", _with(log, f"restored {snapshot} to {destination}"),
                             snapshot_id=snapshot, detail={"target": destination})

    async def list_files(self, ctx: MethodContext, target: BackupRun,
                         request: RestoreRequest | None = None,
                         limit: int | None = None) -> list[FileEntry]:
        snapshot = _snapshot_of(target)
        base: str | None = None
        if request is not None:
            base = "/" if request.in_place else request.target
        found: list[FileEntry] = []
        paths = request.paths if request else ()

        def on_node(node: dict[str, Any]) -> None:
            if limit is not None and len(found) >= limit:
                return
            path = str(node.get("path", ""))
            if not _selected(path, paths):
                return
            where = None if base is None else str(PurePosixPath(base) / path.lstrip("/"))
            mode = int(node.get("mode") or 0)
            found.append(FileEntry(path, str(node.get("type", "")), int(node.get("size") or 0),
                                   f"{stat.S_IMODE(mode):04o}", where))

        log = RunLog()
        listed = await self._ls(ctx, snapshot, log, on_node)
        if not listed.ok:
            raise MethodError(f"cannot list {snapshot}: {_exit_text(listed, 'restic ls')}\n{log.text()}")
        return found

    async def prune(self, ctx: MethodContext, backups: list[BackupRun],
                    dry_run: bool) -> PruneOutcome:
        job = ctx.job
        command = (f"{restic_base(job)} forget --json --host {shlex.quote(ctx.host.name)} "
                   f"--tag {shlex.quote(restic_tag(job))} --group-by host,tags "
                   f"{' '.join(job.retention.restic_options())} "
                   f"{'--dry-run' if dry_run else '--prune'}")
        log = RunLog()
        log.add(f"$ {command}")
        result = await ctx.pool.for_host(ctx.host).run(command, timeout=job.timeout,
                                                        limit=JSON_OUTPUT_LIMIT)
        groups = _first_json_list(result.stdout)
        log.add("\n".join(line for line in result.stdout.splitlines()
                          if not line.startswith("[")))
        log.add(result.stderr)
        if not result.ok or groups is None:
            why = result.error or f"restic forget exited with status {result.exit_status}"
            if result.ok and groups is None:
                why = "restic forget printed no JSON result"
            return PruneOutcome("failed", log=_with(log, why))
        runs_by_snapshot = {r.snapshot_id: r for r in backups if r.snapshot_id}
        keep: list[PruneItem] = []
        remove: list[PruneItem] = []
        for group in groups:
            reasons = {_snapshot_key(r.get("snapshot") or {}): tuple(r.get("matches") or [])
                       for r in group.get("reasons") or []}
            for snap in group.get("keep") or []:
                keep.append(_restic_item(snap, reasons.get(_snapshot_key(snap), ()),
                                         runs_by_snapshot))
            for snap in group.get("remove") or []:
                remove.append(_restic_item(snap, (f"not kept by {job.retention.describe()}",),
                                           runs_by_snapshot))
        return PruneOutcome("succeeded", keep, remove, log.text())


def _snapshot_of(run: BackupRun) -> str:
    if run.kind != "backup" or not run.snapshot_id:
        raise MethodError(f"{run.id} is not a restic backup with a snapshot")
    if run.detail.get("pruned_by"):
        raise MethodError(f"the snapshot of {run.id} was forgotten by the prune {run.detail['pruned_by']}")
    return run.snapshot_id


def _snapshot_key(snap: dict[str, Any]) -> str:
    # forget's reasons carry the snapshot without its id: match on time and tree.
    return f"{snap.get('time')}|{snap.get('tree')}"


def _restic_item(snap: dict[str, Any], reasons: tuple[str, ...],
                 runs: dict[str, BackupRun]) -> PruneItem:
    full = str(snap.get("id", ""))
    short = str(snap.get("short_id", full[:8]))
    run = runs.get(short) or runs.get(full) or next(
        (r for key, r in runs.items() if key and full.startswith(key)), None)
    return PruneItem(str(snap.get("time", "")), reasons, run_id=run.id if run else None,
                     snapshot_id=short)


def _first_json_list(text: str) -> list[dict[str, Any]] | None:
    for line in text.splitlines():
        if line.startswith("["):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, list) else None
    return None


def _dispatch(line: str, on_line: Callable[[dict[str, Any]], None], log: RunLog) -> None:
    if line.startswith("{"):
        try:
            message = json.loads(line)
        except ValueError:
            log.add(line)
            return
        if isinstance(message, dict):
            on_line(message)
            return
    log.add(line)


class _Reservoir:
    """A uniform random sample of a stream of paths, with bounded memory.

    ``percent`` None keeps nothing (everything is wanted). The sample size
    is only known at the end, so a reservoir of the largest size the
    percentage could need so far is kept and cut down at the end.
    """

    def __init__(self, percent: float | None) -> None:
        self.percent = percent
        self.seen = 0
        self.kept: list[str] = []
        self._random = secrets.SystemRandom()

    def offer(self, path: str) -> None:
        if self.percent is None:
            return
        self.seen += 1
        capacity = max(1, round(self.seen * self.percent / 100))
        if len(self.kept) < capacity:
            self.kept.append(path)
        else:
            slot = self._random.randrange(self.seen)
            if slot < len(self.kept):
                self.kept[slot] = path

    def chosen(self) -> list[str] | None:
        if self.percent is None:
            return None
        count = max(1, round(self.seen * self.percent / 100)) if self.seen else 0
        return self._random.sample(self.kept, min(count, len(self.kept)))


# -- command ---------------------------------------------------------------------


class CommandMethod:
    """A custom backup command on the host; exit status 0 is success."""

    name = "command"

    async def backup(self, ctx: MethodContext) -> MethodOutcome:
        command = ctx.job.command or ""
        log = RunLog()
        log.add(f"$ {command}")
        transport = ctx.pool.for_host(ctx.host)
        task = asyncio.ensure_future(transport.run(command, timeout=ctx.job.timeout))
        cancel = asyncio.ensure_future(ctx.cancel.wait())
        try:
            await asyncio.wait({task, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return MethodOutcome("cancelled", _with(log, "cancelled"))
        result = task.result()
        log.add(result.stdout)
        log.add(result.stderr)
        if result.ok:
            return MethodOutcome("succeeded", log.text(), detail={"exit_status": 0})
        why = result.error or f"exited with status {result.exit_status}"
        return MethodOutcome("failed", _with(log, f"the backup command {why}"),
                             detail={"exit_status": result.exit_status})

    async def verify(self, ctx: MethodContext, target: BackupRun) -> MethodOutcome:
        raise MethodError(_unsupported("verify"))

    async def restore(self, ctx: MethodContext, target: BackupRun,
                      request: RestoreRequest) -> MethodOutcome:
        raise MethodError(_unsupported("restore"))

    async def list_files(self, ctx: MethodContext, target: BackupRun,
                         request: RestoreRequest | None = None,
                         limit: int | None = None) -> list[FileEntry]:
        raise MethodError(_unsupported("list the files of"))

    async def prune(self, ctx: MethodContext, backups: list[BackupRun],
                    dry_run: bool) -> PruneOutcome:
        raise MethodError(_unsupported("prune"))


def _unsupported(action: str) -> str:
    return (f"the command method cannot {action} a backup: itop does not know what the "
            f"command wrote; use the tar or restic method for that")
