"""Headless commands of backups: ``itop backup ...``.

Registered through :data:`itop_tui.cli.EXTENSIONS`; the use cases are in
:mod:`itop_tui.ops.backup_runner`. ``--json`` shapes are documented in
``docs/backups.md``. Exit status: 0 ok; 1 a run failed, the job is busy in
another itop, the change gate refused, or (``status``) an RPO is breached;
2 usage or config errors (unknown job or run, a missing ``--yes``).

Ctrl-C (or SIGTERM) during a run cancels it cleanly: the run is recorded
as ``cancelled`` and nothing partial is kept under a final name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from itop_tui.cli import (
    EXIT_FAILED,
    EXIT_OK,
    OperationFailed,
    UsageError,
    add_actions,
    clean,
    err,
    format_bytes,
    non_negative_int,
    on_stop_signals,
    open_services,
    positive_float,
    positive_int,
    print_json,
    table,
    warn_recovered,
)
from itop_tui.domain.backup import (
    COMPRESSIONS,
    METHODS,
    RUN_KINDS,
    VERIFY_SCOPES,
    VERIFY_WHEN,
    BackupJob,
    BackupRun,
    Retention,
    VerifyPolicy,
    parse_utc,
)
from itop_tui.ops.backup_runner import (
    SCHEDULER_INTERVAL,
    BackupError,
    BackupRunner,
    ConfirmationNeeded,
    HostStatus,
    JobBusy,
    Progress,
)
from itop_tui.services.backup_repo import BackupRecordError

T = TypeVar("T")

COMMANDS: list[tuple[str, str]] = [
    ("backup list", "list backup jobs"),
    ("backup status", "last run, last good and last verified backup, next due, RPO per host"),
    ("backup run JOB [--host H]", "back up a job now (one host or all)"),
    ("backup verify JOB [--run ID]", "verify a backup by a test restore"),
    ("backup files JOB --run ID", "list the files in a backup"),
    ("backup restore JOB --run ID --to PATH", "restore a backup into a new directory on its host"),
    ("backup prune JOB [--dry-run]", "delete backups the retention policy no longer keeps"),
    ("backup run-due", "start the jobs that are due (for cron or a systemd timer)"),
    ("backup history JOB", "runs of a job"),
    ("backup add NAME --hosts SEL ...", "define a backup job"),
    ("backup remove NAME", "remove a backup job (its history stays)"),
    ("backup pause|resume JOB", "stop or restart a job's schedule"),
]

# Seconds between two progress lines when stderr is not a terminal.
PROGRESS_LINE_EVERY = 5.0


def register(sub: Any, add: Any) -> None:
    """Add ``itop backup`` to ``itop``'s subparsers (the cli.EXTENSIONS hook)."""
    actions = add_actions(add, sub, "backup", "define, run, verify, restore and prune backups")

    p = add(actions, "list", "list backup jobs")
    p.add_argument("--json", action="store_true", help="print a JSON list of jobs")
    p.set_defaults(handler=cmd_list)

    p = add(actions, "status", "last run, last good and last verified backup, next due, RPO")
    p.add_argument("job", nargs="?", default=None, help="only this job")
    p.add_argument("--json", action="store_true", help="print a JSON list of job/host rows")
    p.set_defaults(handler=cmd_status)

    p = add(actions, "run", "back up a job now (one host or all)")
    p.add_argument("job", help="job name or id")
    p.add_argument("--host", default=None, help="only this host")
    p.add_argument("--json", action="store_true", help="print a JSON list of the runs")
    p.set_defaults(handler=cmd_run)

    p = add(actions, "verify", "verify backups by a test restore")
    p.add_argument("job", help="job name or id")
    p.add_argument("--run", default=None, metavar="ID",
                   help="the backup run to verify (default: the newest good one per host)")
    p.add_argument("--host", default=None, help="only this host")
    p.add_argument("--json", action="store_true", help="print a JSON list of the verify runs")
    p.set_defaults(handler=cmd_verify)

    p = add(actions, "files", "list the files in a backup")
    p.add_argument("job", help="job name or id")
    p.add_argument("--run", required=True, metavar="ID", help="the backup run")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="at most N entries")
    p.add_argument("--json", action="store_true", help="print a JSON list of entries")
    p.set_defaults(handler=cmd_files)

    p = add(actions, "restore", "restore a backup onto its host")
    p.add_argument("job", help="job name or id")
    p.add_argument("--run", required=True, metavar="ID", help="the backup run to restore")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", default=None, metavar="PATH",
                       help="a new (or empty) directory on the host")
    where.add_argument("--in-place", action="store_true",
                       help="overwrite the files where they came from (needs --yes; on "
                            "production hosts an approved change)")
    p.add_argument("--to-host", default=None, metavar="H",
                   help="restore onto this inventory host instead of the one backed up")
    p.add_argument("--path", action="append", default=[], dest="paths", metavar="P",
                   help="restore only this file or directory (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list what would be written")
    p.add_argument("--yes", action="store_true", help="confirm a restore in place")
    p.add_argument("--change", default=None, metavar="CHG",
                   help="the approved change a restore in place on production runs under")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_restore)

    p = add(actions, "prune", "delete backups the retention policy no longer keeps")
    p.add_argument("job", help="job name or id")
    p.add_argument("--host", default=None, help="only this host")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.set_defaults(handler=cmd_prune)

    p = add(actions, "run-due", "start the jobs that are due (for cron or a systemd timer)")
    p.add_argument("--json", action="store_true", help="print a JSON list of what was done")
    p.set_defaults(handler=cmd_run_due)

    p = add(actions, "history", "runs of a job")
    p.add_argument("job", help="job name or id")
    p.add_argument("--host", default=None, help="only this host")
    p.add_argument("--kind", choices=RUN_KINDS, default=None, help="only runs of this kind")
    p.add_argument("--json", action="store_true", help="print a JSON list of runs")
    p.set_defaults(handler=cmd_history)

    p = add(actions, "add", "define a backup job (stored in itop; config jobs live in the file)")
    p.add_argument("name", help="job name (letters, digits, '.', '_', '-')")
    p.add_argument("--hosts", required=True, metavar="SELECTOR", help="host selector")
    p.add_argument("--method", choices=METHODS, default="tar")
    p.add_argument("--source", action="append", default=[], dest="sources", metavar="PATH",
                   help="absolute path on the host to back up (repeatable)")
    p.add_argument("--exclude", action="append", default=[], dest="excludes", metavar="PATTERN",
                   help="pattern to leave out (repeatable)")
    p.add_argument("--destination", default="",
                   help="tar: a directory on this machine (default <backup root>/NAME), or "
                        "ssh://HOST/DIR: directory DIR on backup host HOST of the inventory; "
                        "restic: the repository as the host sees it")
    p.add_argument("--password-file", default=None, metavar="PATH",
                   help="restic: the password file's path on the host")
    p.add_argument("--command", default=None, help="command method: the backup command")
    p.add_argument("--compression", choices=COMPRESSIONS, default="gzip", help="tar method")
    p.add_argument("--schedule", default=None, metavar="CRON",
                   help="cron expression in UTC, e.g. '0 2 * * *'")
    for bucket in ("last", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{bucket}", type=non_negative_int, default=0, metavar="N")
    p.add_argument("--verify", choices=VERIFY_WHEN, default="after-backup", dest="verify_when")
    p.add_argument("--verify-scope", choices=VERIFY_SCOPES, default="full")
    p.add_argument("--verify-sample-percent", type=positive_float, default=10.0, metavar="P")
    p.add_argument("--verify-schedule", default=None, metavar="CRON")
    p.add_argument("--rpo-hours", type=positive_float, default=None, metavar="H")
    p.add_argument("--pre", default=None, dest="pre_command", metavar="COMMAND",
                   help="command run on the host before the backup")
    p.add_argument("--post", default=None, dest="post_command", metavar="COMMAND",
                   help="command run on the host after the backup")
    p.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                   help="seconds a backup may take (default 6 hours)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(handler=cmd_add)

    p = add(actions, "remove", "remove a backup job (its history stays)")
    p.add_argument("name", help="job name or id")
    p.set_defaults(handler=cmd_remove)

    for verb, paused in (("pause", True), ("resume", False)):
        p = add(actions, verb, f"{verb} a job's schedule")
        p.add_argument("name", help="job name or id")
        p.set_defaults(handler=functools.partial(cmd_pause, paused=paused))


# -- shared ----------------------------------------------------------------------


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Backup exceptions as the CLI's exit statuses."""
    from itop_tui.ops.change_gate import ChangeRequired

    try:
        yield
    except (JobBusy, ChangeRequired) as exc:
        raise OperationFailed(str(exc)) from None
    except (ConfirmationNeeded, BackupError, BackupRecordError) as exc:
        raise UsageError(str(exc)) from None


def _runner(args: argparse.Namespace) -> BackupRunner:
    services = open_services(args)
    with _errors():
        runner = BackupRunner(services)
    warn_recovered(runner.repo.store)
    return runner


def _run_async(runner: BackupRunner, work: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``work(cancel)``; SIGINT/SIGTERM set ``cancel`` (a second Ctrl-C interrupts)."""

    async def go() -> T:
        cancel = asyncio.Event()

        def on_signal(sig: signal.Signals) -> None:
            err(f"{sig.name}: cancelling (the runs are recorded as cancelled)")
            cancel.set()

        try:
            with on_stop_signals(on_signal, once=True), _errors():
                return await work(cancel)
        finally:
            await runner.services.close()

    return asyncio.run(go())


def _run_with_progress(
    runner: BackupRunner,
    work: Callable[[Callable[[Progress], None], asyncio.Event], Awaitable[T]],
) -> T:
    """:func:`_run_async` with ``work(on_progress, cancel)`` reporting progress on stderr."""
    printer = _ProgressPrinter()
    try:
        return _run_async(runner, lambda cancel: work(printer, cancel))
    finally:
        printer.done()


class _ProgressPrinter:
    """Progress on stderr: one rewritten line on a terminal, a line every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last: dict[str, float] = {}
        self._printed: dict[str, tuple[int, int | None]] = {}
        """How far each run had come in the line printed last (done, total)."""
        self._held: dict[str, Progress] = {}
        """The latest report of each run not printed yet (between two lines)."""
        self._shown = False

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        key = f"{progress.run_id}"
        if not self.tty and now - self._last.get(key, 0.0) < PROGRESS_LINE_EVERY:
            self._held[key] = progress
            return
        self._last[key] = now
        self._held.pop(key, None)
        self._write(progress)

    def _write(self, progress: Progress) -> None:
        self._printed[progress.run_id] = (progress.done, progress.total)
        line = clean(f"{progress.job}@{progress.host} {progress.kind} {progress.run_id}: "
                     f"{progress.describe()}")
        if self.tty:
            sys.stderr.write(f"\r\x1b[K{line}")
            self._shown = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        """End the display: the last report of every run is the last line shown of it."""
        if self.tty and self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
        for key, progress in self._held.items():
            # A report that came no further than the line printed (only its rate
            # moved) would print the same position twice.
            if self._printed.get(key) != (progress.done, progress.total):
                self._write(progress)
        self._held.clear()


def _age(text: str | None, now: datetime) -> str:
    if not text:
        return "never"
    seconds = max(0.0, (now - parse_utc(text)).total_seconds())
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60)}m ago"
    return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600)}h ago"


