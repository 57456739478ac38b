"""Scheduler passes of a long-running itop: :meth:`BackupRunner.run_due`, one pass at a time.

The TUI calls :meth:`BackupScheduler.run_once` every ``interval`` seconds
for as long as it is open, arming the next pass only after the previous one
ended, so passes never pile up however long a backup takes. Each pass
starts the jobs that are due (skipping those another itop holds: the job
lock is the same one ``itop backup run-due`` takes) and checks RPOs. Pass
results go to ``on_pass`` so a pane can refresh; a pass that raised is
reported there too, and the next pass runs as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from itop_tui.ops.backup_runner import (
    SCHEDULER_INTERVAL,
    BackupRunner,
    DueResult,
    ProgressCallback,
)


@dataclass(frozen=True)
class SchedulerPass:
    """What one pass did: the due results, or the error that stopped it."""

    results: list[DueResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ran_something(self) -> bool:
        """True when a job was due (run or skipped), or the pass failed."""
        return bool(self.results) or self.error is not None


PassCallback = Callable[[SchedulerPass], None]


class BackupScheduler:
    """One scheduler pass after the other (the caller waits ``interval`` between them).

    ``runner_factory`` builds the runner (called once, in a thread: it syncs
    the config's jobs into the store). :meth:`stop` cancels a running pass
    cleanly (its runs are recorded cancelled) and every later one.
    """

    def __init__(
        self,
        runner_factory: Callable[[], BackupRunner],
        *,
        interval: float = SCHEDULER_INTERVAL,
        on_pass: PassCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.runner_factory = runner_factory
        self.interval = interval
        self.on_pass = on_pass
        self.on_progress = on_progress
        self.runner: BackupRunner | None = None
        self.passes = 0
        self._cancel = asyncio.Event()

    async def run_once(self) -> SchedulerPass:
        """One pass; errors become the pass's ``error`` (the loop must survive them)."""
        if self._cancel.is_set():
            return SchedulerPass(error="the scheduler was stopped")
        try:
            if self.runner is None:
                self.runner = await asyncio.to_thread(self.runner_factory)
            results = await self.runner.run_due(on_progress=self.on_progress,
                                                cancel=self._cancel)
            done = SchedulerPass(results)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad pass must not stop scheduling
            done = SchedulerPass(error=f"{type(exc).__name__}: {exc}")
        self.passes += 1
        if self.on_pass is not None:
            self.on_pass(done)
        return done

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._cancel.is_set()

    def stop(self) -> None:
        """Cancel the running pass cleanly, and any later one."""
        self._cancel.set()
