"""`itop report performance`: the report built from a real rollup store, its
renderers, and the parsing of ``--since``."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from itop_tui.domain.rollup import Breach, Rollup
from itop_tui.domain.timespec import (
    TimeSpecError,
    format_time,
    parse_duration,
    parse_since,
    parse_time,
)
from itop_tui.ops.performance_report import (
    BREACH_KEYS,
    CSV_KEYS,
    SUMMARY_KEYS,
    PerformanceReport,
    ReportError,
    build_report,
    render,
    to_csv,
    to_json,
    to_markdown,
)
from itop_tui.services.rollup_store import RollupStore

T0 = 1_714_521_600  # 2024-05-01T00:00:00Z
HOUR = 3600


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RollupStore]:
    with RollupStore.in_data_dir(tmp_path) as opened:
        opened.add_rollups(
            [
                Rollup("web01", "cpu", T0, 10.0, 20.0, 40.0, 35.0, 30),
                Rollup("web01", "cpu", T0 + 60, 5.0, 50.0, 90.0, 80.0, 30),
                Rollup("web01", "mem", T0, 70.0, 71.0, 72.0, 72.0, 30),
                Rollup("db01", "net.rx.eth0", T0, 1e6, 2.5e6, 4e6, 3.9e6, 30),
                # Outside the period of the reports below.
                Rollup("web01", "cpu", T0 + 2 * HOUR, 0.0, 0.0, 0.0, 0.0, 30),
            ]
        )
        opened.record_breach(Breach("web01", "cpu", "critical", T0 + 60, T0 + 60 + 330))
        opened.record_breach(Breach("db01", "net.rx.eth0", "warning", T0 + 600))
        yield opened


def build(store: RollupStore, hosts: list[str] | None = None) -> PerformanceReport:
    return build_report(store, hosts, since=T0, until=T0 + HOUR)


def test_report_holds_the_statistics_and_breaches_of_the_period(store: RollupStore) -> None:
    report = build(store)

    assert [
        (s.host, s.metric, s.min, s.avg, s.p95, s.max, s.samples) for s in report.summaries
    ] == [
        ("db01", "net.rx.eth0", 1e6, 2.5e6, 3.9e6, 4e6, 30),
        # avg (20*30 + 50*30) / 60 = 35; p95 rank ceil(0.95 * 60) = 57 falls in 80.
        ("web01", "cpu", 5.0, 35.0, 80.0, 90.0, 60),
        ("web01", "mem", 70.0, 71.0, 72.0, 72.0, 30),
    ]
    assert [(b.host, b.severity, b.resolved, b.duration_seconds) for b in report.breaches] == [
        ("web01", "critical", T0 + 390, 330.0),
        # Still open: counted up to the end of the period.
        ("db01", "warning", None, HOUR - 600.0),
    ]


def test_report_restricted_to_hosts(store: RollupStore) -> None:
    report = build(store, ["db01"])
    assert {s.host for s in report.summaries} == {"db01"}
    assert [b.host for b in report.breaches] == ["db01"]
    assert report.hosts == ("db01",)


def test_report_reads_rollups_that_survived_a_restart(store: RollupStore, tmp_path: Path) -> None:
    store.close()
    with RollupStore.in_data_dir(tmp_path) as reopened:
        assert [s.samples for s in build(reopened).summaries] == [30, 60, 30]


def test_empty_period_is_refused(store: RollupStore) -> None:
    with pytest.raises(ReportError, match="empty period"):
        build_report(store, None, since=T0 + 60, until=T0 + 60)


def test_json_has_stable_keys_and_parses(store: RollupStore) -> None:
    document = json.loads(to_json(build(store)))

    assert set(document) == {"since", "until", "hosts", "metrics", "breaches", "no_data"}
    assert document["since"] == "2024-05-01T00:00:00Z"
    assert document["until"] == "2024-05-01T01:00:00Z"
    assert document["hosts"] is None
    assert [tuple(m) for m in document["metrics"]] == [SUMMARY_KEYS] * 3
    assert document["metrics"][1] == {
        "host": "web01", "metric": "cpu",
        "min": 5.0, "avg": 35.0, "p95": 80.0, "max": 90.0, "samples": 60,
    }  # fmt: skip
    assert [tuple(b) for b in document["breaches"]] == [BREACH_KEYS] * 2
    assert document["breaches"][0] == {
        "host": "web01", "metric": "cpu", "severity": "critical",
        "opened": "2024-05-01T00:01:00Z", "resolved": "2024-05-01T00:06:30Z",
        "duration_seconds": 330.0,
    }  # fmt: skip
    assert document["breaches"][1]["resolved"] is None


def test_csv_is_one_table_with_both_kinds_of_rows(store: RollupStore) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(build(store)))))

    assert tuple(rows[0]) == CSV_KEYS
    assert [r["record"] for r in rows] == ["summary"] * 3 + ["breach"] * 2
    cpu = rows[1]
    assert (cpu["host"], cpu["metric"], float(cpu["avg"]), float(cpu["p95"]), cpu["samples"]) == (
        "web01", "cpu", 35.0, 80.0, "60",
    )  # fmt: skip
    assert cpu["severity"] == cpu["opened"] == ""
    open_breach = rows[4]
    assert (open_breach["host"], open_breach["resolved"], open_breach["min"]) == ("db01", "", "")
    assert float(open_breach["duration_seconds"]) == HOUR - 600


def markdown_table(text: str, heading: str) -> list[list[str]]:
    """The rows of the table under ``## heading``, split on unescaped pipes."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_markdown_has_a_statistics_and_a_breaches_table(store: RollupStore) -> None:
    text = to_markdown(build(store))

    assert text.startswith("# Performance report\n")
    assert "2024-05-01T00:00:00Z to 2024-05-01T01:00:00Z (1h)" in text
    stats = markdown_table(text, "Statistics")
    assert stats[0] == ["host", "metric", "min", "avg", "p95", "max", "samples"]
    assert stats[1] == ["---", "---", "---:", "---:", "---:", "---:", "---:"]
    assert stats[2:] == [
        ["db01", "net.rx.eth0", "1,000,000.00", "2,500,000.00", "3,900,000.00",
         "4,000,000.00", "30"],
        ["web01", "cpu", "5.00", "35.00", "80.00", "90.00", "60"],
        ["web01", "mem", "70.00", "71.00", "72.00", "72.00", "30"],
    ]  # fmt: skip
    breaches = markdown_table(text, "Threshold breaches")
    assert breaches[2:] == [
        ["web01", "cpu", "critical", "2024-05-01T00:01:00Z", "2024-05-01T00:06:30Z", "5m 30s"],
        ["db01", "net.rx.eth0", "warning", "2024-05-01T00:10:00Z", "still open", "50m"],
    ]


