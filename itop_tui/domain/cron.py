"""Five-field cron expressions: parsing and the next time one is due.

The syntax is Vixie cron's (``man 5 crontab``): ``minute hour day-of-month
month day-of-week``, each a ``*``, a value, a range ``a-b``, a step ``*/n``,
``a-b/n`` or ``a/n`` (``a`` to the field's end), or a comma list of these.
Months and weekdays take English names (``jan``, ``mon-fri``); weekday 7 is
Sunday like 0. The macros ``@hourly``, ``@daily`` (``@midnight``),
``@weekly``, ``@monthly`` and ``@yearly`` (``@annually``) are accepted.

As in cron, when both the day of month and the day of week are restricted
(neither field starts with ``*``), a day matches when *either* matches.

Times are UTC, like everything itop stores: ``0 2 * * *`` is 02:00 UTC.

Missed runs are caught up once: :func:`due_slot` returns only the latest
scheduled time not yet handled, however many were missed (the count is
there for messages), so a runner that was down for a week starts a daily
job once, not seven times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun",
               "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Feb 29 on a given weekday can take 28 years to come round; nothing that
# never fires within this horizon is accepted.
SEARCH_YEARS = 29
# Counting missed slots stops here: the number is only shown to people.
MISSED_COUNT_LIMIT = 1000


class CronError(ValueError):
    """A cron expression cannot be used; the message names the field and why."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, 1),
    # 7 is accepted for Sunday and folded onto 0 after parsing.
    _Field("day of week", 0, 7, WEEKDAY_NAMES, 0),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression; :meth:`next_after` finds when it fires."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, moment: datetime) -> bool:
        """True when the schedule fires in the minute of ``moment`` (UTC)."""
        moment = _utc(moment)
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def _day_matches(self, moment: datetime) -> bool:
        in_days = moment.day in self.days
        in_weekdays = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time strictly after ``moment`` the schedule fires, or None.

        None only for an expression that never fires (such as ``0 0 30 2 *``),
        which :func:`parse_cron` refuses anyway.
        """
        start = _utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        horizon = start.replace(year=min(start.year + SEARCH_YEARS, 9999), month=1, day=1,
                                hour=0, minute=0)
        t = start
        while t < horizon:
            if t.month not in self.months:
                following = _next_month(t)
                if following is None:
                    return None
                t = following
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                later = [m for m in self.minutes if m > t.minute]
                if later:
                    t = t.replace(minute=min(later))
                else:
                    t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t
        return None

    def slots_between(self, after: datetime, until: datetime, limit: int = MISSED_COUNT_LIMIT
                      ) -> list[datetime]:
        """Scheduled times in ``(after, until]``, oldest first, at most ``limit``."""
        found: list[datetime] = []
        t = self.next_after(after)
        end = _utc(until)
        while t is not None and t <= end and len(found) < limit:
            found.append(t)
            t = self.next_after(t)
        return found


@dataclass(frozen=True)
class DueSlot:
    """The scheduled time to run now, and how many were missed before it."""

    at: datetime
    missed: int

    @property
    def caught_up(self) -> bool:
        """True when older scheduled times were skipped in favour of this one."""
        return self.missed > 0


def due_slot(schedule: CronSchedule, handled_until: datetime, now: datetime) -> DueSlot | None:
    """The latest scheduled time in ``(handled_until, now]``, or None if nothing is due.

    ``handled_until`` is when the job last ran (or was last considered);
    the caller records ``now`` (or the slot) as handled once it starts the
    run, so missed times are caught up by this one run only.
    """
    slots = schedule.slots_between(handled_until, now)
    if not slots:
        return None
    if len(slots) >= MISSED_COUNT_LIMIT:
        # Too many to list: find the latest by stepping from shortly before now.
        latest = _latest_at_or_before(schedule, now) or slots[-1]
        return DueSlot(latest, MISSED_COUNT_LIMIT)
    return DueSlot(slots[-1], len(slots) - 1)


def _latest_at_or_before(schedule: CronSchedule, now: datetime) -> datetime | None:
    span = timedelta(days=1)
    for _ in range(16):  # up to about 90 years back, doubling the window
        slots = schedule.slots_between(_utc(now) - span, now, limit=1_000_000)
        if slots:
            return slots[-1]
        span *= 2
    return None


def parse_cron(text: str) -> CronSchedule:
    """Parse a five-field expression or a macro; :class:`CronError` says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise CronError("empty cron expression: expected five fields, e.g. '0 2 * * *'")
    source = " ".join(text.split())
    expanded = source
    if source.startswith("@"):
        macro = source.lower()
        if macro not in MACROS:
            raise CronError(
                f"unknown cron macro {source!r}; known: {', '.join(MACROS)}"
            )
        expanded = MACROS[macro]
    parts = expanded.split(" ")
    if len(parts) != len(_FIELDS):
        raise CronError(
            f"cron expression {source!r} has {len(parts)} fields; expected 5: "
            f"minute hour day-of-month month day-of-week"
        )
    values = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    schedule = CronSchedule(
        text=source,
        minutes=frozenset(values[0]),
        hours=frozenset(values[1]),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
    if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise CronError(f"cron expression {source!r} never fires (no such day)")
    return schedule


def _parse_field(text: str, spec: _Field) -> set[int]:
    result: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"cron {spec.name} field {text!r}: empty list item")
        result |= _parse_item(item, text, spec)
    return result


def _parse_item(item: str, text: str, spec: _Field) -> set[int]:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) < 1:
            raise CronError(f"cron {spec.name} field {text!r}: step {step_text!r} "
                            f"must be a whole number of at least 1")
        step = int(step_text)
    if base == "*":
        low, high = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _value(first, text, spec), _value(last, text, spec)
        if low > high:
            raise CronError(f"cron {spec.name} field {text!r}: range {base!r} runs backwards")
    else:
        low = _value(base, text, spec)
        # "a/n" means from a to the end of the field, stepping n.
        high = spec.high if slash else low
    return set(range(low, high + 1, step))


def _value(word: str, text: str, spec: _Field) -> int:
    lowered = word.lower()
    if lowered in spec.names:
        return spec.names.index(lowered) + spec.name_base
    if not (word.isascii() and word.isdigit()):
        hint = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise CronError(f"cron {spec.name} field {text!r}: {word!r} is not a number{hint}")
    value = int(word)
    if not spec.low <= value <= spec.high:
        raise CronError(f"cron {spec.name} field {text!r}: {value} is out of range "
                        f"{spec.low}-{spec.high}")
    return value


def _next_month(t: datetime) -> datetime | None:
    if t.month == 12:
        if t.year >= 9999:
            return None
        return t.replace(year=t.year + 1, month=1, day=1, hour=0, minute=0)
    return t.replace(month=t.month + 1, day=1, hour=0, minute=0)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken as UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
