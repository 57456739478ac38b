"""Backups as use cases: run, verify, restore, prune, schedule, status, RPO problems.

:class:`BackupRunner` is what ``itop backup`` and the TUI's Backups pane
call. It combines the jobs and runs of :class:`BackupRepository`, the
methods of :mod:`itop_tui.services.backup_methods`, the inventory (a job's
``hosts`` selector), the problems store and the audit log:

* every operation on a job holds the job's lock file
  (``<data_dir>/locks/backup-<job>.lock``, an exclusive ``flock``), so two
  itop processes never work on one job at once; a held lock raises
  :class:`JobBusy`, and :meth:`BackupRunner.run_due` then skips the job;
* every run is recorded ``running`` when it starts and finished with its
  status; runs left ``running`` by a process that died are failed as
  interrupted the next time the lock is taken;
* a backup runs the job's pre command, the method, then the post command
  (always, once the pre command succeeded, with ``ITOP_BACKUP_STATUS`` set);
  a good backup is followed by a verify (``verify.when: after-backup``)
  and a prune (when the job has a retention policy);
* after a job ran, its RPOs are checked: a good backup resolves the
  host's RPO problem, a host still past its RPO gets one;
* restoring in place is refused without ``confirmed=True``, and on
  production hosts the change gate must allow it;
* every run, and every RPO problem opened or resolved, is audited.

Progress callbacks get a :class:`Progress` (bytes so far, expected total
when known, rate); ``cancel`` (an :class:`asyncio.Event`) stops the work
cleanly and records the run as ``cancelled``. Cancelling the calling task
does the same and re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from itop_tui.domain.backup import (
    SSH_SCHEME,
    BackupJob,
    BackupRun,
    effective_status,
    parse_ssh_destination,
    parse_utc,
    rpo_state,
    utc_now_text,
)
from itop_tui.domain.cron import DueSlot, due_slot, parse_cron
from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.domain.selectors import select_hosts
from itop_tui.services.audit import AuditLog
from itop_tui.services.backup_methods import (
    BackupMethod,
    FileEntry,
    MethodContext,
    MethodError,
    MethodOutcome,
    PruneOutcome,
    RestoreRequest,
    RunLog,
    check_new_directory,
    method_for,
)
from itop_tui.services.backup_repo import BackupRecordError, BackupRepository, SyncResult
from itop_tui.services.context import Services
from itop_tui.services.problem_repo import ProblemRepository
from itop_tui.services.transport import TransportError

T = TypeVar("T")

LOCKS_DIR = "locks"
HOSTS_AT_ONCE = 4
# How often the TUI should call run_due(): cron has minute resolution.
SCHEDULER_INTERVAL = 60.0
RPO_SEVERITY = "critical"
NO_HOSTS = "no hosts"
"""The state of a job's row when its selector matches no host of the inventory."""
RATE_WINDOW = 3.0
# Below this span the window says too little: the rate is the average since the start.
RATE_MIN_SPAN = 1.0
COMMAND_OUTPUT_SHOWN = 2000


class BackupError(Exception):
    """A backup operation asked for something impossible (unknown job, run or host)."""


class JobBusy(BackupError):
    """Another itop process holds the job's lock (it is running this job now)."""


class ConfirmationNeeded(BackupError):
    """Restoring in place overwrites files on the host: it must be confirmed."""


@dataclass(frozen=True)
class Progress:
    """How far one run on one host has come.

    ``done`` bytes so far; ``total`` bytes expected (None when unknown, as
    for a tar stream); ``rate`` bytes per second over the last few seconds.
    For a prune (``kind == "prune"``) the unit is backups deleted, not bytes.
    """

    job: str
    host: str
    run_id: str
    kind: str
    done: int
    total: int | None
    rate: float
    elapsed: float

    def describe(self) -> str:
        """``12.0 MiB of 40.0 MiB, 3.1 MiB/s`` (a prune: ``2 of 5 backups deleted``)."""
        if self.kind == "prune":
            return f"{self.done} of {self.total or 0} backup(s) deleted"
        total = f" of {_size(self.total)}" if self.total else ""
        return f"{_size(self.done)}{total}, {_size(int(self.rate))}/s"

    @property
    def fraction(self) -> float | None:
        """``done / total`` between 0 and 1, when the total is known."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


class RateMeter:
    """Bytes per second over the last :data:`RATE_WINDOW` seconds, or since the start.

    The first samples of a run (and the only ones of a short run) span too
    little time for a window rate, which would read 0: until the window spans
    :data:`RATE_MIN_SPAN` the rate is the average since ``started``.
    ``clock`` is a monotonic clock (tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, done: int) -> tuple[float, float]:
        """Record ``done`` bytes so far; returns (rate in bytes/s, seconds since the start)."""
        now = self.clock()
        samples = self._samples
        samples.append((now, done))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW:
            samples.popleft()
        first_time, first_done = samples[0]
        span = now - first_time
        elapsed = now - self.started
        if span >= RATE_MIN_SPAN:
            return (done - first_done) / span, elapsed
        return (done / elapsed if elapsed > 0 else 0.0), elapsed


