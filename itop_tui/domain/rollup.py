"""One-minute metric rollups, threshold breaches, and statistics over a period.

A :class:`Rollup` condenses the samples of one metric of one host during one
minute into min, avg, max, p95 and the sample count. Reports over days are
computed from these rows, never from raw samples, so the statistics of a
period are necessarily estimates built from per-minute figures:

- ``min`` and ``max`` are exact (the min of the minute mins, the max of the
  minute maxes);
- ``avg`` is exact: the per-minute averages weighted by their sample counts;
- ``p95`` is an estimate: the count-weighted 95th percentile (nearest rank) of
  the per-minute p95 values. Each minute's p95 stands for that minute's
  samples. The estimate equals the true p95 when the minutes share one
  distribution, follows a sustained rise that covers more than 5% of the
  period, and always lies between the period's min and max. Spikes that
  stay under 5% of each minute's samples are invisible to it, as they are to
  a true p95. It is not the max of the per-minute p95 values, which would let
  one bad minute in a week stand for the whole week.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MINUTE = 60
P95_PERCENT = 95


class RollupError(ValueError):
    """A rollup or breach holds values that cannot be stored or summarized."""


@dataclass(frozen=True, slots=True)
class Rollup:
    """The samples of one metric of one host during one minute.

    ``minute`` is the start of the minute in epoch seconds (a multiple of 60).
    """

    host: str
    metric: str
    minute: int
    min: float
    avg: float
    max: float
    p95: float
    count: int

    def __post_init__(self) -> None:
        where = f"rollup {self.host!r}/{self.metric!r} at {self.minute}"
        if not self.host or not self.metric:
            raise RollupError(f"{where}: host and metric must not be empty")
        if isinstance(self.minute, bool) or not isinstance(self.minute, int):
            raise RollupError(f"{where}: minute must be an integer epoch second")
        if self.minute % MINUTE:
            raise RollupError(f"{where}: minute must be a multiple of 60 seconds")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise RollupError(f"{where}: count must be a positive integer, got {self.count!r}")
        values = (self.min, self.avg, self.max, self.p95)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise RollupError(f"{where}: min, avg, max and p95 must be finite numbers")
        # A little slack: avg comes from floating-point sums.
        slack = 1e-9 * max(1.0, abs(self.min), abs(self.max))
        if not (
            self.min - slack <= self.avg <= self.max + slack and self.min <= self.p95 <= self.max
        ):
            raise RollupError(f"{where}: need min <= avg, p95 <= max, got {values}")


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """Statistics of one metric of one host over a period (see module notes)."""

    host: str
    metric: str
    min: float
    avg: float
    p95: float
    max: float
    samples: int


@dataclass(frozen=True, slots=True)
class Breach:
    """A threshold held at ``severity`` from ``opened`` until ``resolved``.

    Times are epoch seconds; ``resolved`` is ``None`` while it still holds.
    """

    host: str
    metric: str
    severity: str
    opened: float
    resolved: float | None = None

    def __post_init__(self) -> None:
        where = f"breach {self.host!r}/{self.metric!r}"
        if not self.host or not self.metric or not self.severity:
            raise RollupError(f"{where}: host, metric and severity must not be empty")
        if not math.isfinite(self.opened):
            raise RollupError(f"{where}: opened must be a finite epoch time")
        if self.resolved is not None and not (
            math.isfinite(self.resolved) and self.resolved >= self.opened
        ):
            raise RollupError(f"{where}: resolved must not be before opened")

    def duration(self, now: float) -> float:
        """Seconds the breach lasted, or has lasted until ``now`` if still open."""
        end = self.resolved if self.resolved is not None else now
        return max(0.0, end - self.opened)


def minute_of(epoch: float) -> int:
    """The start of the minute holding ``epoch``, in epoch seconds."""
    return int(epoch // MINUTE) * MINUTE


def summarize(rollups: Iterable[Rollup]) -> list[MetricSummary]:
    """Statistics per host and metric over the given rollups.

    The reference definition of the period statistics described in the module
    notes; the SQLite store computes the same figures in SQL.
    Sorted by host, then metric.
    """
    groups: dict[tuple[str, str], list[Rollup]] = {}
    for row in rollups:
        groups.setdefault((row.host, row.metric), []).append(row)
    result = []
    for (host, metric), rows in sorted(groups.items()):
        samples = sum(r.count for r in rows)
        result.append(
            MetricSummary(
                host=host,
                metric=metric,
                min=min(r.min for r in rows),
                avg=sum(r.avg * r.count for r in rows) / samples,
                p95=weighted_percentile([(r.p95, r.count) for r in rows], P95_PERCENT),
                max=max(r.max for r in rows),
                samples=samples,
            )
        )
    return result


def weighted_percentile(values: list[tuple[float, int]], percent: int) -> float:
    """Nearest-rank percentile of ``(value, weight)`` pairs.

    The smallest value whose cumulative weight reaches ``percent`` % of the
    total: each pair counts as ``weight`` copies of ``value``. Integer
    arithmetic keeps the rank exact.
    """
    if not values:
        raise RollupError("percentile of no values")
    if not 0 < percent <= 100:
        raise RollupError(f"percentile must be in (0, 100], got {percent}")
    ordered = sorted(values)
    total = sum(weight for _, weight in ordered)
    cumulative = 0
    for value, weight in ordered:
        cumulative += weight
        if cumulative * 100 >= percent * total:
            return value
    return ordered[-1][0]
