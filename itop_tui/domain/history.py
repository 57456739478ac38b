"""Recent metric history per host, and per-minute rollups.

History is kept in fixed-size ring buffers, preallocated, so appending
never allocates: one ``array('f')`` per metric and one ``array('I')`` of
times. Missing values are stored as NaN and come back as ``None``.

An hour at 1 s would take 3,600 slots x 10 arrays x 4 bytes (141 KiB) per
host. :meth:`HostHistory.for_duration` keeps the newest 16 minutes (the
drill-down's 15-minute window and a bucket more) at full resolution and
folds older entries into 5-second buckets holding, per metric, the maximum,
the mean and how many values they summarize: about 85 KiB for the hour.
A bucket is read back as that many entries whose maximum and mean are the
bucket's, so graphs (maximum per column) and window averages over the hour
stay as they were; only the instants within a 5 s bucket are approximated.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from itop_tui.domain.metrics import METRIC_NAMES, Sample
from itop_tui.domain.rollup import MINUTE, Rollup

# What the sparklines and drill-down graphs show. load5/load15 are smoothed
# load1 and their current values are in the latest sample; procs and
# derived metrics are in the rollups only.
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

# Full resolution for the newest FULL_RESOLUTION_SECONDS; older entries in
# buckets of BUCKET_SECONDS, when that saves at least half of their slots.
FULL_RESOLUTION_SECONDS = 960.0
BUCKET_SECONDS = 5.0

# Times are stored as centiseconds after a base time in unsigned 32-bit
# slots; past 2**31 the base moves forward (an hour of history always fits).
_TICKS_PER_SECOND = 100
_REBASE_AFTER = 2**31
_MAX_COUNT = 2**16 - 1


class Series(NamedTuple):
    """Times (epoch seconds, oldest first) and the values at those times."""

    times: list[float]
    values: list[float | None]


class _Buckets:
    """Ring of fixed-period buckets: per metric the maximum, mean and count of its values.

    ``first``/``last`` are the ticks of the oldest and newest entry folded
    into a bucket, ``count`` how many entries (with or without a value).
    """

    def __init__(self, slots: int, metrics: Sequence[str]) -> None:
        self.slots = slots
        self.first = array("I", bytes(4 * slots))
        self.last = array("I", bytes(4 * slots))
        self.count = array("H", bytes(2 * slots))
        self.maximum = {name: array("f", bytes(4 * slots)) for name in metrics}
        self.mean = {name: array("f", bytes(4 * slots)) for name in metrics}
        self.valid = {name: array("H", bytes(2 * slots)) for name in metrics}
        self.next = 0
        self.used = 0
        self.entries = 0  # entries summarized by the buckets held
        self.newest_bucket: int | None = None  # bucket number of the newest slot

    def arrays(self) -> Iterator[array[int] | array[float]]:
        yield self.first
        yield self.last
        yield self.count
        for name in self.maximum:
            yield self.maximum[name]
            yield self.mean[name]
            yield self.valid[name]

    def slot(self, age_index: int) -> int:
        """Slot of the ``age_index``-th bucket held, 0 being the oldest."""
        return (self.next - self.used + age_index) % self.slots

    def clear(self) -> None:
        self.next = self.used = self.entries = 0
        self.newest_bucket = None

    def fold(
        self, ticks: int, bucket: int, series: Mapping[str, array[float]], index: int
    ) -> None:
        """Add the entry at ``index`` of ``series``, at ``ticks``, in bucket number ``bucket``."""
        newest = (self.next - 1) % self.slots
        if self.used and bucket == self.newest_bucket and self.count[newest] < _MAX_COUNT:
            slot = newest
        else:
            slot = self.next
            if self.used == self.slots:
                self.entries -= self.count[slot]
            else:
                self.used += 1
            self.next = (slot + 1) % self.slots
            self.first[slot] = ticks
            self.newest_bucket = bucket
            self.count[slot] = 0
            for name in self.maximum:
                self.valid[name][slot] = 0
                self.maximum[name][slot] = math.nan
                self.mean[name][slot] = math.nan
        self.last[slot] = ticks
        self.count[slot] += 1
        self.entries += 1
        for name, values in series.items():
            value = values[index]
            if math.isnan(value):
                continue
            valid = self.valid[name][slot]
            if valid == 0:
                self.maximum[name][slot] = value
                self.mean[name][slot] = value
            else:
                maximum = self.maximum[name]
                if value > maximum[slot]:
                    maximum[slot] = value
                mean = self.mean[name]
                mean[slot] += (value - mean[slot]) / (valid + 1)
            self.valid[name][slot] = valid + 1

    def expand(self, slot: int, metric: str) -> tuple[list[int], list[float | None]]:
        """The entries of one bucket: evenly spread times; values keeping its max and mean.

        The first valid entry is the maximum, the other valid ones share what
        is left of the sum (never below the smallest value folded in), and
        entries without a value come last.
        """
        count = self.count[slot]
        first, last = self.first[slot], self.last[slot]
        if count == 1:
            times = [last]
        else:
            step = (last - first) / (count - 1)
            times = [round(first + step * i) for i in range(count)]
        valid = self.valid[metric][slot]
        values: list[float | None] = [None] * count
        if valid:
            maximum = float(self.maximum[metric][slot])
            values[0] = maximum
            if valid > 1:
                rest = (valid * float(self.mean[metric][slot]) - maximum) / (valid - 1)
                for index in range(1, valid):
                    values[index] = rest
        return times, values


class HostHistory:
    """Ring buffers of one host's recent metrics.

    Times are kept to 10 ms and never go backwards: a time earlier than the
    latest one (the client's clock was stepped back) is stored as the latest.
    With ``full`` set (below ``capacity``), only the newest ``full`` entries
    are kept one by one; older ones go into ``bucket_seconds`` buckets
    (see the module notes), enough of them to hold ``capacity`` entries at
    ``interval`` seconds apart.
    """

    def __init__(
        self,
        capacity: int,
        metrics: Sequence[str] = HISTORY_METRICS,
        *,
        full: int | None = None,
        interval: float = 1.0,
        bucket_seconds: float = BUCKET_SECONDS,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.metrics = tuple(metrics)
        fine = capacity if full is None else max(1, min(full, capacity))
        self._fine = fine
        self._times = array("I", bytes(4 * fine))
        self._series = {name: array("f", [math.nan]) * fine for name in self.metrics}
        self._bucket_ticks = round(bucket_seconds * _TICKS_PER_SECOND)
        self._buckets: _Buckets | None = None
        if fine < capacity:
            if not interval > 0 or self._bucket_ticks < 1:
                raise ValueError("interval and bucket_seconds must be positive")
            slots = math.ceil((capacity - fine) * interval / bucket_seconds) + 1
            self._buckets = _Buckets(slots, self.metrics)
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
        """A history holding ``seconds`` worth of samples taken every ``interval``.

        Entries older than :data:`FULL_RESOLUTION_SECONDS` are kept in
        :data:`BUCKET_SECONDS` buckets when a bucket holds at least two of them.
        """
        if interval <= 0 or seconds <= 0:
            raise ValueError("seconds and interval must be positive")
        capacity = max(1, math.ceil(seconds / interval))
        full = math.ceil(FULL_RESOLUTION_SECONDS / interval)
        if full >= capacity or BUCKET_SECONDS / interval < 2:
            return cls(capacity, metrics)
        return cls(capacity, metrics, full=full, interval=interval)

    def __len__(self) -> int:
        return self._count + (self._buckets.entries if self._buckets else 0)

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
        if self._buckets is not None and self._count == self._fine:
            self._fold(slot)
        self._times[slot] = ticks
        self._latest_ticks = ticks
        for name, series in self._series.items():
            value = values.get(name)
            series[slot] = math.nan if value is None else value
        self._next = (slot + 1) % self._fine
        self._count = min(self._count + 1, self._fine)

    def _fold(self, slot: int) -> None:
        """Move the full-resolution entry in ``slot`` (the oldest) into the buckets."""
        buckets = self._buckets
        assert buckets is not None and self._base is not None
        ticks = self._times[slot]
        buckets.fold(ticks, self._bucket_of(ticks), self._series, slot)

    def _bucket_of(self, ticks: int) -> int:
        # Buckets are aligned to the epoch, whatever the base.
        assert self._base is not None
        return math.floor(
            (self._base * _TICKS_PER_SECOND + ticks) / self._bucket_ticks
        )

    def _rebase(self) -> int:
        """Move the base to the oldest stored time; return the ticks removed."""
        assert self._base is not None
        buckets = self._buckets
        if buckets is not None and buckets.used:
            shift = buckets.first[buckets.slot(0)]
        else:
            shift = self._times[self._slot(0)] if self._count else self._latest_ticks
        for index in range(self._count):
            slot = self._slot(index)
            self._times[slot] -= shift
        if buckets is not None:
            for index in range(buckets.used):
                slot = buckets.slot(index)
                buckets.first[slot] -= shift
                buckets.last[slot] -= shift
        self._base += shift / _TICKS_PER_SECOND
        self._latest_ticks -= shift
        return shift

    def clear(self) -> None:
        """Forget every entry."""
        self._base = None
        self._latest_ticks = 0
        self._next = 0
        self._count = 0
        if self._buckets is not None:
            self._buckets.clear()

    def _slot(self, age_index: int) -> int:
        """Slot of the ``age_index``-th full-resolution entry, 0 being the oldest."""
        return (self._next - self._count + age_index) % self._fine

    def _series_for(self, metric: str) -> array[float]:
        try:
            return self._series[metric]
        except KeyError:
            raise KeyError(f"no history kept for metric {metric!r}") from None

    def _newest_first(self, metric: str) -> Iterator[tuple[int, float | None]]:
        """(ticks, value) of every entry, newest first."""
        series = self._series_for(metric)
        for index in range(self._count - 1, -1, -1):
            slot = self._slot(index)
            value = series[slot]
            yield self._times[slot], None if math.isnan(value) else value
        buckets = self._buckets
        if buckets is None:
            return
        for index in range(buckets.used - 1, -1, -1):
            times, values = buckets.expand(buckets.slot(index), metric)
            yield from zip(reversed(times), reversed(values), strict=True)

    def _as_series(self, entries: list[tuple[int, float | None]]) -> Series:
        base = self._base or 0.0
        entries.reverse()
        return Series(
            [base + ticks / _TICKS_PER_SECOND for ticks, _ in entries],
            [value for _, value in entries],
        )

    def last(self, metric: str, n: int) -> Series:
        """The newest ``n`` entries of a metric, oldest first."""
        entries: list[tuple[int, float | None]] = []
        if n > 0:
            for entry in self._newest_first(metric):
                entries.append(entry)
                if len(entries) >= n:
                    break
        return self._as_series(entries)

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
        entries: list[tuple[int, float | None]] = []
        for entry in self._newest_first(metric):
            if entry[0] < start_ticks:
                break
            entries.append(entry)
        return self._as_series(entries)

    def nbytes(self) -> int:
        """Memory held by the buffers (the arrays' own sizes)."""
        arrays: list[array[int] | array[float]] = [self._times, *self._series.values()]
        if self._buckets is not None:
            arrays += self._buckets.arrays()
        return sum(sys.getsizeof(a) for a in arrays)


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
