"""The SQLite rollup store, on real database files, and the rollup records it keeps."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itop_tui.domain.rollup import (
    Breach,
    MetricSummary,
    Rollup,
    RollupError,
    minute_of,
    summarize,
    weighted_percentile,
)
from itop_tui.services.rollup_store import (
    DB_FILENAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    RollupStore,
    RollupStoreError,
)

T0 = 1_714_521_600  # 2024-05-01T00:00:00Z, a whole minute


def roll(host: str, metric: str, minute: int, lo: float, avg: float, hi: float, p95: float,
         count: int = 30) -> Rollup:  # fmt: skip
    return Rollup(host, metric, minute, lo, avg, hi, p95, count)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RollupStore]:
    with RollupStore.in_data_dir(tmp_path) as opened:
        yield opened


# -- the records ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"minute": T0 + 1}, "multiple of 60"),
        ({"count": 0}, "positive integer"),
        ({"avg": math.nan}, "finite"),
        ({"max": math.inf}, "finite"),
        ({"min": 9.0}, "min <= avg"),
        ({"p95": 11.0}, "min <= avg"),
        ({"host": ""}, "must not be empty"),
    ],
)
def test_rollup_refuses_impossible_values(fields: dict[str, object], complaint: str) -> None:
    base: dict[str, object] = {
        "host": "web01", "metric": "cpu", "minute": T0,
        "min": 1.0, "avg": 5.0, "max": 10.0, "p95": 9.0, "count": 30,
    }  # fmt: skip
    with pytest.raises(RollupError, match=complaint):
        Rollup(**{**base, **fields})  # type: ignore[arg-type]


def test_breach_refuses_resolution_before_opening() -> None:
    with pytest.raises(RollupError, match="before opened"):
        Breach("web01", "cpu", "critical", opened=100.0, resolved=99.0)


def test_minute_of_floors_to_the_minute() -> None:
    assert minute_of(T0 + 59.9) == T0
    assert minute_of(T0 + 60) == T0 + 60


def test_weighted_percentile_counts_each_value_weight_times() -> None:
    # As a list: 1 x4, 2 x1 -> 5 values; rank ceil(0.8 * 5) = 4 -> 1, rank 5 -> 2.
    assert weighted_percentile([(2.0, 1), (1.0, 4)], 80) == 1.0
    assert weighted_percentile([(2.0, 1), (1.0, 4)], 81) == 2.0
    with pytest.raises(RollupError):
        weighted_percentile([], 95)


# -- writing and reading back ------------------------------------------------------


def test_upsert_is_idempotent_and_keeps_the_latest_figures(store: RollupStore) -> None:
    rows = [roll("web01", "cpu", T0 + 60 * i, 1.0, 2.0, 3.0, 2.5) for i in range(5)]
    assert store.add_rollups(rows) == 5
    assert store.add_rollups(rows) == 5
    assert store.rollups() == rows

    replacement = roll("web01", "cpu", T0 + 120, 4.0, 5.0, 6.0, 5.5, count=12)
    store.add_rollups([replacement])
    stored = store.rollups()
    assert len(stored) == 5
    assert stored[2] == replacement


def test_empty_batch_writes_nothing(store: RollupStore) -> None:
    assert store.add_rollups([]) == 0
    assert store.rollups() == []


def test_rows_survive_close_and_reopen(tmp_path: Path) -> None:
    rows = [
        roll("db01", "mem", T0, 40.0, 41.5, 43.0, 42.9),
        roll("web01", "cpu", T0 + 60, 0.0, 12.25, 99.5, 80.0, count=29),
    ]
    with RollupStore.in_data_dir(tmp_path) as first:
        first.add_rollups(rows)
        first.record_breach(Breach("web01", "cpu", "warning", opened=T0 + 61.5))

    path = tmp_path / DB_FILENAME
    assert path.exists()
    with RollupStore(path) as second:
        assert second.rollups() == rows
        assert second.breaches() == [Breach("web01", "cpu", "warning", T0 + 61.5, None)]
        assert second.schema_version == SCHEMA_VERSION

    # WAL mode is a property of the file, seen by any other connection.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_rollups_filter_by_host_metric_and_half_open_period(store: RollupStore) -> None:
    rows = [
        roll(host, metric, T0 + 60 * i, 1.0, 1.0, 1.0, 1.0)
        for host in ("a", "b", "c")
        for metric in ("cpu", "mem")
        for i in range(4)
    ]
    store.add_rollups(rows)

    picked = store.rollups(hosts=["a", "c"], metrics=["mem"], since=T0 + 60, until=T0 + 180)
    assert [(r.host, r.metric, r.minute) for r in picked] == [
        ("a", "mem", T0 + 60),
        ("a", "mem", T0 + 120),
        ("c", "mem", T0 + 60),
        ("c", "mem", T0 + 120),
    ]
    assert store.rollups(hosts=[]) == []
    assert len(store.rollups(since=T0 + 180)) == 6


# -- statistics ------------------------------------------------------------------


def test_summary_figures_checked_by_hand(store: RollupStore) -> None:
    store.add_rollups(
        [
            roll("web01", "cpu", T0, 10.0, 20.0, 40.0, 35.0, count=30),
            roll("web01", "cpu", T0 + 60, 5.0, 50.0, 90.0, 80.0, count=30),
            roll("web01", "cpu", T0 + 120, 0.0, 10.0, 20.0, 15.0, count=60),
            roll("web01", "mem", T0, 70.0, 71.0, 72.0, 72.0, count=30),
            roll("db01", "cpu", T0, 1.0, 2.0, 3.0, 3.0, count=30),
        ]
    )
    summaries = store.summarize(hosts=["web01"], since=T0, until=T0 + 180)
    # avg = (20*30 + 50*30 + 10*60) / 120 = 2700 / 120 = 22.5
    # p95: the p95 values weighted by count, sorted: 15 (x60), 35 (x30), 80 (x30);
    # cumulative 60, 90, 120; rank ceil(0.95 * 120) = 114 falls in 80.
    assert summaries == [
        MetricSummary("web01", "cpu", min=0.0, avg=22.5, p95=80.0, max=90.0, samples=120),
        MetricSummary("web01", "mem", min=70.0, avg=71.0, p95=72.0, max=72.0, samples=30),
    ]
    # The period is half open: the minute starting at T0 + 120 is left out.
    cpu = store.summarize(hosts=["web01"], since=T0, until=T0 + 120)[0]
    assert (cpu.min, cpu.avg, cpu.p95, cpu.max, cpu.samples) == (5.0, 35.0, 80.0, 90.0, 60)
    assert [s.host for s in store.summarize()] == ["db01", "web01", "web01"]


def test_one_bad_minute_does_not_become_the_period_p95(store: RollupStore) -> None:
    # 20 quiet minutes and one spike minute, 30 samples each: 630 samples,
    # rank ceil(0.95 * 630) = 599 lies within the quiet minutes (600 samples).
    quiet = [roll("web01", "cpu", T0 + 60 * i, 5.0, 8.0, 12.0, 10.0) for i in range(20)]
    store.add_rollups([*quiet, roll("web01", "cpu", T0 + 1200, 90.0, 97.0, 100.0, 100.0)])
    assert store.summarize()[0].p95 == 10.0

    # A second spike minute puts 60 of 630 samples (9.5%) high: now p95 is high.
    store.add_rollups([roll("web01", "cpu", T0 + 1260, 90.0, 97.0, 100.0, 100.0)])
    assert store.summarize()[0].p95 == 100.0


rollup_rows = st.lists(
    st.builds(
        lambda host, metric, minute, values, count: Rollup(
            host, metric, T0 + 60 * minute, values[0], values[1], values[3], values[2], count
        ),
        st.sampled_from(["web01", "web02", "db|01"]),
        st.sampled_from(["cpu", "mem", "net.rx.eth0"]),
        st.integers(0, 30),
        st.lists(
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=4, max_size=4
        ).map(sorted),
        st.integers(1, 120),
    ),
    max_size=60,
    unique_by=lambda r: (r.host, r.metric, r.minute),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rollup_rows, bounds=st.tuples(st.integers(0, 31), st.integers(0, 31)))
def test_sql_summary_agrees_with_the_reference_definition(
    rows: list[Rollup], bounds: tuple[int, int]
) -> None:
    since, until = T0 + 60 * min(bounds), T0 + 60 * max(bounds)
    with tempfile.TemporaryDirectory() as folder, RollupStore.in_data_dir(Path(folder)) as store:
        store.add_rollups(rows)
        got = store.summarize(since=since, until=until)
    expected = summarize(r for r in rows if since <= r.minute < until)
    assert [(s.host, s.metric, s.min, s.p95, s.max, s.samples) for s in got] == [
        (s.host, s.metric, s.min, s.p95, s.max, s.samples) for s in expected
    ]
    for mine, reference in zip(got, expected, strict=True):
        assert mine.avg == pytest.approx(reference.avg, rel=1e-9, abs=1e-6)


# -- breaches ----------------------------------------------------------------------


def test_breach_recorded_open_then_resolved(store: RollupStore) -> None:
    opened = Breach("web01", "cpu", "critical", opened=T0 + 10.5)
    store.record_breach(opened)
    assert store.breaches() == [opened]

    resolved = Breach("web01", "cpu", "critical", opened=T0 + 10.5, resolved=T0 + 400.0)
    store.record_breach(resolved)
    # Recording it as open again (a restart replaying state) keeps the resolution.
    store.record_breach(opened)
    assert store.breaches() == [resolved]


def test_breaches_are_those_holding_during_the_period(store: RollupStore) -> None:
    before = Breach("a", "cpu", "warning", opened=T0, resolved=T0 + 100)
    straddling = Breach("b", "cpu", "warning", opened=T0 + 50, resolved=T0 + 300)
    still_open = Breach("c", "mem", "critical", opened=T0 + 150)
    after = Breach("d", "cpu", "warning", opened=T0 + 1000, resolved=T0 + 1100)
    for breach in (after, still_open, before, straddling):
        store.record_breach(breach)

    assert store.breaches(since=T0 + 200, until=T0 + 1000) == [straddling, still_open]
    assert store.breaches(since=T0 + 200, until=T0 + 1000, hosts=["c"]) == [still_open]
    assert store.breaches() == [before, straddling, still_open, after]


# -- retention --------------------------------------------------------------------


def test_prune_deletes_what_is_older_than_the_retention(store: RollupStore) -> None:
    now = T0 + 2 * 86400 + 30  # cutoff with 2 days' retention: T0 + 30
    store.add_rollups(
        [
            roll("web01", "cpu", T0 - 60, 1.0, 1.0, 1.0, 1.0),  # ended before the cutoff
            roll("web01", "cpu", T0, 1.0, 1.0, 1.0, 1.0),  # holds the cutoff: kept
            roll("web01", "cpu", T0 + 86400, 1.0, 1.0, 1.0, 1.0),
        ]
    )
    old = Breach("web01", "cpu", "warning", opened=T0 - 500, resolved=T0 - 400)
    old_but_open = Breach("web01", "mem", "warning", opened=T0 - 500)
    recent = Breach("web01", "cpu", "critical", opened=T0 - 500, resolved=T0 + 40)
    for breach in (old, old_but_open, recent):
        store.record_breach(breach)

    result = store.prune(retention_days=2, now=now)

    assert (result.rollups, result.breaches) == (1, 1)
    assert [r.minute for r in store.rollups()] == [T0, T0 + 86400]
    assert store.breaches() == [recent, old_but_open]  # same opened: by metric
    assert store.prune(retention_days=2, now=now) == type(result)(0, 0)


def test_prune_refuses_a_retention_of_nothing(store: RollupStore) -> None:
    with pytest.raises(RollupStoreError, match="more than 0 days"):
        store.prune(retention_days=0, now=T0)


# -- schema and bad files ---------------------------------------------------------


def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    RollupStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(RollupStoreError, match=r"schema version 99 is newer.*upgrade itop"):
        RollupStore(path)


def test_migration_steps_run_once_and_keep_the_data(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    with RollupStore(path) as v1:
        v1.add_rollups([roll("web01", "cpu", T0, 1.0, 2.0, 3.0, 2.5)])

    ran: list[int] = []

    def add_notes(conn: sqlite3.Connection) -> None:
        ran.append(1)
        conn.execute("CREATE TABLE notes (text TEXT)")

    later = (*MIGRATIONS, add_notes)
    with RollupStore(path, migrations=later) as v2:
        assert v2.schema_version == 2
        assert v2.rollups() == [roll("web01", "cpu", T0, 1.0, 2.0, 3.0, 2.5)]
    with RollupStore(path, migrations=later):
        pass
    assert ran == [1]


def test_failed_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    RollupStore(path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        conn.execute("THIS IS NOT SQL")

    with pytest.raises(RollupStoreError, match=str(path)):
        RollupStore(path, migrations=(*MIGRATIONS, broken))
    with RollupStore(path) as again:
        assert again.schema_version == 1
    raw = sqlite3.connect(path)
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    raw.close()
    assert "half" not in tables


def test_a_file_that_is_not_a_database_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    path.write_bytes(b"not sqlite at all\n" * 100)
    with pytest.raises(RollupStoreError, match=rf"{path}: not a usable metrics database"):
        RollupStore(path)


def test_closed_store_raises_its_own_error(tmp_path: Path) -> None:
    store = RollupStore.in_data_dir(tmp_path)
    store.close()
    with pytest.raises(RollupStoreError, match="cannot"):
        store.add_rollups([roll("web01", "cpu", T0, 1.0, 1.0, 1.0, 1.0)])
    with pytest.raises(RollupStoreError, match="cannot read"):
        store.rollups()


# -- concurrency -------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from itop_tui.domain.rollup import Breach, Rollup
    from itop_tui.services.rollup_store import RollupStore

    path, host, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    # Both processes open (and so create and migrate) the new file at once.
    store = RollupStore(path)
    for batch in range(int(sys.argv[4])):
        minute = 1714521600 + 60 * batch
        rows = [Rollup(host, f"m{i}", minute, 1.0, 2.0, 3.0, 2.5, 30) for i in range(20)]
        # Both processes also write one shared series; last writer wins.
        rows.append(Rollup("shared", "cpu", minute, 1.0, 2.0, 3.0, 2.5, 30))
        store.add_rollups(rows)
        # Resolved within its minute: spans apart stay apart (overlapping ones merge).
        store.record_breach(Breach(host, "m0", "warning", float(minute), minute + 30.0))
        store.summarize(since=minute)  # a reader in between the writes
    store.close()
    """
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "data" / DB_FILENAME
    go = tmp_path / "go"
    batches = 150
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), host, str(go), str(batches)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in ("alpha", "beta")
    ]
    go.touch()
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        assert err == ""

    with RollupStore(path) as store:
        for host in ("alpha", "beta"):
            rows = store.rollups(hosts=[host])
            assert len(rows) == batches * 20
            assert {r.minute for r in rows} == {T0 + 60 * b for b in range(batches)}
            assert len(store.breaches(hosts=[host])) == batches
        assert len(store.rollups(hosts=["shared"])) == batches


