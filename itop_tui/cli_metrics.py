"""Headless commands of live performance: ``metrics``, ``collect``, ``report performance``, ``problems``.

Registered through :data:`itop_tui.cli.EXTENSIONS`. Output shapes are
documented in ``docs/cli.md``; they are stable.

- ``itop metrics`` watches hosts without persisting anything: JSON lines of
  samples (``--json``) or a plain table per interval.
- ``itop collect`` is the headless collector for a systemd service: rollups
  and problems are written, state changes and problem events logged to
  stderr one line each; SIGTERM or SIGINT stop it cleanly (exit 0).
- ``itop report performance`` reads the rollups of every run so far.
- ``itop problems list|ack`` show and acknowledge problems.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from itop_tui.cli import (
    EXIT_FAILED,
    EXIT_OK,
    OperationFailed,
    UsageError,
    add_actions,
    clean,
    err,
    format_bytes,
    on_stop_signals,
    open_services,
    positive_float,
    print_json,
    select_or_all,
    select_some,
    table,
    warn_recovered,
)
from itop_tui.domain.metrics import Sample
from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.domain.procfs import MIN_INTERVAL
from itop_tui.domain.selectors import SelectorError
from itop_tui.domain.thresholds import DEFAULT_THRESHOLDS
from itop_tui.domain.timespec import parse_since
from itop_tui.ops.fleet_monitor import (
    FleetMonitor,
    HostStatus,
    MonitorConfig,
    MonitorUpdate,
    NoticeUpdate,
    ProblemUpdate,
    SampleUpdate,
    StateUpdate,
    acknowledge_problem,
    collect_once,
)
from itop_tui.ops.monitor_settings import monitor_config
from itop_tui.services.context import Services
from itop_tui.services.problem_repo import Problem, ProblemError, ProblemRepository, iso_time
from itop_tui.services.rollup_store import DB_FILENAME, RollupStore, RollupStoreError
from itop_tui.services.store import StoreError

COMMANDS: list[tuple[str, str]] = [
    ("metrics [SELECTOR]", "live metrics of hosts: a table per interval, or JSON lines"),
    ("collect [SELECTOR]", "collect metrics headless into rollups and problems (a service)"),
    ("report performance [SELECTOR]", "min, avg, p95, max per host and metric from the rollups"),
    ("problems list", "show open problems (--all: resolved ones too)"),
    ("problems ack ID", "acknowledge a problem with a note"),
]

REPORT_FORMATS = ("md", "csv", "json")
# The inventory is read again this often by `itop collect`, so hosts added or
# removed while it runs are picked up without a restart.
INVENTORY_RELOAD_SECONDS = 60.0
# The longest collection interval, as for metrics.interval in itop.yaml.
MAX_INTERVAL = 3600.0
# `itop metrics` evaluates no threshold: every built-in one switched off.
NO_THRESHOLDS: dict[str, Any] = dict.fromkeys(DEFAULT_THRESHOLDS)
# States worth a line while watching: trouble, and the recovery from it.
TROUBLE_STATES = ("unreachable", "stale")


def interval_seconds(text: str) -> float:
    """argparse type: a collection interval, :data:`MIN_INTERVAL` to :data:`MAX_INTERVAL` seconds.

    The range of ``metrics.interval`` in itop.yaml; checked here, so a bad
    value is blamed on the option, not on the config file.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and MIN_INTERVAL <= value <= MAX_INTERVAL):
        raise argparse.ArgumentTypeError(
            f"must be from {MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds, got {text}"
        )
    return value


