"""Metric collectors against a real sshd on loopback and against psutil.

The sshd serves this very machine, so what the remote loop reads from
/proc over SSH must agree with what psutil reads locally at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from sshd_harness import SshdHarness

from itop_tui.domain.metrics import Sample, SampleBuilder
from itop_tui.domain.models import Host
from itop_tui.domain.procfs import FRAME_BEGIN, is_whole_disk
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


async def take(collector: Collector, count: int, timeout: float = 10.0) -> list[Sample]:
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


def pgrep_loops() -> set[int]:
    """Pids of every collection loop on this machine (``pgrep -f`` its marker)."""
    done = subprocess.run(["pgrep", "-f", FRAME_BEGIN], capture_output=True, text=True)
    return {int(pid) for pid in done.stdout.split()}


def loops_of(harness: SshdHarness) -> set[int]:
    """Collection loops started through this test sshd."""
    return pgrep_loops() & set(harness.session_processes())


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def kill_serving_sshd(harness: SshdHarness, loop_pid: int) -> list[int]:
    """SIGKILL the sshd session processes between the listener and a loop."""
    killed = []
    pid = parent_of(loop_pid)
    while pid is not None and pid not in (harness.pid, 0, 1):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        pid = parent_of(pid)
    return killed


async def wait_until_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    """Wait for the loops to end; return those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = pids & pgrep_loops()
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


async def wait_for_loop(harness: SshdHarness, timeout: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while not (found := loops_of(harness)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return found


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
    collector = RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL)
    stream = collector.samples()
    await asyncio.wait_for(anext(stream), 10)
    loops = await wait_for_loop(sshd)
    assert loops, "the collection loop is not running under the test sshd"
    await stream.aclose()
    assert await wait_until_gone(loops) == set()
    # The connection stays pooled for other work.
    assert (await pool.for_host(TESTHOST).run("echo still")).stdout == "still\n"


async def test_a_dropped_connection_ends_the_stream_and_the_loop(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    collector = RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL)
    stream = collector.samples()
    received = 0
    loops: set[int] = set()
    with pytest.raises(TransportError):
        async with asyncio.timeout(15):
            async for _raw in stream:
                received += 1
                if received == 2:
                    loops = await wait_for_loop(sshd)
                    assert loops
                    for pid in loops:
                        assert kill_serving_sshd(sshd, pid)
    assert received == 2
    # Orphaned, the loop notices its closed output at its next write.
    assert await wait_until_gone(loops) == set()


async def test_top_processes_over_ssh_agree_with_psutil(pool: TransportPool) -> None:
    remote, local = await asyncio.gather(
        top_processes(TESTHOST, pool.for_host(TESTHOST)),
        top_processes(Host(name="here", address="local"), None),
    )
    assert remote.error is None and local.error is None
    assert remote.host == "testhost" and local.host == "here"
    for result in (remote, local):
        assert 0 < len(result.by_cpu) <= 15 and 0 < len(result.by_memory) <= 15
        rss = [row.rss for row in result.by_memory]
        assert rss == sorted(rss, reverse=True)
    # The same process read by ps and by psutil: the same figures.
    local_rows = {row.pid: row for row in local.by_memory}
    common = [row for row in remote.by_memory if row.pid in local_rows]
    assert common, "no process among both top-by-memory lists"
    for row in common:
        other = local_rows[row.pid]
        assert row.command == other.command[: len(row.command)]
        assert abs(row.rss - other.rss) <= 0.1 * other.rss + 1024 * 1024
        with contextlib.suppress(psutil.NoSuchProcess):
            age = time.time() - psutil.Process(row.pid).create_time()
            # A lifetime average moves fast while the process is young.
            if age > 30:
                tolerance = max(2.0, 0.15 * other.cpu_percent)
                assert abs(row.cpu_percent - other.cpu_percent) <= tolerance


def test_df_every_frames() -> None:
    assert df_every_frames(30, 2.0) == 15
    assert df_every_frames(30, 0.5) == 60
    assert df_every_frames(1, 5.0) == 1
