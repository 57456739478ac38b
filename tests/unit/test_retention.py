"""Retention: restic's keep-last/daily/weekly/monthly rules on synthetic histories.

Hand-worked cases pin the rules down; the last test asks the installed
restic itself (``forget --dry-run --json``) about a synthetic history and
requires the same answer, snapshot by snapshot and reason by reason.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from itop_tui.domain.backup import Retention
from itop_tui.domain.retention import ONLY_SUCCESS_REASON, Snapshot, apply_policy


def snap(name: str, when: str, succeeded: bool = True) -> Snapshot:
    return Snapshot(name, datetime.fromisoformat(when).replace(tzinfo=UTC), succeeded)


HISTORY = [
    snap("a", "2024-01-31T10:00"),  # Wed, week 5
    snap("b", "2024-02-01T09:00"),  # Thu, week 5
    snap("c", "2024-02-01T21:00"),  # same day as b, later
    snap("d", "2024-02-04T08:00"),  # Sun, still week 5
    snap("e", "2024-02-05T08:00"),  # Mon, week 6
    snap("f", "2024-02-06T08:00"),
    snap("g", "2024-02-06T20:00"),  # newest
]


def test_keep_last_keeps_the_newest_n() -> None:
    plan = apply_policy(HISTORY, Retention(keep_last=3))
    assert plan.kept_ids == ["g", "f", "e"]
    assert plan.removed_ids == ["d", "c", "b", "a"]
    assert all(d.reasons == ("last snapshot",) for d in plan.keep)
    assert "not kept by keep_last 3" in plan.remove[0].reasons[0]


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    plan = apply_policy(HISTORY, Retention(keep_daily=3), keep_oldest=False)
    # Days newest first: Feb 6 (g), Feb 5 (e), Feb 4 (d); f is older than g on Feb 6.
    assert plan.kept_ids == ["g", "e", "d"]


def test_keep_weekly_uses_iso_weeks() -> None:
    plan = apply_policy(HISTORY, Retention(keep_weekly=2), keep_oldest=False)
    # Week 6: g (newest); week 5: d (Sunday belongs to the week of the Monday before).
    assert plan.kept_ids == ["g", "d"]
    year_end = [snap("old", "2024-12-29T12:00"), snap("new", "2024-12-30T12:00")]
    # 2024-12-30 is in ISO week 1 of 2025, 2024-12-29 in week 52 of 2024.
    assert apply_policy(year_end, Retention(keep_weekly=1), keep_oldest=False).kept_ids == ["new"]
    assert apply_policy(year_end, Retention(keep_weekly=2), keep_oldest=False).kept_ids == [
        "new", "old"]


def test_keep_monthly_and_combined_reasons() -> None:
    plan = apply_policy(HISTORY, Retention(keep_last=1, keep_daily=2, keep_monthly=2),
                        keep_oldest=False)
    reasons = {d.snapshot.id: d.reasons for d in plan.keep}
    assert reasons == {
        "g": ("last snapshot", "daily snapshot", "monthly snapshot"),
        "e": ("daily snapshot",),
        "a": ("monthly snapshot",),  # January's newest
    }
    assert plan.removed_ids == ["f", "d", "c", "b"]


def test_keep_oldest_rule_of_newer_restic() -> None:
    # Counts left when the walk reaches the oldest snapshot keep it too.
    plan = apply_policy(HISTORY, Retention(keep_last=10))
    assert plan.kept_ids == ["g", "f", "e", "d", "c", "b", "a"]
    plan = apply_policy(HISTORY, Retention(keep_monthly=5))
    assert plan.kept_ids == ["g", "a"]  # February and January: both keys are new
    plan = apply_policy(HISTORY, Retention(keep_weekly=5))
    assert plan.kept_ids == ["g", "d", "a"]  # a is the oldest and weekly counts were left
    assert apply_policy(HISTORY, Retention(keep_weekly=5), keep_oldest=False).kept_ids == [
        "g", "d"]
    # Used-up counts do not keep the oldest.
    assert apply_policy(HISTORY, Retention(keep_weekly=2)).kept_ids == ["g", "d"]


def test_empty_policy_keeps_everything() -> None:
    plan = apply_policy(HISTORY, Retention())
    assert plan.kept_ids == ["g", "f", "e", "d", "c", "b", "a"]
    assert plan.removed_ids == []
    assert plan.keep[0].reasons == ("policy is empty",)


def test_order_of_input_does_not_matter() -> None:
    shuffled = list(HISTORY)
    random.Random(7).shuffle(shuffled)
    policy = Retention(keep_daily=2, keep_weekly=2)
    assert apply_policy(shuffled, policy).kept_ids == apply_policy(HISTORY, policy).kept_ids


def test_the_only_successful_backup_is_never_removed() -> None:
    history = [
        snap("good", "2024-02-01T10:00"),
        snap("warn1", "2024-02-02T10:00", succeeded=False),
        snap("warn2", "2024-02-03T10:00", succeeded=False),
    ]
    plan = apply_policy(history, Retention(keep_last=1))
    assert plan.kept_ids == ["warn2", "good"]
    assert plan.keep[-1].reasons == (ONLY_SUCCESS_REASON,)
    assert plan.removed_ids == ["warn1"]
    # With a successful backup kept anyway, nothing is rescued.
    history.append(snap("good2", "2024-02-04T10:00"))
    assert apply_policy(history, Retention(keep_last=1)).kept_ids == ["good2"]


def test_empty_history() -> None:
    plan = apply_policy([], Retention(keep_last=3))
    assert plan.keep == () and plan.remove == ()


# -- restic itself as the oracle ------------------------------------------------

RESTIC = shutil.which("restic")
POLICIES = [
    Retention(keep_last=3),
    Retention(keep_daily=4),
    Retention(keep_daily=3, keep_weekly=3),
    Retention(keep_last=2, keep_daily=2, keep_weekly=2, keep_monthly=3),
    Retention(keep_weekly=20, keep_monthly=2),
]


def _restic_version(restic: str) -> tuple[int, int]:
    out = subprocess.run([restic, "version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"restic (\d+)\.(\d+)", out)
    assert match, out
    return int(match.group(1)), int(match.group(2))


def _synthetic_times(count: int) -> list[datetime]:
    """Distinct times over about three months, bunched so days, weeks and months collide."""
    rng = random.Random(20240501)
    start = datetime(2024, 1, 25, tzinfo=UTC)
    minutes = sorted(rng.sample(range(0, 95 * 24 * 60, 37), count))
    return [start + timedelta(minutes=m) for m in minutes]


@pytest.mark.skipif(RESTIC is None, reason="restic is not installed: apt-get install restic "
                                            "(the test command does this)")
def test_same_decisions_as_restic_forget(tmp_path: Path) -> None:
    assert RESTIC is not None
    env = {**os.environ, "RESTIC_REPOSITORY": str(tmp_path / "repo"),
           "RESTIC_PASSWORD_FILE": str(tmp_path / "pw"), "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
           "TZ": "UTC"}
    (tmp_path / "pw").write_text("synthetic-history\n")
    source = tmp_path / "src"
    source.mkdir()
    (source / "file").write_text("x")
    subprocess.run([RESTIC, "init", "-q"], env=env, check=True, capture_output=True)
    times = _synthetic_times(14)

    def backup(moment: datetime) -> None:
        subprocess.run(
            [RESTIC, "backup", "-q", "--host", "synthetic", "--time",
             moment.strftime("%Y-%m-%d %H:%M:%S"), str(source)],
            env=env, check=True, capture_output=True,
        )

    # restic backups take a shared lock: they may run side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(backup, times))
    listed = json.loads(subprocess.run([RESTIC, "snapshots", "--json"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    snapshots = [Snapshot(s["short_id"], datetime.fromisoformat(s["time"])) for s in listed]
    assert sorted(s.time for s in snapshots) == times
    keep_oldest = _restic_version(RESTIC) >= (0, 15)

    def forget(policy: Retention) -> list[dict[str, Any]]:
        # --no-lock: dry runs change nothing, so they may run side by side.
        done = subprocess.run(
            [RESTIC, "forget", "--no-lock", "--dry-run", "--json", "--group-by", "host",
             *policy.restic_options()],
            env=env, check=True, capture_output=True, text=True,
        )
        groups: list[dict[str, Any]] = json.loads(done.stdout.splitlines()[0])
        return groups

    with ThreadPoolExecutor(max_workers=len(POLICIES)) as pool:
        answers = list(pool.map(forget, POLICIES))

    for policy, groups in zip(POLICIES, answers, strict=True):
        assert len(groups) == 1
        group = groups[0]
        restic_keep = [s["short_id"] for s in group["keep"]]
        restic_remove = sorted(s["short_id"] for s in group["remove"] or [])
        restic_reasons = {s["snapshot"]["time"]: tuple(s["matches"]) for s in group["reasons"]}

        plan = apply_policy(snapshots, policy, keep_oldest=keep_oldest)
        assert plan.kept_ids == restic_keep, policy.describe()
        assert sorted(plan.removed_ids) == restic_remove, policy.describe()
        ours = {d.snapshot.time: d.reasons for d in plan.keep}
        theirs = {datetime.fromisoformat(t): r for t, r in restic_reasons.items()}
        assert ours == theirs, policy.describe()
