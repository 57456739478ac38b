"""A TinyDB JSON file that is safe against crashes and concurrent itop processes.

TinyDB rewrites its whole file on every write and has no locking. This module
wraps it so that:

* every ``write()`` block is one transaction: the file is read once under an
  exclusive ``flock`` on ``<path>.lock``, TinyDB works on that in-memory copy,
  and on a clean exit the whole state is serialized first, then written to a
  temp file in the same directory, fsynced, ``os.replace``d over the file and
  the directory fsynced. An exception inside the block discards its changes;
  a crash at any moment leaves either the old or the new file, never a mix;
* before each replace the previous good file is kept as ``<path>.bak``;
* a corrupt main file is moved aside (never deleted) and the backup restored,
  with a sentence saying so in :attr:`JsonStore.recovery_message`;
* a schema version lives in the ``_meta`` table and older files are migrated
  once, in one atomic write; newer files are refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

META_TABLE = "_meta"
_META_DOC_ID = "1"

Tables = dict[str, Any]
"""The stored form: ``{table name: {doc id as str: document}}``."""

Migration = Callable[[Tables], Tables]


class StoreError(Exception):
    """The store cannot be read or written; the message names the file and why."""


class _Corrupt(Exception):
    """The bytes of a store file are not a valid store (internal)."""


class _BlockStorage(Storage):
    """TinyDB storage over the in-memory state of one ``read()``/``write()`` block.

    The file is parsed once when the block starts; TinyDB's reads and writes
    then hit this copy, and the store commits it to disk when the block ends.
    Nothing is cached beyond the block, so another process's commit is always
    seen by the next block.
    """

    def __init__(self, data: Tables, *, writable: bool, path: Path) -> None:
        super().__init__()
        self.data = data
        self.writable = writable
        self.path = path
        self.dirty = False

    def read(self) -> Tables:
        return self.data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        if not self.writable:
            raise StoreError(
                f"{self.path}: cannot change the store inside a read() block; use write()"
            )
        self.data = data
        self.dirty = True


class _Block:
    """The TinyDB handed out by the block a thread currently holds (for nesting)."""

    def __init__(self, db: TinyDB, writable: bool) -> None:
        self.db = db
        self.writable = writable


class JsonStore:
    """One TinyDB JSON file with atomic writes, locking, backups and a schema version.

    Use ``with store.read() as db:`` to query and ``with store.write() as db:``
    to change records; ``db`` is a :class:`tinydb.TinyDB`. A ``write()`` block
    is a transaction: one file rewrite however many TinyDB operations it runs,
    nothing written if the block raises. Blocks nest within one thread (the
    inner block shares the outer one's database); a ``write()`` inside a
    ``read()`` is refused.

    ``migrations[n]`` turns the tables of schema ``n`` into schema ``n + 1``; it
    receives and returns the stored form ``{table: {doc_id: document}}`` without
    the ``_meta`` table. A file without ``_meta`` counts as schema 1.

    A missing file is an empty store. A zero-byte file is empty too unless a
    backup exists, in which case it is treated as a truncated file and
    recovered. The constructor opens the file once, so an unreadable, corrupt
    or too new file is reported (``StoreError``) or recovered right away.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema_version: int = 1,
        migrations: Mapping[int, Migration] | None = None,
    ) -> None:
        if schema_version < 1:
            raise ValueError("schema_version must be at least 1")
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.backup_path = self.path.with_name(self.path.name + ".bak")
        self.schema_version = schema_version
        self.migrations: dict[int, Migration] = dict(migrations or {})
        self.recovery_message: str | None = None
        self._local = threading.local()
        with self.read():
            pass

    # -- public blocks -----------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[TinyDB]:
        """Yield a read-only TinyDB over the file, under a shared lock."""
        outer: _Block | None = getattr(self._local, "block", None)
        if outer is not None:
            yield outer.db
            return
        with self._locked(fcntl.LOCK_SH) as lock_fd:
            data = self._load_clean()
            if data is None:
                # Repair (recovery or migration) changes the file: it needs the
                # exclusive lock, and the file must be read again under it.
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                data = self._load_repairing()
            storage = _BlockStorage(data, writable=False, path=self.path)
            with self._hold(storage, writable=False) as db:
                yield db

    @contextlib.contextmanager
    def write(self) -> Iterator[TinyDB]:
        """Yield a TinyDB whose changes are committed atomically when the block ends.

        Holds the exclusive lock for the whole read-modify-write, so two
        processes never lose each other's updates.
        """
        outer: _Block | None = getattr(self._local, "block", None)
        if outer is not None:
            if not outer.writable:
                raise StoreError(f"{self.path}: cannot open a write() block inside a read() block")
            yield outer.db
            return
        with self._locked(fcntl.LOCK_EX):
            data = self._load_repairing()
            storage = _BlockStorage(data, writable=True, path=self.path)
            with self._hold(storage, writable=True) as db:
                yield db
            if storage.dirty:
                self._commit(storage.data)

    # -- locking and block bookkeeping ---------------------------------------

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[int]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                f"{self.lock_path}: cannot open the lock file: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, mode)
            yield fd
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.contextmanager
    def _hold(self, storage: _BlockStorage, *, writable: bool) -> Iterator[TinyDB]:
        db = TinyDB(storage=_storage_factory(storage))
        self._local.block = _Block(db, writable)
        try:
            yield db
        finally:
            self._local.block = None

    # -- loading -------------------------------------------------------------

    def _load_clean(self) -> Tables | None:
        """The file's tables if usable as they are, else None (needs repair)."""
        try:
            data = self._parse_file(self.path)
        except _Corrupt:
            return None
        if data is None:
            if self._backup_is_needed_for_empty_file():
                return None
            return self._empty()
        version = self._version_of(data)
        if version > self.schema_version:
            raise self._too_new(version)
        if version < self.schema_version:
            return None
        return data

    def _load_repairing(self) -> Tables:
        """The file's tables, recovering and migrating on disk first if needed.

        Must be called under the exclusive lock.
        """
        try:
            data = self._parse_file(self.path)
            if data is None and self._backup_is_needed_for_empty_file():
                raise _Corrupt(f"{self.path}: the file is empty (truncated)")
        except _Corrupt as exc:
            data = self._recover(str(exc))
        if data is None:
            return self._empty()
        version = self._version_of(data)
        if version > self.schema_version:
            raise self._too_new(version)
        if version < self.schema_version:
            data = self._migrate(data, version)
            self._commit(data)
        return data

    def _parse_file(self, path: Path) -> Tables | None:
        """Parse a store file: None if missing or empty, ``_Corrupt`` if unusable."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the store: {exc.strerror}") from exc
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _Corrupt(
                f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise _Corrupt(f"{path}: not valid UTF-8 text at byte {exc.start}") from exc
        if not isinstance(data, dict):
            raise _Corrupt(f"{path}: expected a JSON object of tables, found {type(data).__name__}")
        for name, table in data.items():
            if not isinstance(table, dict):
                raise _Corrupt(f"{path}: table {name!r} is not a JSON object")
        return data

    def _backup_is_needed_for_empty_file(self) -> bool:
        """An existing zero-byte main file with a backup beside it was truncated."""
        return self.path.exists() and self.backup_path.exists()

    def _empty(self) -> Tables:
        return {META_TABLE: {_META_DOC_ID: {"schema": self.schema_version}}}

    def _version_of(self, data: Tables) -> int:
        for doc in data.get(META_TABLE, {}).values():
            if isinstance(doc, dict) and "schema" in doc:
                version = doc["schema"]
                if not isinstance(version, int) or version < 1:
                    raise StoreError(
                        f"{self.path}: _meta holds an invalid schema version {version!r}"
                    )
                return version
        return 1

    def _too_new(self, version: int) -> StoreError:
        return StoreError(
            f"{self.path} has schema version {version}, newer than version "
            f"{self.schema_version} that this itop understands; upgrade itop "
            f"(the file was left untouched)"
        )

    def _migrate(self, data: Tables, version: int) -> Tables:
        tables = {k: v for k, v in data.items() if k != META_TABLE}
        while version < self.schema_version:
            step = self.migrations.get(version)
            if step is None:
                raise StoreError(
                    f"{self.path} has schema version {version} and there is no migration "
                    f"to version {version + 1}"
                )
            try:
                tables = step(tables)
            except Exception as exc:
                raise StoreError(
                    f"{self.path}: migration from schema {version} to {version + 1} failed: {exc}"
                ) from exc
            version += 1
        tables[META_TABLE] = {_META_DOC_ID: {"schema": self.schema_version}}
        return tables

    def _recover(self, problem: str) -> Tables | None:
        """Move the corrupt file aside and restore the backup (exclusive lock held)."""
        try:
            backup = self._parse_file(self.backup_path)
        except _Corrupt as exc:
            raise StoreError(f"{problem}; the backup is unusable too ({exc})") from exc
        if backup is None:
            raise StoreError(f"{problem}; no backup ({self.backup_path.name}) to recover from")
        aside = self._corrupt_name()
        try:
            os.rename(self.path, aside)
            _atomic_write_bytes(self.path, self.backup_path.read_bytes())
        except OSError as exc:
            raise StoreError(f"{problem}; recovery from {self.backup_path} failed: {exc}") from exc
        self.recovery_message = (
            f"{problem}. It was moved to {aside} and the last good copy was "
            f"restored from {self.backup_path}; changes made after that copy are lost."
        )
        return backup

    def _corrupt_name(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        candidate = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while candidate.exists():
            candidate = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        return candidate

    # -- committing ----------------------------------------------------------

    def _commit(self, data: Tables) -> None:
        """Write ``data`` as the new file; keep the old one as the backup."""
        data[META_TABLE] = {_META_DOC_ID: {"schema": self.schema_version}}
        try:
            payload = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: a record cannot be stored as JSON: {exc}") from exc
        self._remove_stale_temps()
        try:
            if self.path.exists():
                self._keep_backup()
            _atomic_write_bytes(self.path, payload.encode("utf-8"))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write the store: {exc}") from exc

    def _keep_backup(self) -> None:
        """Make ``<path>.bak`` the current (good) file, atomically.

        Files are only ever replaced, never changed in place, so a hard link
        is as good as a copy and costs nothing.
        """
        with contextlib.suppress(FileNotFoundError):
            if os.path.samefile(self.path, self.backup_path):
                return
        tmp = self.path.with_name(f".{self.path.name}.bak-{secrets.token_hex(6)}.tmp")
        try:
            os.link(self.path, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(self.path, tmp)
            _fsync_file(tmp)
        try:
            os.replace(tmp, self.backup_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _remove_stale_temps(self) -> None:
        """Delete temp files left by a writer that was killed mid-commit.

        Only a holder of the exclusive lock creates them, and we hold it, so
        any that exist now are dead.
        """
        prefix = f".{self.path.name}."
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(self.path.parent / name)


def _storage_factory(storage: _BlockStorage) -> Callable[[], Storage]:
    """TinyDB instantiates its storage itself; hand it the block's instance."""
    return lambda: storage


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves the old or the new file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
