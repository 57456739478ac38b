"""Live metrics of a fleet: collection, history, rollups and problems.

:class:`FleetMonitor` runs one collector task per host (see
:mod:`itop_tui.services.metrics_collector`) and, for every raw sample:

1. computes the :class:`Sample` (:class:`SampleBuilder`);
2. appends it to the in-memory :class:`FleetHistory` ring buffers;
3. feeds the host's :class:`MinuteRollup`; finished minutes are written to
   the :class:`RollupStore` (SQLite) by a thread once a minute, not per sample;
4. evaluates the host's thresholds; an event opens, escalates or resolves a
   :class:`Problem` and records the breach in the rollup store, and is
   audited (``problem.open``, ``problem.escalate``, ``problem.deescalate``,
   ``problem.resolve``), each only by the process that made the change.
   Store and audit writes run in a thread, one event after the other.

Every update reaches consumers without polling: through listeners
(callbacks run on the event loop) or queues from :meth:`FleetMonitor.subscribe`.

Host states: ``connecting`` (first attempt since start or resume), ``up``
(samples arriving), ``stale`` (no sample for ``stale_after_intervals``
intervals while the stream is open, e.g. a frozen host before keepalive
notices), ``unreachable`` (the stream failed; ``error`` says why; retried
with exponential backoff up to :data:`BACKOFF_MAX` seconds; a refused
authentication or host key is retried only on :meth:`FleetMonitor.retry`),
``paused``. Each host has its own task: a slow or dead host never holds up
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from itop_tui.domain.history import FleetHistory, MinuteRollup
from itop_tui.domain.metrics import METRIC_NAMES, Sample, SampleBuilder
from itop_tui.domain.models import Host
from itop_tui.domain.procfs import MIN_INTERVAL, RawSample
from itop_tui.domain.rollup import MINUTE, P95_PERCENT, Breach, Rollup, weighted_percentile
from itop_tui.domain.thresholds import (
    DEFAULT_THRESHOLDS,
    OpenProblem,
    Threshold,
    ThresholdEvaluator,
    ThresholdEvent,
    resolve_thresholds,
    validate_threshold_config,
)
from itop_tui.services.audit import AuditLog
from itop_tui.services.inventory_repo import utc_now
from itop_tui.services.metrics_collector import (
    Collector,
    collector_for,
    df_every_frames,
    settle_closing,
)
from itop_tui.services.problem_repo import Problem, ProblemRepository, iso_time
from itop_tui.services.rollup_store import RollupStore
from itop_tui.services.transport import (
    AuthFailed,
    HostKeyChanged,
    HostKeyUnknown,
    Transport,
    TransportError,
)

if TYPE_CHECKING:
    from itop_tui.services.context import Services

log = logging.getLogger(__name__)

HostState = Literal["connecting", "up", "stale", "unreachable", "paused"]
HOST_STATES: tuple[HostState, ...] = ("connecting", "up", "stale", "unreachable", "paused")

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
ROLLUP_FLUSH_SECONDS = 60.0
SEEN_RECORD_SECONDS = 300.0
"""Seconds between two records of which hosts answered (the inventory's "last seen"):
one store write for all of them, so a large fleet does not rewrite the inventory often."""

SeenRecorder = Callable[[list[str], str], None]
"""Stores that the named hosts answered at a UTC ISO 8601 time (blocking; run in a thread)."""
PRUNE_SECONDS = 3600.0
# An audit event names this many watched hosts at most (and counts them all).
AUDIT_HOST_NAMES = 50
STOP_TIMEOUT = 10.0
DEFAULT_QUEUE_SIZE = 10_000
# Rollups kept for a retry when SQLite is busy: an hour of a 500-host fleet.
MAX_PENDING_ROLLUPS = 500 * len(METRIC_NAMES) * 60
# Failures that another attempt cannot fix without the operator.
_NEEDS_OPERATOR = (AuthFailed, HostKeyUnknown, HostKeyChanged)


class MonitorConfigError(ValueError):
    """A monitor setting is invalid; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass
class MonitorConfig:
    """Settings of live collection (the ``metrics`` section of itop.yaml, once wired).

    ``interval`` seconds between samples; ``df_every_seconds`` between
    filesystem readings; ``retention_days`` of rollups and resolved breaches
    in SQLite; ``thresholds`` as in :mod:`itop_tui.domain.thresholds`
    (``{}`` means the built-in defaults); a host is ``stale`` after
    ``stale_after_intervals`` intervals without a sample; ``history_seconds``
    of samples kept in memory per host (at the starting interval).
    """

    interval: float = 2.0
    df_every_seconds: float = 30.0
    retention_days: float = 30.0
    thresholds: dict[str, Any] = field(default_factory=dict)
    stale_after_intervals: float = 3.0
    history_seconds: float = 3600.0

    def validate(self) -> None:
        """Raise :class:`MonitorConfigError` (or ``ThresholdConfigError``) naming the bad field."""
        _positive("interval", self.interval, MIN_INTERVAL)
        _positive("df_every_seconds", self.df_every_seconds, 0)
        _positive("retention_days", self.retention_days, 0)
        _positive("stale_after_intervals", self.stale_after_intervals, 1)
        _positive("history_seconds", self.history_seconds, 0)
        validate_threshold_config(self.thresholds)


def _positive(name: str, value: float, minimum: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0 or value < minimum:
        floor = f" and at least {minimum:g}" if minimum else ""
        raise MonitorConfigError(name, f"must be a number above 0{floor}, got {value!r}")


@dataclass(frozen=True, slots=True)
class HostStatus:
    """Where collection from one host stands.

    ``since`` is when the host entered ``state`` (epoch seconds);
    ``last_sample`` the time of its latest sample; ``failures`` the count of
    attempts that failed in a row; ``next_retry`` when the next attempt is
    due (None while up, or when waiting for :meth:`FleetMonitor.retry`).
    """

    host: str
    state: HostState
    since: float
    error: str | None = None
    last_sample: float | None = None
    failures: int = 0
    next_retry: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "host": self.host,
            "state": self.state,
            "since": iso_time(self.since),
            "error": self.error,
            "last_sample": None if self.last_sample is None else iso_time(self.last_sample),
            "failures": self.failures,
            "next_retry": None if self.next_retry is None else iso_time(self.next_retry),
        }


@dataclass(frozen=True, slots=True)
class SampleUpdate:
    """A new sample of a host."""

    host: str
    sample: Sample


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """A host changed state (or its error changed)."""

    host: str
    status: HostStatus


@dataclass(frozen=True, slots=True)
class ProblemUpdate:
    """A problem was opened, escalated, deescalated, resolved or acknowledged.

    ``problem`` is the stored record (None when the monitor keeps no
    problem store); ``event`` the threshold event behind it (None for an
    acknowledgement). ``changed`` is False when another itop process
    watching the same host had stored the change already (nothing was
    written or audited here; the stored record may be newer).
    """

    kind: str
    host: str
    problem: Problem | None
    event: ThresholdEvent | None = None
    changed: bool = True


@dataclass(frozen=True, slots=True)
class NoticeUpdate:
    """Something the operator should know that is not a host state (a store error)."""

    message: str
    host: str | None = None


MonitorUpdate = SampleUpdate | StateUpdate | ProblemUpdate | NoticeUpdate
Listener = Callable[[MonitorUpdate], None]


class TransportSource(Protocol):
    """Gives the transport of a host (a :class:`TransportPool`)."""

    def for_host(self, host: Host) -> Transport:
        """The transport for ``host``."""
        ...


CollectorFactory = Callable[[Host, float, int], Collector]


class _Watch:
    """The state kept for one monitored host."""

    def __init__(self, host: Host, thresholds: dict[str, Threshold]) -> None:
        self.host = host
        self.thresholds = thresholds
        self.builder = SampleBuilder()
        self.rollup = MinuteRollup(host.name)
        self.status = HostStatus(host.name, "connecting", time.time())
        self.latest: Sample | None = None
        self.last_arrival: float | None = None  # loop time of the latest sample
        # Loop time the current stream was started: a stream being reopened
        # (new interval) is not stale before it had time to send a sample.
        self.started: float = 0.0
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()


class FleetMonitor:
    """Collects live metrics of many hosts; see the module notes.

    ``transports`` gives each host's transport (a ``TransportPool``; not
    used for ``address: local`` hosts, read with psutil). ``rollups``,
    ``problems`` and ``audit`` are optional: without them nothing is
    persisted (``itop metrics``), and threshold events are still reported.
    Raises ``ThresholdConfigError`` or :class:`MonitorConfigError` for bad
    settings.

    Use ``async with monitor:`` or :meth:`start` / :meth:`stop`, from one
    event loop.
    """

    def __init__(
        self,
        hosts: Iterable[Host],
        transports: TransportSource | None,
        config: MonitorConfig | None = None,
        *,
        rollups: RollupStore | None = None,
        problems: ProblemRepository | None = None,
        audit: AuditLog | None = None,
        seen: SeenRecorder | None = None,
        collector_factory: CollectorFactory | None = None,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.config = config or MonitorConfig()
        self.config.validate()
        self.transports = transports
        self.rollups = rollups
        self.problems = problems
        self.audit = audit
        self.seen = seen
        self._answered: set[str] = set()
        """Hosts that sent a sample since the last record of who answered."""
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.history = FleetHistory(self.config.history_seconds, self.config.interval)
        self.evaluator = ThresholdEvaluator(max_gap=self._max_gap())
        self.dropped_updates = 0
        self._collector_factory = collector_factory or self._default_collector
        self._watches: dict[str, _Watch] = {}
        for host in hosts:
            if host.name in self._watches:
                raise MonitorConfigError("hosts", f"host {host.name!r} is listed twice")
            self._watches[host.name] = _Watch(host, self._thresholds_for(host))
        self._listeners: list[Listener] = []
        self._queues: list[asyncio.Queue[MonitorUpdate]] = []
        self._events: asyncio.Queue[ThresholdEvent] | None = None
        self._pending_rollups: list[Rollup] = []
        self._background: list[asyncio.Task[None]] = []
        self._retired: set[asyncio.Task[None]] = set()
        self._owned: list[RollupStore] = []
        self._running = False
        self._paused = False
        # Minutes up to this one may hold a row an earlier run wrote as it stopped.
        self._first_minute = 0
        self._closed = False  # the stores this monitor opened were closed by stop()

    # -- construction from services ----------------------------------------

    @classmethod
    def for_data_dir(
        cls,
        hosts: Iterable[Host],
        transports: TransportSource | None,
        config: MonitorConfig | None,
        data_dir: Path,
        audit: AuditLog | None,
        **kwargs: Any,
    ) -> FleetMonitor:
        """A monitor persisting to ``<data_dir>/metrics.sqlite`` and ``problems.json``.

        The rollup store it opens is closed by :meth:`stop`. This is what
        ``itop collect`` and the Performance pane use, with
        ``services.transports`` and ``services.audit``.
        """
        rollups = RollupStore.in_data_dir(Path(data_dir))
        try:
            monitor = cls(
                hosts,
                transports,
                config,
                rollups=rollups,
                problems=ProblemRepository.in_data_dir(Path(data_dir)),
                audit=audit,
                **kwargs,
            )
        except BaseException:
            rollups.close()
            raise
        monitor._owned.append(rollups)
        return monitor

    @classmethod
    def for_services(
        cls,
        services: Services,
        hosts: Iterable[Host],
        config: MonitorConfig | None = None,
        **kwargs: Any,
    ) -> FleetMonitor:
        """The monitor of an itop process: its transports, data dir and audit log.

        Hosts that answer are recorded as seen in the inventory (its
        "last seen"), every :data:`SEEN_RECORD_SECONDS`. A read-only itop
        (``--read-only``, viewer role) watches without writing: no rollups,
        problems, audit events or "last seen".
        """
        if services.read_only:
            return cls(hosts, services.transports, config, **kwargs)

        def record_seen(names: list[str], at: str) -> None:
            services.inventory.mark_seen_many(names, at, missing_ok=True)

        kwargs.setdefault("seen", record_seen)
        return cls.for_data_dir(
            hosts, services.transports, config, services.settings.data_dir, services.audit,
            **kwargs,
        )

    # -- configuration -----------------------------------------------------

    def _thresholds_for(self, host: Host) -> dict[str, Threshold]:
        return resolve_thresholds(host.name, host.groups, self.config.thresholds)

    def thresholds_for(self, host: str) -> dict[str, Threshold]:
        """The thresholds applied to a monitored host, metric -> threshold."""
        return dict(self._watches[host].thresholds)

    def _max_gap(self) -> float:
        # A longer silence (host down, monitor paused) restarts pending
        # breach timers: a breach must be seen continuously to count.
        return self.config.stale_after_intervals * self.config.interval

    def _df_every(self) -> int:
        return df_every_frames(self.config.df_every_seconds, self.config.interval)

    def _default_collector(self, host: Host, interval: float, df_every: int) -> Collector:
        transport = None if host.is_local or self.transports is None else self.transports.for_host(host)
        return collector_for(host, transport, interval, df_every)

    # -- reading -----------------------------------------------------------

    @property
    def hosts(self) -> list[Host]:
        """The monitored hosts."""
        return [watch.host for watch in self._watches.values()]

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self._running

    @property
    def paused(self) -> bool:
        """Collection is paused (streams closed)."""
        return self._paused

    def status(self, host: str) -> HostStatus:
        """The current status of a monitored host (``KeyError`` if not monitored)."""
        watch = self._watches[host]
        latest = watch.latest
        return replace(watch.status, last_sample=None if latest is None else latest.time)

    def statuses(self) -> dict[str, HostStatus]:
        """The status of every monitored host."""
        return {name: self.status(name) for name in self._watches}

    def latest(self, host: str) -> Sample | None:
        """The newest sample of a host, or None before the first."""
        watch = self._watches.get(host)
        return None if watch is None else watch.latest

    def open_problems(self) -> list[OpenProblem]:
        """Host metrics in breach as this monitor sees them (the store has the records)."""
        return self.evaluator.open_problems()

    # -- updates -----------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every update, on the event loop; returns a remover.

        Listeners must be quick (post a message, set a flag); an exception
        in one is logged and does not stop the others.
        """
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def subscribe(self, maxsize: int = DEFAULT_QUEUE_SIZE) -> asyncio.Queue[MonitorUpdate]:
        """A queue receiving every update from now on.

        When it is full the oldest update is dropped (counted in
        ``dropped_updates``): a consumer that falls behind sees recent data,
        and :meth:`statuses` / :meth:`latest` always hold the current state.
        """
        queue: asyncio.Queue[MonitorUpdate] = asyncio.Queue(maxsize=max(1, maxsize))
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[MonitorUpdate]) -> None:
        """Stop feeding a queue from :meth:`subscribe`."""
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    def _emit(self, update: MonitorUpdate) -> None:
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:
                log.exception("metrics listener failed on %r", update)
        for queue in self._queues:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                    self.dropped_updates += 1
            queue.put_nowait(update)

    def _notice(self, message: str, host: str | None = None) -> None:
        log.warning("%s", message)
        self._emit(NoticeUpdate(message, host))

    def _set_state(
        self,
        watch: _Watch,
        state: HostState,
        error: str | None = None,
        failures: int = 0,
        next_retry: float | None = None,
    ) -> None:
        old = watch.status
        if (old.state, old.error, old.failures, old.next_retry) == (
            state,
            error,
            failures,
            next_retry,
        ):
            return
        since = old.since if old.state == state else time.time()
        watch.status = HostStatus(watch.host.name, state, since, error, None, failures, next_retry)
        self._emit(StateUpdate(watch.host.name, self.status(watch.host.name)))

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> FleetMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Restore open problems, prune old rollups, and start every host's collector."""
        if self._running:
            return
        if self._closed:
            raise RuntimeError("this monitor was stopped and its stores closed; make a new one")
        self._running = True
        self._first_minute = math.floor(time.time() / MINUTE) * MINUTE
        self._events = asyncio.Queue()
        await self._audit_watch("metrics.watch")
        await self._restore_problems()
        self._background = [
            asyncio.create_task(self._write_events(), name="itop-metrics-events"),
            asyncio.create_task(self._maintain(), name="itop-metrics-rollups"),
            asyncio.create_task(self._watch_staleness(), name="itop-metrics-stale"),
        ]
        for watch in self._watches.values():
            if self._paused:
                self._set_state(watch, "paused")
            else:
                self._start_watch(watch)

    async def run(self, duration: float | None = None) -> None:
        """Start, collect for ``duration`` seconds (or until cancelled), then stop."""
        await self.start()
        try:
            if duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(duration)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close every stream, persist what is pending, and stop.

        The remote loops end by themselves once their channel is closed.
        Rollups of the minute in progress are written as they stand. A
        monitor from :meth:`for_data_dir` closes its rollup store here and
        cannot be started again.
        """
        if not self._running:
            return
        self._running = False
        for watch in self._watches.values():
            self._stop_watch(watch)
        await self._settle(set(self._retired))
        # Streams cancelled while opening are closed once open: wait for those too.
        await settle_closing(STOP_TIMEOUT)
        events = self._events
        if events is not None:
            try:
                await asyncio.wait_for(events.join(), STOP_TIMEOUT)
            except TimeoutError:
                self._notice(f"{events.qsize()} problem updates were not stored before stopping")
        for task in self._background:
            task.cancel()
        await self._settle(set(self._background))
        self._background = []
        for watch in self._watches.values():
            self._pending_rollups.extend(watch.rollup.flush())
        await self.flush()
        await self.record_seen()
        for store in self._owned:
            await asyncio.to_thread(store.close)
            self._closed = True
        self._owned = []
        await self._audit_watch("metrics.unwatch")

    async def _audit_watch(self, action: str) -> None:
        """Audit the start or end of collection, once for all hosts.

        Streaming reads ``/proc`` on every watched host: an action on those
        hosts, audited once per monitor rather than once per sample.
        """
        if self.audit is None:
            return
        names = sorted(self._watches)
        detail = {"hosts": names[:AUDIT_HOST_NAMES], "count": len(names),
                  "interval": self.config.interval}
        audit = self.audit
        await asyncio.to_thread(audit.append, action, f"{len(names)} hosts", detail)

    async def _settle(self, tasks: set[asyncio.Task[None]]) -> None:
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("metrics task %s failed", task.get_name(), exc_info=task.exception())
        if pending:
            log.warning("%d metrics tasks did not stop within %ss", len(pending), STOP_TIMEOUT)

    def pause(self) -> None:
        """Close every stream (the hosts' loops end) until :meth:`resume`."""
        if self._paused:
            return
        self._paused = True
        if not self._running:
            return
        for watch in self._watches.values():
            self._stop_watch(watch)
            self._set_state(watch, "paused")

    def resume(self) -> None:
        """Start collecting again after :meth:`pause`."""
        if not self._paused:
            return
        self._paused = False
        if self._running:
            for watch in self._watches.values():
                self._start_watch(watch)

    def set_interval(self, seconds: float) -> None:
        """Collect every ``seconds`` from now on (the streams are restarted).

        The history keeps as many entries as it was made for, so a shorter
        interval shortens the time it covers.
        """
        _positive("interval", seconds, MIN_INTERVAL)
        if seconds == self.config.interval:
            return
        self.config.interval = float(seconds)
        self.evaluator.max_gap = self._max_gap()
        self._restart_all()

    def retry(self, host: str) -> None:
        """Try a host now instead of waiting for its backoff (e.g. after trusting its key)."""
        watch = self._watches.get(host)
        if watch is not None:
            watch.wake.set()

    def set_hosts(self, hosts: Iterable[Host]) -> None:
        """Monitor exactly these hosts: start new ones, stop removed ones, restart changed ones."""
        wanted: dict[str, Host] = {}
        for host in hosts:
            wanted[host.name] = host
        thresholds = {name: self._thresholds_for(host) for name, host in wanted.items()}
        for name in [n for n in self._watches if n not in wanted]:
            gone = self._watches.pop(name)
            self._stop_watch(gone)
            self._pending_rollups.extend(gone.rollup.flush())
            self.history.forget(name)
            self.evaluator.forget(name)
        for name, host in wanted.items():
            watch = self._watches.get(name)
            if watch is not None and watch.host == host:
                watch.thresholds = thresholds[name]
                continue
            if watch is not None:
                self._stop_watch(watch)
            fresh = _Watch(host, thresholds[name])
            if watch is not None:
                fresh.rollup = watch.rollup
                fresh.latest = watch.latest
            self._watches[name] = fresh
            if self._running and not self._paused:
                self._start_watch(fresh)
            elif self._paused:
                self._set_state(fresh, "paused")

    def _restart_all(self) -> None:
        if not self._running or self._paused:
            return
        for watch in self._watches.values():
            self._stop_watch(watch)
            self._start_watch(watch)

    def _start_watch(self, watch: _Watch) -> None:
        # A restart (new interval) keeps "up" and "unreachable" until the
        # stream says otherwise, so the table does not flicker.
        if watch.status.state == "paused":
            self._set_state(watch, "connecting")
        watch.wake.clear()
        watch.started = asyncio.get_running_loop().time()
        watch.task = asyncio.create_task(
            self._watch_host(watch), name=f"itop-metrics-{watch.host.name}"
        )

    def _stop_watch(self, watch: _Watch) -> None:
        task, watch.task = watch.task, None
        if task is None or task.done():
            return
        # Cancelling closes the stream (and so the channel) where it waits.
        task.cancel()
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    # -- collection --------------------------------------------------------

    async def _watch_host(self, watch: _Watch) -> None:
        failures = 0
        while True:
            watch.builder.reset()
            hold = False
            try:
                collector = self._collector_factory(
                    watch.host, self.config.interval, self._df_every()
                )
                stream = collector.samples()
                try:
                    async for raw in stream:
                        failures = 0
                        self._on_raw(watch, raw)
                finally:
                    # Whatever ended the loop, close the channel now.
                    await stream.aclose()
                error = "the collection stream ended"
            except _NEEDS_OPERATOR as exc:
                error, hold = str(exc), True
            except TransportError as exc:
                error = str(exc)
            except Exception as exc:
                # A bug or an unexpected library error: show it on the host
                # and retry, rather than leave the host "up" without a task.
                log.exception("collection from %s failed", watch.host.name)
                error = f"{type(exc).__name__}: {exc}"
            failures += 1
            delay: float | None = None
            if not hold:
                delay = min(self.backoff_max, self.backoff_initial * 2 ** (failures - 1))
                delay *= random.uniform(0.8, 1.0)  # spread out a fleet's reconnects
            self._set_state(
                watch,
                "unreachable",
                error,
                failures,
                None if delay is None else time.time() + delay,
            )
            watch.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.wake.wait(), delay)

    def _on_raw(self, watch: _Watch, raw: RawSample) -> None:
        sample = watch.builder.add(raw)
        watch.latest = sample
        self._answered.add(sample.host)
        watch.last_arrival = asyncio.get_running_loop().time()
        if watch.status.state != "up":
            self._set_state(watch, "up")
        values = sample.values()
        self.history.host(sample.host).append_values(sample.time, values)
        done = watch.rollup.add(sample.time, values)
        if done:
            self._pending_rollups.extend(done)
        if watch.thresholds and self._events is not None:
            for event in self.evaluator.evaluate_sample(sample, watch.thresholds):
                self._events.put_nowait(event)
        self._emit(SampleUpdate(sample.host, sample))

    async def _watch_staleness(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            interval = self.config.interval
            await asyncio.sleep(interval)
            limit = self.config.stale_after_intervals * interval
            now = loop.time()
            for watch in self._watches.values():
                arrived = watch.last_arrival
                if arrived is None or watch.status.state != "up":
                    continue
                if now - max(arrived, watch.started) > limit:
                    self._set_state(watch, "stale", f"no sample for {now - arrived:.0f}s")

    # -- problems ----------------------------------------------------------

    async def _restore_problems(self) -> None:
        """Start the evaluator from the problems left open by an earlier run."""
        if self.problems is None:
            return
        try:
            open_problems = await asyncio.to_thread(self.problems.open_problems)
        except Exception as exc:
            self._notice(f"cannot read open problems: {exc}")
            return
        for problem in open_problems:
            if problem.host not in self._watches or problem.metric not in METRIC_NAMES:
                continue
            if problem.severity not in ("warning", "critical"):
                continue
            severity: Literal["warning", "critical"] = (
                "critical" if problem.severity == "critical" else "warning"
            )
            try:
                since = problem.opened_epoch
            except ValueError:
                continue
            self.evaluator.restore(problem.host, problem.metric, severity, since)

    async def _write_events(self) -> None:
        assert self._events is not None
        events = self._events
        while True:
            event = await events.get()
            try:
                problem, changed = await asyncio.to_thread(self._persist_event, event)
                self._emit(ProblemUpdate(event.kind, event.host, problem, event, changed))
            except Exception as exc:
                self._notice(f"{event.host}: cannot store the {event.metric} problem: {exc}", event.host)
            finally:
                events.task_done()

    def _persist_event(self, event: ThresholdEvent) -> tuple[Problem | None, bool]:
        """Store and audit one threshold event (runs in a thread).

        Returns the problem and whether this process changed it: another
        itop watching the same host may have stored the event first.
        """
        problem, changed = (
            self._record_problem(event) if self.problems is not None else (None, True)
        )
        if self.rollups is not None:
            self._record_breach(event)
        return problem, changed

    def _record_problem(self, event: ThresholdEvent) -> tuple[Problem | None, bool]:
        problems = self.problems
        assert problems is not None
        if event.kind == "resolved":
            problem = problems.resolve(event.host, event.metric, event.time)
            if problem is not None:
                self._audit("problem.resolve", problem, event)
            return problem, problem is not None
        if event.kind in ("escalated", "deescalated"):
            problem, changed = problems.set_severity(
                event.host, event.metric, event.severity, event.time, event.value, event.limit
            )
            if problem is not None:
                if changed:
                    action = "problem.deescalate" if event.kind == "deescalated" else "problem.escalate"
                    self._audit(action, problem, event)
                return problem, changed
            # Resolved meanwhile by another itop process: this is a new one.
        problem, created = problems.open(
            event.host, event.metric, event.severity, event.since, event.value, event.limit
        )
        if created:
            self._audit("problem.open", problem, event)
        return problem, created

    def _audit(self, action: str, problem: Problem, event: ThresholdEvent) -> None:
        if self.audit is None:
            return
        detail = {
            "host": event.host,
            "metric": event.metric,
            "severity": event.severity,
            "value": None if event.value is None else round(event.value, 3),
            "limit": event.limit,
            "since": iso_time(event.since),
        }
        self.audit.append(action, problem.id, detail)

    def _record_breach(self, event: ThresholdEvent) -> None:
        """Breaches are kept per level: a critical stretch lies inside the warning one."""
        rollups = self.rollups
        assert rollups is not None
        if event.kind == "opened":
            rollups.record_breach(Breach(event.host, event.metric, "warning", event.since))
            if event.severity == "critical":
                rollups.record_breach(Breach(event.host, event.metric, "critical", event.since))
            return
        if event.kind == "escalated":
            watched = self._watches.get(event.host)
            threshold = None if watched is None else watched.thresholds.get(event.metric)
            # The critical level was reached min_duration before it was reported.
            held = threshold.min_duration if threshold is not None else 0.0
            opened = max(event.since, event.time - held)
            rollups.record_breach(Breach(event.host, event.metric, "critical", opened))
            return
        ending = ("critical",) if event.kind == "deescalated" else ("warning", "critical")
        for breach in rollups.breaches(since=event.since, hosts=[event.host]):
            if breach.metric == event.metric and breach.resolved is None and breach.severity in ending:
                rollups.record_breach(replace(breach, resolved=max(event.time, breach.opened)))

    async def acknowledge(self, problem_id: str, note: str = "", actor: str | None = None) -> Problem:
        """Acknowledge a problem with a note; audited as ``problem.acknowledge``.

        Raises ``ProblemError`` for an unknown or resolved problem, and
        ``RuntimeError`` when the monitor keeps no problem store.
        """
        if self.problems is None:
            raise RuntimeError("this monitor keeps no problems")
        problem = await asyncio.to_thread(
            acknowledge_problem, self.problems, self.audit, problem_id, note, actor
        )
        self._emit(ProblemUpdate("acknowledged", problem.host, problem))
        return problem

    # -- rollups -----------------------------------------------------------

    async def flush(self) -> int:
        """Write the finished minutes now (normally done once a minute); returns rows written."""
        rows, self._pending_rollups = self._pending_rollups, []
        if not rows or self.rollups is None:
            return 0
        try:
            return await asyncio.to_thread(self._store_rollups, self.rollups, rows)
        except Exception as exc:
            if len(self._pending_rollups) + len(rows) <= MAX_PENDING_ROLLUPS:
                self._pending_rollups[:0] = rows
                self._notice(f"cannot store metric rollups (will retry): {exc}")
            else:
                self._notice(f"cannot store metric rollups, {len(rows)} rows lost: {exc}")
            return 0

    def _store_rollups(self, store: RollupStore, rows: list[Rollup]) -> int:
        """Write rollups (in a thread), merging the first minute with an earlier run's.

        A run that stops writes the minute in progress as it stands; a run
        starting within that minute adds its own samples to that row rather
        than replacing it.
        """
        early = [row for row in rows if row.minute <= self._first_minute]
        if early:
            stored = store.rollups(
                hosts=sorted({row.host for row in early}),
                since=min(row.minute for row in early),
                until=self._first_minute + MINUTE,
            )
            before = {(r.host, r.metric, r.minute): r for r in stored}
            rows = [
                _merge_rollups(before[key], row)
                if row.minute <= self._first_minute
                and (key := (row.host, row.metric, row.minute)) in before
                else row
                for row in rows
            ]
        return store.add_rollups(rows)

    async def _maintain(self) -> None:
        """Prune at start and hourly; flush finished minutes once a minute; record
        who answered after the first minute, then every :data:`SEEN_RECORD_SECONDS`."""
        loop = asyncio.get_running_loop()
        last_prune: float | None = None
        last_seen: float | None = None
        while True:
            if last_prune is None or loop.time() - last_prune >= PRUNE_SECONDS:
                last_prune = loop.time()
                await self._prune()
            await asyncio.sleep(ROLLUP_FLUSH_SECONDS)
            await self.flush()
            if last_seen is None or loop.time() - last_seen >= SEEN_RECORD_SECONDS:
                last_seen = loop.time()
                await self.record_seen()

    async def record_seen(self) -> None:
        """Store that the hosts which sent a sample since the last record were seen now."""
        if self.seen is None or not self._answered:
            return
        names, self._answered = sorted(self._answered), set()
        at = utc_now()
        try:
            await asyncio.to_thread(self.seen, names, at)
        except Exception as exc:
            self._notice(f"cannot record when hosts were last seen: {exc}")

    async def _prune(self) -> None:
        if self.rollups is None:
            return
        try:
            await asyncio.to_thread(self.rollups.prune, self.config.retention_days, time.time())
        except Exception as exc:
            self._notice(f"cannot prune old metric rollups: {exc}")


def _merge_rollups(a: Rollup, b: Rollup) -> Rollup:
    """One rollup of a minute from two that each saw part of its samples.

    min, max, count and avg are exact; p95 is estimated from the two p95
    values weighted by their counts, as reports estimate it over a period.
    """
    count = a.count + b.count
    avg = (a.avg * a.count + b.avg * b.count) / count
    low, high = min(a.min, b.min), max(a.max, b.max)
    p95 = weighted_percentile([(a.p95, a.count), (b.p95, b.count)], P95_PERCENT)
    return Rollup(a.host, a.metric, a.minute, low, min(max(avg, low), high), high, p95, count)


def acknowledge_problem(
    problems: ProblemRepository,
    audit: AuditLog | None,
    problem_id: str,
    note: str = "",
    actor: str | None = None,
) -> Problem:
    """Acknowledge a problem and audit it as ``problem.acknowledge`` (blocking).

    For ``itop problems ack`` and the Problems pane when no monitor runs.
    ``actor`` defaults to the audit log's actor.
    """
    who = actor or (audit.actor if audit is not None else "")
    problem = problems.acknowledge(problem_id, who, note)
    if audit is not None:
        audit.append(
            "problem.acknowledge",
            problem.id,
            {"host": problem.host, "metric": problem.metric, "note": problem.note},
        )
    return problem


async def collect_once(
    hosts: Sequence[Host],
    transports: TransportSource | None,
    *,
    interval: float = 1.0,
    timeout: float = 15.0,
    samples: int = 2,
    audit: AuditLog | None = None,
) -> dict[str, tuple[HostStatus, Sample | None]]:
    """One sample with rates per host, for ``itop metrics --once``.

    Collects until every host gave ``samples`` samples (the second is the
    first with CPU % and rates) or failed once, or ``timeout`` passed.
    Nothing is persisted but the audit events of the collection (with
    ``audit``); thresholds are not evaluated. Returns, per host,
    its status and its newest sample (None when it gave none).
    """
    config = MonitorConfig(interval=interval, thresholds=_NO_THRESHOLDS)
    monitor = FleetMonitor(hosts, transports, config, audit=audit, backoff_initial=timeout)
    counts = dict.fromkeys(monitor.statuses(), 0)
    pending = set(counts)
    done = asyncio.Event()

    def on_update(update: MonitorUpdate) -> None:
        if isinstance(update, SampleUpdate) and update.host in counts:
            counts[update.host] += 1
            if counts[update.host] >= samples:
                pending.discard(update.host)
        elif isinstance(update, StateUpdate) and update.status.state == "unreachable":
            pending.discard(update.host)
        if not pending:
            done.set()

    monitor.add_listener(on_update)
    if not pending:
        return {}
    async with monitor:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    return {name: (monitor.status(name), monitor.latest(name)) for name in counts}


# Every built-in threshold switched off (collect_once evaluates none).
_NO_THRESHOLDS: dict[str, Any] = dict.fromkeys(DEFAULT_THRESHOLDS)