def _duration(run: BackupRun) -> str:
    seconds = run.duration
    if seconds is None:
        return ""
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def run_status_text(run: BackupRun) -> str:
    """``succeeded``, or ``succeeded (pruned)`` for a backup a prune deleted."""
    return run.status + (" (pruned)" if run.detail.get("pruned_by") else "")


def _run_rows(runs: list[BackupRun]) -> str:
    rows = [["RUN", "JOB", "HOST", "KIND", "STATUS", "START", "DURATION", "SIZE", "FILES", "OF",
             "ARCHIVE / SNAPSHOT"]]
    for run in runs:
        rows.append([clean(c) for c in (
            run.id, run.job, run.host, run.kind, run_status_text(run), run.start, _duration(run),
            format_bytes(run.bytes), "" if run.files is None else run.files, run.of_run or "",
            run.archive or run.snapshot_id or "")])
    return table(rows)


def _report_runs(runs: list[BackupRun], as_json: bool) -> int:
    if as_json:
        print_json([r.to_dict() for r in runs])
    else:
        print(_run_rows(runs))
        for run in runs:
            if not run.good:
                last = [line for line in run.log.splitlines() if line.strip()][-3:]
                err(clean(f"{run.id} {run.kind} on {run.host} {run.status}: {' | '.join(last)}"))
    return EXIT_OK if runs and all(r.good for r in runs) else EXIT_FAILED


