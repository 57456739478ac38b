"""Binary streams to and from a command on a host, with flow control both ways.

:class:`Transport.stream` hands out text lines; backups need the raw bytes
of ``tar -cf -`` as they arrive (and, to restore, bytes fed into
``tar -xf -``), never the whole stream in memory. :func:`open_remote`
starts a command and returns a :class:`RemoteProcess`:

* over SSH, one session channel on the host's pooled connection
  (:meth:`TransportPool.connection`), holding one of its channel slots;
  reading pauses the channel when :data:`HIGH_WATER` bytes wait unread,
  so a slow disk slows the host down instead of filling memory;
* for ``address: local``, ``/bin/sh -c`` in its own process group.

:meth:`RemoteProcess.wait` tells how the command ended: a shell-style exit
status (``128+N`` for death by signal N), or None with the reason when the
connection was lost or the command was stopped. A stream counts as
complete only when stdout reached its end *and* the status is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import asyncssh

from itop_tui.domain.models import Host
from itop_tui.domain.output import BoundedBuffer
from itop_tui.services.transport import ConnectFailed, TransportError
from itop_tui.services.transport_pool import PooledConnection, TransportPool

READ_SIZE = 256 * 1024
# Unread stdout kept before the SSH channel (or pipe) is paused.
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1 * 1024 * 1024
STDERR_LIMIT = 16 * 1024
# A bigger SSH window than asyncssh's 2 MiB default keeps a long stream
# moving while the reader is busy writing to disk.
CHANNEL_WINDOW = 8 * 1024 * 1024
CLOSE_GRACE = 5.0


@dataclass(frozen=True)
class RemoteExit:
    """How a remote command ended.

    ``status`` is the shell-style exit status, None when none arrived;
    ``error`` then says why (connection lost, stopped). ``stderr`` is the
    bounded head of what the command wrote there, raw bytes.
    """

    status: int | None
    error: str | None
    stderr: bytes

    @property
    def ok(self) -> bool:
        """The command ran to its end and exited 0."""
        return self.error is None and self.status == 0


class RemoteProcess(Protocol):
    """A command running on a host, its stdout read and stdin written as bytes."""

    host: str

    async def read(self, size: int = READ_SIZE) -> bytes:
        """Up to ``size`` bytes of stdout; ``b""`` once it ended (cleanly or not)."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` to stdin, waiting while the command cannot take more."""
        ...

    async def write_eof(self) -> None:
        """Close stdin."""
        ...

    async def wait(self, timeout: float | None = None) -> RemoteExit:
        """Wait for the command to end (after stdout was read to its end)."""
        ...

    async def stop(self) -> None:
        """End the command now (cancel); :meth:`wait` then reports it stopped."""
        ...


async def open_remote(pool: TransportPool, host: Host, command: str) -> RemoteProcess:
    """Start ``command`` on ``host`` through its shell.

    Raises :class:`TransportError` (and its host-key subclasses) when the
    host cannot be reached. Always finish with :meth:`RemoteProcess.wait`
    or :meth:`RemoteProcess.stop`, which release the channel.
    """
    if host.is_local:
        return await _LocalProcess.start(host.name, command)
    return await _SSHProcess.start(pool, host, command)


# -- SSH ---------------------------------------------------------------------------