def test_markdown_of_an_empty_period_says_so(tmp_path: Path) -> None:
    with RollupStore(tmp_path / "empty.sqlite") as empty:
        text = to_markdown(build_report(empty, ["web01"], since=T0, until=T0 + 86400))
    assert "Hosts: web01" in text
    assert "(1d)" in text
    assert "No statistics recorded in this period." in text
    assert "No threshold breaches in this period." in text
    assert "|" not in text


def test_names_from_hosts_cannot_break_tables_terminals_or_spreadsheets(tmp_path: Path) -> None:
    hostile = "=HYPERLINK(x)|\x1b[31mred"
    with RollupStore(tmp_path / "m.sqlite") as store:
        store.add_rollups([Rollup("web|01", hostile, T0, 1.0, 1.0, 1.0, 1.0, 1)])
        report = build_report(store, None, since=T0, until=T0 + 60)

    markdown = to_markdown(report)
    assert "\x1b" not in markdown
    assert markdown_table(markdown, "Statistics")[2][:2] == ["web\\|01", "=HYPERLINK(x)\\|red"]

    row = next(csv.DictReader(io.StringIO(to_csv(report))))
    assert (row["host"], row["metric"]) == ("web|01", "'=HYPERLINK(x)|red")

    # JSON keeps the name as recorded; the encoder escapes the control character.
    encoded = to_json(report)
    assert "\x1b" not in encoded
    assert json.loads(encoded)["metrics"][0]["metric"] == hostile


def test_render_picks_the_format_and_refuses_unknown_ones(store: RollupStore) -> None:
    report = build(store)
    assert render(report, "json") == to_json(report)
    assert render(report, "csv") == to_csv(report)
    assert render(report, "md") == to_markdown(report)
    with pytest.raises(ReportError, match="unknown report format 'xml'"):
        render(report, "xml")


# -- --since -------------------------------------------------------------------------

NOW = T0 + 10 * 86400 + 0.25