@dataclass
class HostStatus:
    """Where one job stands on one host (a row of ``itop backup status`` and of the pane)."""

    job: str
    job_id: str
    host: str
    method: str
    schedule: str | None
    active: bool
    running: bool
    next_due: str | None
    rpo_hours: float | None
    rpo_state: str
    last_run: BackupRun | None = None
    last_success: BackupRun | None = None
    last_verified: BackupRun | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    created: str | None = None
    """When the job was created: the RPO counts from there until a first good backup."""

    @property
    def has_host(self) -> bool:
        """False for the row of a job whose selector matches no host (``host`` is empty)."""
        return bool(self.host)

    def age_hours(self, run: BackupRun | None) -> float | None:
        """Hours since ``run`` ended (or started), None without a run."""
        if run is None:
            return None
        return round((self.now - parse_utc(run.end or run.start)).total_seconds() / 3600, 2)

    @property
    def rpo_age_hours(self) -> float | None:
        """Hours the RPO counts: since the last good backup, else since the job's creation."""
        if self.last_success is not None:
            return self.age_hours(self.last_success)
        if self.created is None:
            return None
        return round((self.now - parse_utc(self.created)).total_seconds() / 3600, 2)

    @property
    def state(self) -> str:
        """``no hosts``, ``running``, ``paused``, ``breached`` (RPO), ``cancelled`` or
        ``failed`` (the last backup), ``ok`` or ``never``."""
        if not self.has_host:
            return NO_HOSTS
        if self.running:
            return "running"
        if not self.active:
            return "paused"
        if self.rpo_state == "breached":
            return "breached"
        if self.last_run is not None and self.last_run.status == "cancelled":
            return "cancelled"
        if self.last_run is not None and not self.last_run.good:
            return "failed"
        return "ok" if self.last_success else "never"

    def to_dict(self) -> dict[str, Any]:
        """The stable ``--json`` form."""

        def brief(run: BackupRun | None) -> dict[str, Any] | None:
            if run is None:
                return None
            return {"id": run.id, "status": run.status, "start": run.start, "end": run.end,
                    "bytes": run.bytes, "files": run.files}

        return {
            "job": self.job, "job_id": self.job_id, "host": self.host or None,
            "method": self.method,
            "schedule": self.schedule, "active": self.active, "running": self.running,
            "state": self.state, "next_due": self.next_due, "rpo_hours": self.rpo_hours,
            "rpo_state": self.rpo_state,
            "last_run": brief(self.last_run), "last_success": brief(self.last_success),
            "last_verified": brief(self.last_verified),
            "success_age_hours": self.age_hours(self.last_success),
            "verified_age_hours": self.age_hours(self.last_verified),
        }


@dataclass
class DueResult:
    """What :meth:`BackupRunner.run_due` did with one due job."""

    job: str
    kind: str  # backup or verify
    slot: str
    missed: int
    runs: list[BackupRun] = field(default_factory=list)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {"job": self.job, "kind": self.kind, "slot": self.slot, "missed": self.missed,
                "skipped": self.skipped, "runs": [r.to_dict() for r in self.runs]}


