"""Raw metric samples of one host, as an async stream.

Two collectors give the same :class:`RawSample` shape:

* :class:`RemoteCollector` runs :func:`itop_tui.domain.procfs.collect_command`
  over one long-lived channel of the host's transport and turns the frames it
  prints into samples. It reads the channel a chunk at a time
  (``Transport.stream_chunks``: one decode and one control-sequence pass per
  chunk, one async step per chunk rather than per line). Closing the stream (``aclose()``, or cancelling the
  task iterating it) closes the channel; the loop on the host then ends by
  itself at its next write.
* :class:`LocalCollector` reads this machine with psutil in a worker thread,
  so a slow ``statvfs`` never blocks the event loop.

:func:`collector_for` picks one for an inventory host.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Protocol

import psutil

from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.domain.procfs import (
    CPU_FIELDS,
    MIN_INTERVAL,
    CpuStat,
    CpuTimes,
    DiskCounters,
    Filesystem,
    FrameAssembler,
    LoadAvg,
    MemInfo,
    NetCounters,
    RawSample,
    collect_command,
    is_read_only,
    is_whole_disk,
    parse_frame,
)
from itop_tui.services.transport import Transport, TransportError

# /proc/stat's "intr" line runs to thousands of numbers on big hosts; it is
# not parsed, so cutting it short is harmless and saves work per frame.
# Every line that is parsed is far shorter. Lines are cut by the frame
# assembler; the stream cuts only a line it has not seen the end of.
STREAM_LINE_LIMIT = 4096
# How long the first local sample waits for filesystems; statvfs on a dead
# network mount hangs, and later samples never wait for it.
FIRST_DF_WAIT = 2.0


class CollectorEnded(TransportError):
    """The collection stream ended without a transport error (the loop on the host died)."""


class Collector(Protocol):
    """A source of raw samples for one host."""

    host: str
    interval: float

    def samples(self) -> AsyncGenerator[RawSample, None]:
        """Raw samples, one per interval, until the source fails or is closed (``aclose``)."""
        ...


def df_every_frames(df_every_seconds: float, interval: float) -> int:
    """How many frames apart filesystems are read, for a period in seconds."""
    if not interval > 0 or not math.isfinite(df_every_seconds):
        return 1
    return max(1, round(df_every_seconds / interval))


def _check_interval(interval: float) -> float:
    if not math.isfinite(interval) or interval < MIN_INTERVAL:
        raise ValueError(f"interval must be a number of seconds >= {MIN_INTERVAL}, got {interval!r}")
    return float(interval)


class RemoteCollector:
    """Streams raw samples from a host over one channel of its transport.

    The stream raises :class:`TransportError` when the host cannot be
    reached or the connection drops, and :class:`CollectorEnded` when the
    channel closes without an error. Counters for tests and benchmarks:
    ``frames``, ``dropped_frames``, ``garbage_lines`` (of the latest stream).
    """

    def __init__(
        self,
        transport: Transport,
        host: str,
        interval: float = 2.0,
        df_every: int = 15,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = transport
        self.host = host
        self.interval = _check_interval(interval)
        self.df_every = max(1, int(df_every))
        self.command = collect_command(self.interval, self.df_every)
        self._clock = clock
        self._assembler = FrameAssembler(max_line_length=STREAM_LINE_LIMIT)

    @property
    def frames(self) -> int:
        """Complete frames received by the latest stream."""
        return self._assembler.frames

    @property
    def dropped_frames(self) -> int:
        """Frames cut short or too large, dropped whole."""
        return self._assembler.dropped_frames

    @property
    def garbage_lines(self) -> int:
        """Lines seen outside any frame (a login banner, shell noise)."""
        return self._assembler.garbage_lines

    async def samples(self) -> AsyncGenerator[RawSample, None]:
        """Raw samples as frames complete; see the class notes for how it ends."""
        self._assembler = assembler = FrameAssembler(max_line_length=STREAM_LINE_LIMIT)
        chunks: AsyncIterator[str] | None = self.transport.stream_chunks(
            self.command, line_limit=STREAM_LINE_LIMIT
        )
        assert chunks is not None
        try:
            # The first step opens the channel and starts the loop on the
            # host. Cancelled half-way (a quick restart), the channel would
            # be open with nobody holding it: the loop would run on until
            # the connection closes. So the opening is shielded, and a
            # cancelled one is closed as soon as it completes.
            opening = asyncio.ensure_future(_next_chunk(chunks))
            try:
                chunk = await asyncio.shield(opening)
            except asyncio.CancelledError:
                _close_once_open(opening, chunks)
                chunks = None  # it is still running: not closed here
                raise
            while chunk is not None:
                for frame in assembler.feed_text(chunk):
                    yield parse_frame(frame, self.host, self._clock())
                chunk = await _next_chunk(chunks)
        finally:
            # Close the channel as soon as this generator is closed, not
            # whenever the garbage collector gets to the inner generator.
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        raise CollectorEnded(f"{self.host}: the collection loop on the host ended")


async def _next_chunk(chunks: AsyncIterator[str]) -> str | None:
    """The next chunk, None at the end."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


# Streams closed in the background after a cancelled opening (kept referenced).
_CLOSING: set[asyncio.Task[None]] = set()


