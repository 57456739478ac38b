"""``itop report performance``: statistics per host and metric over a period.

Built from the persisted one-minute rollups and threshold breaches
(:mod:`itop_tui.services.rollup_store`); how p95 over a period is estimated is
described in :mod:`itop_tui.domain.rollup`.

Rendered as Markdown, CSV or JSON. The JSON and CSV keys are stable:

- statistics: ``host, metric, min, avg, p95, max, samples``;
- breaches: ``host, metric, severity, opened, resolved, duration_seconds``;
- hosts selected that have no rollups in the period (unreachable all
  along, or not collected): JSON ``no_data`` (a list of host names), CSV
  rows with ``record`` ``no_data``, a line in Markdown.

Statistics are rounded to two decimals. Overlapping breaches of one host,
metric and severity (two monitors of the same host) are reported as one.

Times are UTC ISO 8601 (``2024-05-01T12:00:00Z``); ``resolved`` is empty
(``null`` in JSON) for a breach still open at the end of the period, whose
duration then runs to the end of the period.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from itop_tui.domain.output import strip_control
from itop_tui.domain.rollup import Breach, MetricSummary
from itop_tui.domain.timespec import format_time
from itop_tui.services.rollup_store import RollupStore

FORMATS = ("md", "csv", "json")
# Statistics in JSON and CSV are rounded to this many decimals.
DECIMALS = 2
SUMMARY_KEYS = ("host", "metric", "min", "avg", "p95", "max", "samples")
BREACH_KEYS = ("host", "metric", "severity", "opened", "resolved", "duration_seconds")
# One CSV holds both tables; the first column says which a row belongs to.
CSV_KEYS = ("record", *SUMMARY_KEYS, *BREACH_KEYS[2:])
_FORMULA_STARTS = ("=", "+", "-", "@", "\t")


class ReportError(ValueError):
    """The report cannot be built as asked (for example an empty period)."""


@dataclass(frozen=True, slots=True)
class BreachLine:
    """A threshold breach as reported: times in epoch seconds."""

    host: str
    metric: str
    severity: str
    opened: float
    resolved: float | None
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    """Statistics and breaches of the selected hosts over ``[since, until)``.

    ``hosts`` is ``None`` for every host with data; ``no_data`` the
    selected hosts without any statistics in the period.
    """

    since: float
    until: float
    hosts: tuple[str, ...] | None
    summaries: tuple[MetricSummary, ...]
    breaches: tuple[BreachLine, ...]
    no_data: tuple[str, ...] = ()


def build_report(
    store: RollupStore,
    hosts: Sequence[str] | None,
    since: float,
    until: float,
    expected: Sequence[str] | None = None,
) -> PerformanceReport:
    """Gather the statistics and breaches of ``hosts`` (``None``: all) for the period.

    ``expected`` are the hosts to list as ``no_data`` when they have no
    statistics (default: ``hosts``); e.g. the whole inventory when
    ``hosts`` is None.
    """
    if since >= until:
        raise ReportError(
            f"empty period: since {format_time(since)} is not before until {format_time(until)}"
        )
    summaries = store.summarize(hosts, since, until)
    breaches = tuple(
        BreachLine(
            host=b.host,
            metric=b.metric,
            severity=b.severity,
            opened=b.opened,
            resolved=b.resolved,
            # An open breach is counted up to the end of the period.
            duration_seconds=round(b.duration(until), 3),
        )
        for b in merge_breaches(store.breaches(since, until, hosts))
    )
    with_data = {s.host for s in summaries}
    wanted = hosts if expected is None else expected
    no_data = () if wanted is None else tuple(h for h in dict.fromkeys(wanted) if h not in with_data)
    return PerformanceReport(
        since=since,
        until=until,
        hosts=tuple(hosts) if hosts is not None else None,
        summaries=tuple(summaries),
        breaches=breaches,
        no_data=no_data,
    )


def merge_breaches(breaches: Sequence[Breach]) -> list[Breach]:
    """Overlapping breaches of one host, metric and severity as one (oldest first).

    Two monitors of one host (the TUI and ``itop collect``) may each have
    recorded the same breach, a second apart; counted once, not twice.
    """
    merged: dict[tuple[str, str, str], list[Breach]] = {}
    for breach in sorted(breaches, key=lambda b: b.opened):
        spans = merged.setdefault((breach.host, breach.metric, breach.severity), [])
        last = spans[-1] if spans else None
        if last is not None and (last.resolved is None or last.resolved >= breach.opened):
            resolved = (
                None if last.resolved is None or breach.resolved is None
                else max(last.resolved, breach.resolved)
            )
            spans[-1] = replace(last, resolved=resolved)
        else:
            spans.append(breach)
    every = [b for spans in merged.values() for b in spans]
    return sorted(every, key=lambda b: (b.opened, b.host, b.metric, b.severity))


def summary_record(summary: MetricSummary) -> dict[str, str | float | int]:
    """One statistics row with the stable keys."""
    return {
        "host": summary.host,
        "metric": summary.metric,
        "min": round(summary.min, DECIMALS),
        "avg": round(summary.avg, DECIMALS),
        "p95": round(summary.p95, DECIMALS),
        "max": round(summary.max, DECIMALS),
        "samples": summary.samples,
    }


def breach_record(breach: BreachLine) -> dict[str, str | float | None]:
    """One breach row with the stable keys, times as UTC ISO 8601."""
    return {
        "host": breach.host,
        "metric": breach.metric,
        "severity": breach.severity,
        "opened": format_time(breach.opened),
        "resolved": format_time(breach.resolved) if breach.resolved is not None else None,
        "duration_seconds": breach.duration_seconds,
    }


def to_json(report: PerformanceReport) -> str:
    """The report as one JSON document (keys described in the module notes)."""
    document = {
        "since": format_time(report.since),
        "until": format_time(report.until),
        "hosts": list(report.hosts) if report.hosts is not None else None,
        "metrics": [summary_record(s) for s in report.summaries],
        "breaches": [breach_record(b) for b in report.breaches],
        "no_data": list(report.no_data),
    }
    return json.dumps(document, indent=2) + "\n"


def to_csv(report: PerformanceReport) -> str:
    """The report as one CSV table: ``record`` is ``summary`` or ``breach``.

    Columns that do not apply to a row's kind are empty.
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_KEYS, lineterminator="\n")
    writer.writeheader()
    for summary in report.summaries:
        writer.writerow(_spreadsheet_safe({"record": "summary", **summary_record(summary)}))
    for breach in report.breaches:
        writer.writerow(_spreadsheet_safe({"record": "breach", **breach_record(breach)}))
    for host in report.no_data:
        writer.writerow(_spreadsheet_safe({"record": "no_data", "host": host}))
    return out.getvalue()


