"""Ring-buffer history and per-minute rollups."""

from __future__ import annotations

import math
import random
import statistics
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itop_tui.domain.history import (
    HISTORY_METRICS,
    FleetHistory,
    HostHistory,
    MinuteRollup,
    percentile,
)
from itop_tui.domain.metrics import Sample

T0 = 1_764_000_000.0  # a minute boundary: 1764000000 / 60 is whole


def hour_of_samples(history: HostHistory, seconds: int = 3600, start: float = T0) -> None:
    for second in range(seconds):
        history.append(
            Sample(
                host="web01", time=start + second, cpu_percent=second % 100, mem_percent=50.0,
                swap_percent=0.0, load1=1.5, disk_read_bps=1e6, disk_write_bps=2e6,
                disk_busiest_util=30.0, net_rx_bps=1e5, net_tx_bps=1e4,
            )
        )  # fmt: skip


def test_one_hour_at_one_second_stays_under_200_kb_with_every_overhead() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = HostHistory.for_duration(3600, 1.0)
        hour_of_samples(history)
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(history) == history.capacity == 3600
    assert history.nbytes() <= measured < 120_000, f"{measured} bytes for one hour at 1 s"
    # Appending more never grows it, and an hour stays an hour.
    for second in range(3600, 7300):
        history.append_values(T0 + second, {"cpu_percent": 1.0})
    assert history.nbytes() <= measured
    times = history.window("cpu_percent", 10_000).times
    assert T0 + 7299 - 3600 - 5 <= times[0] <= T0 + 7299 - 3600 + 5
    assert abs(len(history) - 3600) <= 5


def buckets_of(series: tuple[list[float], list[float | None]], start: float, end: float
               ) -> dict[int, list[float | None]]:
    """Values by 5-second bucket (aligned to the epoch) of the entries in [start, end)."""
    grouped: dict[int, list[float | None]] = {}
    for time, value in zip(*series, strict=True):
        if start <= time < end:
            grouped.setdefault(math.floor(time / 5), []).append(value)
    return grouped


@pytest.mark.parametrize("seed", range(5))
def test_older_entries_keep_each_bucket_max_mean_and_count(seed: int) -> None:
    rng = random.Random(seed)
    tiered = HostHistory.for_duration(3600, 1.0)
    exact = HostHistory(3600)
    time = T0
    for _ in range(3600):
        time += rng.choice([0.5, 1.0, 1.0, 1.0, 1.5, 7.0])
        values = {
            "cpu_percent": None if rng.random() < 0.1 else rng.uniform(0, 100),
            "net_rx_bps": rng.choice([0.0, rng.uniform(0, 1e9)]),
        }
        tiered.append_values(time, values)
        exact.append_values(time, values)
    assert tiered.latest_time == exact.latest_time
    # The newest 16 minutes are exact, entry by entry.
    assert tiered.window("cpu_percent", 900) == exact.window("cpu_percent", 900)
    assert tiered.last("net_rx_bps", 500) == exact.last("net_rx_bps", 500)
    # Whole buckets only: those wholly older than the newest 16 minutes.
    old_end = math.floor((time - 960) / 5) * 5 - 5
    for metric in ("cpu_percent", "net_rx_bps"):
        ours, theirs = tiered.window(metric, 10_000), exact.window(metric, 10_000)
        assert ours.times == sorted(ours.times)
        start = (math.floor(max(ours.times[0], theirs.times[0]) / 5) + 1) * 5
        got, want = buckets_of(ours, start, old_end), buckets_of(theirs, start, old_end)
        assert got.keys() == want.keys()
        for bucket, expected in want.items():
            kept = got[bucket]
            assert len(kept) == len(expected)
            assert kept.count(None) == expected.count(None)
            numbers = [v for v in expected if v is not None]
            stored = [v for v in kept if v is not None]
            if numbers:
                assert max(stored) == pytest.approx(max(numbers), rel=1e-6)
                assert statistics.fmean(stored) == pytest.approx(
                    statistics.fmean(numbers), rel=1e-5, abs=1e-3
                )
                assert min(stored) >= min(numbers) - 1e-3 * max(1.0, max(numbers))


def test_an_hours_average_and_maximum_are_kept() -> None:
    tiered, exact = HostHistory.for_duration(3600, 1.0), HostHistory(3600)
    hour_of_samples(tiered)
    hour_of_samples(exact)
    ours = [v for v in tiered.window("cpu_percent", 3600).values if v is not None]
    theirs = [v for v in exact.window("cpu_percent", 3600).values if v is not None]
    assert len(ours) == len(theirs)
    assert max(ours) == max(theirs)
    assert statistics.fmean(ours) == pytest.approx(statistics.fmean(theirs), rel=1e-6)


