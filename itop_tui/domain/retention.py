"""Which backups a retention policy keeps, exactly as restic's ``forget`` decides.

restic (``internal/restic/snapshot_policy.go``, ``ApplyPolicy``) sorts the
snapshots newest first and walks them once. Each ``keep_*`` option is a
bucket with a counter: a snapshot is kept by a bucket when its bucket key
differs from the key of the last snapshot that bucket kept and the counter
is not used up; the counter then goes down by one. The keys are a unique
number per snapshot for ``keep_last``, the day (``YYYYMMDD``) for
``keep_daily``, the ISO year and week for ``keep_weekly`` and the month for
``keep_monthly``. A snapshot is kept when any bucket keeps it; the
reasons are the buckets that did. An empty policy keeps everything.

Since restic 0.15 the oldest snapshot is also kept by every bucket that
still has counts left when the walk reaches it ("maximizes the history
length kept"); restic 0.14 does not. ``keep_oldest`` chooses: itop's tar
method uses the newer rule; comparing with an installed restic 0.14 uses
the older one.

On top of restic, itop never removes the only successful backup: if no
successful backup would be kept, the newest successful one is.

Times are compared in UTC (restic uses the time zone stored with each
snapshot, which is UTC for snapshots written on a UTC host).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from itop_tui.domain.backup import Retention

ONLY_SUCCESS_REASON = "only successful backup (never removed)"


@dataclass(frozen=True)
class Snapshot:
    """One backup as retention sees it: an id, its time, and whether it succeeded.

    ``succeeded`` False marks a backup that exists but is not fully good
    (a ``warning`` run): it takes part in the policy like the others but
    does not count as "the only successful backup".
    """

    id: str
    time: datetime
    succeeded: bool = True


@dataclass(frozen=True)
class Decision:
    """A snapshot and why it is kept (bucket reasons) or removed."""

    snapshot: Snapshot
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RetentionPlan:
    """The outcome of a policy: ``keep`` and ``remove``, each newest first."""

    keep: tuple[Decision, ...]
    remove: tuple[Decision, ...]

    @property
    def kept_ids(self) -> list[str]:
        """Ids of the kept snapshots, newest first."""
        return [d.snapshot.id for d in self.keep]

    @property
    def removed_ids(self) -> list[str]:
        """Ids of the snapshots to remove, newest first."""
        return [d.snapshot.id for d in self.remove]


def _always(_moment: datetime, number: int) -> int:
    return number


def _ymd(moment: datetime, _number: int) -> int:
    return moment.year * 10000 + moment.month * 100 + moment.day


def _yw(moment: datetime, _number: int) -> int:
    year, week, _ = moment.isocalendar()
    return year * 100 + week


def _ym(moment: datetime, _number: int) -> int:
    return moment.year * 100 + moment.month


_BUCKETS: tuple[tuple[str, Callable[[datetime, int], int], str], ...] = (
    ("keep_last", _always, "last snapshot"),
    ("keep_daily", _ymd, "daily snapshot"),
    ("keep_weekly", _yw, "weekly snapshot"),
    ("keep_monthly", _ym, "monthly snapshot"),
)


def apply_policy(
    snapshots: Sequence[Snapshot], policy: Retention, *, keep_oldest: bool = True
) -> RetentionPlan:
    """Split ``snapshots`` into those ``policy`` keeps and those it removes.

    Snapshots with equal times keep their input order (restic sorts stably).
    """
    ordered = sorted(snapshots, key=lambda s: _utc(s.time), reverse=True)
    # sorted(reverse=True) keeps equal items in input order, like sort.Stable.
    if policy.is_empty:
        return RetentionPlan(tuple(Decision(s, ("policy is empty",)) for s in ordered), ())
    counts = {name: int(getattr(policy, name)) for name, _key, _reason in _BUCKETS}
    last_key: dict[str, int | None] = dict.fromkeys(counts)
    keep: list[Decision] = []
    remove: list[Decision] = []
    oldest = len(ordered) - 1
    for number, snapshot in enumerate(ordered):
        moment = _utc(snapshot.time)
        reasons: list[str] = []
        for name, key_of, reason in _BUCKETS:
            if counts[name] <= 0:
                continue
            key = key_of(moment, number)
            if key != last_key[name] or (keep_oldest and number == oldest):
                last_key[name] = key
                counts[name] -= 1
                reasons.append(reason)
        if reasons:
            keep.append(Decision(snapshot, tuple(reasons)))
        else:
            remove.append(Decision(snapshot, (f"not kept by {policy.describe()}",)))
    return _protect_only_success(keep, remove)


def _protect_only_success(keep: list[Decision], remove: list[Decision]) -> RetentionPlan:
    if any(d.snapshot.succeeded for d in keep):
        return RetentionPlan(tuple(keep), tuple(remove))
    rescued = next((d for d in remove if d.snapshot.succeeded), None)
    if rescued is None:
        return RetentionPlan(tuple(keep), tuple(remove))
    remove = [d for d in remove if d is not rescued]
    keep = [*keep, Decision(rescued.snapshot, (ONLY_SUCCESS_REASON,))]
    keep.sort(key=lambda d: _utc(d.snapshot.time), reverse=True)
    return RetentionPlan(tuple(keep), tuple(remove))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
