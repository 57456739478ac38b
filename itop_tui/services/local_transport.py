"""Running commands on this machine through ``/bin/sh`` (no SSH).

Each command runs in its own process group, so a timeout or a closed stream
ends the command and everything it started. Output is read incrementally
into bounded buffers: a runaway command cannot fill memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator

from itop_tui.domain.output import (
    DEFAULT_OUTPUT_LIMIT,
    BoundedBuffer,
    LineChunker,
    decode_output,
    strip_control,
)
from itop_tui.services.transport import RunResult

READ_CHUNK = 64 * 1024
# After the shell exits, background children may still hold its pipes open;
# wait this long for the rest of the output, then stop reading.
PIPE_DRAIN_GRACE = 1.0
STREAM_KILL_GRACE = 2.0


class LineSplitter:
    """Splits a byte stream into text lines cut at ``line_limit`` bytes.

    An over-long line is cut and the rest of it up to the next newline is
    dropped, so a stream without newlines never grows a buffer without bound.
    Lines are decoded as UTF-8 and stripped of control sequences.
    """

    def __init__(self, line_limit: int = 4096) -> None:
        self.line_limit = max(1, line_limit)
        self._partial = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[str]:
        """Add bytes; return the lines they complete."""
        lines: list[str] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._skipping:
                room = self.line_limit - len(self._partial)
                self._partial += piece[:room]
                if len(piece) > room:
                    # Emit the cut line now and drop the rest of it.
                    lines.append(self._take())
                    self._skipping = True
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                lines.append(self._take())
            start = end + 1
        return lines

    def flush(self) -> str | None:
        """The last unterminated line, if any."""
        if self._partial and not self._skipping:
            return self._take()
        self._partial.clear()
        return None

    def _take(self) -> str:
        text = strip_control(decode_output(bytes(self._partial))).rstrip("\r")
        self._partial.clear()
        return text


def exit_status_from_returncode(returncode: int | None) -> int | None:
    """A shell-style exit status: a death by signal N is reported as 128+N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


class LocalTransport:
    """Runs commands on this machine; implements :class:`Transport`."""

    def __init__(self, host_name: str) -> None:
        self.host = host_name

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        limit: int = DEFAULT_OUTPUT_LIMIT,
        stdin: bytes | None = None,
    ) -> RunResult:
        """Run ``command`` with ``/bin/sh -c`` and collect bounded output."""
        started = time.monotonic()
        out, err = BoundedBuffer(limit), BoundedBuffer(limit)

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

        try:
            proc, transport, exited = await _spawn(
                command,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return result(None, f"cannot start the command: {exc.strerror or exc}")

        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.ensure_future(_drain(proc.stdout, out)),
            asyncio.ensure_future(_drain(proc.stderr, err)),
        ]
        feeder = asyncio.ensure_future(_feed_stdin(proc, stdin))
        try:
            try:
                async with asyncio.timeout(timeout):
                    await exited.wait()
            except TimeoutError:
                _kill_group(proc.pid, signal.SIGKILL)
                await _finish(readers, feeder)
                return result(None, f"timed out after {timeout:g}s")
            except BaseException:
                # Cancelled by the caller: do not leave the command behind.
                _kill_group(proc.pid, signal.SIGKILL)
                await _finish(readers, feeder)
                raise
            await _finish(readers, feeder)
            return result(exit_status_from_returncode(proc.returncode))
        finally:
            transport.close()

    async def stream(self, command: str, *, line_limit: int = 4096) -> AsyncIterator[str]:
        """Run a long-lived command and yield its stdout lines.

        Closing the iterator terminates the command's process group.
        """
        splitter = LineSplitter(line_limit)
        # aclosing: closing this iterator ends the command now, not when the
        # inner generator is collected.
        async with contextlib.aclosing(self._read(command)) as chunks:
            async for chunk in chunks:
                for line in splitter.feed(chunk):
                    yield line
        last = splitter.flush()
        if last is not None:
            yield last

    async def stream_chunks(self, command: str, *, line_limit: int = 4096) -> AsyncIterator[str]:
        """Run a long-lived command and yield its stdout in blocks of whole lines.

        One decoded, stripped block per read (see
        :class:`~itop_tui.domain.output.LineChunker`). Closing the iterator
        terminates the command's process group.
        """
        chunker = LineChunker(line_limit)
        async with contextlib.aclosing(self._read(command)) as chunks:
            async for chunk in chunks:
                block = chunker.feed(chunk)
                if block:
                    yield block
        last = chunker.flush()
        if last:
            yield last

    async def _read(self, command: str) -> AsyncGenerator[bytes, None]:
        """The command's stdout as it comes; closing ends its process group."""
        proc, transport, exited = await _spawn(
            command, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        assert proc.stdout is not None
        try:
            while True:
                chunk = await proc.stdout.read(READ_CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            if not exited.is_set():
                _kill_group(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(exited.wait()), STREAM_KILL_GRACE)
                except (TimeoutError, asyncio.CancelledError):
                    _kill_group(proc.pid, signal.SIGKILL)
            transport.close()


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Signals the process's exit even while its pipes are still open.

    ``Process.wait()`` also waits for the pipes, which a background child
    of the command may hold open long after the command itself ended.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _spawn(
    command: str, *, stdin: int, stderr: int
) -> tuple[asyncio.subprocess.Process, asyncio.SubprocessTransport, asyncio.Event]:
    """Start ``command`` with ``/bin/sh -c`` in a new process group.

    Closing the returned transport closes pipes that background children of
    the command may still hold.
    """
    loop = asyncio.get_running_loop()
    protocol = _ExitAwareProtocol(READ_CHUNK, loop)
    transport, _ = await loop.subprocess_shell(
        lambda: protocol,
        command,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), transport, protocol.exited


async def _drain(reader: asyncio.StreamReader, buffer: BoundedBuffer) -> None:
    while True:
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            return
        buffer.feed(chunk)


async def _feed_stdin(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if data is None or proc.stdin is None:
        return
    # The command may exit without reading its input.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
    proc.stdin.close()


async def _finish(readers: list[asyncio.Task[None]], feeder: asyncio.Task[None]) -> None:
    """Wait for the pipe readers briefly, then give up on them."""
    _done, pending = await asyncio.wait([*readers, feeder], timeout=PIPE_DRAIN_GRACE)
    for task in pending:
        task.cancel()
    for task in [*readers, feeder]:
        with contextlib.suppress(BaseException):
            await task


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
