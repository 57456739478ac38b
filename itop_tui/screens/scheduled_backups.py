"""Scheduled backups while the TUI is open: a scheduler pass every interval, app-wide.

The app starts it once, when it mounts (so due jobs run whichever pane is
shown)::

    from itop_tui.screens.scheduled_backups import ScheduledBackups
    ScheduledBackups(self, self.services).start()

A timer starts each pass in an app worker and is armed again only when the
pass ended, so passes never overlap; between passes no worker is left
running. The first pass comes one interval after the start, not at once:
the console opens without a burst of work, and a test's short-lived app
never runs the real schedule. Each pass is published on :func:`scheduler_passes` (a Textual signal per
app), to which the Backups pane subscribes to refresh itself; progress of
scheduled runs goes out on :func:`scheduler_progress`. Failed scheduled
runs are also notified, whatever pane is shown. A second :meth:`start` on
the same app replaces the first scheduler (tests start one with a short
interval).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from textual.app import App
from textual.signal import Signal
from textual.timer import Timer

from itop_tui.ops.backup_runner import SCHEDULER_INTERVAL, BackupRunner, Progress
from itop_tui.ops.backup_scheduler import BackupScheduler, SchedulerPass
from itop_tui.services.context import Services

WORKER_GROUP = "backup-scheduler"

_passes: WeakKeyDictionary[App[Any], Signal[SchedulerPass]] = WeakKeyDictionary()
_progress: WeakKeyDictionary[App[Any], Signal[Progress]] = WeakKeyDictionary()
_running: WeakKeyDictionary[App[Any], ScheduledBackups] = WeakKeyDictionary()


def scheduler_passes(app: App[Any]) -> Signal[SchedulerPass]:
    """The signal published after every scheduler pass of ``app``."""
    signal = _passes.get(app)
    if signal is None:
        signal = _passes[app] = Signal(app, "backup-scheduler-pass")
    return signal


def scheduler_progress(app: App[Any]) -> Signal[Progress]:
    """The signal published as scheduled runs of ``app`` make progress."""
    signal = _progress.get(app)
    if signal is None:
        signal = _progress[app] = Signal(app, "backup-scheduler-progress")
    return signal


class ScheduledBackups:
    """Runs :class:`~itop_tui.ops.backup_scheduler.BackupScheduler` for the life of ``app``.

    ``interval`` is seconds between passes (default
    :data:`~itop_tui.ops.backup_runner.SCHEDULER_INTERVAL`);
    ``runner_factory`` builds the runner (default :class:`BackupRunner`).
    Nothing runs for read-only services.
    """

    def __init__(
        self,
        app: App[Any],
        services: Services,
        *,
        interval: float = SCHEDULER_INTERVAL,
        runner_factory: Callable[[Services], BackupRunner] | None = None,
    ) -> None:
        self.app = app
        self.services = services
        factory = runner_factory or BackupRunner
        self.scheduler = BackupScheduler(lambda: factory(services), interval=interval,
                                         on_pass=self._passed, on_progress=self._progressed)
        self.interval = interval
        self._timer: Timer | None = None

    @classmethod
    def of(cls, app: App[Any]) -> ScheduledBackups | None:
        """The scheduler running for ``app``, if any."""
        return _running.get(app)

    def start(self) -> None:
        """Arm the first pass (replacing a scheduler started before on this app)."""
        if self.services.read_only or not self.services.may_operate:
            return  # a viewer or trainee may not run backups: no pass would succeed
        previous = _running.get(self.app)
        if previous is not None:
            previous.stop()
        _running[self.app] = self
        self._arm()

    def stop(self) -> None:
        """No more passes; a running pass is cancelled cleanly."""
        self.scheduler.stop()
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if _running.get(self.app) is self:
            del _running[self.app]

    def _arm(self) -> None:
        if not self.scheduler.stopped:
            self._timer = self.app.set_timer(self.interval, self._start_pass,
                                             name="backup-scheduler")

    def _start_pass(self) -> None:
        self._timer = None
        if self.scheduler.stopped:
            return
        self.app.run_worker(self._pass(), group=WORKER_GROUP, exclusive=True,
                            exit_on_error=False, description="Scheduled backups")

    async def _pass(self) -> None:
        # run_once() turns every error into a reported pass; only cancellation
        # (the app closing) ends the chain of passes.
        await self.scheduler.run_once()
        self._arm()

    def _passed(self, done: SchedulerPass) -> None:
        if done.error is not None:
            self.app.notify(done.error, title="Scheduled backups failed", severity="error",
                            timeout=10, markup=False)
        bad = [f"{run.job} {run.kind} {run.host}: {run.status}"
               for result in done.results for run in result.runs if not run.good]
        if bad:
            self.app.notify("; ".join(bad), title="Scheduled backup", severity="warning",
                            timeout=10, markup=False)
        scheduler_passes(self.app).publish(done)

    def _progressed(self, progress: Progress) -> None:
        scheduler_progress(self.app).publish(progress)
