"""Two monitors of one host on one data dir: the TUI and ``itop collect`` at once.

Both see the same breach. The problem record, its audit trail and the
breach spans in the rollup store must come out once, as from one monitor.
Samples are real psutil readings of this machine with MemAvailable set
from a script, so both monitors see the same memory % sequence.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from itop_tui.domain.models import Host
from itop_tui.domain.procfs import RawSample
from itop_tui.domain.thresholds import DEFAULT_THRESHOLDS
from itop_tui.ops.fleet_monitor import FleetMonitor, MonitorConfig, MonitorUpdate, ProblemUpdate
from itop_tui.services.audit import AuditLog
from itop_tui.services.metrics_collector import Collector, read_local
from itop_tui.services.problem_repo import ProblemRepository
from itop_tui.services.rollup_store import RollupStore

pytestmark = pytest.mark.integration

HERE = Host(name="here", address="local")
STEP = 0.1
# Memory % held for a few samples each: warning, critical, warning, ok.
SCRIPT = [10.0] * 3 + [70.0] * 4 + [95.0] * 4 + [70.0] * 4 + [10.0] * 3
THRESHOLDS = {
    **dict.fromkeys(DEFAULT_THRESHOLDS),
    "mem_percent": {"warning": 60, "critical": 90, "min_duration": 0},
}


class ScriptedMemory:
    """This machine through psutil, with memory use following ``percents``."""

    def __init__(self, host: str, percents: Sequence[float]) -> None:
        self.host = host
        self.interval = STEP
        self.percents = list(percents)

    async def samples(self) -> AsyncGenerator[RawSample, None]:
        """One sample per step, then silence (the stream stays open)."""
        for percent in self.percents:
            raw = read_local(self.host)
            total = raw.memory.total or 1
            raw = replace(raw, memory=replace(raw.memory, available=int(total * (1 - percent / 100))))
            yield raw
            await asyncio.sleep(STEP)
        await asyncio.Event().wait()


def scripted(host: Host, interval: float, df_every: int) -> Collector:
    return ScriptedMemory(host.name, SCRIPT)


def audit_actions(path: Path) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["action"] for line in lines if '"problem.' in line]


async def test_two_monitors_on_one_data_dir_store_and_audit_each_change_once(
    tmp_path: Path,
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    config = MonitorConfig(interval=STEP, thresholds=THRESHOLDS, stale_after_intervals=50)
    monitors = [
        FleetMonitor.for_data_dir(
            [HERE], None, MonitorConfig(**vars(config)), tmp_path,
            AuditLog(audit_path, actor=name, origin="cli"), collector_factory=scripted,
        )
        for name in ("tui", "collect")
    ]
    seen: list[list[ProblemUpdate]] = [[], []]
    resolved = [asyncio.Event(), asyncio.Event()]

    def listener(index: int) -> object:
        def on_update(update: MonitorUpdate) -> None:
            if isinstance(update, ProblemUpdate):
                seen[index].append(update)
                if update.kind == "resolved":
                    resolved[index].set()
        return on_update

    for index, monitor in enumerate(monitors):
        monitor.add_listener(listener(index))  # type: ignore[arg-type]
    async with monitors[0], monitors[1]:
        async with asyncio.timeout(30):
            await resolved[0].wait()
            await resolved[1].wait()

    kinds = [[u.kind for u in updates] for updates in seen]
    assert kinds == [["opened", "escalated", "deescalated", "resolved"]] * 2
    # Each change was made, and reported as made, by exactly one of the two.
    for step in range(4):
        assert sorted(updates[step].changed for updates in seen) == [False, True]
    assert sorted(audit_actions(audit_path)) == sorted(
        ["problem.open", "problem.escalate", "problem.deescalate", "problem.resolve"]
    )
    problems = ProblemRepository.in_data_dir(tmp_path).problems()
    assert len(problems) == 1 and problems[0].resolved is not None
    store = RollupStore.in_data_dir(tmp_path)
    try:
        breaches = store.breaches()
    finally:
        store.close()
    assert sorted(b.severity for b in breaches) == ["critical", "warning"]
    assert all(b.resolved is not None for b in breaches)
