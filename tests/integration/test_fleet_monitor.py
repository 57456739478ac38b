"""FleetMonitor against a real sshd, real psutil, real SQLite and JSON files.

Covers reconnection after a killed connection, no loop left on the host
after a drop or a stop, a CPU burn opening and resolving a Problem (audited,
restored across a restart of the monitor), rollups surviving a reopen, and
a dead host not delaying the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sshd_harness import SshdHarness, free_port, wait_until_gone

from itop_tui.domain.models import Host
from itop_tui.domain.procfs import FRAME_BEGIN
from itop_tui.domain.thresholds import DEFAULT_THRESHOLDS
from itop_tui.ops.fleet_monitor import (
    FleetMonitor,
    MonitorConfig,
    MonitorUpdate,
    ProblemUpdate,
    SampleUpdate,
    StateUpdate,
    collect_once,
)
from itop_tui.services.audit import AuditLog
from itop_tui.services.problem_repo import ProblemRepository
from itop_tui.services.rollup_store import RollupStore
from itop_tui.services.transport_pool import TransportPool
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

TESTHOST = Host(name="testhost", ssh_alias="testhost")
LOCAL = Host(name="here", address="local")
INTERVAL = 0.5
# Deadlines of next_update are this many times what an idle machine needs.
LOAD_FACTOR = 3
# Built-in thresholds off, so only what a test sets can open a problem.
NO_THRESHOLDS: dict[str, object] = dict.fromkeys(DEFAULT_THRESHOLDS)


@pytest.fixture
async def pool(trusted_settings: Settings) -> AsyncIterator[TransportPool]:
    transport_pool = TransportPool(trusted_settings)
    yield transport_pool
    await transport_pool.close()


async def next_update(
    queue: asyncio.Queue[MonitorUpdate],
    match: Callable[[MonitorUpdate], bool],
    timeout: float,
    what: str,
) -> MonitorUpdate:
    """The first update from ``queue`` that ``match`` accepts.

    ``timeout`` is what an idle machine needs with room to spare; the
    deadline is :data:`LOAD_FACTOR` times that, as CI machines run loaded.
    It only matters when the update never comes.
    """
    deadline = timeout * LOAD_FACTOR
    try:
        async with asyncio.timeout(deadline):
            while True:
                update = await queue.get()
                if match(update):
                    return update
    except TimeoutError:
        raise AssertionError(f"no update within {deadline:g}s: {what}") from None


def state_is(host: str, state: str) -> Callable[[MonitorUpdate], bool]:
    return lambda u: isinstance(u, StateUpdate) and u.host == host and u.status.state == state


def problem_event(kind: str) -> Callable[[MonitorUpdate], bool]:
    return lambda u: isinstance(u, ProblemUpdate) and u.kind == kind


# -- processes of the remote loop ---------------------------------------------


def loops_of(harness: SshdHarness) -> set[int]:
    """Collection loops started through this test sshd."""
    return harness.session_processes_running(FRAME_BEGIN)


async def wait_until_loops_gone(pids: set[int]) -> set[int]:
    """Wait for the loops to end; those still running after a generous deadline."""
    return await wait_until_gone(pids, FRAME_BEGIN)


async def no_loops_left(harness: SshdHarness) -> None:
    """Wait out loops of earlier tests that are still ending."""
    assert await wait_until_loops_gone(loops_of(harness)) == set()


# -- CPU burn -----------------------------------------------------------------


@contextlib.contextmanager
def cpu_burn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Busy loops on every core, killed on exit whatever happens."""
    burners = [
        subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield burners
    finally:
        stop_burn(burners)


def stop_burn(burners: list[subprocess.Popen[bytes]]) -> None:
    for proc in burners:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def audit_actions(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [
        (event["action"], event["target"])
        for event in map(json.loads, path.read_text().splitlines())
    ]


# -- tests --------------------------------------------------------------------


async def test_killed_connection_shows_unreachable_then_recovers(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    await no_loops_left(sshd)
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS)
    monitor = FleetMonitor([TESTHOST], pool, config, backoff_initial=0.5)
    updates = monitor.subscribe()
    assert monitor.status("testhost").state == "connecting"
    await monitor.start()
    try:
        await next_update(updates, state_is("testhost", "up"), 10, "testhost up")
        await next_update(updates, lambda u: isinstance(u, SampleUpdate), 5, "a sample")
        first_loops = loops_of(sshd)
        assert len(first_loops) == 1, "expected one collection loop for one host"
        (loop_pid,) = first_loops
        assert sshd.kill_session_of(loop_pid)

        down = await next_update(
            updates, state_is("testhost", "unreachable"), 10, "testhost unreachable"
        )
        assert isinstance(down, StateUpdate)
        assert down.status.error and "connection lost" in down.status.error
        assert down.status.failures == 1 and down.status.next_retry is not None
        # The orphaned loop ends by itself.
        assert await wait_until_loops_gone(first_loops) == set()

        await next_update(updates, state_is("testhost", "up"), 10, "testhost back up")
        sample = await next_update(
            updates, lambda u: isinstance(u, SampleUpdate), 5, "a sample after reconnecting"
        )
        assert isinstance(sample, SampleUpdate) and sample.host == "testhost"
        assert monitor.status("testhost").error is None
        second_loops = loops_of(sshd)
        assert second_loops and not second_loops & first_loops
    finally:
        await monitor.stop()
    # stop() closed the stream: no loop is left on the host.
    assert await wait_until_loops_gone(second_loops) == set()
    assert loops_of(sshd) == set()


async def test_pause_closes_streams_and_resume_and_interval_restart_them(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    await no_loops_left(sshd)
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS)
    async with FleetMonitor([TESTHOST], pool, config) as monitor:
        updates = monitor.subscribe()
        await next_update(updates, lambda u: isinstance(u, SampleUpdate), 10, "a sample")
        loops = loops_of(sshd)
        assert len(loops) == 1
        monitor.pause()
        assert monitor.paused and monitor.status("testhost").state == "paused"
        assert await wait_until_loops_gone(loops) == set()
        monitor.resume()
        await next_update(updates, state_is("testhost", "up"), 10, "up after resume")
        old_loops = loops_of(sshd)
        monitor.set_interval(0.25)
        # The old loop ends once its channel is closed: from then on every
        # sample comes from the new loop.
        assert await wait_until_loops_gone(old_loops) == set()
        while not updates.empty():
            updates.get_nowait()
        await next_update(updates, lambda u: isinstance(u, SampleUpdate), 5, "a sample")
        new_loops = loops_of(sshd)
        assert len(new_loops) == 1 and not new_loops & old_loops
        # The host's uptime stamps each frame, so gaps are the loop's own
        # cadence, whatever the client's delays. At 0.5 s no gap is under
        # 0.5 s (the loop sleeps that long); at 0.25 s none is under 0.25 s,
        # and one under 0.5 s shows the new cadence (a loaded machine may
        # slow a few rounds, so up to 40 are read).
        stamps: list[float] = []
        while not any(b - a < 0.49 for a, b in zip(stamps, stamps[1:], strict=False)):
            assert len(stamps) < 40, f"no gap under 0.5 s between frames stamped {stamps}"
            update = await next_update(
                updates, lambda u: isinstance(u, SampleUpdate), 5, "samples at 0.25 s"
            )
            assert isinstance(update, SampleUpdate) and update.sample.uptime is not None
            stamps.append(update.sample.uptime)
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        assert min(gaps) >= 0.24, gaps
        assert loops_of(sshd) == new_loops  # the old stream was closed, not left beside


async def wait_for_cpu_headroom(
    monitor: FleetMonitor, updates: asyncio.Queue[MonitorUpdate], limit: float
) -> None:
    """Wait for three samples in a row under ``limit`` % CPU, else skip the test.

    A burn can only be told from other load when the CPU has room: on a
    machine already pegged by other work, the problem would open before the
    burn and never resolve after it. (The caller stops the monitor.)
    """
    calm = 0
    deadline = time.monotonic() + 30
    while calm < 3:
        if monitor.open_problems() or time.monotonic() > deadline:
            pytest.skip(
                f"the CPU was over {limit:g}% before the burn (other load on this "
                "machine): this test needs idle CPU, rerun it when the machine is quieter"
            )
        update = await next_update(updates, lambda u: isinstance(u, SampleUpdate), 5, "a sample")
        assert isinstance(update, SampleUpdate)
        cpu = update.sample.cpu_percent
        calm = calm + 1 if cpu is not None and cpu < limit else 0


async def test_cpu_burn_opens_a_problem_that_resolves_across_a_restart(
    pool: TransportPool, trusted_settings: Settings, sshd: SshdHarness
) -> None:
    data_dir = trusted_settings.data_dir
    audit_path = data_dir / "audit.jsonl"
    audit = AuditLog(audit_path, actor="tester", origin="cli")
    thresholds = {
        **NO_THRESHOLDS,
        "cpu_percent": {"warning": 90, "critical": None, "min_duration": 2},
    }
    config = MonitorConfig(interval=INTERVAL, thresholds=thresholds)

    cpu_samples: list[float] = []

    def count_cpu(update: MonitorUpdate) -> None:
        if isinstance(update, SampleUpdate) and update.sample.cpu_percent is not None:
            cpu_samples.append(update.sample.cpu_percent)

    def make_monitor() -> FleetMonitor:
        made = FleetMonitor.for_data_dir([TESTHOST], pool, config, data_dir, audit)
        made.add_listener(count_cpu)
        return made

    monitor = make_monitor()
    updates = monitor.subscribe()
    await monitor.start()
    try:
        await next_update(updates, state_is("testhost", "up"), 10, "testhost up")
        await wait_for_cpu_headroom(monitor, updates, limit=90)
    except BaseException:
        await monitor.stop()
        raise
    burn_started = time.time()
    with cpu_burn() as burners:
        try:
            opened = await next_update(updates, problem_event("opened"), 15, "problem opened")
            assert isinstance(opened, ProblemUpdate) and opened.event is not None
            problem = opened.problem
            assert problem is not None and problem.id.startswith("PRB-")
            assert (problem.host, problem.metric, problem.severity) == (
                "testhost",
                "cpu_percent",
                "warning",
            )
            # Opened only once the breach, which began with the burn, had
            # lasted the minimum duration.
            assert opened.event.since >= burn_started - INTERVAL
            assert opened.event.time - opened.event.since >= 2.0
            assert opened.event.value is not None and opened.event.value >= 90
            assert ("problem.open", problem.id) in audit_actions(audit_path)
            assert [o.metric for o in monitor.open_problems()] == ["cpu_percent"]
        finally:
            await monitor.stop()

        # Still burning and still open; a new monitor takes the problem over.
        repo = ProblemRepository.in_data_dir(data_dir)
        assert [p.id for p in repo.open_problems()] == [problem.id]
        monitor = make_monitor()
        updates = monitor.subscribe()
        await monitor.start()
        try:
            assert [o.metric for o in monitor.open_problems()] == ["cpu_percent"]
            await next_update(updates, state_is("testhost", "up"), 10, "testhost up again")
            stop_burn(burners)
            resolved = await next_update(
                updates, problem_event("resolved"), 30, "problem resolved after the burn"
            )
            assert isinstance(resolved, ProblemUpdate) and resolved.problem is not None
            assert resolved.problem.id == problem.id
            assert resolved.problem.resolved is not None
        finally:
            await monitor.stop()

    actions = audit_actions(audit_path)
    assert actions.count(("problem.open", problem.id)) == 1
    assert ("problem.resolve", problem.id) in actions
    assert [a for a, _ in actions if a == "problem.open"] == ["problem.open"]
    assert AuditLog(audit_path, "tester", "cli").verify().ok
    assert repo.open_problems() == []
    stored = repo.get(problem.id)
    assert stored is not None and stored.resolved == resolved.problem.resolved

    # The breach and the minutes collected reached SQLite and survive a reopen.
    with RollupStore.in_data_dir(data_dir) as store:
        breaches = [b for b in store.breaches() if b.host == "testhost"]
        assert [(b.metric, b.severity) for b in breaches] == [("cpu_percent", "warning")]
        assert breaches[0].resolved is not None
        assert abs(breaches[0].opened - problem.opened_epoch) < 0.01
        rows = store.rollups(hosts=["testhost"], metrics=["cpu_percent"])
    # Both runs' samples, the second run's added to the minute the first one
    # wrote as it stopped rather than replacing it.
    assert sum(row.count for row in rows) == len(cpu_samples)
    assert max(row.max for row in rows) == pytest.approx(max(cpu_samples))
    assert min(row.min for row in rows) == pytest.approx(min(cpu_samples))
    mean = sum(row.avg * row.count for row in rows) / sum(row.count for row in rows)
    assert mean == pytest.approx(sum(cpu_samples) / len(cpu_samples))


async def test_acknowledge_is_stored_and_audited(
    pool: TransportPool, trusted_settings: Settings
) -> None:
    data_dir = trusted_settings.data_dir
    audit_path = data_dir / "audit.jsonl"
    repo = ProblemRepository.in_data_dir(data_dir)
    problem, _ = repo.open("testhost", "fs_max_percent", "critical", time.time() - 60)
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS)
    audit = AuditLog(audit_path, actor="alice", origin="tui")
    monitor = FleetMonitor.for_data_dir([TESTHOST], pool, config, data_dir, audit)
    updates = monitor.subscribe()
    async with monitor:
        acked = await monitor.acknowledge(problem.id, "disk cleanup \x1b[1mstarted")
        update = await next_update(updates, problem_event("acknowledged"), 2, "ack update")
    assert isinstance(update, ProblemUpdate) and update.problem == acked
    assert (acked.acknowledged_by, acked.note) == ("alice", "disk cleanup started")
    stored = repo.get(problem.id)
    assert stored is not None and stored.acknowledged_by == "alice"
    assert ("problem.acknowledge", problem.id) in audit_actions(audit_path)


async def test_a_dead_host_does_not_delay_the_others_and_rollups_persist(
    pool: TransportPool, trusted_settings: Settings, sshd: SshdHarness
) -> None:
    dead = Host(name="dead", address="127.0.0.1", port=free_port(), user=sshd.user)
    data_dir = trusted_settings.data_dir
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS)
    monitor = FleetMonitor.for_data_dir([dead, TESTHOST, LOCAL], pool, config, data_dir, None)
    arrivals: dict[str, list[float]] = {"testhost": [], "here": [], "dead": []}
    states: list[tuple[str, str]] = []

    def listen(update: MonitorUpdate) -> None:
        if isinstance(update, SampleUpdate):
            arrivals[update.host].append(time.monotonic())
        elif isinstance(update, StateUpdate):
            states.append((update.host, update.status.state))

    monitor.add_listener(listen)
    updates = monitor.subscribe()
    started = time.monotonic()
    async with monitor:
        down = await next_update(updates, state_is("dead", "unreachable"), 15, "dead unreachable")
        assert isinstance(down, StateUpdate) and down.status.error
        assert "refused" in down.status.error
        while len(arrivals["testhost"]) < 6 or len(arrivals["here"]) < 6:
            await asyncio.sleep(0.1)
            assert time.monotonic() - started < 15, "live hosts too slow"
        statuses = monitor.statuses()
    assert arrivals["dead"] == []
    assert statuses["testhost"].state == "up" and statuses["here"].state == "up"
    assert statuses["dead"].state == "unreachable"
    for name in ("testhost", "here"):
        # The first sample came at once, and then one per interval, while the
        # dead host's connection attempts were failing.
        assert arrivals[name][0] - started < 3.0
        gaps = [b - a for a, b in zip(arrivals[name], arrivals[name][1:], strict=False)]
        assert max(gaps) < INTERVAL * 3, f"{name}: gaps {gaps}"
        latest = monitor.latest(name)
        assert latest is not None and latest.cpu_percent is not None
        history = monitor.history.host(name).last("cpu_percent", 100)
        assert len(history.values) == len(arrivals[name])
    with RollupStore.in_data_dir(data_dir) as store:
        rows = store.rollups()
    hosts = {row.host for row in rows}
    assert hosts == {"testhost", "here"}
    counted = sum(r.count for r in rows if r.host == "testhost" and r.metric == "mem_percent")
    assert counted == len(arrivals["testhost"])