# -- commands ----------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """``itop backup list [--json]``."""
    runner = _runner(args)
    jobs = runner.jobs()
    if args.json:
        print_json([j.to_dict() for j in jobs])
        return EXIT_OK
    if not jobs:
        err("no backup jobs (define them under backups.jobs in the config, or with "
            "`itop backup add`)", prefix=False)
        return EXIT_OK
    rows = [["ID", "JOB", "HOSTS", "METHOD", "SCHEDULE", "RETENTION", "VERIFY", "RPO", "FROM",
             "STATE"]]
    for job in jobs:
        rows.append([clean(c) for c in (
            job.id, job.name, job.hosts, job.method, job.schedule or "manual",
            "-" if job.method == "command" else job.retention.describe(),
            "-" if job.method == "command" else f"{job.verify.when} ({job.verify.scope})",
            _hours(job.rpo_hours), job.origin,
            "active" if job.active else ("paused" if job.paused else "disabled"))])
    print(table(rows))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """``itop backup status [JOB] [--json]``: exit 1 when an RPO is breached."""
    runner = _runner(args)
    now = datetime.now(UTC)
    with _errors():
        if args.job is not None:
            runner.job(args.job)
        runner.check_rpo(now)
        rows = [r for r in runner.status(now)
                if args.job is None or args.job in (r.job, r.job_id)]
    breached = [r for r in rows if r.rpo_state == "breached"]
    if args.json:
        print_json([r.to_dict() for r in rows])
    elif not rows:
        err("no backup jobs (define them under backups.jobs in the config, or with "
            "`itop backup add`)", prefix=False)
    else:
        print(table(_status_rows(rows, now)))
    for row in breached:
        if row.last_success is not None:
            since = f"last good backup {_age(row.last_success.end, now)}"
        else:
            since = f"no good backup since the job was created {_age(row.created, now)}"
        err(clean(f"{row.job}@{row.host}: RPO of {_hours(row.rpo_hours)} breached ({since})"))
    return EXIT_FAILED if breached else EXIT_OK


