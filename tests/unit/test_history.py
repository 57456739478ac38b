"""Ring-buffer history and per-minute rollups."""

from __future__ import annotations

import math
import statistics
import sys

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


def test_one_hour_at_one_second_stays_under_200_kb() -> None:
    history = HostHistory.for_duration(3600, 1.0)
    for second in range(3600):
        history.append(
            Sample(
                host="web01", time=T0 + second, cpu_percent=second % 100, mem_percent=50.0,
                swap_percent=0.0, load1=1.5, disk_read_bps=1e6, disk_write_bps=2e6,
                disk_busiest_util=30.0, net_rx_bps=1e5, net_tx_bps=1e4,
            )
        )  # fmt: skip
    assert len(history) == history.capacity == 3600
    arrays = [history._times, *history._series.values()]
    measured = sum(sys.getsizeof(a) for a in arrays)
    assert measured == history.nbytes()
    assert measured < 200_000, f"{measured} bytes for one hour at 1 s"
    # Appending more never grows it.
    for second in range(3600, 3700):
        history.append_values(T0 + second, {"cpu_percent": 1.0})
    assert history.nbytes() == measured


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