def register(sub: Any, add: Any) -> None:
    """Add the command parsers to ``itop``'s subparsers (the cli.EXTENSIONS hook)."""
    p = add(sub, "metrics", "live metrics of hosts: a table per interval, or JSON lines")
    p.add_argument("selector", nargs="?", default=None, help="host selector (default: all)")
    p.add_argument("--once", action="store_true",
                   help="one sample per host (with rates), then exit; 1 if a host failed")
    p.add_argument("--interval", type=interval_seconds, default=None, metavar="S",
                   help="seconds between samples (default: metrics.interval)")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S",
                   help="stop after S seconds (default: at Ctrl-C); with --once, "
                        "the longest wait for the hosts")
    p.add_argument("--json", action="store_true",
                   help="JSON lines: one sample per line, and host state lines")
    p.set_defaults(handler=cmd_metrics)

    p = add(sub, "collect", "collect metrics headless into rollups and problems (a service)")
    p.add_argument("selector", nargs="?", default=None, help="host selector (default: all)")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S",
                   help="stop after S seconds (default: at SIGTERM or Ctrl-C)")
    p.set_defaults(handler=cmd_collect)

    reports = add_actions(add, sub, "report", "reports from the recorded history", metavar="REPORT")
    p = add(reports, "performance", "min, avg, p95, max per host and metric from the rollups")
    p.add_argument("selector", nargs="?", default=None,
                   help="host selector (default: every host with data, removed ones too)")
    p.add_argument("--since", default="24h", metavar="WHEN",
                   help="period start: a duration back from now (30m, 24h, 7d) or an ISO time "
                        "(default: 24h)")
    p.add_argument("--format", choices=REPORT_FORMATS, default="md", help="output format")
    p.set_defaults(handler=cmd_report_performance)

    group = add(sub, "problems", "show and acknowledge problems")
    actions = group.add_subparsers(dest="problems_command", metavar="ACTION")
    # `itop problems` alone lists the open problems.
    group.set_defaults(handler=cmd_problems_list, all=False, json=False)
    p = add(actions, "list", "show open problems (--all: resolved ones too)")
    p.add_argument("--all", action="store_true", help="include resolved problems")
    p.add_argument("--json", action="store_true", help="print a JSON list of problems")
    p.set_defaults(handler=cmd_problems_list)
    p = add(actions, "ack", "acknowledge a problem with a note")
    p.add_argument("id", help="problem id (PRB-N or N)")
    p.add_argument("--note", required=True, help="what is being done about it (required)")
    p.add_argument("--json", action="store_true", help="print the acknowledged problem as JSON")
    p.set_defaults(handler=cmd_problems_ack)


# -- shared ----------------------------------------------------------------------


def json_line(data: dict[str, Any]) -> None:
    """Print one compact JSON line and flush it (ASCII only: safe on any terminal)."""
    print(json.dumps(data, separators=(",", ":")), flush=True)


def state_record(host: str, state: str, error: str | None, at: float | None = None) -> dict[str, Any]:
    """A host state line of ``itop metrics --json``."""
    return {
        "host": host,
        "time": iso_time(time.time() if at is None else at),
        "state": state,
        "error": error,
    }


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, caught: list[str]) -> Iterator[None]:
    """Set ``stop`` on SIGINT or SIGTERM (their names go to ``caught``) inside the block."""

    def on_signal(sig: signal.Signals) -> None:
        caught.append(sig.name)
        stop.set()

    with on_stop_signals(on_signal):
        yield


async def wait_until(stop: asyncio.Event, seconds: float | None) -> None:
    """Return when ``stop`` is set or ``seconds`` passed (never, for None)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class _OneLineFormatter(logging.Formatter):
    """Log records as one ``itop: message`` line, the exception named, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = f"{text}: {type(exc).__name__}: {exc}"
        return clean(f"itop: {text}")


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """Errors logged by the monitor as one line on stderr; warnings are left to the notices.

    The monitor reports every notice as an update too, which the commands
    print; without this Python's last-resort handler would print them twice
    and bugs with a traceback. ``ITOP_DEBUG=1`` keeps the tracebacks.
    """
    logger = logging.getLogger("itop_tui")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    if not os.environ.get("ITOP_DEBUG"):
        handler.setFormatter(_OneLineFormatter())
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def _rate(value: float | None) -> str:
    return "" if value is None else f"{format_bytes(value)}/s"


