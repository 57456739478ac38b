"""Progress rates and the words the backup CLI uses for ages, RPOs and due times."""

from __future__ import annotations

from datetime import UTC, datetime

from itop_tui.cli_backup import _age, _hours, next_due_text
from itop_tui.ops.backup_runner import RateMeter


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
