"""A command on one session channel of a host's pooled SSH connection, as byte streams.

The SSH side of :func:`itop_tui.services.remote_stream.open_remote`, in its
own module so that asyncssh is imported when the first remote command
starts. Reading pauses the channel when
:data:`~itop_tui.services.remote_stream.HIGH_WATER` bytes wait unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque

import asyncssh

from itop_tui.domain.models import Host
from itop_tui.domain.output import BoundedBuffer
from itop_tui.services.remote_stream import (
    CHANNEL_WINDOW,
    CLOSE_GRACE,
    HIGH_WATER,
    LOW_WATER,
    READ_SIZE,
    STDERR_LIMIT,
    RemoteExit,
)
from itop_tui.services.transport import ConnectFailed, TransportError
from itop_tui.services.transport_pool import PooledConnection, TransportPool


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


class SSHProcess:
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
    async def start(cls, pool: TransportPool, host: Host, command: str) -> SSHProcess:
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