def _figure(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


TABLE_HEADER = [
    "HOST", "STATE", "CPU%", "MEM%", "SWAP%", "LOAD1", "LOAD5", "LOAD15", "DISK%",
    "READ", "WRITE", "RX", "TX", "FS%", "PROCS", "ERROR",
]


def sample_row(host: str, status: HostStatus | None, sample: Sample | None) -> list[str]:
    """One table row: the host's state and its latest figures (empty when unknown)."""
    state = status.state if status is not None else ("up" if sample is not None else "")
    error = (status.error or "") if status is not None and status.state != "up" else ""
    if sample is None:
        return [clean(c) for c in [host, state, *[""] * (len(TABLE_HEADER) - 3), error]]
    cells = [
        host, state,
        _figure(sample.cpu_percent), _figure(sample.mem_percent), _figure(sample.swap_percent),
        _figure(sample.load1, 2), _figure(sample.load5, 2), _figure(sample.load15, 2),
        _figure(sample.disk_busiest_util),
        _rate(sample.disk_read_bps), _rate(sample.disk_write_bps),
        _rate(sample.net_rx_bps), _rate(sample.net_tx_bps),
        _figure(sample.fs_max_percent), "" if sample.procs is None else str(sample.procs),
        error,
    ]
    return [clean(c) for c in cells]


def print_table(rows: list[list[str]]) -> None:
    """A table with its header, flushed (one per round)."""
    print(table([TABLE_HEADER, *rows]), flush=True)


# -- metrics -----------------------------------------------------------------------


def cmd_metrics(args: argparse.Namespace) -> int:
    """``itop metrics [SELECTOR] [--once] [--interval S] [--duration S] [--json]``."""
    services = open_services(args)
    hosts = select_some(services.inventory.load(), args.selector or "all")
    config = monitor_config(services.settings, interval=args.interval)
    if args.once:
        timeout = args.duration
        if timeout is None:
            # Room for a connect, then the two readings a rate needs, and some slack.
            timeout = services.settings.ssh.connect_timeout + 4 * config.interval + 5
        return asyncio.run(_metrics_once(services, hosts, config.interval, timeout, args.json))
    # Nothing is persisted by `itop metrics`, so no threshold is evaluated either.
    config.thresholds = dict(NO_THRESHOLDS)
    with quiet_logging():
        return asyncio.run(_metrics_live(services, hosts, config, args.duration, args.json))


async def _metrics_once(
    services: Services, hosts: Sequence[Host], interval: float, timeout: float, as_json: bool
) -> int:
    try:
        with quiet_logging():
            results = await collect_once(
                hosts, services.transports, interval=interval, timeout=timeout,
                audit=None if services.read_only else services.audit,
            )
    finally:
        await services.close()
    failed = 0
    rows: list[list[str]] = []
    for host in hosts:
        status, sample = results[host.name]
        ok = sample is not None and status.state == "up"
        error = status.error
        if not ok:
            failed += 1
            if error is None:
                error = f"no sample within {timeout:g}s ({status.state})"
        if as_json:
            if ok and sample is not None:
                json_line(sample.to_dict())
            else:
                json_line(state_record(host.name, status.state, error))
        else:
            rows.append(sample_row(host.name, status, sample if ok else None))
            if not ok:
                rows[-1][-1] = clean(error)
        if not ok:
            err(clean(f"{host.name}: {status.state}: {error}"))
    if rows:
        print_table(rows)
    if failed:
        err(f"{failed} of {len(hosts)} hosts failed", prefix=False)
    return EXIT_FAILED if failed else EXIT_OK


async def _metrics_live(
    services: Services,
    hosts: Sequence[Host],
    config: MonitorConfig,
    duration: float | None,
    as_json: bool,
) -> int:
    audit = None if services.read_only else services.audit
    monitor = FleetMonitor(hosts, services.transports, config, audit=audit)
    updates = monitor.subscribe()
    seen: set[str] = set()
    stop = asyncio.Event()
    caught: list[str] = []

    async def report_updates() -> None:
        last_state: dict[str, str] = {}
        while True:
            update = await updates.get()
            if isinstance(update, SampleUpdate):
                seen.add(update.host)
                if as_json:
                    json_line(update.sample.to_dict())
            elif isinstance(update, StateUpdate):
                status = update.status
                before = last_state.get(status.host)
                last_state[status.host] = status.state
                # A retry of the same trouble is no news; first contact is none either.
                if status.state == before:
                    continue
                if status.state not in TROUBLE_STATES and not (
                    status.state == "up" and before in TROUBLE_STATES
                ):
                    continue
                if as_json:
                    json_line(state_record(status.host, status.state, status.error))
                else:
                    detail = f": {status.error}" if status.error else ""
                    err(clean(f"{status.host}: {status.state}{detail}"))
            elif isinstance(update, NoticeUpdate):
                err(clean(update.message))

    async def print_rounds() -> None:
        while True:
            await asyncio.sleep(monitor.config.interval)
            statuses = monitor.statuses()
            print_table([
                sample_row(host.name, statuses.get(host.name), monitor.latest(host.name))
                for host in hosts
            ])
            print(flush=True)

    try:
        with stop_on_signals(stop, caught):
            async with monitor:
                workers = [asyncio.create_task(report_updates())]
                if not as_json:
                    workers.append(asyncio.create_task(print_rounds()))
                try:
                    await wait_until(stop, duration)
                finally:
                    for worker in workers:
                        worker.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
    finally:
        await services.close()
    silent = [host.name for host in hosts if host.name not in seen]
    if silent:
        err(clean(f"no sample from {', '.join(silent)}"))
        return EXIT_FAILED
    return EXIT_OK


# -- collect -----------------------------------------------------------------------


def log_line(message: str) -> None:
    """One line of the collector's log on stderr: UTC time, then the message."""
    print(clean(f"{iso_time(time.time())} {message}"), file=sys.stderr, flush=True)


def problem_line(update: ProblemUpdate) -> str:
    """How ``itop collect`` logs a problem event."""
    problem, event = update.problem, update.event
    parts = [update.host, "problem", update.kind]
    if problem is not None:
        parts += [problem.id, problem.metric, problem.severity]
    elif event is not None:
        parts += [event.metric, event.severity]
    if event is not None and event.value is not None:
        parts.append(f"value={event.value:.4g}")
    if event is not None and event.limit is not None:
        parts.append(f"limit={event.limit:g}")
    if update.kind == "acknowledged" and problem is not None:
        parts.append(f"by={problem.acknowledged_by}")
    return " ".join(parts)


def cmd_collect(args: argparse.Namespace) -> int:
    """``itop collect [SELECTOR] [--duration S]``: the headless collector."""
    services = open_services(args)
    services.require_writable("collect metrics (it writes rollups, problems and audit events)")
    selector = args.selector or "all"
    hosts = select_some(services.inventory.load(), selector)
    config = monitor_config(services.settings)
    with quiet_logging():
        return asyncio.run(_collect(services, selector, hosts, config, args.duration))


async def _collect(
    services: Services,
    selector: str,
    hosts: Sequence[Host],
    config: MonitorConfig,
    duration: float | None,
) -> int:
    try:
        try:
            monitor = FleetMonitor.for_services(services, hosts, config)
        except RollupStoreError as exc:
            raise OperationFailed(str(exc)) from None
        updates = monitor.subscribe()
        stop = asyncio.Event()
        caught: list[str] = []
        said: dict[str, tuple[str, str | None]] = {}
        with stop_on_signals(stop, caught):
            workers: list[asyncio.Task[None]] = []
            try:
                await monitor.start()
                log_line(
                    f"collecting {len(hosts)} hosts ({selector}) every {config.interval:g}s "
                    f"into {services.settings.data_dir / DB_FILENAME}"
                )
                workers = [
                    asyncio.create_task(_log_updates(updates, said)),
                    asyncio.create_task(_follow_inventory(services, monitor, selector)),
                ]
                await wait_until(stop, duration)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                await monitor.stop()
                # What stopping wrote (the last problem events, notices) is logged too.
                while not updates.empty():
                    _log_update(updates.get_nowait(), said)
        why = f" ({caught[0]})" if caught else ""
        log_line(f"stopped{why}")
    finally:
        await services.close()
    return EXIT_OK


async def _log_updates(
    updates: asyncio.Queue[MonitorUpdate], said: dict[str, tuple[str, str | None]]
) -> None:
    while True:
        _log_update(await updates.get(), said)


def _log_update(update: MonitorUpdate, said: dict[str, tuple[str, str | None]]) -> None:
    """Log a state change (not every retry of the same failure) or a problem event."""
    if isinstance(update, StateUpdate):
        status = update.status
        key = (status.state, status.error)
        if said.get(status.host) == key:
            return
        said[status.host] = key
        detail = f": {status.error}" if status.error else ""
        log_line(f"{status.host} state {status.state}{detail}")
    elif isinstance(update, ProblemUpdate):
        # Another itop on this host (the TUI) stored and logs that change.
        if update.changed:
            log_line(problem_line(update))
    elif isinstance(update, NoticeUpdate):
        log_line(f"{update.host + ' ' if update.host else ''}notice: {update.message}")


async def _follow_inventory(services: Services, monitor: FleetMonitor, selector: str) -> None:
    """Read the inventory again now and then; start and stop hosts as it changed."""
    while True:
        await asyncio.sleep(INVENTORY_RELOAD_SECONDS)
        try:
            inventory = await asyncio.to_thread(services.inventory.load)
            wanted = select_or_all(inventory, selector)
        except (StoreError, SelectorError) as exc:
            log_line(f"notice: cannot read the inventory, keeping the hosts: {exc}")
            continue
        before = {host.name: host for host in monitor.hosts}
        after = {host.name: host for host in wanted}
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(n for n in set(before) & set(after) if before[n] != after[n])
        if not (added or removed or changed):
            continue
        monitor.set_hosts(wanted)
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (("added", added), ("removed", removed), ("changed", changed))
            if names
        ]
        log_line(f"inventory: {'; '.join(parts)}")