class _BinarySession(asyncssh.SSHClientSession[bytes]):
    """Queues stdout chunks with flow control; keeps a bounded stderr."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.stderr = BoundedBuffer(STDERR_LIMIT)
        self.ready = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = asyncio.Event()
        self.stdout_done = False
        self.lost: Exception | None = None
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self.paused = False

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr.feed(data)
            return
        self.chunks.append(data)
        self.buffered += len(data)
        self.ready.set()
        if self.buffered >= HIGH_WATER and not self.paused and self.chan is not None:
            self.chan.pause_reading()
            self.paused = True

    def eof_received(self) -> bool:
        self.stdout_done = True
        self.ready.set()
        return True  # keep stdin open: a restore may still be writing

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.stdout_done = True
        self.closed.set()
        self.ready.set()
        self.writable.set()

    def take(self, size: int) -> bytes:
        chunk = self.chunks.popleft()
        if len(chunk) > size:
            self.chunks.appendleft(chunk[size:])
            chunk = chunk[:size]
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= LOW_WATER and self.chan is not None:
            self.chan.resume_reading()
            self.paused = False
        return chunk


class _SSHProcess:
    """A command on one session channel of the host's pooled connection."""

    def __init__(self, host: str, chan: asyncssh.SSHClientChannel[bytes],
                 session: _BinarySession, pooled: PooledConnection) -> None:
        self.host = host
        self._chan = chan
        self._session = session
        self._pooled = pooled
        self._released = False
        self._stopped = False

    @classmethod
    async def start(cls, pool: TransportPool, host: Host, command: str) -> _SSHProcess:
        spec = pool.spec_for(host)
        for attempt in range(2):
            pooled = await pool.connection(spec)
            await pooled.slots.acquire()
            try:
                chan, session = await _open_session(pooled, command)
                return cls(host.name, chan, session, pooled)
            except asyncssh.ChannelOpenError as exc:
                pooled.slots.release()
                if pooled.is_open:
                    raise TransportError(f"{host.name}: the server refused a session: "
                                         f"{exc.reason}") from None
                reason = exc.reason
            except (asyncssh.Error, OSError) as exc:
                pooled.slots.release()
                reason = str(exc)
            except BaseException:
                pooled.slots.release()
                raise
            # The pooled connection died since it was last used: reconnect once.
            pool.discard(pooled)
            if attempt:
                raise ConnectFailed(f"{host.name}: connection lost: {reason}")
        raise AssertionError("unreachable")

    async def read(self, size: int = READ_SIZE) -> bytes:
        session = self._session
        while not session.chunks:
            if session.stdout_done:
                return b""
            session.ready.clear()
            await session.ready.wait()
        return session.take(size)

    async def write(self, data: bytes) -> None:
        session = self._session
        while not session.writable.is_set():
            await session.writable.wait()
        if session.closed.is_set():
            raise ConnectFailed(f"{self.host}: the command ended before it read all its input")
        try:
            self._chan.write(data)
        except (asyncssh.Error, OSError) as exc:
            raise ConnectFailed(f"{self.host}: writing to the command failed: {exc}") from None

    async def write_eof(self) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            self._chan.write_eof()

    async def wait(self, timeout: float | None = None) -> RemoteExit:
        session = self._session
        try:
            try:
                await asyncio.wait_for(session.closed.wait(), timeout)
            except TimeoutError:
                self._close()
                return RemoteExit(None, f"timed out after {timeout:g}s", session.stderr.getvalue())
        finally:
            self._release()
        return self._outcome()

    def _outcome(self) -> RemoteExit:
        session = self._session
        stderr = session.stderr.getvalue()
        if self._stopped:
            return RemoteExit(None, "stopped", stderr)
        status = _ssh_exit_status(self._chan)
        if status is None:
            if session.lost is not None or not self._pooled.is_open:
                reason = session.lost or self._pooled.lost_reason
                return RemoteExit(None, f"connection lost: {reason}", stderr)
            return RemoteExit(None, "the command ended without an exit status", stderr)
        return RemoteExit(status, None, stderr)

    async def stop(self) -> None:
        self._stopped = True
        self._close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._session.closed.wait(), CLOSE_GRACE)
        self._release()

    def _close(self) -> None:
        # TERM first: sshd may refuse signals (see docs/decisions.md), and
        # closing the channel then ends the command by a broken pipe.
        with contextlib.suppress(Exception):
            self._chan.terminate()
        with contextlib.suppress(Exception):
            self._chan.close()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pooled.slots.release()


async def _open_session(
    pooled: PooledConnection, command: str
) -> tuple[asyncssh.SSHClientChannel[bytes], _BinarySession]:
    session = _BinarySession()
    chan, _ = await pooled.conn.create_session(
        lambda: session, command, encoding=None, request_pty=False, window=CHANNEL_WINDOW,
    )
    return chan, session


def _ssh_exit_status(chan: asyncssh.SSHClientChannel[bytes]) -> int | None:
    exit_signal = chan.get_exit_signal()
    if exit_signal is not None:
        try:
            return 128 + signal.Signals[f"SIG{exit_signal[0]}"].value
        except KeyError:
            return 255
    return chan.get_exit_status()


# -- this machine ----------------------------------------------------------------


class _LocalProcess:
    """``/bin/sh -c COMMAND`` in a new process group on this machine."""

    def __init__(self, host: str, proc: asyncio.subprocess.Process) -> None:
        self.host = host
        self._proc = proc
        self._stderr = BoundedBuffer(STDERR_LIMIT)
        assert proc.stderr is not None
        self._stderr_task = asyncio.ensure_future(_drain(proc.stderr, self._stderr))
        self._stopped = False

    @classmethod
    async def start(cls, host: str, command: str) -> _LocalProcess:
        try:
            proc = await asyncio.create_subprocess_shell(
                command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=HIGH_WATER,
            )
        except OSError as exc:
            raise TransportError(f"{host}: cannot start the command: {exc.strerror or exc}") from None
        return cls(host, proc)

    async def read(self, size: int = READ_SIZE) -> bytes:
        assert self._proc.stdout is not None
        return await self._proc.stdout.read(size)

    async def write(self, data: bytes) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise ConnectFailed(f"{self.host}: the command ended before it read all its input") \
                from None

    async def write_eof(self) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.close()

    async def wait(self, timeout: float | None = None) -> RemoteExit:
        await self.write_eof()
        try:
            returncode = await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            _kill_group(self._proc.pid)
            await self._proc.wait()
            await self._finish_stderr()
            return RemoteExit(None, f"timed out after {timeout:g}s", self._stderr.getvalue())
        await self._finish_stderr()
        if self._stopped:
            return RemoteExit(None, "stopped", self._stderr.getvalue())
        status = 128 - returncode if returncode < 0 else returncode
        return RemoteExit(status, None, self._stderr.getvalue())

    async def stop(self) -> None:
        self._stopped = True
        _kill_group(self._proc.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), CLOSE_GRACE)
        await self._finish_stderr()

    async def _finish_stderr(self) -> None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
        self._stderr_task.cancel()


async def _drain(reader: asyncio.StreamReader, buffer: BoundedBuffer) -> None:
    while chunk := await reader.read(64 * 1024):
        buffer.feed(chunk)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