def test_short_or_slow_histories_are_kept_entry_by_entry() -> None:
    assert HostHistory.for_duration(900, 1.0).nbytes() < HostHistory.for_duration(3600, 1.0).nbytes()
    for history in (HostHistory.for_duration(900, 1.0), HostHistory.for_duration(3600, 5.0)):
        for step in range(history.capacity + 3):
            history.append_values(T0 + step, {"load1": float(step)})
        assert len(history) == history.capacity
        assert history.last("load1", 2).values == [
            float(history.capacity + 1), float(history.capacity + 2)
        ]


def test_clearing_and_rebasing_a_bucketed_history() -> None:
    history = HostHistory(40, full=10, interval=1.0)
    for step in range(40):
        history.append_values(T0 + step, {"load1": float(step)})
    assert len(history) == 40
    before = history.window("load1", 100)
    history._rebase()
    assert history.window("load1", 100) == pytest.approx(before)
    history.clear()
    assert len(history) == 0 and history.latest_time is None
    history.append_values(T0, {"load1": 1.0})
    assert history.last("load1", 5) == ([T0], [1.0])


def test_last_returns_newest_oldest_first_across_the_wrap() -> None:
    history = HostHistory(5)
    for step in range(8):
        history.append_values(T0 + step, {"cpu_percent": float(step)})
    series = history.last("cpu_percent", 3)
    assert series.values == [5.0, 6.0, 7.0]
    assert series.times == [T0 + 5, T0 + 6, T0 + 7]
    assert history.last("cpu_percent", 99).values == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert history.last("cpu_percent", 0).values == []
    assert history.latest_time == T0 + 7


def test_missing_values_come_back_as_none() -> None:
    history = HostHistory(4)
    history.append_values(T0, {"cpu_percent": None, "load1": 2.5})
    history.append(Sample(host="h", time=T0 + 1, cpu_percent=12.5))
    assert history.last("cpu_percent", 2).values == [None, 12.5]
    assert history.last("load1", 2).values == [2.5, None]


def test_window_by_seconds() -> None:
    history = HostHistory.for_duration(600, 2.0)
    for step in range(100):
        history.append_values(T0 + 2 * step, {"net_rx_bps": float(step)})
    latest = T0 + 198
    window = history.window("net_rx_bps", 10)
    assert window.times == [latest - 10, latest - 8, latest - 6, latest - 4, latest - 2, latest]
    assert history.window("net_rx_bps", 10, now=latest + 6).values == [97.0, 98.0, 99.0]
    assert history.window("net_rx_bps", 10, now=latest + 60).values == []
    assert len(history.window("net_rx_bps", 10_000).values) == 100


def test_empty_history_and_unknown_metric() -> None:
    history = HostHistory(3)
    assert history.latest_time is None
    assert history.window("cpu_percent", 60) == ([], [])
    assert history.last("cpu_percent", 5) == ([], [])
    with pytest.raises(KeyError, match="procs"):
        history.last("procs", 1)
    with pytest.raises(ValueError):
        HostHistory(0)


def test_clock_stepping_back_keeps_times_ordered() -> None:
    history = HostHistory(4)
    history.append_values(T0 + 10, {"cpu_percent": 1.0})
    history.append_values(T0 + 5, {"cpu_percent": 2.0})
    assert history.last("cpu_percent", 2).times == [T0 + 10, T0 + 10]


def test_float32_precision_is_enough_for_rates() -> None:
    history = HostHistory(2)
    history.append_values(T0, {"disk_read_bps": 123_456_789.0, "cpu_percent": 33.3})
    (value,) = history.last("disk_read_bps", 1).values
    assert value == pytest.approx(123_456_789.0, rel=1e-7)
    assert history.last("cpu_percent", 1).values[0] == pytest.approx(33.3, rel=1e-6)


def test_times_survive_years_of_running() -> None:
    history = HostHistory(10)
    year = 365 * 86400
    for step in range(30):
        history.append_values(T0 + step * 0.75 * year / 30 * 3, {"load1": float(step)})
    series = history.last("load1", 10)
    assert series.values == [float(v) for v in range(20, 30)]
    expected = [T0 + step * 0.75 * year / 30 * 3 for step in range(20, 30)]
    assert series.times == pytest.approx(expected, abs=0.01)