def _open_when_all_ready(path: str, ready: Barrier, results: Queue) -> None:
    ready.wait()
    try:
        RollupStore(path).close()
        results.put("ok")
    except RollupStoreError as exc:
        results.put(str(exc))


def test_processes_creating_the_file_at_once_all_open_it(tmp_path: Path) -> None:
    # Switching a new file to WAL races; SQLite tells the loser "locked" at
    # once, without its busy timeout. Many rounds make the race likely.
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(30):
        path = str(tmp_path / f"round{round_}.sqlite")
        ready = context.Barrier(3)
        results = context.Queue()
        openers = [
            context.Process(target=_open_when_all_ready, args=(path, ready, results))
            for _ in range(3)
        ]
        for opener in openers:
            opener.start()
        outcomes += [results.get(timeout=60) for _ in openers]
        for opener in openers:
            opener.join(timeout=60)
    assert outcomes == ["ok"] * 90


def test_threads_sharing_one_store_lose_nothing(store: RollupStore) -> None:
    errors: list[BaseException] = []

    def write(host: str) -> None:
        try:
            for i in range(100):
                store.add_rollups([roll(host, "cpu", T0 + 60 * i, 1.0, 1.0, 1.0, 1.0)])
                store.summarize(hosts=[host])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"h{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [s.samples for s in store.summarize()] == [3000] * 4


def test_overlapping_breaches_of_two_monitors_merge_into_one(store: RollupStore) -> None:
    # The TUI and itop collect see the same breach a second apart.
    store.record_breach(Breach("web1", "cpu_percent", "warning", 1000.0))
    store.record_breach(Breach("web1", "cpu_percent", "warning", 1001.0))
    assert store.breaches() == [Breach("web1", "cpu_percent", "warning", 1000.0)]
    # Resolving the stored one (either monitor does) closes it; the other
    # monitor's later resolution of its own span widens it.
    store.record_breach(Breach("web1", "cpu_percent", "warning", 1000.0, 1060.0))
    store.record_breach(Breach("web1", "cpu_percent", "warning", 1001.0, 1061.0))
    assert store.breaches() == [Breach("web1", "cpu_percent", "warning", 1000.0, 1061.0)]
    # Another level, host, or a later breach not overlapping stays apart.
    store.record_breach(Breach("web1", "cpu_percent", "critical", 1001.0))
    store.record_breach(Breach("web2", "cpu_percent", "warning", 1001.0))
    store.record_breach(Breach("web1", "cpu_percent", "warning", 2000.0))
    assert len(store.breaches()) == 4