def _hours(hours: float | None) -> str:
    """``26h``; an RPO under an hour in minutes or seconds (``0.01h`` reads as ``36s``)."""
    if hours is None:
        return ""
    if hours >= 1:
        return f"{hours:g}h"
    seconds = hours * 3600
    return f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"


def _status_rows(rows: list[HostStatus], now: datetime) -> list[list[str]]:
    table_rows = [["JOB", "HOST", "STATE", "LAST RUN", "LAST GOOD", "LAST VERIFIED", "NEXT DUE",
                   "RPO"]]
    for row in rows:
        last = row.last_run
        if not row.has_host:
            table_rows.append([clean(c) for c in (
                row.job, "(no host matches)", row.state, "-", "-", "-", "-",
                _hours(row.rpo_hours))])
            continue
        table_rows.append([clean(c) for c in (
            row.job, row.host, row.state,
            f"{last.status} {_age(last.start, now)}" if last else "never",
            _age(row.last_success.end if row.last_success else None, now),
            _age(row.last_verified.end if row.last_verified else None, now),
            next_due_text(row.next_due, now) if row.next_due
            else ("paused" if not row.active else "manual"),
            f"{_hours(row.rpo_hours)} {row.rpo_state}" if row.rpo_hours else "")])
    return table_rows


def next_due_text(next_due: str, now: datetime) -> str:
    """A due time to show: ``now`` for a slot just due, ``overdue since ...`` for an older one.

    The next due time is computed from the last handled slot, so it is in
    the past while a due job waits for a scheduler (the TUI, or
    ``itop backup run-due``).
    """
    due = parse_utc(next_due)
    if due > now:
        return f"{due:%Y-%m-%d %H:%M}"
    if (now - due).total_seconds() < 2 * SCHEDULER_INTERVAL:
        return "now"
    return f"overdue since {due:%Y-%m-%d %H:%M}"


