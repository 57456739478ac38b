"""Running commands on a host over its pooled SSH connection.

Each ``run`` or ``stream`` opens one session channel on the host's shared
connection (see :mod:`itop_tui.services.transport_pool`). Output is consumed
as it arrives: ``run`` keeps a bounded head of stdout and stderr, ``stream``
hands out lines and ``stream_chunks`` blocks of lines, with flow control, so
none holds a whole output.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import asyncssh

from itop_tui.domain.models import Host
from itop_tui.domain.output import DEFAULT_OUTPUT_LIMIT, BoundedBuffer, LineChunker
from itop_tui.services.local_transport import LineSplitter
from itop_tui.services.transport import (
    ConnectFailed,
    HostKeyChanged,
    HostKeyUnknown,
    RunResult,
    TransportError,
)

if TYPE_CHECKING:
    from itop_tui.services.transport_pool import PooledConnection, TransportPool

# After the exit status arrives, background processes may still hold the
# channel open; wait this long for the rest of the output, then close it.
EXIT_DRAIN_GRACE = 1.0
# Lines buffered for a slow stream consumer before the channel is paused.
STREAM_HIGH_WATER = 1000
STREAM_LOW_WATER = 100
# Blocks buffered for a slow chunk consumer (a block is at most one packet).
CHUNK_HIGH_WATER = 64
CHUNK_LOW_WATER = 8


class _CollectingSession(asyncssh.SSHClientSession[bytes]):
    """Feeds stdout and stderr into bounded buffers as data arrives."""

    def __init__(self, out: BoundedBuffer, err: BoundedBuffer) -> None:
        self._out = out
        self._err = err
        self.exited = asyncio.Event()
        self.closed = asyncio.Event()
        self.lost: Exception | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        (self._err if datatype == asyncssh.EXTENDED_DATA_STDERR else self._out).feed(data)

    def exit_status_received(self, status: int) -> None:
        self.exited.set()

    def exit_signal_received(
        self, signal: str, core_dumped: bool, msg: str, lang: str
    ) -> None:
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.closed.set()


class _QueuedSession(asyncssh.SSHClientSession[bytes]):
    """Turns stdout into text items, pausing the channel when the consumer lags.

    ``split`` gives the items a chunk completes, ``finish`` the last one
    when the channel closes; ``high``/``low`` are the queue lengths at which
    the channel is paused and resumed.
    """

    def __init__(
        self,
        split: Callable[[bytes], list[str]],
        finish: Callable[[], str | None],
        high: int,
        low: int,
    ) -> None:
        self._split = split
        self._finish = finish
        self._high = high
        self._low = low
        self._lines: deque[str] = deque()
        self._ready = asyncio.Event()
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._paused = False
        self.closed = False
        self.lost: Exception | None = None

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            return
        items = self._split(data)
        if not items:
            return
        self._lines.extend(items)
        self._ready.set()
        if len(self._lines) >= self._high and not self._paused and self._chan:
            self._chan.pause_reading()
            self._paused = True

    def connection_lost(self, exc: Exception | None) -> None:
        last = self._finish()
        if last is not None:
            self._lines.append(last)
        self.closed = True
        self.lost = exc
        self._ready.set()

    async def next_item(self) -> str | None:
        """The next item, or None once the command ended and all items were read."""
        while not self._lines:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        line = self._lines.popleft()
        if self._paused and len(self._lines) <= self._low and self._chan:
            self._chan.resume_reading()
            self._paused = False
        return line


def _exit_status(chan: asyncssh.SSHClientChannel[bytes]) -> int | None:
    """The exit status, shell style: death by signal N gives 128+N."""
    exit_signal = chan.get_exit_signal()
    if exit_signal is not None:
        try:
            return 128 + signal.Signals[f"SIG{exit_signal[0]}"].value
        except KeyError:
            return 255
    return chan.get_exit_status()


def _stop(chan: asyncssh.SSHClientChannel[bytes]) -> None:
    """Ask the remote command to end, then close the channel."""
    with contextlib.suppress(Exception):
        chan.terminate()
    with contextlib.suppress(Exception):
        chan.close()


class SSHTransport:
    """Runs commands on one host over SSH; implements :class:`Transport`.

    Cheap to create: the connection lives in the pool.
    """

    def __init__(self, pool: TransportPool, host: Host) -> None:
        self.host = host.name
        self._pool = pool
        self._spec = pool.spec_for(host)

    async def _open_channel(
        self, factory: Callable[[], asyncssh.SSHClientSession[bytes]], command: str
    ) -> tuple[asyncssh.SSHClientChannel[bytes], PooledConnection]:
        """A session channel running ``command``, holding one of the connection's slots.

        A pooled connection found dead when the channel opens is replaced once.
        """
        for attempt in range(2):
            try:
                pooled = await self._pool.connection(self._spec)
            except HostKeyUnknown as exc:
                raise _naming_target(exc, self.host) from None
            await pooled.slots.acquire()
            try:
                chan, _session = await pooled.conn.create_session(
                    factory, command, encoding=None, request_pty=False
                )
                return chan, pooled
            except asyncssh.ChannelOpenError as exc:
                pooled.slots.release()
                if pooled.is_open:
                    raise TransportError(
                        f"{self.host}: the server refused a session: {exc.reason}"
                    ) from None
                reason = exc.reason
            except (asyncssh.Error, OSError) as exc:
                pooled.slots.release()
                reason = str(exc)
            except BaseException:
                pooled.slots.release()
                raise
            self._pool.discard(pooled)
            if attempt:
                raise ConnectFailed(f"{self.host}: connection lost: {reason}")
        raise AssertionError("unreachable")

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        limit: int = DEFAULT_OUTPUT_LIMIT,
        stdin: bytes | None = None,
    ) -> RunResult:
        """Run ``command`` through the host's shell and collect bounded output.

        Connection problems and time-outs go into the result's ``error``;
        :class:`HostKeyUnknown` and :class:`HostKeyChanged` are raised.
        """
        started = time.monotonic()
        out, err = BoundedBuffer(limit), BoundedBuffer(limit)
        session = _CollectingSession(out, err)

        def result(status: int | None, error: str | None = None) -> RunResult:
            return RunResult(
                host=self.host,
                command=command,
                exit_status=status,
                stdout=out.text(),
                stderr=err.text(),
                duration=time.monotonic() - started,
                truncated=out.truncated or err.truncated,
                error=error,
            )

        chan: asyncssh.SSHClientChannel[bytes] | None = None
        pooled: PooledConnection | None = None
        try:
            async with asyncio.timeout(timeout):
                chan, pooled = await self._open_channel(lambda: session, command)
                if stdin is not None:
                    chan.write(stdin)
                chan.write_eof()
                await _first(session.exited, session.closed)
                if not session.closed.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(session.closed.wait(), EXIT_DRAIN_GRACE)
        except (HostKeyUnknown, HostKeyChanged):
            raise
        except TransportError as exc:
            return result(None, str(exc))
        except TimeoutError:
            if chan is not None:
                _stop(chan)
            return result(None, f"timed out after {timeout:g}s")
        except (asyncssh.Error, OSError) as exc:
            if chan is not None:
                _stop(chan)
            return result(None, f"connection lost: {exc}")
        finally:
            if pooled is not None:
                pooled.slots.release()
            if chan is not None and not session.closed.is_set():
                # Cancelled, or output still open after the exit status.
                _stop(chan)
        assert chan is not None and pooled is not None
        status = _exit_status(chan)
        if status is None:
            if not pooled.is_open or session.lost is not None:
                return result(None, f"connection lost: {pooled.lost_reason}")
            return result(None, "the command ended without an exit status")
        return result(status)

    def stream(self, command: str, *, line_limit: int = 4096) -> AsyncIterator[str]:
        """Run a long-lived command and yield its stdout lines.

        Closing the iterator closes the channel: the remote command is sent
        TERM and loses its output pipe. Raises :class:`TransportError` when
        the host cannot be reached or the connection drops mid-stream.
        """
        splitter = LineSplitter(line_limit)
        session = _QueuedSession(splitter.feed, splitter.flush, STREAM_HIGH_WATER, STREAM_LOW_WATER)
        return self._stream(session, command)

    def stream_chunks(self, command: str, *, line_limit: int = 4096) -> AsyncIterator[str]:
        """Run a long-lived command and yield its stdout in blocks of whole lines.

        As :meth:`stream`, with one decoded and stripped block per chunk
        received instead of one item per line
        (:class:`~itop_tui.domain.output.LineChunker`): the cheap way to read
        a steady stream of many short lines.
        """
        chunker = LineChunker(line_limit)

        def split(data: bytes) -> list[str]:
            block = chunker.feed(data)
            return [block] if block else []

        def finish() -> str | None:
            return chunker.flush() or None

        session = _QueuedSession(split, finish, CHUNK_HIGH_WATER, CHUNK_LOW_WATER)
        return self._stream(session, command)

    async def _stream(self, session: _QueuedSession, command: str) -> AsyncIterator[str]:
        chan, pooled = await self._open_channel(lambda: session, command)
        try:
            chan.write_eof()
            while (line := await session.next_item()) is not None:
                yield line
            if session.lost is not None or not pooled.is_open:
                raise ConnectFailed(f"{self.host}: connection lost while streaming: "
                                    f"{session.lost or pooled.lost_reason}")
        finally:
            pooled.slots.release()
            if not session.closed:
                _stop(chan)


def _naming_target(error: HostKeyUnknown, target: str) -> HostKeyUnknown:
    """``error`` as met on the way to ``target``: a ProxyJump hop's key says whose hop it is.

    The pool raises the same exception object to every host sharing the hop,
    so a new one is built for this target rather than changing that one.
    """
    if error.jump_for is not None or error.host == target:
        return error
    return HostKeyUnknown(
        error.host,
        error.port,
        error.fingerprint,
        error.key_data,
        key_host=error.key_host,
        jump_for=target,
    )


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
