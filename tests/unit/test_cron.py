"""Cron expressions: parsing, matching as Vixie cron does, next-due and catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itop_tui.domain.cron import CronError, CronSchedule, due_slot, parse_cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_fields_ranges_steps_lists_and_names() -> None:
    s = parse_cron("*/15 8-17/3 1,15 jan-mar,DEC mon-fri")
    assert s.minutes == {0, 15, 30, 45}
    assert s.hours == {8, 11, 14, 17}
    assert s.days == {1, 15}
    assert s.months == {1, 2, 3, 12}
    assert s.weekdays == {1, 2, 3, 4, 5}
    assert parse_cron("5/20 * * * *").minutes == {5, 25, 45}
    assert parse_cron("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert parse_cron("0 0 * * sun,7").weekdays == {0}


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
     ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
     ("@annually", "0 0 1 1 *")],
)
def test_macros_equal_their_expansion(macro: str, expanded: str) -> None:
    a, b = parse_cron(macro), parse_cron(expanded)
    assert (a.minutes, a.hours, a.days, a.months, a.weekdays) == (
        b.minutes, b.hours, b.days, b.months, b.weekdays)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("* * * *", "has 4 fields"),
        ("* * * * * *", "has 6 fields"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("* * 0 * *", "day of month field '0'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * * 8", "day of week field '8'"),
        ("*/0 * * * *", "step '0'"),
        ("5-1 * * * *", "runs backwards"),
        ("* * * foo *", "'foo' is not a number or a name (jan"),
        ("1,,2 * * * *", "empty list item"),
        ("@reboot", "unknown cron macro '@reboot'"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
    ],
)
def test_bad_expressions_say_which_field_and_why(text: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(text)
    assert message in str(caught.value)


def test_day_of_month_and_weekday_are_or_when_both_restricted() -> None:
    s = parse_cron("0 0 13 * fri")
    assert s.matches(at("2024-09-13T00:00"))  # Friday the 13th
    assert s.matches(at("2024-08-13T00:00"))  # a Tuesday, but the 13th
    assert s.matches(at("2024-08-16T00:00"))  # a Friday, not the 13th
    assert not s.matches(at("2024-08-14T00:00"))
    # A star (even with a step) in one field means the other one decides alone.
    only_weekday = parse_cron("0 0 * * fri")
    assert not only_weekday.matches(at("2024-08-13T00:00"))
    assert only_weekday.matches(at("2024-08-16T00:00"))
    stepped = parse_cron("0 0 */2 * fri")
    assert stepped.matches(at("2024-08-23T00:00"))  # day 23 is in */2 and a Friday
    assert not stepped.matches(at("2024-08-16T00:00"))  # Friday, but day 16 is not in */2


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 2 * * *", "2024-05-01T01:59", "2024-05-01T02:00"),
        ("0 2 * * *", "2024-05-01T02:00", "2024-05-02T02:00"),  # strictly after
        ("0 2 * * *", "2024-12-31T03:00", "2025-01-01T02:00"),
        ("*/15 * * * *", "2024-05-01T10:07:42", "2024-05-01T10:15"),
        ("30 23 31 * *", "2024-04-01T00:00", "2024-05-31T23:30"),
        ("0 0 29 2 *", "2024-03-01T00:00", "2028-02-29T00:00"),
        ("0 9 * * mon-fri", "2024-05-03T09:00", "2024-05-06T09:00"),  # Fri -> Mon
        ("0 0 1 */3 *", "2024-02-10T00:00", "2024-04-01T00:00"),
        ("59 23 * * *", "2024-02-28T23:59", "2024-02-29T23:59"),
    ],
)
def test_next_after(expr: str, after: str, expected: str) -> None:
    assert parse_cron(expr).next_after(at(after)) == at(expected)


def test_next_after_takes_any_timezone_and_answers_in_utc() -> None:
    local = datetime(2024, 5, 1, 3, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    result = parse_cron("0 2 * * *").next_after(local)
    assert result == at("2024-05-02T02:00") and result.tzinfo == UTC


def brute_force_next(s: CronSchedule, after: datetime, days: int = 800) -> datetime | None:
    """The next firing found by trying every minute of every matching day."""
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(days):
        if day.month in s.months:
            in_days = day.day in s.days
            in_weekdays = day.isoweekday() % 7 in s.weekdays
            ok = (in_days or in_weekdays) if (s.days_restricted and s.weekdays_restricted) \
                else (in_days and in_weekdays)
            if ok:
                for hour in range(24):
                    for minute in range(60):
                        t = day.replace(hour=hour, minute=minute)
                        if t > after and hour in s.hours and minute in s.minutes:
                            return t
        day += timedelta(days=1)
    return None


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    single = value.map(str)
    ranged = st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}")
    stepped = st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, 7)).map(
        lambda x: f"{x[0]}/{x[1]}")
    item = st.one_of(single, ranged, stepped)
    return st.one_of(st.just("*"), st.lists(item, min_size=1, max_size=3).map(",".join))


@settings(max_examples=150, deadline=None)
@given(
    minute=_field(0, 59), hour=_field(0, 23), dom=_field(1, 28), month=st.just("*"),
    dow=_field(0, 7),
    after=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_next_after_agrees_with_brute_force(
    minute: str, hour: str, dom: str, month: str, dow: str, after: datetime
) -> None:
    s = parse_cron(f"{minute} {hour} {dom} {month} {dow}")
    start = after.replace(tzinfo=UTC)
    found = s.next_after(start)
    assert found == brute_force_next(s, start)
    assert found is not None and s.matches(found) and found > start


def test_due_slot_catches_missed_runs_up_once() -> None:
    daily = parse_cron("0 2 * * *")
    last = at("2024-05-01T02:00")
    assert due_slot(daily, last, at("2024-05-02T01:59")) is None
    slot = due_slot(daily, last, at("2024-05-02T02:00"))
    assert slot is not None and slot.at == at("2024-05-02T02:00") and not slot.caught_up
    # Down for a week: one slot (the latest), six missed before it.
    slot = due_slot(daily, last, at("2024-05-08T09:00"))
    assert slot is not None and slot.at == at("2024-05-08T02:00") and slot.missed == 6
    # Once the run is recorded at that time, nothing is due until the next slot.
    assert due_slot(daily, at("2024-05-08T09:00"), at("2024-05-08T23:00")) is None


def test_due_slot_with_very_many_missed_slots_is_still_the_latest() -> None:
    every_minute = parse_cron("* * * * *")
    slot = due_slot(every_minute, at("2024-01-01T00:00"), at("2024-03-01T12:34:56"))
    assert slot is not None and slot.at == at("2024-03-01T12:34") and slot.missed >= 1000