def cmd_run(args: argparse.Namespace) -> int:
    """``itop backup run JOB [--host H] [--json]``."""
    runner = _runner(args)
    runs = _run_with_progress(runner, lambda progress, cancel: runner.run_job(
        args.job, args.host, on_progress=progress, cancel=cancel))
    return _report_runs(runs, args.json)


def cmd_verify(args: argparse.Namespace) -> int:
    """``itop backup verify JOB [--run ID] [--host H] [--json]``."""
    runner = _runner(args)
    runs = _run_with_progress(runner, lambda progress, cancel: runner.verify(
        args.job, args.run, args.host, on_progress=progress, cancel=cancel))
    return _report_runs(runs, args.json)


def cmd_files(args: argparse.Namespace) -> int:
    """``itop backup files JOB --run ID [--limit N] [--json]``."""
    runner = _runner(args)
    entries = _run_async(runner, lambda _cancel: runner.list_files(args.job, args.run, args.limit))
    if args.json:
        print_json([e.to_dict() for e in entries])
        return EXIT_OK
    rows = [["TYPE", "MODE", "SIZE", "PATH"]]
    rows += [[clean(c) for c in (e.type, e.mode, format_bytes(e.size), e.path)] for e in entries]
    print(table(rows))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    """``itop backup restore JOB --run ID (--to PATH | --in-place --yes) [--dry-run]``."""
    runner = _runner(args)
    result = _run_with_progress(runner, lambda progress, cancel: runner.restore(
        args.job, args.run, to=args.to, in_place=bool(args.in_place),
        to_host=args.to_host, paths=args.paths,
        dry_run=bool(args.dry_run), confirmed=bool(args.yes), change=args.change,
        on_progress=progress, cancel=cancel))
    if args.json:
        print_json(result.to_dict())
    elif result.dry_run:
        print(clean(f"dry run: restoring {result.of_run} onto {result.host} would write "
                    f"{len(result.entries)} entries:"))
        for entry in result.entries:
            print(clean(f"  {entry.type:8} {entry.mode} {format_bytes(entry.size):>10}  {entry.target}"))
    elif result.run is not None:
        print(_run_rows([result.run]))
        last = [line for line in result.run.log.splitlines() if line.strip()][-1:]
        if last:
            (print if result.run.good else err)(clean(last[0]))
    if result.dry_run:
        return EXIT_OK
    return EXIT_OK if result.run is not None and result.run.good else EXIT_FAILED