def _close_once_open(opening: asyncio.Future[str | None], chunks: AsyncIterator[str]) -> None:
    """Close ``chunks`` once its first step (``opening``) is done, in a task."""

    async def close() -> None:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    def done(future: asyncio.Future[str | None]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the stream failed while opening: nothing is open
        task = asyncio.ensure_future(close())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    opening.add_done_callback(done)


async def settle_closing(timeout: float = 10.0) -> None:
    """Wait for streams whose cancelled opening is being closed (at most ``timeout`` s)."""
    if _CLOSING:
        await asyncio.wait(set(_CLOSING), timeout=timeout)


# --------------------------------------------------------------------------
# This machine, through psutil


def _cpu_times(times: object) -> CpuTimes:
    # Fields a platform lacks (iowait off Linux, guest on old kernels) are 0,
    # as in /proc/stat parsing.
    return CpuTimes(*(float(getattr(times, name, 0.0) or 0.0) for name in CPU_FIELDS))


def _local_disks() -> dict[str, DiskCounters]:
    try:
        counters = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
    except (OSError, RuntimeError):
        return {}
    names = set(counters)
    disks: dict[str, DiskCounters] = {}
    for name, io in counters.items():
        if not is_whole_disk(name, names):
            continue
        busy = int(getattr(io, "busy_time", 0) or 0)
        disks[strip_control(name)] = DiskCounters(int(io.read_bytes), int(io.write_bytes), busy)
    return disks


def _local_net() -> dict[str, NetCounters]:
    try:
        counters = psutil.net_io_counters(pernic=True, nowrap=False) or {}
    except (OSError, RuntimeError):
        return {}
    return {
        strip_control(name): NetCounters(int(io.bytes_recv), int(io.bytes_sent))
        for name, io in counters.items()
        if name != "lo"
    }


def local_filesystems() -> list[Filesystem]:
    """Mounted filesystems with sizes, as ``df -kP`` lists them (blocking).

    Every mount is asked (``all=True``), like ``df``: overlay and tmpfs
    roots of containers are not "physical" to psutil. Pseudo filesystems
    of size 0 are dropped later, as for remote hosts. Type and read-only
    mark come from the mount options, as /proc/mounts gives them remotely.
    """
    rows: dict[str, Filesystem] = {}
    for part in psutil.disk_partitions(all=True):
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        # A mount point mounted over twice shows its top mount only, as in df.
        rows[part.mountpoint] = Filesystem(
            filesystem=strip_control(part.device or part.fstype or "none"),
            mount=strip_control(part.mountpoint),
            size=int(usage.total),
            used=int(usage.used),
            avail=int(usage.free),
            fstype=strip_control(part.fstype or ""),
            read_only=is_read_only(part.opts or "", part.fstype or ""),
        )
    return list(rows.values())


def read_local(host: str, now: float | None = None) -> RawSample:
    """One raw sample of this machine, without filesystems (blocking)."""
    now = time.time() if now is None else now
    cores = psutil.cpu_times(percpu=True)
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    try:
        load1, load5, load15 = os.getloadavg()
        load = LoadAvg(load1, load5, load15)
    except OSError:
        load = LoadAvg()
    try:
        procs: int | None = len(psutil.pids())
    except OSError:
        procs = None
    return RawSample(
        host=host,
        time=now,
        cpu=CpuStat(
            total=_cpu_times(psutil.cpu_times()),
            cores={index: _cpu_times(times) for index, times in enumerate(cores)},
        ),
        memory=MemInfo(
            total=int(memory.total),
            available=int(memory.available),
            free=int(memory.free),
            swap_total=int(swap.total),
            swap_free=int(swap.free),
        ),
        load=load,
        disks=_local_disks(),
        net=_local_net(),
        # Uptime by the wall clock: rates come from its differences, and
        # boot_time() stays fixed while the process runs.
        uptime=max(0.0, now - psutil.boot_time()),
        procs=procs,
    )


class LocalCollector:
    """Raw samples of this machine through psutil, every ``interval`` seconds.

    The first sample comes at once, like the remote loop's first frame;
    filesystems are read every ``df_every`` samples in their own thread and
    join whichever sample is taken once they are in, so a hung mount costs
    only its own figures (the last ones read stay in use).
    """

    def __init__(self, host: str, interval: float = 2.0, df_every: int = 15) -> None:
        self.host = host
        self.interval = _check_interval(interval)
        self.df_every = max(1, int(df_every))
        self.frames = 0

    async def samples(self) -> AsyncGenerator[RawSample, None]:
        """Raw samples until the iterator is closed; never fails on its own."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        # One df in flight at most: a hung mount holds one thread, not one per period.
        df_task: asyncio.Future[list[Filesystem]] | None = None
        count = 0
        try:
            while True:
                raw = await asyncio.to_thread(read_local, self.host)
                if df_task is None and count % self.df_every == 0:
                    df_task = asyncio.ensure_future(asyncio.to_thread(local_filesystems))
                    if count == 0:
                        # The first sample carries filesystems, as the remote one does.
                        await asyncio.wait({df_task}, timeout=FIRST_DF_WAIT)
                if df_task is not None and df_task.done():
                    failed = df_task.cancelled() or df_task.exception() is not None
                    raw.filesystems = None if failed else df_task.result()
                    df_task = None
                count += 1
                self.frames = count
                yield raw
                next_at += self.interval
                delay = next_at - loop.time()
                if delay < 0:
                    # Fell behind (a suspended laptop): restart the cadence.
                    next_at = loop.time()
                    delay = 0
                await asyncio.sleep(delay)
        finally:
            if df_task is not None:
                df_task.cancel()


def collector_for(
    host: Host,
    transport: Transport | None,
    interval: float = 2.0,
    df_every: int = 15,
) -> Collector:
    """The collector for an inventory host: psutil for ``address: local``, else remote.

    ``transport`` is the host's transport (``TransportPool.for_host``); it
    is not used for a local host.
    """
    if host.is_local:
        return LocalCollector(host.name, interval, df_every)
    if transport is None:
        raise ValueError(f"{host.name}: a remote host needs its transport")
    return RemoteCollector(transport, host.name, interval, df_every)