def test_a_host_silent_for_months_starts_over() -> None:
    history = HostHistory(3)
    history.append_values(T0, {"load1": 1.0})
    history.append_values(T0 + 400 * 86400, {"load1": 2.0})  # > 2**31 centiseconds later
    assert history.last("load1", 3) == ([T0 + 400 * 86400], [2.0])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=50),
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=120),
)
def test_ring_keeps_the_newest_capacity_values(capacity: int, values: list[float]) -> None:
    history = HostHistory(capacity)
    for step, value in enumerate(values):
        history.append_values(T0 + step, {"net_tx_bps": value})
    kept = history.last("net_tx_bps", capacity).values
    expected = values[-capacity:] if values else []
    assert kept == pytest.approx(expected, rel=1e-6)
    assert len(history) == min(capacity, len(values))


def test_fleet_history_creates_and_forgets_hosts() -> None:
    fleet = FleetHistory(seconds=60, interval=1)
    fleet.append(Sample(host="a", time=T0, cpu_percent=1.0))
    fleet.append(Sample(host="b", time=T0, cpu_percent=2.0))
    assert fleet.hosts() == ["a", "b"]
    assert fleet.host("a").capacity == 60
    assert fleet.host("b").last("cpu_percent", 1).values == [2.0]
    fleet.forget("a")
    assert fleet.hosts() == ["b"]
    assert set(HISTORY_METRICS) <= set(Sample(host="x", time=0).values())


# --------------------------------------------------------------------------
# Rollups


def test_minute_rollup_statistics() -> None:
    rollup = MinuteRollup("web01", metrics=("cpu_percent", "load1"))
    values = [float(v) for v in range(1, 31)]  # 30 samples at 2 s
    done = []
    for index, value in enumerate(values):
        done += rollup.add(T0 + 2 * index, {"cpu_percent": value, "load1": None})
    assert done == []
    (row,) = rollup.add(T0 + 60, {"cpu_percent": 99.0})
    assert (row.host, row.metric, row.minute, row.count) == ("web01", "cpu_percent", int(T0), 30)
    assert row.min == 1.0 and row.max == 30.0
    assert row.avg == pytest.approx(statistics.fmean(values))
    assert row.p95 == 29.0  # nearest rank: the 29th of 30 sorted values
    (last,) = rollup.flush()
    assert (last.minute, last.count, last.max) == (int(T0) + 60, 1, 99.0)


def test_rollup_skips_gaps_and_late_values() -> None:
    rollup = MinuteRollup("h", metrics=("mem_percent",))
    rollup.add(T0 + 5, {"mem_percent": 40.0})
    (row,) = rollup.add(T0 + 600, {"mem_percent": 60.0})  # ten minutes of silence
    assert row.minute == int(T0) and row.count == 1
    assert rollup.add(T0 + 30, {"mem_percent": 10.0}) == []  # clock stepped back
    assert rollup.late == 1
    (row,) = rollup.flush()
    assert row.minute == int(T0) + 600 and row.min == 60.0
    assert rollup.flush() == []
    assert rollup.add(T0 + 610, {"mem_percent": 1.0}) == []  # the flushed minute is closed
    assert rollup.late == 2
    assert rollup.add(T0 + 660, {"mem_percent": 70.0}) == []
    (row,) = rollup.add(T0 + 720, {"mem_percent": 80.0})
    assert row.minute == int(T0) + 660 and row.count == 1 and row.max == 70.0


def test_rollup_of_samples_and_nan() -> None:
    rollup = MinuteRollup("h")
    rollup.add_sample(Sample(host="h", time=T0, cpu_percent=10.0, load1=1.0))
    rollup.add(T0 + 1, {"cpu_percent": math.nan, "load1": math.inf})
    rows = {row.metric: row for row in rollup.flush()}
    assert set(rows) == {"cpu_percent", "load1"}
    assert rows["cpu_percent"].count == 1 and rows["load1"].count == 1
    with pytest.raises(ValueError):
        MinuteRollup("")


@given(
    st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=200)
)
def test_percentile_is_a_member_between_min_and_max(values: list[float]) -> None:
    ordered = sorted(values)
    p95 = percentile(ordered, 0.95)
    assert p95 in ordered
    assert sum(v <= p95 for v in ordered) >= 0.95 * len(ordered)
    assert sum(v < p95 for v in ordered) < 0.95 * len(ordered)
