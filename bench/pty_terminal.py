"""A program in a pseudo-terminal of a given size, with every byte it writes timestamped.

:class:`PtyTerminal` plays the terminal emulator for the TUI benchmarks:
it sizes the pty (160x48 by default), drains the output continuously in a
thread (a terminal that stops reading would stall the program), records
when each chunk arrived, and answers the one query that changes what
Textual writes: the DECRQM query for synchronized output (mode 2026), so
that frames arrive delimited by ``ESC [ ? 2026 h`` / ``ESC [ ? 2026 l`` as
in a modern terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

SYNC_QUERY = b"\x1b[?2026$p"
SYNC_REPLY = b"\x1b[?2026;2$y"  # "supported, currently reset"
SYNC_END = b"\x1b[?2026l"


def _make_controlling_tty() -> None:  # pragma: no cover - runs in the child
    # The child is a session leader already (start_new_session): take the pty
    # on stdin as its controlling terminal, as a terminal emulator's shell has.
    with contextlib.suppress(OSError):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyTerminal:
    """Runs ``argv`` in a ``cols`` x ``rows`` pty; see the module notes."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cols: int = 160,
        rows: int = 48,
        cwd: Path | None = None,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = dict(env if env is not None else os.environ)
        full_env.setdefault("TERM", "xterm-256color")
        full_env.setdefault("COLORTERM", "truecolor")
        full_env["COLUMNS"], full_env["LINES"] = str(cols), str(rows)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, env=full_env, cwd=cwd,
            start_new_session=True, preexec_fn=_make_controlling_tty, close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.cols, self.rows = cols, rows
        self._buffer = bytearray()
        self._ends: list[tuple[int, float]] = []  # (offset after the chunk, arrival time)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="pty-reader", daemon=True)
        self._reader.start()

    # -- reading -----------------------------------------------------------

    def _read_loop(self) -> None:
        tail = b""
        while not self._closed.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                break  # EIO: the child closed the pty
            if not data:
                break
            now = time.perf_counter()
            with self._lock:
                self._buffer += data
                self._ends.append((len(self._buffer), now))
            probe = tail + data
            if SYNC_QUERY in probe:
                with contextlib.suppress(OSError):
                    os.write(self.master, SYNC_REPLY)
            tail = probe[-len(SYNC_QUERY):]
        self._closed.set()

    @property
    def size(self) -> int:
        """Bytes written by the program so far."""
        with self._lock:
            return len(self._buffer)

    def text(self, start: int = 0) -> bytes:
        """Everything written from byte offset ``start``."""
        with self._lock:
            return bytes(self._buffer[start:])

    def arrival(self, offset: int) -> float:
        """When the byte at ``offset`` arrived (perf_counter time)."""
        with self._lock:
            for end, at in self._ends:
                if end > offset:
                    return at
        raise ValueError(f"offset {offset} not received yet")

    def last_arrival(self) -> float | None:
        """When the latest chunk arrived, or None before any output."""
        with self._lock:
            return self._ends[-1][1] if self._ends else None

    def bytes_between(self, start: float, end: float) -> int:
        """Bytes that arrived in the perf_counter interval [start, end)."""
        with self._lock:
            total, previous = 0, 0
            for offset, at in self._ends:
                if start <= at < end:
                    total += offset - previous
                previous = offset
            return total

    def wait_for(self, needle: bytes, *, start: int = 0, timeout: float = 30.0) -> int:
        """Wait until ``needle`` appears after offset ``start``; return the offset after it."""
        deadline = time.perf_counter() + timeout
        while True:
            with self._lock:
                found = self._buffer.find(needle, start)
            if found >= 0:
                return found + len(needle)
            if time.perf_counter() > deadline or self._closed.is_set():
                raise TimeoutError(f"{needle!r} did not appear within {timeout}s "
                                   f"(program {'exited' if self._closed.is_set() else 'running'})")
            time.sleep(0.002)

    def frame_end_after(self, offset: int, *, timeout: float = 5.0) -> float:
        """Arrival time of the end of the frame holding ``offset`` (its 2026 end mark).

        Without synchronized output (no end mark within ``timeout``) it is the
        arrival of ``offset`` itself.
        """
        try:
            end = self.wait_for(SYNC_END, start=offset, timeout=timeout)
        except TimeoutError:
            return self.arrival(offset)
        return self.arrival(end - 1)

    def wait_output(self, start: int, *, timeout: float = 5.0) -> bool:
        """Wait until more than ``start`` bytes were written; False on timeout."""
        deadline = time.perf_counter() + timeout
        while self.size <= start:
            if time.perf_counter() > deadline or self._closed.is_set():
                return False
            time.sleep(0.001)
        return True

    def wait_quiet(self, quiet: float = 0.15, *, timeout: float = 10.0) -> float | None:
        """Wait until nothing arrived for ``quiet`` seconds; return the last arrival time."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            last = self.last_arrival()
            if last is not None and time.perf_counter() - last >= quiet:
                return last
            time.sleep(0.005)
        return self.last_arrival()

    # -- writing and stopping ----------------------------------------------

    def send(self, data: bytes) -> float:
        """Type ``data``; return when it was written (perf_counter time)."""
        at = time.perf_counter()
        os.write(self.master, data)
        return at

    def close(self, quit_keys: Sequence[bytes] = (b"q",), timeout: float = 5.0) -> int | None:
        """Type ``quit_keys`` (one write each, apart, so ESC is not read as Alt),
        then TERM/KILL the program if it is still running; return its status."""
        for keys in quit_keys:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                os.write(self.master, keys)
            time.sleep(0.2)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, sig)
                try:
                    self.proc.wait(timeout=3)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._closed.set()
        self._reader.join(timeout=2)
        with contextlib.suppress(OSError):
            os.close(self.master)
        return self.proc.returncode
