"""Progress rates and the words the backup CLI uses for ages, RPOs and due times."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from itop_tui.cli_backup import _age, _hours, _ProgressPrinter, next_due_text
from itop_tui.ops.backup_runner import Progress, RateMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_reports_have_a_rate_since_the_start() -> None:
    clock = FakeClock()
    meter = RateMeter(clock)
    clock.now += 0.5
    rate, elapsed = meter.add(1000)
    assert (rate, elapsed) == (2000.0, 0.5)  # not 0 B/s for want of a window
    clock.now += 0.5
    assert meter.add(1000)[0] == 1000.0  # a stall right at the end: still the average
    for _ in range(8):
        clock.now += 1.0
        rate, _elapsed = meter.add(1000 + int((clock.now - 101.0) * 500))
    assert rate == 500.0  # then the window's rate


def test_short_rpos_and_ages_read_consistently() -> None:
    now = datetime(2026, 11, 25, 22, 46, 30, tzinfo=UTC)
    assert _hours(0.01) == "36s" and _hours(0.5) == "30m" and _hours(26) == "26h"
    assert _age("2026-11-25T22:46:00Z", now) == "30s ago"
    assert _age("2026-11-25T22:40:00Z", now) == "6m ago"


def test_next_due_in_the_past_says_now_or_overdue() -> None:
    now = datetime(2026, 11, 25, 22, 46, 19, tzinfo=UTC)
    assert next_due_text("2026-11-25T22:47:00Z", now) == "2026-11-25 22:47"
    assert next_due_text("2026-11-25T22:46:00Z", now) == "now"
    assert next_due_text("2026-11-25T22:35:00Z", now) == "overdue since 2026-11-25 22:35"


def test_the_last_position_is_printed_once_when_only_the_rate_moved(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = _ProgressPrinter()  # stderr is captured: not a terminal, one line per report
    report = Progress("site", "web01", "BKR-1", "backup", 182, 182, 622.0, 0.3)
    printer(report)
    printer(replace(report, rate=617.0, elapsed=0.31))  # held: within the line interval
    printer.done()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["site@web01 backup BKR-1: 182 B of 182 B, 622 B/s"]


def test_a_held_report_that_came_further_is_printed_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = _ProgressPrinter()
    report = Progress("site", "web01", "BKR-1", "backup", 100, 182, 622.0, 0.3)
    printer(report)
    printer(replace(report, done=182, rate=617.0))
    printer.done()
    assert capsys.readouterr().err.splitlines()[-1] == (
        "site@web01 backup BKR-1: 182 B of 182 B, 617 B/s")