@dataclass
class RestoreResult:
    """A restore, or a dry run's list of what would be written (``entries``)."""

    host: str
    target: str
    of_run: str
    dry_run: bool
    run: BackupRun | None = None
    entries: list[FileEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {"host": self.host, "target": self.target, "of_run": self.of_run,
                "dry_run": self.dry_run, "run": self.run.to_dict() if self.run else None,
                "entries": [e.to_dict() for e in self.entries]}


@dataclass
class PruneReport:
    """A prune of one job on one host: the policy's decisions and the run recorded."""

    host: str
    dry_run: bool
    outcome: PruneOutcome
    run: BackupRun | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {"host": self.host, "dry_run": self.dry_run, "status": self.outcome.status,
                "keep": [i.to_dict() for i in self.outcome.keep],
                "remove": [i.to_dict() for i in self.outcome.remove],
                "run": self.run.to_dict() if self.run else None}


@dataclass(frozen=True)
class RpoChange:
    """An RPO problem opened or resolved by :meth:`BackupRunner.check_rpo`."""

    job: str
    host: str
    event: str  # opened or resolved
    problem_id: str
    age_hours: float | None


# -- locks -------------------------------------------------------------------------


class JobLock:
    """An exclusive ``flock`` on ``<locks dir>/backup-<job>.lock``, never blocking.

    The holder's pid and start time are written into the file for messages.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another holder has it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {utc_now_text()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        """``pid N since T`` as written by the holder, for messages."""
        try:
            words = self.path.read_text().split()
        except OSError:
            return "another itop"
        return f"pid {words[0]} since {words[1]}" if len(words) >= 2 else "another itop"

    def is_held(self) -> bool:
        """True when someone (this process included) holds the lock now; changes nothing."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases the probe's shared lock
        return False


# -- the runner ----------------------------------------------------------------------


ChangeGateHook = Callable[[Sequence[Host], str | None, str], None]
"""``(hosts, change ref, what)``: raises to refuse a mutating action on production hosts."""


def change_gate_for(services: Services) -> ChangeGateHook:
    """The project's change gate (:mod:`itop_tui.ops.change_gate`) as a hook."""

    def gate(hosts: Sequence[Host], change_ref: str | None, what: str) -> None:
        from dataclasses import replace

        from itop_tui.domain.change import normalize_ref
        from itop_tui.ops.change_gate import REMEDIES, ChangeGate, ChangeRequired

        gate = ChangeGate(services)
        if change_ref is not None:
            # A change that does not exist is a usage mistake (exit 2), not a refusal.
            try:
                ref = normalize_ref(change_ref)
            except ValueError as exc:
                raise BackupError(f"--change: {exc}") from None
            if gate.changes.get(ref) is None:
                raise BackupError(f"no change {ref} (see `itop change list`)")
        try:
            gate.require(hosts, mutating=True, change_ref=change_ref, what=what)
        except ChangeRequired as exc:
            decision = exc.decision
            if decision.reason.endswith(REMEDIES):
                # A restore takes only --change: name no option it does not have.
                reason = (decision.reason.removesuffix(REMEDIES)
                          + ". Restore in place under an approved change with --change CHG-N, "
                            "or restore into a new directory with --to PATH")
                raise ChangeRequired(replace(decision, reason=reason)) from None
            raise

    return gate


class BackupRunner:
    """Backup use cases for one itop process; see the module docstring.

    ``clock`` returns the current time (tests pass their own); ``change_gate``
    decides restores in place on production hosts (default: the project's
    :class:`~itop_tui.ops.change_gate.ChangeGate`).
    """

    def __init__(
        self,
        services: Services,
        *,
        repo: BackupRepository | None = None,
        problems: ProblemRepository | None = None,
        change_gate: ChangeGateHook | None = None,
        clock: Callable[[], datetime] | None = None,
        sync: bool = True,
    ) -> None:
        self.services = services
        data_dir = Path(services.settings.data_dir)
        self.repo = repo or BackupRepository.in_data_dir(data_dir)
        self.problems = problems or ProblemRepository.in_data_dir(data_dir)
        self.locks_dir = data_dir / LOCKS_DIR
        self.change_gate = change_gate or change_gate_for(services)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sync_result = SyncResult()
        if sync and not services.read_only:
            self.sync_result = self.sync_config()

    # -- jobs ------------------------------------------------------------------

    def sync_config(self) -> SyncResult:
        """Bring the config file's jobs into the store (by name); audited when it changed."""
        result = self.repo.sync_config(self.services.settings.backups.jobs, utc_now_text(self.clock()))
        if result.changed:
            self.services.audit.append("backup.job.sync", "config", {
                "added": list(result.added), "updated": list(result.updated),
                "removed": list(result.removed)})
        return result

    def jobs(self) -> list[BackupJob]:
        """Every job, by name (from the store; config jobs synced when the runner opened)."""
        jobs = self.repo.jobs()
        if self.services.read_only:
            # Not synced: show the config's definitions over the stored ones.
            stored = {j.name: j for j in jobs}
            for job in self.services.settings.backups.jobs:
                if job.name not in stored:
                    stored[job.name] = job
            jobs = sorted(stored.values(), key=lambda j: j.name)
        return jobs

    def job(self, name: str) -> BackupJob:
        """The job named (or with id) ``name``; :class:`BackupError` when there is none."""
        for job in self.jobs():
            if name in (job.name, job.id) or (job.id and name.upper() == job.id):
                return job
        known = ", ".join(j.name for j in self.jobs()) or "none defined"
        raise BackupError(f"no backup job {name!r} (jobs: {known})")

    def add_job(self, job: BackupJob) -> BackupJob:
        """Store a new manual job; audited."""
        self.services.require_operator("add backup jobs")
        if any(j.name == job.name for j in self.services.settings.backups.jobs):
            raise BackupError(f"job {job.name!r} is defined in the config file "
                              f"{self.services.settings.config_label}")
        job.origin = "manual"
        self.check_job_hosts(job)
        added = self.repo.add_job(job, utc_now_text(self.clock()))
        self.services.audit.append("backup.job.add", added.name, added.definition())
        return added

    def edit_job(self, name: str, job: BackupJob) -> BackupJob:
        """Replace the definition of the manual job ``name`` with ``job``'s; audited.

        The name stays (runs, locks and problems refer to it); the id,
        creation, pause and schedule bookkeeping are kept. A config job must
        be edited in the config file.
        """
        self.services.require_operator("edit backup jobs")
        current = self.job(name)
        if current.origin == "config":
            raise BackupError(f"job {current.name!r} comes from the config file "
                              f"{self.services.settings.config_label}: edit it there")
        if job.name != current.name:
            raise BackupError(f"a job keeps its name: {current.name!r} cannot become {job.name!r}")
        self.check_job_hosts(job)
        definition = {k: v for k, v in job.definition().items() if k != "name"}
        try:
            updated = self.repo.update_job(current.name, **definition)
        except BackupRecordError as exc:
            raise BackupError(str(exc)) from None
        self.services.audit.append("backup.job.edit", updated.name, updated.definition())
        return updated

    def remove_job(self, name: str) -> BackupJob:
        """Remove a manual job (its runs stay); a config job must be removed from the file."""
        self.services.require_operator("remove backup jobs")
        job = self.job(name)
        if job.origin == "config":
            raise BackupError(f"job {job.name!r} comes from the config file "
                              f"{self.services.settings.config_label}: remove it there")
        removed = self.repo.remove_job(job.name)
        if removed is None:
            raise BackupError(f"no backup job {name!r}")
        self.services.audit.append("backup.job.remove", removed.name, {"id": removed.id})
        return removed

    def set_paused(self, name: str, paused: bool) -> BackupJob:
        """Pause (the pane's "disable") or resume a job's schedule; audited."""
        self.services.require_operator("pause backup jobs")
        job = self.repo.update_job(self.job(name).name, paused=paused)
        self.services.audit.append("backup.job.pause" if paused else "backup.job.resume", job.name)
        return job

    def hosts_of(self, job: BackupJob, host: str | None = None) -> list[Host]:
        """The inventory hosts the job's selector picks (only ``host`` when given)."""
        hosts = select_hosts(self.services.inventory.load(), job.hosts)
        if host is not None:
            chosen = [h for h in hosts if h.name == host]
            if not chosen:
                raise BackupError(f"host {host!r} is not one of the hosts of job {job.name!r}: "
                                  f"{_selection_text(job, hosts)}")
            return chosen
        if not hosts:
            raise BackupError(f"the hosts selector {job.hosts!r} of job {job.name!r} "
                              f"matches no host in the inventory")
        return hosts

    def lock_for(self, job: BackupJob) -> JobLock:
        """The lock of ``job``."""
        return JobLock(self.locks_dir / f"backup-{job.name}.lock")

    @contextlib.contextmanager
    def _locked(self, job: BackupJob) -> Iterator[None]:
        lock = self.lock_for(job)
        if not lock.acquire():
            raise JobBusy(f"job {job.name!r} is being worked on by another itop ({lock.holder()}); "
                          f"try again when it is done")
        try:
            for run in self.repo.mark_interrupted(job.name, utc_now_text(self.clock())):
                self.services.audit.append("backup.interrupted", f"{job.name}@{run.host}",
                                           {"run": run.id, "kind": run.kind}, result="failed")
            yield
        finally:
            lock.release()

    def method(self, job: BackupJob) -> BackupMethod:
        """The method object of ``job``."""
        return method_for(job, self.services.settings.backup_root)

    # -- run now -----------------------------------------------------------------

    async def run_job(
        self,
        name: str,
        host: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
        scheduled: bool = False,
    ) -> list[BackupRun]:
        """Back up one job on one host or all its hosts; returns every run recorded.

        The list holds the backup runs and the verify and prune runs that
        followed them. Raises :class:`JobBusy` when another itop holds the job.
        """
        self.services.require_operator("run backups")
        job = self.job(name)
        hosts = self.hosts_of(job, host)
        cancel = cancel or asyncio.Event()
        with self._locked(job):
            results = await _each_host(
                hosts, lambda h: self._backup_host(job, h, on_progress, cancel, scheduled))
        await asyncio.to_thread(self.check_rpo, None, job.name)
        return [run for runs in results for run in runs]

    async def _backup_host(self, job: BackupJob, host: Host, on_progress: ProgressCallback | None,
                           cancel: asyncio.Event, scheduled: bool) -> list[BackupRun]:
        run = await self._start(job, host, "backup", scheduled=scheduled)
        ctx = self._context(job, host, run, on_progress, cancel)
        ctx.expected_bytes = await asyncio.to_thread(self._expected_bytes, job, host.name)
        log = RunLog()
        outcome: MethodOutcome | None = None
        try:
            pre_ok = True
            if job.pre_command:
                pre_ok = await self._hook(ctx, job.pre_command, "pre", log, None)
            if not pre_ok:
                outcome = MethodOutcome("failed", "the pre command failed: no backup was made")
            elif cancel.is_set():
                outcome = MethodOutcome("cancelled", "cancelled before the backup started")
            else:
                outcome = await self._call(self.method(job).backup(ctx))
            if job.post_command and pre_ok:
                post_ok = await self._hook(ctx, job.post_command, "post", log, outcome.status)
                if not post_ok and outcome.status == "succeeded":
                    outcome.status = "warning"
        except asyncio.CancelledError:
            await self._finish(run, MethodOutcome("cancelled", "cancelled"), log, scheduled)
            raise
        assert outcome is not None
        finished = await self._finish(run, outcome, log, scheduled)
        runs = [finished]
        if not finished.good or cancel.is_set():
            return runs
        if job.verify.when == "after-backup" and job.method != "command":
            runs.append(await self._verify_run(job, host, finished, on_progress, cancel, scheduled))
        if not job.retention.is_empty and job.method != "command" and not cancel.is_set():
            report = await self._prune_host(job, host, dry_run=False, scheduled=scheduled,
                                            on_progress=on_progress, cancel=cancel)
            if report.run is not None:
                runs.append(report.run)
        return runs

    def _expected_bytes(self, job: BackupJob, host: str) -> int | None:
        """The stream size of the last good backup, as an estimate for progress."""
        for run in reversed(self.repo.runs(job=job.name, host=host, kind="backup")):
            if run.good:
                streamed = run.detail.get("streamed_bytes")
                return int(streamed) if isinstance(streamed, int) and streamed > 0 else None
        return None

    async def _hook(self, ctx: MethodContext, command: str, which: str, log: RunLog,
                    status: str | None) -> bool:
        """Run a pre or post command on the host; False when it failed."""
        text = command
        if status is not None:
            text = f"ITOP_BACKUP_STATUS={status}; export ITOP_BACKUP_STATUS; {command}"
        try:
            result = await ctx.pool.for_host(ctx.host).run(text, timeout=ctx.job.timeout)
        except TransportError as exc:
            log.add(f"{which} command {command!r}: {exc}")
            return False
        output = (result.stdout + result.stderr).strip()[:COMMAND_OUTPUT_SHOWN]
        verdict = "ok" if result.ok else (result.error or f"exit status {result.exit_status}")
        log.add(f"{which} command {command!r}: {verdict}")
        if output:
            log.add(output)
        ctx.run.detail[f"{which}_command"] = {"command": command, "exit_status": result.exit_status,
                                              "error": result.error}
        return result.ok

    # -- verify ------------------------------------------------------------------

    async def verify(
        self,
        name: str,
        run_id: str | None = None,
        host: str | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
        scheduled: bool = False,
    ) -> list[BackupRun]:
        """Verify one backup run, or the newest good backup of each host (or of ``host``)."""
        self.services.require_operator("verify backups")
        job = self.job(name)
        _refuse_command_method(job, "verify")
        cancel = cancel or asyncio.Event()
        targets = self._verify_targets(job, run_id, host)
        hosts = {h.name: h for h in select_hosts(self.services.inventory.load(), job.hosts)}
        runs: list[BackupRun] = []
        with self._locked(job):
            for target in targets:
                where = hosts.get(target.host) or self._host_named(target.host)
                runs.append(await self._verify_run(job, where, target, on_progress, cancel,
                                                   scheduled))
        return runs

    def _verify_targets(self, job: BackupJob, run_id: str | None,
                        host: str | None) -> list[BackupRun]:
        if run_id is not None:
            target = self._run_of(job, run_id)
            if target.kind != "backup" or not target.good:
                raise BackupError(f"{target.id} is a {target.status} {target.kind} run, "
                                  f"not a good backup: nothing to verify")
            _refuse_pruned(target, "verified")
            return [target]
        names = [h.name for h in self.hosts_of(job, host)]
        newest: dict[str, BackupRun] = {}
        for run in self.repo.runs(job=job.name, kind="backup"):
            if run.good and run.host in names and not run.detail.get("pruned_by"):
                newest[run.host] = run
        if not newest:
            raise BackupError(f"job {job.name!r} has no good backup to verify yet")
        return [newest[n] for n in names if n in newest]

    async def _verify_run(self, job: BackupJob, host: Host, target: BackupRun,
                          on_progress: ProgressCallback | None, cancel: asyncio.Event,
                          scheduled: bool) -> BackupRun:
        run = await self._start(job, host, "verify", of_run=target.id, scheduled=scheduled)
        ctx = self._context(job, host, run, on_progress, cancel)
        try:
            outcome = await self._call(self.method(job).verify(ctx, target))
        except asyncio.CancelledError:
            await self._finish(run, MethodOutcome("cancelled", "cancelled"), RunLog(), scheduled)
            raise
        return await self._finish(run, outcome, RunLog(), scheduled)

    # -- restore -----------------------------------------------------------------

    async def restore(
        self,
        name: str,
        run_id: str,
        *,
        to: str | None = None,
        in_place: bool = False,
        to_host: str | None = None,
        paths: Sequence[str] = (),
        dry_run: bool = False,
        confirmed: bool = False,
        change: str | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> RestoreResult:
        """Restore a backup run onto its host: into ``to`` (a new or empty directory) or in place.

        ``to_host`` restores onto another inventory host instead of the one
        the backup came from (for restic, that host must reach the
        repository and the password file). A dry run lists what would be
        written, with target paths, and changes nothing. In place needs
        ``confirmed=True`` and, on a production host, the change gate's
        approval (``change`` names it).
        """
        job = self.job(name)
        _refuse_command_method(job, "restore")
        target = self._run_of(job, run_id)
        if target.kind != "backup" or not target.good:
            raise BackupError(f"{target.id} is a {target.status} {target.kind} run, "
                              f"not a good backup: nothing to restore")
        if in_place == (to is not None):
            raise BackupError("give either a new directory to restore to (--to PATH) "
                              "or --in-place, not both")
        if to is not None and not to.startswith("/"):
            raise BackupError(f"the restore directory must be an absolute path on "
                              f"{target.host}, got {to!r}")
        _refuse_pruned(target, "restored")
        host = self._host_named(to_host or target.host)
        request = RestoreRequest(None if in_place else to, tuple(paths), dry_run)
        where = "/ (in place)" if in_place else str(to)
        if dry_run:
            ctx = self._context(job, host, target, None, cancel or asyncio.Event())
            entries = await self._call_list(self.method(job).list_files(ctx, target, request))
            return RestoreResult(host.name, where, target.id, True, entries=entries)
        self.services.require_operator("restore backups")
        if in_place:
            if not confirmed:
                raise ConfirmationNeeded(
                    f"restoring {target.id} in place overwrites files on {host.name}: "
                    f"confirm it (--yes), or restore into a new directory with --to PATH")
            self.change_gate([host], change,
                             f"backup restore in place: job {job.name}, {target.id}")
        cancel = cancel or asyncio.Event()
        if to is not None:
            # Refused before any run is recorded: a usage mistake, not a failed restore.
            probe = self._context(job, host, target, None, cancel)
            try:
                refusal = await check_new_directory(probe, to)
            except TransportError:
                refusal = None  # unreachable: the restore run records the failure
            if refusal:
                raise BackupError(refusal)
        with self._locked(job):
            run = await self._start(job, host, "restore", of_run=target.id)
            run.detail["target"] = where
            if host.name != target.host:
                run.detail["from_host"] = target.host
            ctx = self._context(job, host, run, on_progress, cancel)
            try:
                outcome = await self._call(self.method(job).restore(ctx, target, request))
            except asyncio.CancelledError:
                await self._finish(run, MethodOutcome("cancelled", "cancelled"), RunLog(), False)
                raise
            finished = await self._finish(run, outcome, RunLog(), False)
        return RestoreResult(host.name, where, target.id, False, run=finished)

    async def list_files(self, name: str, run_id: str, limit: int | None = None) -> list[FileEntry]:
        """The files in a backup run (the manifest, or ``restic ls``), at most ``limit``."""
        job = self.job(name)
        _refuse_command_method(job, "list the files of")
        target = self._run_of(job, run_id)
        _refuse_pruned(target, "listed")
        host = self._host_named(target.host)
        ctx = self._context(job, host, target, None, asyncio.Event())
        return await self._call_list(self.method(job).list_files(ctx, target, None, limit))

    # -- prune -------------------------------------------------------------------

    async def prune(self, name: str, host: str | None = None, *, dry_run: bool = False,
                    on_progress: ProgressCallback | None = None,
                    cancel: asyncio.Event | None = None) -> list[PruneReport]:
        """Apply the job's retention on each host; a dry run lists the victims only.

        Progress counts backups deleted (``done`` of ``total``); ``cancel``
        stops between two deletions (the run is recorded ``cancelled``, the
        backups deleted so far are marked pruned).
        """
        job = self.job(name)
        if job.method == "command":
            raise BackupError(f"job {job.name!r} uses the command method: itop cannot prune "
                              f"what the command wrote")
        if job.retention.is_empty:
            raise BackupError(f"job {job.name!r} has no retention policy: every backup is kept")
        if not dry_run:
            self.services.require_operator("prune backups")
        hosts = self.hosts_of(job, host)
        cancel = cancel or asyncio.Event()
        with self._locked(job):
            reports = []
            for one in hosts:
                if cancel.is_set():
                    break
                reports.append(await self._prune_host(job, one, dry_run=dry_run,
                                                      on_progress=on_progress, cancel=cancel))
            return reports

    async def _prune_host(self, job: BackupJob, host: Host, *, dry_run: bool,
                          scheduled: bool = False, on_progress: ProgressCallback | None = None,
                          cancel: asyncio.Event | None = None) -> PruneReport:
        backups = [r for r in await asyncio.to_thread(self.repo.runs, job.name, host.name, "backup")
                   if r.good and not r.detail.get("pruned_by")]
        if dry_run:
            # A dry run is not recorded: the method gets a run that is never stored.
            unrecorded = BackupRun(id="BKR-0", job=job.name, host=host.name, kind="prune",
                                   start=utc_now_text(self.clock()))
            ctx = self._context(job, host, unrecorded, None, asyncio.Event())
            outcome = await self._call_prune(self.method(job).prune(ctx, backups, True))
            return PruneReport(host.name, True, outcome)
        run = await self._start(job, host, "prune", scheduled=scheduled)
        ctx = self._context(job, host, run, on_progress, cancel or asyncio.Event())
        try:
            outcome = await self._call_prune(self.method(job).prune(ctx, backups, False))
        except asyncio.CancelledError:
            await self._finish(run, MethodOutcome("cancelled", "cancelled"), RunLog(), scheduled)
            raise
        removed = [item.run_id for item in outcome.remove if item.run_id]
        if outcome.deleted is not None:
            removed = list(outcome.deleted)
        elif outcome.status != "succeeded":
            removed = []
        if removed:
            await asyncio.to_thread(self._mark_pruned, removed, run.id)
        run.detail.update({"kept": [i.to_dict() for i in outcome.keep],
                           "removed": [i.to_dict() for i in outcome.remove]})
        result = MethodOutcome(outcome.status, outcome.log, files=len(removed))
        finished = await self._finish(run, result, RunLog(), scheduled)
        return PruneReport(host.name, False, outcome, finished)

    def _mark_pruned(self, run_ids: list[str], by: str) -> None:
        for run_id in run_ids:
            victim = self.repo.get_run(run_id)
            if victim is not None:
                victim.detail["pruned_by"] = by
                self.repo.finish_run(victim)

    # -- scheduling ----------------------------------------------------------------

    def next_due(self, job: BackupJob, now: datetime | None = None) -> datetime | None:
        """When the job's schedule fires next after the latest handled time."""
        if not job.schedule:
            return None
        return parse_cron(job.schedule).next_after(self._handled_until(job, "backup"))

    def _handled_until(self, job: BackupJob, kind: str) -> datetime:
        marks = [job.created, job.last_due if kind == "backup" else job.last_verify_due]
        runs = self.repo.runs(job=job.name, kind=kind)
        if runs:
            marks.append(runs[-1].start)
        known = [parse_utc(m) for m in marks if m]
        return max(known) if known else self.clock()

    def _due(self, job: BackupJob, kind: str, now: datetime) -> DueSlot | None:
        schedule = job.schedule if kind == "backup" else job.verify.schedule
        if not schedule or not job.active:
            return None
        if kind == "verify" and job.verify.when != "schedule":
            return None
        return due_slot(parse_cron(schedule), self._handled_until(job, kind), now)

    async def run_due(
        self,
        *,
        now: datetime | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> list[DueResult]:
        """Start every job (and scheduled verify) that is due; check RPOs; what was done.

        A job another itop holds is skipped (nothing recorded, it stays due);
        missed times are caught up by one run.
        """
        self.services.require_operator("run scheduled backups")
        moment = now or self.clock()
        done: list[DueResult] = []
        for job in self.jobs():
            for kind in ("backup", "verify"):
                slot = self._due(job, kind, moment)
                if slot is None:
                    continue
                result = DueResult(job.name, kind, utc_now_text(slot.at), slot.missed)
                busy = False
                try:
                    if kind == "backup":
                        result.runs = await self.run_job(job.name, on_progress=on_progress,
                                                         cancel=cancel, scheduled=True)
                    else:
                        result.runs = await self.verify(job.name, on_progress=on_progress,
                                                        cancel=cancel, scheduled=True)
                except JobBusy as exc:
                    result.skipped, busy = str(exc), True
                except BackupError as exc:
                    result.skipped = str(exc)
                if not busy:
                    # Handled, even when it could not run (no hosts...): not due again
                    # until the next scheduled time. A busy job stays due.
                    field_name = "last_due" if kind == "backup" else "last_verify_due"
                    await asyncio.to_thread(self.repo.update_job, job.name,
                                            **{field_name: utc_now_text(moment)})
                await asyncio.to_thread(self._audit_scheduler, result)
                done.append(result)
        await asyncio.to_thread(self.check_rpo, moment)
        return done

    def _audit_scheduler(self, result: DueResult) -> None:
        self._scheduler_audit().append(
            f"backup.due.{result.kind}", result.job,
            {"slot": result.slot, "missed": result.missed, "skipped": result.skipped,
             "runs": [r.id for r in result.runs]},
            result="skipped" if result.skipped else "ok")

    def _scheduler_audit(self) -> AuditLog:
        audit = self.services.audit
        return AuditLog(audit.path, audit.actor, "scheduler")

    # -- status and RPO -------------------------------------------------------------

    def status(self, now: datetime | None = None) -> list[HostStatus]:
        """One row per job and host: last run, last success, last verified, next due, RPO."""
        moment = now or self.clock()
        inventory = self.services.inventory.load()
        runs = self.repo.runs()
        rows: list[HostStatus] = []
        for job in self.jobs():
            hosts = self._status_hosts(job, inventory, runs)
            lock = self.lock_for(job)
            running = lock.is_held()
            next_time = self.next_due(job) if job.active else None
            if not hosts:
                # Still listed, so that it can be seen, edited and removed.
                rows.append(HostStatus(
                    job=job.name, job_id=job.id, host="", method=job.method,
                    schedule=job.schedule, active=job.active, running=False,
                    next_due=utc_now_text(next_time) if next_time else None,
                    rpo_hours=job.rpo_hours, rpo_state="none", now=moment,
                    created=job.created))
            for host in hosts:
                mine = [r for r in runs if r.job == job.name and r.host == host]
                backups = [r for r in mine if r.kind == "backup"]
                last_run = backups[-1] if backups else None
                if last_run is not None and last_run.status == "running":
                    last_run = _with_status(last_run, effective_status(last_run, running))
                last_success = next((r for r in reversed(backups) if r.good), None)
                last_verified = next((r for r in reversed(mine)
                                      if r.kind == "verify" and r.status == "succeeded"), None)
                rows.append(HostStatus(
                    job=job.name, job_id=job.id, host=host, method=job.method,
                    schedule=job.schedule, active=job.active,
                    running=running and any(r.status == "running" for r in mine),
                    next_due=utc_now_text(next_time) if next_time else None,
                    rpo_hours=job.rpo_hours,
                    rpo_state=rpo_state(job, last_success.end if last_success else None, moment),
                    last_run=last_run, last_success=last_success, last_verified=last_verified,
                    now=moment, created=job.created,
                ))
        return rows

    @staticmethod
    def _status_hosts(job: BackupJob, inventory: Any, runs: list[BackupRun]) -> list[str]:
        """The hosts the job selects, then those it backed up before but no longer selects.

        Only backup runs count: a restore onto another host (``--to-host``)
        does not make that host one of the job's.
        """
        hosts = [h.name for h in select_hosts(inventory, job.hosts)]
        former = {r.host for r in runs if r.job == job.name and r.kind == "backup"}
        return hosts + sorted(former - set(hosts))

    def check_rpo(self, now: datetime | None = None, job_name: str | None = None) -> list[RpoChange]:
        """Open a Problem for each job and host past its RPO; resolve those back within it.

        Problems are per host with the source ``backup:<job>``; opening and
        resolving are idempotent and audited when they change something.
        """
        if self.services.read_only:
            return []
        moment = now or self.clock()
        changes: list[RpoChange] = []
        rows = [r for r in self.status(moment) if job_name is None or r.job == job_name]
        changes += self._resolve_strays(rows, moment, job_name)
        for row in rows:
            if row.rpo_hours is None or not row.has_host:
                continue
            source = f"backup:{row.job}"
            age = row.rpo_age_hours
            if row.rpo_state == "breached":
                problem, created = self.problems.open(
                    row.host, source, RPO_SEVERITY, moment.timestamp(), value=age,
                    limit=row.rpo_hours)
                if created:
                    changes.append(RpoChange(row.job, row.host, "opened", problem.id, age))
                    self.services.audit.append("backup.rpo.breach", f"{row.job}@{row.host}", {
                        "problem": problem.id, "rpo_hours": row.rpo_hours, "age_hours": age,
                        "last_success": row.last_success.id if row.last_success else None},
                        result="failed")
            else:
                resolved = self.problems.resolve(row.host, source, moment.timestamp())
                if resolved is not None:
                    changes.append(RpoChange(row.job, row.host, "resolved", resolved.id, age))
                    self.services.audit.append("backup.rpo.resolved", f"{row.job}@{row.host}", {
                        "problem": resolved.id,
                        "last_success": row.last_success.id if row.last_success else None})
        return changes

    def _resolve_strays(self, rows: list[HostStatus], moment: datetime,
                        job_name: str | None) -> list[RpoChange]:
        """Resolve RPO problems of a job on a host that has no status row with an RPO.

        Such problems are left by an older itop (which counted restore
        targets as hosts of the job), by a job whose RPO was removed, or by a
        host that left the job; nothing would ever resolve them otherwise.
        """
        watched = {(r.job, r.host) for r in rows if r.rpo_hours is not None and r.has_host}
        jobs = {j.name for j in self.jobs()}
        changes: list[RpoChange] = []
        for problem in self.problems.open_problems():
            if not problem.metric.startswith("backup:"):
                continue
            job = problem.metric.removeprefix("backup:")
            if job_name is not None and job != job_name:
                continue
            if job in jobs and (job, problem.host) in watched:
                continue
            resolved = self.problems.resolve(problem.host, problem.metric, moment.timestamp())
            if resolved is not None:
                changes.append(RpoChange(job, problem.host, "resolved", resolved.id, None))
                self.services.audit.append("backup.rpo.resolved", f"{job}@{problem.host}", {
                    "problem": resolved.id, "why": "no RPO is watched for this job and host"})
        return changes

    def history(self, name: str, host: str | None = None,
                kind: str | None = None) -> list[BackupRun]:
        """The runs of a job, oldest first (of one host and kind when given)."""
        job = self.job(name)
        runs = self.repo.runs(job=job.name, host=host, kind=kind)
        running = self.lock_for(job).is_held()
        return [_with_status(r, effective_status(r, running)) if r.status == "running" else r
                for r in runs]

    # -- shared ------------------------------------------------------------------

    def _run_of(self, job: BackupJob, run_id: str) -> BackupRun:
        try:
            run = self.repo.get_run(run_id)
        except BackupRecordError as exc:
            raise BackupError(str(exc)) from None
        if run is None or run.job != job.name:
            raise BackupError(f"no run {run_id} of job {job.name!r} (see `itop backup history "
                              f"{job.name}`)")
        return run

    def _host_named(self, name: str) -> Host:
        host = self.services.inventory.get_host(name)
        if host is None:
            raise BackupError(f"host {name!r} is not in the inventory (see `itop inventory list`)")
        return host

    def check_job_hosts(self, job: BackupJob) -> list[str]:
        """Check a job's hosts against the inventory before it is stored; its warnings.

        The host of an ``ssh://HOST/DIR`` destination must be in the
        inventory (:class:`BackupError` otherwise). A selector that matches
        no host is allowed (the hosts may be added later) but warned about.
        """
        if job.method == "tar" and job.destination.startswith(SSH_SCHEME):
            try:
                backup_host, _directory = parse_ssh_destination(job.destination)
            except ValueError as exc:
                raise BackupError(f"destination: {exc}") from None
            if self.services.inventory.get_host(backup_host) is None:
                raise BackupError(
                    f"destination: the backup host {backup_host!r} of {job.destination!r} is "
                    f"not in the inventory (add it first: `itop inventory add`)")
        if not select_hosts(self.services.inventory.load(), job.hosts):
            return [f"the hosts selector {job.hosts!r} matches no host in the inventory (yet): "
                    f"job {job.name!r} runs nowhere until it does"]
        return []

    def _context(self, job: BackupJob, host: Host, run: BackupRun,
                 on_progress: ProgressCallback | None, cancel: asyncio.Event) -> MethodContext:
        meter = RateMeter()

        def progress(done: int, total: int | None) -> None:
            if on_progress is None:
                return
            rate, elapsed = meter.add(done)
            on_progress(Progress(job.name, host.name, run.id, run.kind, done, total,
                                 rate, elapsed))

        return MethodContext(self.services.transports, host, job, run, progress, cancel,
                             resolve_host=self._host_named)

    async def _start(self, job: BackupJob, host: Host, kind: str, *, of_run: str | None = None,
                     scheduled: bool = False) -> BackupRun:
        run = BackupRun(
            id="", job=job.name, host=host.name, kind=kind, start=utc_now_text(self.clock()),
            of_run=of_run, actor=self.services.actor,
            origin="scheduler" if scheduled else self.services.origin,
        )
        return await asyncio.to_thread(self.repo.start_run, run)

    async def _finish(self, run: BackupRun, outcome: MethodOutcome, log: RunLog,
                      scheduled: bool) -> BackupRun:
        run.status = outcome.status
        run.end = utc_now_text(self.clock())
        for name in ("bytes", "files", "archive", "sha256", "snapshot_id"):
            value = getattr(outcome, name)
            if value is not None:
                setattr(run, name, value)
        run.detail.update(outcome.detail)
        combined = RunLog()
        combined.add(log.text())
        combined.add(outcome.log)
        run.log = combined.text()
        await asyncio.to_thread(self.repo.finish_run, run)
        audit = self._scheduler_audit() if scheduled else self.services.audit
        detail = {"run": run.id, "status": run.status, "of_run": run.of_run, "bytes": run.bytes,
                  "files": run.files, "archive": run.archive, "sha256": run.sha256,
                  "snapshot_id": run.snapshot_id, "duration": run.duration,
                  "detail": {k: v for k, v in run.detail.items() if k not in ("kept", "removed")},
                  "log_tail": strip_control(run.log[-500:])}
        await asyncio.to_thread(audit.append, f"backup.{run.kind}", f"{run.job}@{run.host}",
                                detail, "ok" if run.good else run.status)
        return run

    @staticmethod
    async def _call(work: Any) -> MethodOutcome:
        """Await a method call; host and method errors become a failed outcome."""
        try:
            outcome: MethodOutcome = await work
            return outcome
        except (TransportError, MethodError, OSError) as exc:
            return MethodOutcome("failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the run "running"
            return MethodOutcome("failed", f"internal error: {type(exc).__name__}: {exc}")

    @staticmethod
    async def _call_list(work: Any) -> list[FileEntry]:
        try:
            entries: list[FileEntry] = await work
            return entries
        except (MethodError, TransportError, OSError) as exc:
            raise BackupError(str(exc)) from None

    @staticmethod
    async def _call_prune(work: Any) -> PruneOutcome:
        try:
            outcome: PruneOutcome = await work
            return outcome
        except (TransportError, MethodError, OSError) as exc:
            return PruneOutcome("failed", log=str(exc))


def _size(count: int) -> str:
    """``1.5 MiB`` style sizes."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _refuse_command_method(job: BackupJob, what: str) -> None:
    """:class:`BackupError` for a command-method job: itop does not know what it wrote."""
    if job.method == "command":
        raise BackupError(f"job {job.name!r} uses the command method: itop cannot {what} "
                          f"what the command wrote")


def _refuse_pruned(run: BackupRun, what: str) -> None:
    """:class:`BackupError` when ``run``'s backup was deleted by a prune."""
    pruned_by = run.detail.get("pruned_by")
    if pruned_by:
        raise BackupError(f"{run.id} was pruned by {pruned_by}: its backup is deleted and "
                          f"cannot be {what} (see `itop backup history {run.job}`)")


def _selection_text(job: BackupJob, hosts: list[Host]) -> str:
    """``it backs up web01, web02 (selector 'web*')``, without repeating a lone host name."""
    names = [h.name for h in hosts]
    if not names:
        return f"its selector {job.hosts!r} matches no host in the inventory"
    if names == [job.hosts]:
        return f"it backs up only {job.hosts}"
    return f"it backs up {', '.join(names)} (selector {job.hosts!r})"


def _with_status(run: BackupRun, status: str) -> BackupRun:
    """A copy of ``run`` showing ``status`` (``interrupted`` is never stored)."""
    copy = BackupRun.from_dict(run.to_dict())
    copy.status = status if status != "interrupted" else "failed"
    if status == "interrupted":
        copy.log = (copy.log + "\ninterrupted: the itop process running it stopped").strip()
    return copy


async def _each_host(hosts: list[Host], work: Callable[[Host], Any]) -> list[list[BackupRun]]:
    """``work`` for each host, :data:`HOSTS_AT_ONCE` at a time, results in host order."""
    semaphore = asyncio.Semaphore(HOSTS_AT_ONCE)

    async def one(host: Host) -> list[BackupRun]:
        async with semaphore:
            result: list[BackupRun] = await work(host)
            return result

    return list(await asyncio.gather(*(one(h) for h in hosts)))