def to_markdown(report: PerformanceReport) -> str:
    """The report as a Markdown document with a statistics and a breaches table."""
    hosts = ", ".join(_cell(h) for h in report.hosts) if report.hosts is not None else "all"
    lines = [
        "# Performance report",
        "",
        f"Period: {format_time(report.since)} to {format_time(report.until)}"
        f" ({_duration(report.until - report.since)})  ",
        f"Hosts: {hosts or 'none'}",
        "",
        "## Statistics",
        "",
    ]
    if report.summaries:
        lines += [
            "| host | metric | min | avg | p95 | max | samples |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {_cell(s.host)} | {_cell(s.metric)} | {_number(s.min)} | {_number(s.avg)}"
            f" | {_number(s.p95)} | {_number(s.max)} | {s.samples} |"
            for s in report.summaries
        ]
        lines += [
            "",
            "min, avg and max are exact; p95 is estimated from the per-minute p95 values.",
        ]
    else:
        lines.append("No statistics recorded in this period.")
    if report.no_data:
        lines += ["", "No data in this period for: " + ", ".join(_cell(h) for h in report.no_data)]
    lines += ["", "## Threshold breaches", ""]
    if report.breaches:
        lines += [
            "| host | metric | severity | opened | resolved | duration |",
            "|---|---|---|---|---|---:|",
        ]
        lines += [
            f"| {_cell(b.host)} | {_cell(b.metric)} | {_cell(b.severity)}"
            f" | {format_time(b.opened)}"
            f" | {format_time(b.resolved) if b.resolved is not None else 'still open'}"
            f" | {_duration(b.duration_seconds)} |"
            for b in report.breaches
        ]
    else:
        lines.append("No threshold breaches in this period.")
    return "\n".join(lines) + "\n"


def render(report: PerformanceReport, fmt: str) -> str:
    """The report in ``fmt``, one of :data:`FORMATS`."""
    renderers = {"md": to_markdown, "csv": to_csv, "json": to_json}
    if fmt not in renderers:
        raise ReportError(f"unknown report format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return renderers[fmt](report)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell and a terminal."""
    return strip_control(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _number(value: float) -> str:
    """A statistic for reading: two decimals, thousands separated."""
    return f"{value:,.2f}"


def _duration(seconds: float) -> str:
    """A duration for reading, such as ``1d 2h 5m`` or ``45s``."""
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if secs or not parts:
        parts.append(f"{secs}s")
    return " ".join(parts)


def _spreadsheet_safe(row: dict[str, object]) -> dict[str, object]:
    """Text cells stripped of terminal controls, formulas quoted as text.

    Metric names carry interface and disk names read from hosts, so a host
    could otherwise plant escape sequences in the terminal the CSV is printed
    to, or ``=HYPERLINK(...)`` in an operator's spreadsheet.
    """
    safe: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, str):
            value = strip_control(value)
            if value[:1] in _FORMULA_STARTS:
                value = "'" + value
        safe[key] = value
    return safe
