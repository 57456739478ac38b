"""Threshold resolution per group and host, and breach evaluation on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itop_tui.domain.metrics import Sample
from itop_tui.domain.thresholds import (
    DEFAULT_THRESHOLDS,
    Threshold,
    ThresholdConfigError,
    ThresholdEvaluator,
    ThresholdEvent,
    resolve_thresholds,
    validate_threshold_config,
)

CPU = Threshold("cpu_percent", warning=80, critical=95, min_duration=60)


def feed(
    evaluator: ThresholdEvaluator,
    threshold: Threshold,
    points: list[tuple[float, float | None]],
    host: str = "web01",
) -> list[ThresholdEvent]:
    events = []
    for time, value in points:
        event = evaluator.evaluate(host, threshold, time, value)
        if event is not None:
            events.append(event)
    return events


def summary(events: list[ThresholdEvent]) -> list[tuple[str, str, float]]:
    return [(event.kind, event.severity, event.time) for event in events]


# --------------------------------------------------------------------------
# Resolution


CONFIG: dict[str, Any] = {
    "cpu_percent": {"warning": 70, "min_duration": 30},
    "swap_percent": None,
    "groups": {
        "databases": {"mem_percent": {"warning": 92, "critical": 98}},
        "batch": {"cpu_percent": {"warning": 90, "critical": 99}, "load_per_core": None},
    },
    "hosts": {
        "build01": {"cpu_percent": None},
        "db01": {"mem_percent": {"min_duration": 600}},
    },
}


def test_defaults_without_config() -> None:
    assert resolve_thresholds("any", [], None) == DEFAULT_THRESHOLDS


def test_levels_override_single_fields_in_order() -> None:
    top = resolve_thresholds("web01", [], CONFIG)
    assert top["cpu_percent"] == Threshold("cpu_percent", 70, 95, 30)  # critical from defaults
    assert "swap_percent" not in top
    db = resolve_thresholds("db01", ["databases"], CONFIG)
    assert db["mem_percent"] == Threshold("mem_percent", 92, 98, 600)
    batch_db = resolve_thresholds("x", ["databases", "batch"], CONFIG)
    assert batch_db["cpu_percent"] == Threshold("cpu_percent", 90, 99, 30)
    assert "load_per_core" not in batch_db and batch_db["mem_percent"].warning == 92
    assert "cpu_percent" not in resolve_thresholds("build01", ["batch"], CONFIG)
    assert resolve_thresholds("ghost", ["no-such-group"], CONFIG) == top


def test_a_metric_without_defaults_can_be_added() -> None:
    resolved = resolve_thresholds("h", [], {"procs": {"warning": 2000, "min_duration": 10}})
    assert resolved["procs"] == Threshold("procs", warning=2000, min_duration=10)
    below = resolve_thresholds(
        "h", [], {"mem_percent": {"direction": "below", "warning": 10, "critical": 5}}
    )
    assert below["mem_percent"].direction == "below"


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"cpu_percent": {"warning": "high"}}, "thresholds.cpu_percent.warning"),
        ({"cpu_percent": {"warning": True}}, "thresholds.cpu_percent.warning"),
        ({"cpu_percent": {"min_duration": -5}}, "thresholds.cpu_percent.min_duration"),
        ({"cpu_percent": {"direction": "sideways"}}, "thresholds.cpu_percent.direction"),
        ({"cpu_percent": {"warn": 5}}, "thresholds.cpu_percent.warn"),
        ({"cpu_percent": 80}, "thresholds.cpu_percent"),
        ({"cpu": {"warning": 5}}, "thresholds.cpu"),
        ({"cpu_percent": {"warning": 99, "critical": 90}}, "thresholds.cpu_percent"),
        ({"procs": {"min_duration": 5}}, "thresholds.procs"),
        (
            {"hosts": {"db01": {"mem_percent": {"critical": 50}}}},
            "thresholds.hosts.db01.mem_percent",
        ),
        ({"groups": ["a"]}, "thresholds.groups"),
        ({"groups": {"web": "loud"}}, "thresholds.groups.web"),
    ],
)
def test_bad_config_names_the_setting(config: dict[str, Any], path: str) -> None:
    with pytest.raises(ThresholdConfigError) as caught:
        validate_threshold_config(config)
    assert caught.value.path == path
    assert str(caught.value).startswith(path + ": ")


def test_validate_accepts_the_example_config() -> None:
    validate_threshold_config(CONFIG)
    validate_threshold_config(None)


# --------------------------------------------------------------------------
# Evaluation


def test_breach_opens_only_after_min_duration() -> None:
    evaluator = ThresholdEvaluator()
    points: list[tuple[float, float | None]] = [(t, 85.0) for t in range(0, 70, 10)]
    events = feed(evaluator, CPU, points)
    assert summary(events) == [("opened", "warning", 60)]
    assert events[0].since == 0 and events[0].value == 85.0 and events[0].limit == 80
    assert evaluator.severity("web01", "cpu_percent") == "warning"


def test_short_spikes_never_open() -> None:
    evaluator = ThresholdEvaluator()
    points: list[tuple[float, float | None]] = []
    for start in range(0, 600, 60):
        points += [(start + t, 99.0) for t in range(0, 50, 10)] + [(start + 50, 10.0)]
    assert feed(evaluator, CPU, points) == []
    assert evaluator.open_problems() == []


def test_escalate_deescalate_and_resolve() -> None:
    evaluator = ThresholdEvaluator()
    points: list[tuple[float, float | None]] = [
        (0, 85),
        (60, 85),  # opened warning
        (70, 97),
        (120, 97),  # critical for 50 s: not yet
        (130, 97),  # 60 s: escalated
        (140, 85),  # deescalated at once: warning has lasted since 0
        (150, 50),  # resolved at once
    ]
    events = feed(evaluator, CPU, points)
    assert summary(events) == [
        ("opened", "warning", 60),
        ("escalated", "critical", 130),
        ("deescalated", "warning", 140),
        ("resolved", "warning", 150),
    ]
    assert {event.since for event in events} == {0}
    assert events[1].limit == 95 and events[3].limit == 80


def test_straight_to_critical_opens_critical() -> None:
    evaluator = ThresholdEvaluator()
    events = feed(evaluator, CPU, [(t, 99.0) for t in range(0, 61, 15)])
    assert summary(events) == [("opened", "critical", 60)]


def test_zero_min_duration_opens_on_first_value() -> None:
    evaluator = ThresholdEvaluator()
    now = Threshold("fs_max_percent", warning=85, critical=95)
    events = feed(evaluator, now, [(0, 96.0), (1, 10.0)])
    assert summary(events) == [("opened", "critical", 0), ("resolved", "critical", 1)]


def test_hysteresis_stops_flapping_at_the_limit() -> None:
    plain = ThresholdEvaluator()
    damped = ThresholdEvaluator()
    hovering: list[tuple[float, float | None]] = [
        (t, 81.0 if (t // 10) % 2 else 79.0) for t in range(0, 300, 10)
    ]
    fast = Threshold("cpu_percent", warning=80, critical=95, min_duration=0)
    flapping = feed(plain, fast, hovering)
    assert len(flapping) > 10
    steady = feed(damped, Threshold("cpu_percent", 80, 95, 0, hysteresis=5), hovering)
    assert summary(steady) == [("opened", "warning", 10)]
    assert summary(
        feed(damped, Threshold("cpu_percent", 80, 95, 0, hysteresis=5), [(400, 74.0)])
    ) == [("resolved", "warning", 400)]


def test_missing_values_restart_pending_breaches_but_keep_open_problems() -> None:
    evaluator = ThresholdEvaluator()
    pending: list[tuple[float, float | None]] = [(0, 90), (30, None), (40, 90), (90, 90), (100, 90)]
    assert summary(feed(evaluator, CPU, pending)) == [("opened", "warning", 100)]
    held = feed(evaluator, CPU, [(110, None), (500, None), (510, 90)])
    assert held == []
    assert evaluator.severity("web01", "cpu_percent") == "warning"


def test_max_gap_restarts_a_pending_breach() -> None:
    evaluator = ThresholdEvaluator(max_gap=30)
    points: list[tuple[float, float | None]] = [(0, 90), (50, 90), (100, 90), (110, 90)]
    # The 50 s gaps break the run; the breach counts from 100 only.
    assert feed(evaluator, CPU, points) == []
    assert summary(feed(evaluator, CPU, [(130, 90), (160, 90)])) == [("opened", "warning", 160)]


def test_time_going_backwards_is_ignored() -> None:
    evaluator = ThresholdEvaluator()
    assert feed(evaluator, CPU, [(100, 90), (50, 10), (160, 90)])[0].kind == "opened"


def test_below_direction() -> None:
    evaluator = ThresholdEvaluator()
    low = Threshold("mem_percent", warning=10, critical=5, min_duration=20, direction="below")
    events = feed(evaluator, low, [(0, 50), (10, 8), (30, 8), (40, 3), (60, 3), (70, 60)])
    assert summary(events) == [
        ("opened", "warning", 30),
        ("escalated", "critical", 60),
        ("resolved", "critical", 70),
    ]


def test_critical_only_threshold() -> None:
    evaluator = ThresholdEvaluator()
    only = Threshold("swap_percent", critical=90, min_duration=10)
    events = feed(evaluator, only, [(0, 50), (5, 95), (15, 95), (20, 89)])
    assert summary(events) == [("opened", "critical", 15), ("resolved", "critical", 20)]


def test_restore_an_open_problem_after_restart() -> None:
    evaluator = ThresholdEvaluator()
    evaluator.restore("web01", "cpu_percent", "warning", since=1000.0)
    assert [(p.host, p.severity, p.since) for p in evaluator.open_problems()] == [
        ("web01", "warning", 1000.0)
    ]
    # Still breaching: nothing new, even before min_duration has passed again.
    assert feed(evaluator, CPU, [(1010, 85)]) == []
    events = feed(evaluator, CPU, [(1020, 40)])
    assert summary(events) == [("resolved", "warning", 1020)] and events[0].since == 1000.0
    evaluator.restore("web01", "cpu_percent", "ok", since=0)
    assert evaluator.open_problems() == []


def test_hosts_and_metrics_are_independent_and_forgettable() -> None:
    evaluator = ThresholdEvaluator()
    zero = Threshold("cpu_percent", warning=80, critical=95)
    assert feed(evaluator, zero, [(0, 90)], host="a")[0].host == "a"
    assert feed(evaluator, zero, [(0, 10)], host="b") == []
    assert [p.host for p in evaluator.open_problems()] == ["a"]
    evaluator.forget("a")
    assert evaluator.open_problems() == []


def test_evaluate_sample_and_config_change() -> None:
    evaluator = ThresholdEvaluator()
    thresholds = resolve_thresholds("web01", [], {"cpu_percent": {"min_duration": 0}})
    hot = Sample(host="web01", time=0, cpu_percent=99.0, mem_percent=20.0)
    events = evaluator.evaluate_sample(hot, thresholds)
    assert [(e.kind, e.metric, e.severity) for e in events] == [
        ("opened", "cpu_percent", "critical")
    ]
    without_cpu = {k: v for k, v in thresholds.items() if k != "cpu_percent"}
    later = Sample(host="web01", time=5, cpu_percent=99.0, mem_percent=20.0)
    events = evaluator.evaluate_sample(later, without_cpu)
    assert [(e.kind, e.metric, e.time, e.since) for e in events] == [
        ("resolved", "cpu_percent", 5, 0)
    ]
    assert evaluator.open_problems() == []


# --------------------------------------------------------------------------
# Property: events always tell a consistent story

values_over_time = st.lists(
    st.tuples(st.integers(min_value=0, max_value=30), st.one_of(st.none(), st.floats(0, 100))),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    values_over_time,
    st.sampled_from([0, 10, 60]),
    st.sampled_from([0.0, 3.0]),
    st.sampled_from([None, 20.0]),
)
def test_event_sequences_are_consistent(
    steps: list[tuple[int, float | None]],
    min_duration: int,
    hysteresis: float,
    max_gap: float | None,
) -> None:
    threshold = Threshold("cpu_percent", 80, 95, min_duration, hysteresis=hysteresis)
    evaluator = ThresholdEvaluator(max_gap=max_gap)
    time = 0.0
    points: list[tuple[float, float | None]] = []
    for step, value in steps:
        time += step
        points.append((time, value))
    severity = "ok"
    for event in feed(evaluator, threshold, points):
        if event.kind == "opened":
            assert severity == "ok" and event.severity != "ok"
            assert event.time - event.since >= min_duration
        elif event.kind == "resolved":
            assert severity != "ok" and event.severity == severity
            assert event.value is not None and event.value < 80
        elif event.kind == "escalated":
            assert (severity, event.severity) == ("warning", "critical")
            assert event.value is not None and event.value >= 95 - hysteresis
        else:
            assert (severity, event.severity) == ("critical", "warning")
        severity = "ok" if event.kind == "resolved" else event.severity
    assert evaluator.severity("web01", "cpu_percent") == severity
