"""Parsing of time specifications such as ``--since 24h``, ``+30m`` or an ISO 8601 time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

# No metrics history is kept anywhere near this long; the bound keeps the
# arithmetic (and the dates printed from it) in range.
MAX_DURATION = 100 * 365 * 86400
_DURATION_RE = re.compile(r"(\d+)\s*([smhdw])")

EXPECTED = (
    "expected a duration such as 30m, 24h or 7d (units s, m, h, d, w) "
    "or an ISO 8601 time such as 2024-05-01 or 2024-05-01T12:00:00Z"
)


class TimeSpecError(ValueError):
    """A time specification could not be understood; the message says why."""


def _shown(text: str) -> str:
    """The input as quoted in a message, cut short if it is long."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30m``, ``24h``, ``7d`` or ``2w``.

    Raises :class:`TimeSpecError` for anything else, or for a zero duration.
    """
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise TimeSpecError(f"invalid duration {_shown(text)}: {EXPECTED}")
    digits, unit = match.group(1), match.group(2)
    # Checked before int(): Python refuses to convert very long digit strings.
    if len(digits) > 12 or int(digits) * UNIT_SECONDS[unit] > MAX_DURATION:
        raise TimeSpecError(f"invalid duration {_shown(text)}: longer than 100 years")
    amount = int(digits)
    if amount == 0:
        raise TimeSpecError(f"invalid duration {_shown(text)}: must be longer than zero")
    return float(amount * UNIT_SECONDS[unit])


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 date or time; without an offset it is UTC.

    Times without an offset are taken as UTC because itop stores and prints
    UTC everywhere, not the local time of the jump host.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeSpecError(f"invalid time {_shown(text)}: {EXPECTED}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_since(text: str, now: float) -> float:
    """Epoch seconds for ``--since``: a duration back from ``now`` (``24h``, or
    ``-24h`` as journalctl writes it), or an ISO time.

    The result is never in the future and never before 1970.
    """
    spec = text.strip()
    if not spec:
        raise TimeSpecError(f"empty time: {EXPECTED}")
    if spec.startswith("-") and _DURATION_RE.fullmatch(spec[1:].strip().lower()):
        spec = spec[1:].strip()
    if _DURATION_RE.fullmatch(spec.lower()):
        since = now - parse_duration(spec)
    elif spec[0].isdigit() and spec[-1].isalpha() and "-" not in spec:
        # Reads as a duration with a unit we do not know ("5y", "3min").
        raise TimeSpecError(f"invalid duration {_shown(text)}: {EXPECTED}")
    else:
        since = parse_time(spec)
    if since > now:
        raise TimeSpecError(f"time {_shown(text)} is in the future")
    if since < 0:
        raise TimeSpecError(f"time {_shown(text)} reaches back before 1970")
    return since


WHEN_EXPECTED = "expected an ISO 8601 time (2025-06-01T22:00Z), now, or +DURATION such as +30m"


def parse_when(text: str, now: datetime) -> datetime:
    """A moment given as ``now``, ``+30m`` (after ``now``) or an ISO 8601 time, in UTC.

    Used for change windows (``--start``, ``--end`` and the Changes pane's
    forms). An ISO time without an offset is UTC, as everywhere in itop; one
    with an offset is converted to UTC. Raises :class:`TimeSpecError`.
    """
    spec = text.strip()
    if spec.lower() == "now":
        return now
    if spec.startswith("+"):
        return now + timedelta(seconds=parse_duration(spec[1:]))
    try:
        parsed = datetime.fromisoformat(spec)
    except ValueError:
        raise TimeSpecError(f"invalid time {_shown(text)}: {WHEN_EXPECTED}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(epoch: float) -> str:
    """UTC ISO 8601 with a ``Z`` suffix, to the second, as itop prints times."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
