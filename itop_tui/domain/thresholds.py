"""Thresholds on metrics, and the evaluator that turns lasting breaches into events.

A :class:`Threshold` has a warning and a critical limit and a minimum
duration, like glances' careful/warning/critical levels with a delay. The
:class:`ThresholdEvaluator` is fed ``(time, value)`` per host and metric and
emits an event only when the reported severity changes: a problem is
``opened`` once a breach has lasted ``min_duration``, ``escalated`` or
``deescalated`` between warning and critical, and ``resolved`` when the
value recovers. Times are passed in, never read from a clock.

Configuration (the ``thresholds`` section of itop.yaml)::

    thresholds:
      cpu_percent: {warning: 80, critical: 95, min_duration: 60, hysteresis: 5}
      swap_percent: null            # no threshold on swap
      groups:
        databases:
          mem_percent: {warning: 92}
      hosts:
        build01:
          cpu_percent: null         # a build box is busy by design

Each level overrides single fields of the one below it: built-in defaults,
then the top level, then the host's groups in the order given, then the host.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from itop_tui.domain.metrics import METRIC_NAMES, Sample

Severity = Literal["ok", "warning", "critical"]
Direction = Literal["above", "below"]
EventKind = Literal["opened", "escalated", "deescalated", "resolved"]
SEVERITY_RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}

_FIELDS = ("warning", "critical", "min_duration", "direction", "hysteresis")


class ThresholdConfigError(ValueError):
    """A thresholds setting is invalid; ``path`` names it (``thresholds.hosts.web01...``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Threshold:
    """Limits for one metric.

    With direction ``above`` a value at or over a limit breaches it (with
    ``below``, at or under). ``min_duration`` is how many seconds a breach
    must last before it counts. ``hysteresis`` keeps a level that was
    reached until the value moves that far back past its limit, so a value
    hovering at the limit does not flap.
    """

    metric: str
    warning: float | None = None
    critical: float | None = None
    min_duration: float = 0.0
    direction: Direction = "above"
    hysteresis: float = 0.0

    def breaches(self, limit: float | None, value: float, held: bool) -> bool:
        """Whether ``value`` is past ``limit``; ``held`` if it was at the last value."""
        if limit is None:
            return False
        margin = self.hysteresis if held else 0.0
        if self.direction == "above":
            return value >= limit - margin
        return value <= limit + margin

    def limit_for(self, severity: str) -> float | None:
        """The limit of a severity (``None`` for ok)."""
        if severity == "critical":
            return self.critical
        if severity == "warning":
            return self.warning
        return None


DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "cpu_percent": Threshold("cpu_percent", warning=85, critical=95, min_duration=120),
    "mem_percent": Threshold("mem_percent", warning=85, critical=95, min_duration=60),
    "swap_percent": Threshold("swap_percent", warning=50, critical=80, min_duration=120),
    "load_per_core": Threshold("load_per_core", warning=1.5, critical=3.0, min_duration=300),
    "disk_busiest_util": Threshold("disk_busiest_util", warning=80, critical=95, min_duration=300),
    "fs_max_percent": Threshold("fs_max_percent", warning=85, critical=95, min_duration=60),
}


