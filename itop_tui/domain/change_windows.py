"""Blackout and maintenance windows, schedule conflicts, and active changes (pure).

Windows come from config (``changes.blackouts``, ``changes.maintenance_windows``),
each with a host selector and either one absolute period (``start``/``end``)
or a weekly rule (days and a UTC time of day; an end at or before the start
runs past midnight). Times are UTC.

* A window to schedule that overlaps a blackout applying to one of the
  change's hosts is refused, except for emergency changes
  (:func:`blackout_hits` finds them; :mod:`itop_tui.domain.change` refuses).
* A maintenance window says when changes to its hosts should happen; a
  change window not inside one of them is flagged, not refused
  (:func:`outside_maintenance`).
* Two approved changes sharing a host whose windows overlap are a conflict
  (:func:`find_conflicts`), flagged for people to sort out.
* :func:`active_changes` answers "which approved change covers host H now?",
  the question the change gate and the Header ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from itop_tui.domain.change import APPROVED_STATES, Change
from itop_tui.domain.models import Inventory
from itop_tui.domain.selectors import SelectorError, select_hosts

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WINDOW_KINDS = ("blackout", "maintenance")


@dataclass(frozen=True)
class WeeklyRule:
    """Every week on ``days`` (0 = Monday) from ``start`` to ``end``, UTC.

    An ``end`` at or before ``start`` ends on the next day (22:00-02:00);
    equal times make a whole day.
    """

    days: tuple[int, ...]
    start: time
    end: time

    def occurrences(self, begin: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Periods of this rule that overlap [begin, end)."""
        found: list[tuple[datetime, datetime]] = []
        day = (begin - timedelta(days=1)).date()
        while day <= end.date():
            if day.weekday() in self.days:
                opens = datetime.combine(day, self.start, UTC)
                closes = datetime.combine(day, self.end, UTC)
                if closes <= opens:
                    closes += timedelta(days=1)
                if opens < end and closes > begin:
                    found.append((opens, closes))
            day += timedelta(days=1)
        return found

    def describe(self) -> str:
        """``mon,fri 18:00-23:00 UTC``."""
        days = ",".join(WEEKDAYS[d] for d in self.days)
        return f"{days} {self.start.strftime('%H:%M')}-{self.end.strftime('%H:%M')} UTC"