async def test_collect_once_gives_rates_for_live_hosts_and_status_for_dead(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    dead = Host(name="dead", address="127.0.0.1", port=free_port(), user=sshd.user)
    result = await collect_once([TESTHOST, LOCAL, dead], pool, interval=INTERVAL, timeout=15)
    for name in ("testhost", "here"):
        status, sample = result[name]
        assert status.state == "up" and sample is not None
        assert sample.cpu_percent is not None and sample.mem_total
    status, sample = result["dead"]
    assert status.state == "unreachable" and sample is None
    await no_loops_left(sshd)


async def test_a_host_that_stops_sending_turns_stale_then_up(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    await no_loops_left(sshd)
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS, stale_after_intervals=3)
    async with FleetMonitor([TESTHOST], pool, config) as monitor:
        updates = monitor.subscribe()
        await next_update(updates, lambda u: isinstance(u, SampleUpdate), 10, "a sample")
        (loop_pid,) = loops_of(sshd)
        os.kill(loop_pid, signal.SIGSTOP)  # a frozen host: the connection stays open
        try:
            stale = await next_update(updates, state_is("testhost", "stale"), 5, "stale")
            assert isinstance(stale, StateUpdate)
            silent = time.time() - (stale.status.last_sample or 0)
            assert silent >= 3 * INTERVAL
        finally:
            os.kill(loop_pid, signal.SIGCONT)
        await next_update(updates, state_is("testhost", "up"), 5, "up again")


async def test_refused_authentication_waits_for_an_explicit_retry(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    stranger = Host(name="stranger", address=sshd.host, port=sshd.port, user="no-such-user-itop")
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS)
    async with FleetMonitor([stranger], pool, config, backoff_initial=0.1) as monitor:
        updates = monitor.subscribe()
        down = await next_update(updates, state_is("stranger", "unreachable"), 10, "auth refused")
        assert isinstance(down, StateUpdate)
        assert down.status.error and "authentication refused" in down.status.error
        # Never retried on its own (a retry cannot fix credentials)...
        assert down.status.next_retry is None
        await asyncio.sleep(0.5)
        assert monitor.status("stranger").failures == 1
        # ...but at once when asked.
        monitor.retry("stranger")
        again = await next_update(
            updates, lambda u: isinstance(u, StateUpdate) and u.status.failures == 2, 10, "retry"
        )
        assert isinstance(again, StateUpdate) and again.status.state == "unreachable"


async def test_set_hosts_starts_new_hosts_and_stops_removed_ones(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    await no_loops_left(sshd)
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS)
    async with FleetMonitor([LOCAL], pool, config) as monitor:
        updates = monitor.subscribe()
        await next_update(updates, state_is("here", "up"), 10, "here up")
        monitor.set_hosts([LOCAL, TESTHOST])
        await next_update(updates, state_is("testhost", "up"), 10, "testhost added")
        assert len(loops_of(sshd)) == 1
        monitor.set_hosts([LOCAL])
        assert [h.name for h in monitor.hosts] == ["here"]
        assert "testhost" not in monitor.statuses() and monitor.latest("testhost") is None
        assert await wait_until_loops_gone(loops_of(sshd)) == set()
        await next_update(updates, lambda u: isinstance(u, SampleUpdate), 5, "here goes on")


TESTHOST2 = Host(name="testhost2", ssh_alias="testhost2")


async def test_quick_interval_changes_leave_one_loop_per_host(
    pool: TransportPool, sshd: SshdHarness
) -> None:
    """Restarts that overlap a channel still opening must not orphan its loop."""
    await no_loops_left(sshd)
    config = MonitorConfig(interval=INTERVAL, thresholds=NO_THRESHOLDS)
    async with FleetMonitor([TESTHOST, TESTHOST2], pool, config) as monitor:
        updates = monitor.subscribe()
        while {s.state for s in monitor.statuses().values()} != {"up"}:
            await next_update(updates, lambda u: isinstance(u, StateUpdate), 10, "both up")
        # Key presses a few milliseconds apart: each restart lands while the
        # channels of the previous one are still opening.
        # Pauses of different lengths hit each step of the opening.
        seconds = [0.4, 0.3, 0.2, 0.1] * 6
        for step, pause in enumerate([0.0, 0.001, 0.003, 0.006, 0.01, 0.02] * 4):
            monitor.set_interval(seconds[step] + (0.05 if step % 2 else 0.0))
            await asyncio.sleep(pause)
        # The last press settles on the usual interval, so a loaded machine
        # is not judged stale at 0.15 s.
        monitor.set_interval(INTERVAL)
        for name in ("testhost", "testhost2"):
            await next_update(
                updates, lambda u, n=name: isinstance(u, SampleUpdate) and u.host == n, 10, name
            )
        deadline = time.monotonic() + 30
        while len(loops := loops_of(sshd)) != 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(loops) == 2, f"{len(loops)} collection loops for 2 hosts"
        # Only the newest streams feed the monitor: both hosts stay up.
        assert {s.state for s in monitor.statuses().values()} == {"up"}
    assert await wait_until_loops_gone(loops) == set()