def _check_number(path: str, value: Any, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ThresholdConfigError(path, f"must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ThresholdConfigError(path, f"must be >= {minimum:g}, got {value!r}")
    return float(value)


def _apply(base: Threshold | None, metric: str, entry: Any, path: str) -> Threshold | None:
    """``base`` with the fields of one config entry applied; ``None`` disables."""
    if entry is None or entry is False:
        return None
    if not isinstance(entry, Mapping):
        raise ThresholdConfigError(
            path,
            "must be a mapping of warning, critical, min_duration, direction, hysteresis, or null",
        )
    current = base or Threshold(metric)
    changes: dict[str, Any] = {}
    for key, value in entry.items():
        field_path = f"{path}.{key}"
        if key in ("warning", "critical"):
            changes[key] = None if value is None else _check_number(field_path, value)
        elif key in ("min_duration", "hysteresis"):
            changes[key] = _check_number(field_path, value, minimum=0)
        elif key == "direction":
            if value not in ("above", "below"):
                raise ThresholdConfigError(field_path, f"must be 'above' or 'below', got {value!r}")
            changes[key] = value
        else:
            raise ThresholdConfigError(
                field_path, f"unknown field; expected one of {', '.join(_FIELDS)}"
            )
    return replace(current, **changes)


def _check_consistent(threshold: Threshold, path: str) -> None:
    if threshold.warning is None and threshold.critical is None:
        raise ThresholdConfigError(
            path, "needs a warning or a critical limit (use null to disable)"
        )
    if threshold.warning is None or threshold.critical is None:
        return
    if threshold.direction == "above" and threshold.warning > threshold.critical:
        raise ThresholdConfigError(path, "warning must not be above critical")
    if threshold.direction == "below" and threshold.warning < threshold.critical:
        raise ThresholdConfigError(
            path, "warning must not be below critical when direction is below"
        )


def _layer(config: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    section = config.get(key) or {}
    path = f"thresholds.{key}"
    if not isinstance(section, Mapping):
        raise ThresholdConfigError(path, f"must be a mapping of {key[:-1]} name to thresholds")
    layer = section.get(name) or {}
    if not isinstance(layer, Mapping):
        raise ThresholdConfigError(f"{path}.{name}", "must be a mapping of metric to threshold")
    return layer


def _apply_layer(
    resolved: dict[str, Threshold | None], layer: Mapping[str, Any], path: str
) -> None:
    for metric, entry in layer.items():
        if metric in ("groups", "hosts") and path == "thresholds":
            continue
        if metric not in METRIC_NAMES:
            raise ThresholdConfigError(
                f"{path}.{metric}", f"unknown metric; expected one of {', '.join(METRIC_NAMES)}"
            )
        metric_path = f"{path}.{metric}"
        threshold = _apply(resolved.get(metric), metric, entry, metric_path)
        if threshold is not None:
            _check_consistent(threshold, metric_path)
        resolved[metric] = threshold


def resolve_thresholds(
    host: str,
    groups: Iterable[str],
    config: Mapping[str, Any] | None,
    defaults: Mapping[str, Threshold] = DEFAULT_THRESHOLDS,
) -> dict[str, Threshold]:
    """The thresholds that apply to one host, metric -> threshold.

    ``config`` is the ``thresholds`` section of the settings (``None`` for
    defaults only). Raises :class:`ThresholdConfigError` naming the setting
    at fault.
    """
    config = config or {}
    if not isinstance(config, Mapping):
        raise ThresholdConfigError("thresholds", "must be a mapping")
    resolved: dict[str, Threshold | None] = dict(defaults)
    _apply_layer(resolved, config, "thresholds")
    for group in groups:
        _apply_layer(resolved, _layer(config, "groups", group), f"thresholds.groups.{group}")
    _apply_layer(resolved, _layer(config, "hosts", host), f"thresholds.hosts.{host}")
    return {metric: threshold for metric, threshold in resolved.items() if threshold is not None}


def validate_threshold_config(config: Mapping[str, Any] | None) -> None:
    """Check a whole ``thresholds`` section, every group and host entry included."""
    config = config or {}
    if not isinstance(config, Mapping):
        raise ThresholdConfigError("thresholds", "must be a mapping")
    resolve_thresholds("", (), config)
    for key in ("groups", "hosts"):
        section = config.get(key) or {}
        if not isinstance(section, Mapping):
            raise ThresholdConfigError(
                f"thresholds.{key}", f"must be a mapping of {key[:-1]} name to thresholds"
            )
        for name in section:
            if key == "groups":
                resolve_thresholds("", (str(name),), config)
            else:
                resolve_thresholds(str(name), (), config)


@dataclass(frozen=True, slots=True)
class ThresholdEvent:
    """A change of a host metric's reported severity.

    ``severity`` is the new severity, or for ``resolved`` the one that
    ended. ``since`` is when the breach behind the problem began (the same
    for every event of one problem) and ``time`` when this event happened.
    """

    kind: EventKind
    host: str
    metric: str
    severity: Severity
    time: float
    since: float
    value: float | None
    limit: float | None


@dataclass
class _State:
    severity: Severity = "ok"
    since: float | None = None
    warning_since: float | None = None
    critical_since: float | None = None
    last_time: float | None = None


@dataclass(frozen=True, slots=True)
class OpenProblem:
    """A host metric whose reported severity is warning or critical."""

    host: str
    metric: str
    severity: Severity
    since: float


class ThresholdEvaluator:
    """Tracks each host metric's breach and reports severity changes.

    A breach must be seen continuously for ``min_duration``: a missing
    value (``None``), or a gap between observations longer than
    ``max_gap`` seconds when set, restarts the timers of levels not yet
    reported, but never resolves an open problem. Observations older than
    the previous one for the same host metric are ignored.
    """

    def __init__(self, max_gap: float | None = None) -> None:
        self.max_gap = max_gap
        # host -> metric -> state: a sample touches only its own host's states.
        self._states: dict[str, dict[str, _State]] = {}

    def evaluate(
        self, host: str, threshold: Threshold, time: float, value: float | None
    ) -> ThresholdEvent | None:
        """Feed one observation; return the event it causes, if any."""
        state = self._states.setdefault(host, {}).setdefault(threshold.metric, _State())
        if state.last_time is not None and time < state.last_time:
            return None
        gap = (
            self.max_gap is not None
            and state.last_time is not None
            and time - state.last_time > self.max_gap
        )
        state.last_time = time
        if gap:
            self._forget_pending(state)
        if value is None or not math.isfinite(value):
            self._forget_pending(state)
            return None
        warning_held = state.warning_since is not None
        critical_held = state.critical_since is not None
        # A critical breach is also a warning breach: escalation timers run
        # from the start of the breach, not from when warning was reported.
        critical = threshold.breaches(threshold.critical, value, critical_held)
        warning = critical or threshold.breaches(threshold.warning, value, warning_held)
        state.critical_since = (
            (state.critical_since if critical_held else time) if critical else None
        )
        state.warning_since = (state.warning_since if warning_held else time) if warning else None
        target = self._target(threshold, state, time)
        return self._transition(host, threshold, state, target, time, value)

    def evaluate_sample(
        self, sample: Sample, thresholds: Mapping[str, Threshold]
    ) -> list[ThresholdEvent]:
        """Feed every thresholded metric of a sample.

        An open problem on a metric that no longer has a threshold (the
        configuration changed) is resolved.
        """
        events: list[ThresholdEvent] = []
        values = sample.values()
        for metric, threshold in thresholds.items():
            event = self.evaluate(sample.host, threshold, sample.time, values.get(metric))
            if event is not None:
                events.append(event)
        states = self._states.get(sample.host, {})
        for metric in [metric for metric in states if metric not in thresholds]:
            state = states.pop(metric)
            if state.severity != "ok":
                events.append(
                    ThresholdEvent(
                        "resolved",
                        sample.host,
                        metric,
                        state.severity,
                        sample.time,
                        state.since if state.since is not None else sample.time,
                        values.get(metric),
                        None,
                    )
                )
        return events

    def restore(self, host: str, metric: str, severity: Severity, since: float) -> None:
        """Start from a problem that was open before (read back from the store)."""
        if severity == "ok":
            self._states.get(host, {}).pop(metric, None)
            return
        self._states.setdefault(host, {})[metric] = _State(
            severity=severity,
            since=since,
            warning_since=since,
            critical_since=since if severity == "critical" else None,
        )

    def open_problems(self) -> list[OpenProblem]:
        """Host metrics currently reported as warning or critical."""
        return [
            OpenProblem(host, metric, state.severity, state.since)
            for host, states in sorted(self._states.items())
            for metric, state in sorted(states.items())
            if state.severity != "ok" and state.since is not None
        ]

    def severity(self, host: str, metric: str) -> Severity:
        """The reported severity of a host metric."""
        state = self._states.get(host, {}).get(metric)
        return "ok" if state is None else state.severity

    def forget(self, host: str) -> None:
        """Drop every state of a host (it left the inventory)."""
        self._states.pop(host, None)

    @staticmethod
    def _forget_pending(state: _State) -> None:
        if SEVERITY_RANK[state.severity] < SEVERITY_RANK["critical"]:
            state.critical_since = None
        if state.severity == "ok":
            state.warning_since = None

    @staticmethod
    def _target(threshold: Threshold, state: _State, time: float) -> Severity:
        reported = SEVERITY_RANK[state.severity]

        def lasted(since: float | None, rank: int) -> bool:
            # A level already reported holds for as long as it is breached.
            return since is not None and (
                reported >= rank or time - since >= threshold.min_duration
            )

        if lasted(state.critical_since, SEVERITY_RANK["critical"]):
            return "critical"
        if threshold.warning is not None and lasted(state.warning_since, SEVERITY_RANK["warning"]):
            return "warning"
        return "ok"

    @staticmethod
    def _transition(
        host: str, threshold: Threshold, state: _State, target: Severity, time: float, value: float
    ) -> ThresholdEvent | None:
        current = state.severity
        if target == current:
            return None
        if current == "ok":
            kind: EventKind = "opened"
            # A critical breach is a warning breach too, so warning_since is
            # the first breaching value of the run, whatever its level.
            state.since = state.warning_since if state.warning_since is not None else time
        elif target == "ok":
            kind = "resolved"
        elif SEVERITY_RANK[target] > SEVERITY_RANK[current]:
            kind = "escalated"
        else:
            kind = "deescalated"
        since = state.since if state.since is not None else time
        state.severity = target
        severity = current if kind == "resolved" else target
        if kind == "resolved":
            state.since = None
        return ThresholdEvent(
            kind,
            host,
            threshold.metric,
            severity,
            time,
            since,
            value,
            threshold.limit_for(severity),
        )