@dataclass(frozen=True)
class WindowRule:
    """A blackout or maintenance window from config.

    ``hosts`` is a selector (``all`` by default). Either ``start`` and
    ``end`` (one period) or ``weekly`` is set.
    """

    name: str
    kind: str
    hosts: str = "all"
    start: datetime | None = None
    end: datetime | None = None
    weekly: WeeklyRule | None = None

    def occurrences(self, begin: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Periods of this window that overlap [begin, end)."""
        if self.weekly is not None:
            return self.weekly.occurrences(begin, end)
        if self.start is not None and self.end is not None and self.start < end and self.end > begin:
            return [(self.start, self.end)]
        return []

    def describe(self) -> str:
        """When the window is, for messages."""
        if self.weekly is not None:
            return self.weekly.describe()
        start = self.start.strftime("%Y-%m-%dT%H:%MZ") if self.start else "?"
        end = self.end.strftime("%Y-%m-%dT%H:%MZ") if self.end else "?"
        return f"{start} to {end}"

    def applies_to(self, inventory: Inventory, host_names: Iterable[str]) -> list[str]:
        """Which of ``host_names`` this window's selector picks."""
        try:
            picked = {h.name for h in select_hosts(inventory, self.hosts)}
        except SelectorError:
            # Checked when the config is loaded; a selector broken since
            # (a group removed) protects every host rather than none.
            return list(host_names)
        return [name for name in host_names if name in picked]


@dataclass(frozen=True)
class BlackoutHit:
    """A blackout a change window overlaps, with the hosts it protects."""

    rule: str
    hosts: tuple[str, ...]
    start: datetime
    end: datetime

    def describe(self) -> str:
        """``freeze (2025-12-20T00:00Z to 2026-01-05T00:00Z) on web01, web02``."""
        return (f"{self.rule} ({self.start.strftime('%Y-%m-%dT%H:%MZ')} to "
                f"{self.end.strftime('%Y-%m-%dT%H:%MZ')}) on {', '.join(self.hosts)}")


def blackout_hits(
    rules: Sequence[WindowRule],
    inventory: Inventory,
    host_names: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[BlackoutHit]:
    """Blackouts overlapping [start, end) that apply to one of ``host_names``."""
    hits: list[BlackoutHit] = []
    for rule in rules:
        if rule.kind != "blackout":
            continue
        periods = rule.occurrences(start, end)
        if not periods:
            continue
        hosts = rule.applies_to(inventory, host_names)
        if hosts:
            opens, closes = periods[0]
            hits.append(BlackoutHit(rule.name, tuple(hosts), opens, closes))
    return hits


def outside_maintenance(
    rules: Sequence[WindowRule],
    inventory: Inventory,
    host_names: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[str]:
    """Hosts that have maintenance windows none of which holds [start, end) whole."""
    outside: list[str] = []
    for name in host_names:
        mine = [r for r in rules if r.kind == "maintenance" and r.applies_to(inventory, [name])]
        if not mine:
            continue
        inside = any(
            opens <= start and end <= closes
            for rule in mine
            for opens, closes in rule.occurrences(start, end)
        )
        if not inside:
            outside.append(name)
    return outside


@dataclass(frozen=True)
class Conflict:
    """Two approved changes on the same hosts with overlapping windows."""

    first: str
    second: str
    hosts: tuple[str, ...]
    start: datetime
    end: datetime

    def describe(self) -> str:
        """``CHG-3 and CHG-5 overlap on web01 from ... to ...``."""
        return (f"{self.first} and {self.second} overlap on {', '.join(self.hosts)} from "
                f"{self.start.strftime('%Y-%m-%dT%H:%M:%SZ')} to "
                f"{self.end.strftime('%Y-%m-%dT%H:%M:%SZ')}")

    def involves(self, ref: str) -> bool:
        """True when ``ref`` is one of the two changes."""
        return ref in (self.first, self.second)


def _scheduled(changes: Iterable[Change]) -> list[Change]:
    return [c for c in changes
            if c.state in APPROVED_STATES and c.start is not None and c.end is not None]


def overlap(a: Change, b: Change) -> Conflict | None:
    """The conflict between two changes, or None when they share no host or time."""
    a_start, a_end, b_start, b_end = a.start, a.end, b.start, b.end
    if a_start is None or a_end is None or b_start is None or b_end is None:
        return None
    shared = tuple(h for h in a.hosts if h in b.hosts)
    begin, finish = max(a_start, b_start), min(a_end, b_end)
    if not shared or begin >= finish:
        return None
    first, second = sorted((a, b), key=lambda c: c.number)
    return Conflict(first.ref, second.ref, shared, begin, finish)


def find_conflicts(changes: Iterable[Change]) -> list[Conflict]:
    """Every conflict among the approved (scheduled or implementing) changes."""
    approved = sorted(_scheduled(changes), key=lambda c: c.number)
    conflicts: list[Conflict] = []
    for i, first in enumerate(approved):
        for second in approved[i + 1:]:
            found = overlap(first, second)
            if found is not None:
                conflicts.append(found)
    return conflicts


def conflicts_with(change: Change, others: Iterable[Change]) -> list[Conflict]:
    """Conflicts ``change`` would have with the approved changes among ``others``.

    ``change`` itself is taken as scheduled whatever its state, so this can
    be asked before scheduling it.
    """
    found: list[Conflict] = []
    for other in sorted(_scheduled(others), key=lambda c: c.number):
        if other.ref == change.ref:
            continue
        conflict = overlap(change, other)
        if conflict is not None:
            found.append(conflict)
    return found


def active_changes(
    changes: Iterable[Change], host_names: Sequence[str], now: datetime
) -> list[Change]:
    """Approved changes inside their window at ``now`` that cover every one of ``host_names``."""
    return sorted(
        (c for c in changes
         if c.is_active(now) and all(c.covers(name) for name in host_names)),
        key=lambda c: c.number,
    )


def time_left(change: Change, now: datetime) -> timedelta | None:
    """How long the window of an active change stays open (None if it is not active)."""
    end = change.end
    if not change.is_active(now) or end is None:
        return None
    return end - now


@dataclass(frozen=True)
class CalendarEntry:
    """One line of the upcoming view: a change window or a config window."""

    start: datetime
    end: datetime
    kind: str  # change, blackout, maintenance
    name: str  # the change ref or the window name
    hosts: tuple[str, ...] | str  # the change's hosts, or the window's selector
    conflict: bool = False


def upcoming(
    changes: Iterable[Change],
    rules: Sequence[WindowRule],
    begin: datetime,
    end: datetime,
) -> list[CalendarEntry]:
    """Approved change windows and config windows between ``begin`` and ``end``, by start.

    Changes in a conflict are marked.
    """
    approved = _scheduled(changes)
    in_conflict = {ref for c in find_conflicts(approved) for ref in (c.first, c.second)}
    entries: list[CalendarEntry] = []
    for change in approved:
        start, finish = change.start, change.end
        if start is not None and finish is not None and start < end and finish > begin:
            entries.append(CalendarEntry(start, finish, "change", change.ref, change.hosts,
                                         change.ref in in_conflict))
    for rule in rules:
        for opens, closes in rule.occurrences(begin, end):
            entries.append(CalendarEntry(opens, closes, rule.kind, rule.name, rule.hosts))
    return sorted(entries, key=lambda e: (e.start, e.kind, e.name))


def parse_clock(text: str) -> time:
    """``HH:MM`` as a time of day; ValueError otherwise."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"expected a time of day HH:MM, got {text!r}")
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0:
        return time(0, 0)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"expected a time of day HH:MM (00:00-23:59), got {text!r}")
    return time(h, m)


def parse_weekday(text: str) -> int:
    """``mon``..``sun`` (or the full English name) as 0..6; ValueError otherwise."""
    word = text.strip().lower()
    if word in WEEKDAYS:
        return WEEKDAYS.index(word)
    if word in WEEKDAY_NAMES:
        return WEEKDAY_NAMES.index(word)
    raise ValueError(f"expected a weekday ({', '.join(WEEKDAYS)}), got {text!r}")
