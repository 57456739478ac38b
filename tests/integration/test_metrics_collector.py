"""Metric collectors against a real sshd on loopback and against psutil.

The sshd serves this very machine, so what the remote loop reads from
/proc over SSH must agree with what psutil reads locally at the same time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
from sshd_harness import SshdHarness, wait_for_processes, wait_until_gone

from itop_tui.domain.metrics import Sample, SampleBuilder
from itop_tui.domain.models import Host
from itop_tui.domain.processes import CPU_WINDOW
from itop_tui.domain.procfs import FRAME_BEGIN, RawSample, is_whole_disk
from itop_tui.ops.top_processes import top_processes
from itop_tui.services.metrics_collector import (
    Collector,
    LocalCollector,
    RemoteCollector,
    collector_for,
    df_every_frames,
)
from itop_tui.services.transport import TransportError
from itop_tui.services.transport_pool import TransportPool
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

TESTHOST = Host(name="testhost", ssh_alias="testhost")
INTERVAL = 0.5


@pytest.fixture
async def pool(trusted_settings: Settings) -> AsyncIterator[TransportPool]:
    transport_pool = TransportPool(trusted_settings)
    yield transport_pool
    await transport_pool.close()


async def take(collector: Collector, count: int, timeout: float = 60.0) -> list[Sample]:
    """``count`` samples from a collector, then close its stream."""
    builder = SampleBuilder()
    samples: list[Sample] = []
    stream = collector.samples()
    try:
        async with asyncio.timeout(timeout):
            async for raw in stream:
                samples.append(builder.add(raw))
                if len(samples) == count:
                    break
    finally:
        await stream.aclose()
    return samples


# -- processes of the remote loop ---------------------------------------------


def loops_of(harness: SshdHarness) -> set[int]:
    """Collection loops started through this test sshd."""
    return harness.session_processes_running(FRAME_BEGIN)


async def wait_for_loop(harness: SshdHarness, before: set[int] | None = None) -> set[int]:
    """The loops of this sshd that were not running ``before``, once there is one."""
    return await wait_for_processes(harness, FRAME_BEGIN, exclude=before or set())


async def wait_until_loops_gone(pids: set[int]) -> set[int]:
    """Wait for the loops to end; return those still running after a generous deadline."""
    return await wait_until_gone(pids, FRAME_BEGIN)


def boot_seconds() -> float:
    """This machine's /proc/uptime: the clock the remote loop stamps each frame with."""
    return float(Path("/proc/uptime").read_text().split()[0])


# -- agreement with psutil ------------------------------------------------------


def assert_agrees_with_psutil(sample: Sample) -> None:
    memory = psutil.virtual_memory()
    load1 = os.getloadavg()[0]
    assert sample.cpu_count == psutil.cpu_count(logical=True)
    assert sample.mem_total == memory.total
    assert sample.swap_total == psutil.swap_memory().total
    # Gauges read a moment apart on a shared machine: close, not equal.
    assert sample.load1 is not None and abs(sample.load1 - load1) <= 0.5 + 0.2 * load1
    assert sample.mem_percent is not None and abs(sample.mem_percent - memory.percent) <= 3.0
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0
    assert all(core is not None and 0.0 <= core <= 100.0 for core in sample.cpu_per_core)
    assert set(sample.interfaces) == set(psutil.net_io_counters(pernic=True)) - {"lo"}
    io = psutil.disk_io_counters(perdisk=True) or {}
    assert set(sample.disks) == {name for name in io if is_whole_disk(name, set(io))}
    # Processes come and go quickly on a machine running other tests.
    procs = len(psutil.pids())
    assert sample.procs is not None and abs(sample.procs - procs) <= max(30, 0.3 * procs)
    assert sample.uptime is not None
    assert abs(sample.uptime - (time.time() - psutil.boot_time())) < 5
    root = [fs for fs in sample.filesystems if fs.mount == "/"]
    assert root, f"no / among {[fs.mount for fs in sample.filesystems]}"
    usage = psutil.disk_usage("/")
    assert root[0].size == usage.total
    assert abs(root[0].used - usage.used) <= 0.01 * usage.total