@pytest.mark.parametrize(
    ("spec", "seconds_back"),
    [("30m", 1800), ("24h", 86400), ("7d", 7 * 86400), ("2w", 14 * 86400), ("45s", 45),
     (" 24H ", 86400), ("1 h", 3600), ("-24h", 86400), ("-30m", 1800)],
)  # fmt: skip
def test_since_as_a_duration_back_from_now(spec: str, seconds_back: int) -> None:
    assert parse_since(spec, NOW) == NOW - seconds_back


@pytest.mark.parametrize(
    ("spec", "epoch"),
    [
        ("2024-05-01", T0),
        ("2024-05-01T12:00:00Z", T0 + 12 * HOUR),
        ("2024-05-01T12:00", T0 + 12 * HOUR),  # no offset: UTC
        ("2024-05-01T12:00:00+02:00", T0 + 10 * HOUR),
    ],
)
def test_since_as_an_iso_time(spec: str, epoch: int) -> None:
    assert parse_since(spec, NOW) == epoch
    assert parse_time(spec) == epoch


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("", "empty time"),
        ("   ", "empty time"),
        ("5y", r"invalid duration '5y': expected a duration such as 30m"),
        ("3min", "invalid duration '3min'"),
        ("yesterday", "invalid time 'yesterday': .*ISO 8601"),
        ("--24h", "invalid time '--24h'"),
        ("-0h", "must be longer than zero"),
        ("2024-13-01", "invalid time '2024-13-01'"),
        ("0h", "must be longer than zero"),
        ("9" * 5000 + "d", r"'9{37}\.\.\.': longer than 100 years"),
        ("2099-01-01", "in the future"),
        ("1969-12-31", "before 1970"),
    ],
)
def test_since_refuses_bad_input_clearly(spec: str, complaint: str) -> None:
    with pytest.raises(TimeSpecError, match=complaint):
        parse_since(spec, NOW)


def test_duration_and_time_formatting() -> None:
    assert parse_duration("90m") == 5400.0
    with pytest.raises(TimeSpecError):
        parse_duration("24")
    assert format_time(T0 + 12 * HOUR + 0.75) == "2024-05-01T12:00:00Z"


def test_statistics_are_rounded_to_two_decimals_in_json_and_csv(tmp_path: Path) -> None:
    with RollupStore.in_data_dir(tmp_path) as store:
        store.add_rollups([Rollup("web01", "cpu", T0, 1 / 3, 2 / 3, 10 / 3, 3.14159, 30)])
        report = build(store)
    metric = json.loads(to_json(report))["metrics"][0]
    assert (metric["min"], metric["avg"], metric["p95"], metric["max"]) == (0.33, 0.67, 3.14, 3.33)
    row = next(csv.DictReader(io.StringIO(to_csv(report))))
    assert (row["min"], row["avg"], row["p95"], row["max"]) == ("0.33", "0.67", "3.14", "3.33")


def test_selected_hosts_without_rollups_are_listed_as_no_data(store: RollupStore) -> None:
    report = build(store, ["web01", "deadhost"])
    assert report.no_data == ("deadhost",)
    assert json.loads(to_json(report))["no_data"] == ["deadhost"]
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert [(r["record"], r["host"]) for r in rows if r["record"] == "no_data"] == [
        ("no_data", "deadhost")]
    assert "No data in this period for: deadhost" in to_markdown(report)
    assert build(store).no_data == ()


def test_overlapping_breaches_of_two_monitors_count_once(tmp_path: Path) -> None:
    with RollupStore.in_data_dir(tmp_path) as store:
        path = store.path
    # Written a second apart by two processes (as stores before merging did).
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO breaches (host, metric, severity, opened, resolved)"
            " VALUES ('web01', 'cpu', 'warning', ?, ?)",
            [(T0 + 60, T0 + 360), (T0 + 61, T0 + 361)],
        )
    with RollupStore(path) as store:
        report = build(store)
    assert [(b.opened, b.resolved, b.duration_seconds) for b in report.breaches] == [
        (T0 + 60, T0 + 361, 301.0)]


def test_expected_hosts_without_rollups_are_no_data_when_all_hosts_are_reported(
    store: RollupStore,
) -> None:
    report = build_report(store, None, T0, T0 + HOUR, ["db01", "deadhost", "web01"])
    assert report.no_data == ("deadhost",)
    assert {s.host for s in report.summaries} == {"db01", "web01"}
