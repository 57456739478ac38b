"""``parse_when``: the moments of change windows (``--start``, ``--end``, the pane's forms)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from itop_tui.domain.timespec import TimeSpecError, parse_when

NOW = datetime(2025, 6, 1, 12, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        (" NOW ", NOW),
        ("+30m", NOW + timedelta(minutes=30)),
        ("+2h", NOW + timedelta(hours=2)),
        ("+1d", NOW + timedelta(days=1)),
        ("2025-06-03T22:00Z", datetime(2025, 6, 3, 22, 0, tzinfo=UTC)),
        ("2025-06-03T22:00:00+00:00", datetime(2025, 6, 3, 22, 0, tzinfo=UTC)),
        # Without an offset a time is UTC, not the jump host's local time.
        ("2025-06-03T22:00", datetime(2025, 6, 3, 22, 0, tzinfo=UTC)),
        ("2025-06-03", datetime(2025, 6, 3, 0, 0, tzinfo=UTC)),
        # An offset is converted to UTC.
        ("2025-06-03T22:00+02:00", datetime(2025, 6, 3, 20, 0, tzinfo=UTC)),
    ],
)
def test_moments(text: str, expected: datetime) -> None:
    moment = parse_when(text, NOW)
    assert moment == expected
    assert moment.utcoffset() == timedelta(0)


def test_relative_to_the_moment_given() -> None:
    start = datetime(2025, 6, 3, 22, 0, tzinfo=UTC)
    assert parse_when("+1h", start) == datetime(2025, 6, 3, 23, 0, tzinfo=UTC)


def test_offset_result_is_in_utc() -> None:
    moment = parse_when("2025-06-03T10:00-05:00", NOW)
    assert moment.tzinfo is not None and moment.tzinfo.utcoffset(moment) == timedelta(0)
    assert moment == datetime(2025, 6, 3, 15, 0, tzinfo=timezone(timedelta(0)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tomorrow", "invalid time 'tomorrow': expected an ISO 8601 time"),
        ("", "invalid time '': expected an ISO 8601 time"),
        ("2025-13-01", "invalid time '2025-13-01'"),
        ("+", "invalid duration ''"),
        ("+30", "invalid duration '30'"),
        ("+0m", "must be longer than zero"),
        ("+5y", "invalid duration '5y'"),
    ],
)
def test_refusals_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(TimeSpecError, match=message.replace("+", r"\+").replace("(", r"\(")):
        parse_when(text, NOW)