async def test_remote_metrics_agree_with_psutil(pool: TransportPool) -> None:
    collector = collector_for(TESTHOST, pool.for_host(TESTHOST), INTERVAL, df_every=4)
    assert isinstance(collector, RemoteCollector)
    started = time.monotonic()
    samples = await take(collector, 3)
    # One frame per interval, the first at once.
    assert time.monotonic() - started < 3 * INTERVAL + 2.0
    assert samples[0].cpu_percent is None  # no rates without a previous frame
    assert_agrees_with_psutil(samples[-1])
    assert collector.dropped_frames == 0 and collector.garbage_lines == 0
    # df ran in the first frame only; later samples reuse its result.
    assert samples[1].filesystems == samples[0].filesystems


async def test_local_collector_agrees_with_psutil_and_the_remote_shape(
    pool: TransportPool,
) -> None:
    local = collector_for(Host(name="here", address="local"), None, INTERVAL, df_every=1)
    assert isinstance(local, LocalCollector)
    remote = RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL, df_every=1)
    local_samples, remote_samples = await asyncio.gather(take(local, 3), take(remote, 3))
    here, there = local_samples[-1], remote_samples[-1]
    assert_agrees_with_psutil(here)
    assert here.host == "here" and there.host == "testhost"
    # The same machine seen both ways: the same keys everywhere.
    assert (here.cpu_count, here.mem_total, here.swap_total) == (
        there.cpu_count,
        there.mem_total,
        there.swap_total,
    )
    assert set(here.disks) == set(there.disks)
    assert set(here.interfaces) == set(there.interfaces)
    assert {fs.mount for fs in here.filesystems} == {fs.mount for fs in there.filesystems}
    assert here.to_dict().keys() == there.to_dict().keys()


async def test_closing_the_stream_ends_the_loop_on_the_host(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    before = loops_of(sshd)  # loops of earlier tests may still be ending
    collector = RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL)
    stream = collector.samples()
    await asyncio.wait_for(anext(stream), 30)
    loops = await wait_for_loop(sshd, before)
    assert loops, "the collection loop is not running under the test sshd"
    await stream.aclose()
    assert await wait_until_loops_gone(loops) == set()
    # The connection stays pooled for other work.
    assert (await pool.for_host(TESTHOST).run("echo still")).stdout == "still\n"


async def test_a_dropped_connection_ends_the_stream_and_the_loop(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    before = loops_of(sshd)  # loops of earlier tests may still be ending
    collector = RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL)
    stream = collector.samples()
    received: list[RawSample] = []
    loops: set[int] = set()
    killed_at: float | None = None
    with pytest.raises(TransportError):
        async with asyncio.timeout(60):
            async for raw in stream:
                received.append(raw)
                if len(received) == 2:
                    loops = await wait_for_loop(sshd, before)
                    assert len(loops) == 1, f"expected this stream's loop alone, got {loops}"
                    for pid in loops:
                        assert sshd.kill_session_of(pid)
                    killed_at = boot_seconds()
    assert killed_at is not None and len(received) >= 2
    # Frames the loop wrote before the kill may still be in flight (the
    # client reads them after the drop, as many as the kill took intervals
    # on a loaded machine); none may come from after it: the stream ended
    # with the connection and nothing reconnected behind its back.
    late = [raw.uptime for raw in received if raw.uptime is None or raw.uptime > killed_at]
    assert late == [], f"frames stamped after the kill at {killed_at}: {late}"
    # Orphaned, the loop notices its closed output at its next write.
    assert await wait_until_loops_gone(loops) == set()


# -- top processes ---------------------------------------------------------------

BALLAST_BYTES = 256 << 20