# -- report ------------------------------------------------------------------------


def cmd_report_performance(args: argparse.Namespace) -> int:
    """``itop report performance [SELECTOR] [--since 24h] [--format md|csv|json]``."""
    from itop_tui.ops.performance_report import ReportError, build_report, render

    services = open_services(args)
    hosts: list[str] | None = None
    inventory = services.inventory.load()
    if args.selector is not None:
        hosts = [host.name for host in select_some(inventory, args.selector)]
    # Hosts never heard from are listed too ("no data"), not left out.
    expected = hosts if hosts is not None else sorted(inventory.hosts)
    now = time.time()
    since = parse_since(args.since, now)
    path = services.settings.data_dir / DB_FILENAME
    if not path.exists():
        raise OperationFailed(
            f"{path}: no metrics history yet; it is written by `itop collect` "
            "and the Performance pane"
        )
    try:
        with RollupStore(path) as store:
            text = render(build_report(store, hosts, since, now, expected), args.format)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    except RollupStoreError as exc:
        raise OperationFailed(str(exc)) from None
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


# -- problems ----------------------------------------------------------------------


def cmd_problems_list(args: argparse.Namespace) -> int:
    """``itop problems list [--all] [--json]``."""
    services = open_services(args)
    repo = ProblemRepository.in_data_dir(services.settings.data_dir)
    problems = repo.problems(include_resolved=bool(args.all))
    warn_recovered(repo.store)
    if args.json:
        print_json([p.to_dict() for p in problems])
        return EXIT_OK
    if not problems:
        err("no problems" if args.all else "no open problems", prefix=False)
        return EXIT_OK
    header = ["ID", "HOST", "METRIC", "SEVERITY", "SINCE", "VALUE", "LIMIT", "ACKNOWLEDGED BY"]
    if args.all:
        header.append("RESOLVED")
    header.append("NOTE")
    rows = [header]
    for problem in problems:
        row = [
            problem.id, problem.host, problem.metric, problem.severity, problem.opened,
            _number(problem.value), _number(problem.limit), problem.acknowledged_by or "",
        ]
        if args.all:
            row.append(problem.resolved or "")
        row.append(problem.note)
        rows.append([clean(cell) for cell in row])
    print(table(rows))
    return EXIT_OK


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def cmd_problems_ack(args: argparse.Namespace) -> int:
    """``itop problems ack ID [--note TEXT] [--json]``: audited as ``problem.acknowledge``."""
    if not strip_control(args.note).strip():
        raise UsageError("--note: an acknowledgement needs a note saying what is being done")
    services = open_services(args)
    services.require_writable("acknowledge problems")
    repo = ProblemRepository.in_data_dir(services.settings.data_dir)
    try:
        problem: Problem = acknowledge_problem(repo, services.audit, args.id, args.note)
    except ProblemError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json(problem.to_dict())
    else:
        print(clean(
            f"acknowledged {problem.id} ({problem.host} {problem.metric} {problem.severity})"
            + (f": {problem.note}" if problem.note else "")
        ))
    return EXIT_OK