def cmd_prune(args: argparse.Namespace) -> int:
    """``itop backup prune JOB [--host H] [--dry-run] [--json]``."""
    runner = _runner(args)
    reports = _run_with_progress(runner, lambda progress, cancel: runner.prune(
        args.job, args.host, dry_run=bool(args.dry_run), on_progress=progress, cancel=cancel))
    if args.json:
        print_json([r.to_dict() for r in reports])
    else:
        for report in reports:
            verb = "would remove" if report.dry_run else "removed"
            print(clean(f"{report.host}: keeps {len(report.outcome.keep)}, {verb} "
                        f"{len(report.outcome.remove)}"))
            for item in report.outcome.keep:
                print(clean(f"  keep    {item.run_id or '-':8} {item.snapshot_id or '':9} "
                            f"{item.time}  {', '.join(item.reasons)}"))
            for item in report.outcome.remove:
                print(clean(f"  remove  {item.run_id or '-':8} {item.snapshot_id or '':9} "
                            f"{item.time}  {item.archive or ''}"))
            if report.outcome.status != "succeeded":
                err(clean(f"{report.host}: prune {report.outcome.status}: {report.outcome.log}"))
    return EXIT_OK if all(r.outcome.status == "succeeded" for r in reports) else EXIT_FAILED


def cmd_run_due(args: argparse.Namespace) -> int:
    """``itop backup run-due [--json]``: one pass of the scheduler."""
    runner = _runner(args)
    results = _run_with_progress(runner, lambda progress, cancel: runner.run_due(
        on_progress=progress, cancel=cancel))
    runs = [run for result in results for run in result.runs]
    if args.json:
        print_json([r.to_dict() for r in results])
    else:
        if not results:
            print("nothing due")
        for result in results:
            caught = f" (caught up {result.missed} missed)" if result.missed else ""
            if result.skipped:
                print(clean(f"{result.job} {result.kind} due {result.slot}: skipped: {result.skipped}"))
            else:
                states = ", ".join(f"{r.id} {r.kind} {r.host} {r.status}" for r in result.runs)
                print(clean(f"{result.job} {result.kind} due {result.slot}{caught}: {states}"))
    return EXIT_OK if all(r.good for r in runs) else EXIT_FAILED


def cmd_history(args: argparse.Namespace) -> int:
    """``itop backup history JOB [--host H] [--kind K] [--json]``."""
    runner = _runner(args)
    with _errors():
        runs = runner.history(args.job, args.host, args.kind)
    if args.json:
        print_json([r.to_dict() for r in runs])
    elif not runs:
        err("no runs yet", prefix=False)
    else:
        print(_run_rows(runs))
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    """``itop backup add NAME --hosts SEL [options]``."""
    runner = _runner(args)
    job = BackupJob(
        name=args.name, hosts=args.hosts, method=args.method, sources=list(args.sources),
        excludes=list(args.excludes), destination=args.destination,
        password_file=args.password_file, command=args.command, compression=args.compression,
        schedule=args.schedule,
        retention=Retention(args.keep_last, args.keep_daily, args.keep_weekly, args.keep_monthly),
        verify=VerifyPolicy(args.verify_when, args.verify_scope, args.verify_sample_percent,
                            args.verify_schedule),
        rpo_hours=args.rpo_hours, pre_command=args.pre_command, post_command=args.post_command,
    )
    if args.timeout is not None:
        job.timeout = args.timeout
    with _errors():
        added = runner.add_job(job)
    for warning in runner.check_job_hosts(added):
        err(clean(f"warning: {warning}"))
    if args.json:
        print_json(added.to_dict())
    else:
        print(f"added backup job {added.name} ({added.id})")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    """``itop backup remove NAME``."""
    runner = _runner(args)
    with _errors():
        removed = runner.remove_job(args.name)
    print(f"removed backup job {removed.name} ({removed.id}); its runs stay in the history")
    return EXIT_OK


def cmd_pause(args: argparse.Namespace, *, paused: bool) -> int:
    """``itop backup pause|resume NAME``."""
    runner = _runner(args)
    with _errors():
        job = runner.set_paused(args.name, paused)
    print(f"{'paused' if paused else 'resumed'} backup job {job.name}")
    return EXIT_OK