@pytest.fixture
def ballast() -> Iterator[psutil.Process]:
    """A process of this test holding 256 MiB it never touches again.

    Its resident size is stable and larger than anything else the tests
    run, so it is in both top-by-memory lists, and ps and psutil must agree
    on it closely (a busy process's RSS moves between the two readings).
    """
    code = (
        f"import sys; data = b'x' * {BALLAST_BYTES}; "
        "print('ready', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait(30)


SPIN_BOUND = 50.0
IDLE_AGE = 6.0


@pytest.fixture
async def old_spinner() -> AsyncIterator[psutil.Process]:
    """A busy loop whose lifetime average is well below its current share.

    It waits idle on its stdin for :data:`IDLE_AGE` seconds of age, then
    spins until killed: over its lifetime it used under half a core as long
    as it has spun for less time than it idled, while over the last second
    it used all it was given.
    """
    code = "import sys; print('ready', flush=True); sys.stdin.readline()\nwhile True: pass"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        spinner = psutil.Process(proc.pid)
        async with asyncio.timeout(60):
            while time.time() - spinner.create_time() < IDLE_AGE:
                await asyncio.sleep(0.1)
            idle = sum(spinner.cpu_times()[:2])
            proc.stdin.write("go\n")
            proc.stdin.flush()
            # Spinning before any measurement starts.
            while sum(spinner.cpu_times()[:2]) < idle + 0.05:
                await asyncio.sleep(0.02)
        yield spinner
    finally:
        proc.kill()
        proc.wait(30)


def lifetime_share(proc: psutil.Process) -> float:
    """What ``ps`` shows as %CPU: CPU time over the process's age, in percent."""
    times = proc.cpu_times()
    return (times.user + times.system) / (time.time() - proc.create_time()) * 100.0


def same_user(from_ps: str, from_psutil: str) -> bool:
    """The same login, allowing for ``ps`` cutting names over 8 characters to ``name+``."""
    if from_ps.endswith("+") and len(from_ps) == 8:
        return from_psutil.startswith(from_ps[:-1]) and len(from_psutil) > 8
    return from_ps == from_psutil


async def test_top_processes_over_ssh_agree_with_psutil(
    pool: TransportPool, ballast: psutil.Process, old_spinner: psutil.Process
) -> None:
    rss_before = ballast.memory_info().rss
    remote, local = await asyncio.gather(
        top_processes(TESTHOST, pool.for_host(TESTHOST), timeout=60),
        top_processes(Host(name="here", address="local"), None, timeout=60),
    )
    # Read after both measurements: the highest the lifetime figure got.
    lifetime = lifetime_share(old_spinner)
    rss_after = ballast.memory_info().rss
    assert remote.error is None and local.error is None
    assert remote.host == "testhost" and local.host == "here"
    for result in (remote, local):
        assert 0 < len(result.by_cpu) <= 15 and 0 < len(result.by_memory) <= 15
        rss = [row.rss for row in result.by_memory]
        assert rss == sorted(rss, reverse=True)
        shares = [row.cpu_percent for row in result.by_cpu]
        assert shares == sorted(shares, reverse=True) and all(x > 0 for x in shares)
        # Both snapshots lie a sleep of CPU_WINDOW apart (uptime counts in 10 ms).
        assert result.cpu_window is not None and result.cpu_window >= CPU_WINDOW - 0.02

    # %CPU is the share over the last second, as top shows it, on both
    # sides: the spinner, idle most of its life, is listed busy, above what
    # its lifetime average (what ps prints) ever reached.
    assert lifetime < SPIN_BOUND, lifetime
    for result in (remote, local):
        spinning = [row for row in result.by_cpu if row.pid == old_spinner.pid]
        assert spinning, (result.host, result.by_cpu)
        assert spinning[0].cpu_percent >= SPIN_BOUND, (result.host, spinning[0], lifetime)
        assert spinning[0].command == old_spinner.name()[: len(spinning[0].command)]

    # The ballast, read by ps over SSH and by psutil: the same figures.
    remote_rows = {row.pid: row for row in remote.by_memory}
    local_rows = {row.pid: row for row in local.by_memory}
    assert ballast.pid in remote_rows and ballast.pid in local_rows
    low = min(rss_before, rss_after) - 1024 * 1024
    high = max(rss_before, rss_after) + 1024 * 1024
    assert rss_before >= BALLAST_BYTES
    for row in (remote_rows[ballast.pid], local_rows[ballast.pid]):
        assert low <= row.rss <= high, (row, rss_before, rss_after)
        assert same_user(row.user, local_rows[ballast.pid].user)
        # It sleeps on its stdin: no CPU in the window.
        assert row.cpu_percent == 0.0, row
    name = remote_rows[ballast.pid].command
    assert name and ballast.name().startswith(name)
    assert local_rows[ballast.pid].command == ballast.name()

    # Every process both lists show: the same user and name; the resident
    # sizes of the others move, so they are not compared.
    local_any = {row.pid: row for row in [*local.by_cpu, *local.by_memory]}
    common = [row for row in [*remote.by_cpu, *remote.by_memory] if row.pid in local_any]
    assert any(row.pid == old_spinner.pid for row in common)
    for row in common:
        other = local_any[row.pid]
        assert same_user(row.user, other.user), (row, other)
        if row.command.startswith("kworker/"):
            continue  # the kernel renames its workers by the work they pick up
        assert row.command == other.command[: len(row.command)], (row, other)


def test_df_every_frames() -> None:
    assert df_every_frames(30, 2.0) == 15
    assert df_every_frames(30, 0.5) == 60
    assert df_every_frames(1, 5.0) == 1
