"""Recent metric history per host, and per-minute rollups.

History is kept in fixed-size ring buffers: one ``array('f')`` per metric
and one ``array('I')`` of times, preallocated, so a host with an hour of
history at 1 s costs 3600 x 4 bytes per metric plus the times, and appending
never allocates. Missing values are stored as NaN and come back as ``None``.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from itop_tui.domain.metrics import METRIC_NAMES, Sample
from itop_tui.domain.rollup import MINUTE, Rollup

# What the sparklines and drill-down graphs show. load5/load15 are smoothed
# load1 and their current values are in the latest sample; procs and
# derived metrics are in the rollups only. Nine float32 series plus times
# keep an hour at 1 s at about 141 KiB.
HISTORY_METRICS = (
    "cpu_percent",
    "mem_percent",
    "swap_percent",
    "load1",
    "disk_read_bps",
    "disk_write_bps",
    "disk_busiest_util",
    "net_rx_bps",
    "net_tx_bps",
)
ROLLUP_METRICS = METRIC_NAMES

# Times are stored as centiseconds after a base time in unsigned 32-bit
# slots; past 2**31 the base moves forward (an hour of history always fits).
_TICKS_PER_SECOND = 100
_REBASE_AFTER = 2**31


class Series(NamedTuple):
    """Times (epoch seconds, oldest first) and the values at those times."""

    times: list[float]
    values: list[float | None]


class HostHistory:
    """Ring buffers of one host's recent metrics.

    Times are kept to 10 ms and never go backwards: a time earlier than the
    latest one (the client's clock was stepped back) is stored as the latest.
    """

    def __init__(self, capacity: int, metrics: Sequence[str] = HISTORY_METRICS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.metrics = tuple(metrics)
        self._times = array("I", bytes(4 * capacity))
        self._series = {name: array("f", [math.nan]) * capacity for name in self.metrics}
        self._base: float | None = None
        self._latest_ticks = 0
        self._next = 0
        self._count = 0

    @classmethod
    def for_duration(
        cls,
        seconds: float = 3600.0,
        interval: float = 2.0,
        metrics: Sequence[str] = HISTORY_METRICS,
    ) -> HostHistory:
        """A history holding ``seconds`` worth of samples taken every ``interval``."""
        if interval <= 0 or seconds <= 0:
            raise ValueError("seconds and interval must be positive")
        return cls(max(1, math.ceil(seconds / interval)), metrics)

    def __len__(self) -> int:
        return self._count

    @property
    def latest_time(self) -> float | None:
        """Time of the newest entry, or ``None`` when empty."""
        if self._base is None or self._count == 0:
            return None
        return self._base + self._latest_ticks / _TICKS_PER_SECOND

    def append(self, sample: Sample) -> None:
        """Record a sample's metrics at its time."""
        self.append_values(sample.time, sample.values())

    def append_values(self, time: float, values: Mapping[str, float | None]) -> None:
        """Record metric values at ``time``; metrics not given are stored as missing."""
        if not math.isfinite(time):
            raise ValueError(f"time must be finite, got {time!r}")
        if self._base is None:
            self._base = time
        ticks = max(round((time - self._base) * _TICKS_PER_SECOND), self._latest_ticks)
        if ticks >= _REBASE_AFTER:
            ticks -= self._rebase()
            if ticks >= _REBASE_AFTER:
                # Everything stored is months old: start over from this time.
                self.clear()
                self._base = time
                ticks = 0
        slot = self._next
        self._times[slot] = ticks
        self._latest_ticks = ticks
        for name, series in self._series.items():
            value = values.get(name)
            series[slot] = math.nan if value is None else value
        self._next = (slot + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def _rebase(self) -> int:
        """Move the base to the oldest stored time; return the ticks removed."""
        assert self._base is not None
        shift = self._times[self._slot(0)] if self._count else self._latest_ticks
        for index in range(self._count):
            slot = self._slot(index)
            self._times[slot] -= shift
        self._base += shift / _TICKS_PER_SECOND
        self._latest_ticks -= shift
        return shift

    def clear(self) -> None:
        """Forget every entry."""
        self._base = None
        self._latest_ticks = 0
        self._next = 0
        self._count = 0

    def _slot(self, age_index: int) -> int:
        """Slot of the ``age_index``-th stored entry, 0 being the oldest."""
        return (self._next - self._count + age_index) % self.capacity

    def _series_for(self, metric: str) -> array[float]:
        try:
            return self._series[metric]
        except KeyError:
            raise KeyError(f"no history kept for metric {metric!r}") from None

    def _collect(self, metric: str, first: int) -> Series:
        series = self._series_for(metric)
        assert self._base is not None or self._count == 0
        base = self._base or 0.0
        times: list[float] = []
        values: list[float | None] = []
        for index in range(first, self._count):
            slot = self._slot(index)
            times.append(base + self._times[slot] / _TICKS_PER_SECOND)
            value = series[slot]
            values.append(None if math.isnan(value) else value)
        return Series(times, values)

    def last(self, metric: str, n: int) -> Series:
        """The newest ``n`` entries of a metric, oldest first."""
        n = max(0, min(n, self._count))
        return self._collect(metric, self._count - n)

    def window(self, metric: str, seconds: float, now: float | None = None) -> Series:
        """Entries of a metric from the last ``seconds`` before ``now``.

        ``now`` defaults to the latest entry's time, so a host that stopped
        reporting still shows its last stretch.
        """
        self._series_for(metric)
        end = self.latest_time if now is None else now
        if end is None or self._base is None:
            return Series([], [])
        start_ticks = (end - seconds - self._base) * _TICKS_PER_SECOND
        first = self._count
        while first > 0 and self._times[self._slot(first - 1)] >= start_ticks:
            first -= 1
        return self._collect(metric, first)

    def nbytes(self) -> int:
        """Memory held by the buffers (the arrays' own sizes)."""
        return sys.getsizeof(self._times) + sum(sys.getsizeof(a) for a in self._series.values())


class FleetHistory:
    """A :class:`HostHistory` per host, created on first use."""

    def __init__(
        self,
        seconds: float = 3600.0,
        interval: float = 2.0,
        metrics: Sequence[str] = HISTORY_METRICS,
    ) -> None:
        self.seconds = seconds
        self.interval = interval
        self.metrics = tuple(metrics)
        self._hosts: dict[str, HostHistory] = {}

    def host(self, name: str) -> HostHistory:
        """The history of one host."""
        history = self._hosts.get(name)
        if history is None:
            history = HostHistory.for_duration(self.seconds, self.interval, self.metrics)
            self._hosts[name] = history
        return history

    def append(self, sample: Sample) -> None:
        """Record a sample in its host's history."""
        self.host(sample.host).append(sample)

    def forget(self, name: str) -> None:
        """Drop a host's history (the host left the inventory)."""
        self._hosts.pop(name, None)

    def hosts(self) -> list[str]:
        """Names of the hosts with a history."""
        return list(self._hosts)


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0-1) of values sorted ascending."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class MinuteRollup:
    """Accumulates one host's values and yields per-minute statistics.

    A minute's rollups (:class:`itop_tui.domain.rollup.Rollup`, p95 by
    nearest rank) come out when the first value of a later minute arrives,
    or on :meth:`flush`. Values for a minute already rolled up
    (the clock stepped back) are counted in ``late`` and dropped.
    """

    def __init__(self, host: str, metrics: Sequence[str] = ROLLUP_METRICS) -> None:
        if not host:
            raise ValueError("a rollup needs a host name")
        self.host = host
        self.metrics = tuple(metrics)
        self.late = 0
        self._minute: int | None = None  # the minute being accumulated
        self._floor: int | None = None  # earliest minute still accepted
        self._values = {name: array("d") for name in self.metrics}

    def add_sample(self, sample: Sample) -> list[Rollup]:
        """Add a sample; return the rollups of a minute it completes."""
        return self.add(sample.time, sample.values())

    def add(self, time: float, values: Mapping[str, float | None]) -> list[Rollup]:
        """Add values seen at ``time``; return the rollups of a minute it completes."""
        if not math.isfinite(time):
            return []
        minute = math.floor(time / MINUTE)
        if self._floor is not None and minute < self._floor:
            self.late += 1
            return []
        done: list[Rollup] = []
        if self._minute is not None and minute > self._minute:
            done = self.flush()
        self._minute = self._floor = minute
        for name, bucket in self._values.items():
            value = values.get(name)
            if value is not None and math.isfinite(value):
                bucket.append(value)
        return done

    def flush(self) -> list[Rollup]:
        """Roll up the current minute as it stands and close it.

        Values for a closed minute that arrive later count as late, so a
        minute is never rolled up twice.
        """
        if self._minute is None:
            return []
        start = self._minute * MINUTE
        rollups = [
            _rollup(self.host, name, start, bucket)
            for name, bucket in self._values.items()
            if len(bucket)
        ]
        for bucket in self._values.values():
            del bucket[:]
        self._floor = self._minute + 1
        self._minute = None
        return rollups


def _rollup(host: str, metric: str, minute: int, values: Iterable[float]) -> Rollup:
    ordered = sorted(values)
    return Rollup(
        host=host,
        metric=metric,
        minute=minute,
        count=len(ordered),
        min=ordered[0],
        avg=math.fsum(ordered) / len(ordered),
        max=ordered[-1],
        p95=percentile(ordered, 0.95),
    )
