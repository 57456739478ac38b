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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from itop_tui.domain.models import Host
from itop_tui.domain.output import BoundedBuffer
from itop_tui.services.transport import ConnectFailed, TransportError

if TYPE_CHECKING:
    from itop_tui.services.transport_pool import TransportPool

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
    # Imported here: asyncssh is loaded when the first remote command starts.
    from itop_tui.services.ssh_process import SSHProcess

    return await SSHProcess.start(pool, host, command)


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
