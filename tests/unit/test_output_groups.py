"""Grouping identical results and folding host names, as clush -b prints them."""

from __future__ import annotations

import pytest

from itop_tui.domain.output_groups import fold_hosts, format_groups, group_results
from itop_tui.services.transport import RunResult


def result(host: str, stdout: str = "", exit_status: int | None = 0, *, stderr: str = "",
           error: str | None = None, truncated: bool = False) -> RunResult:
    return RunResult(host, "cmd", exit_status, stdout, stderr, 0.1, truncated, error)


@pytest.mark.parametrize(
    ("names", "folded"),
    [
        (["web01", "web02", "web03", "db1"], "db1,web[01-03]"),
        (["web03", "web01", "web02"], "web[01-03]"),
        (["web08", "web09", "web10", "web12"], "web[08-10,12]"),
        (["n1", "n2", "n10", "n11"], "n[1-2,10-11]"),
        (["node9", "node10"], "node[9-10]"),
        (["h1.example.com", "h2.example.com", "h4.example.com"], "h[1-2,4].example.com"),
        (["alpha", "beta", "alpha"], "alpha,beta"),
        (["web1", "web01"], "web01,web1"),
        (["web01", "web1"], "web01,web1"),
        (["rack1-node1", "rack1-node2", "rack2-node1"], "rack1-node[1-2],rack2-node1"),
        (["solo7"], "solo7"),
        ([], ""),
    ],
)
def test_fold_hosts(names: list[str], folded: str) -> None:
    assert fold_hosts(names) == folded


def test_identical_results_share_a_group() -> None:
    groups = group_results([
        result("web01", "Linux\n"),
        result("web02", "Linux\n"),
        result("db1", "Linux\n"),
        result("web03", "FreeBSD\n"),
    ])
    assert [(g.hosts, g.stdout) for g in groups] == [
        (["web01", "web02", "db1"], "Linux\n"),
        (["web03"], "FreeBSD\n"),
    ]
    assert groups[0].header() == "---------------- db1,web[01-02] (exit 0)"


def test_exit_status_stderr_and_truncation_split_groups() -> None:
    groups = group_results([
        result("a1", "x"),
        result("a2", "x", 1),
        result("a3", "x", stderr="warn"),
        result("a4", "x", truncated=True),
        result("a5", "x"),
    ])
    assert [g.hosts for g in groups] == [["a1", "a5"], ["a3"], ["a4"], ["a2"]]


def test_failures_come_after_successes() -> None:
    groups = group_results([
        result("down", "", None, error="down: cannot connect: connection refused"),
        result("bad", "oops\n", 2),
        result("good", "fine\n"),
    ])
    assert [g.hosts[0] for g in groups] == ["good", "down", "bad"]
    assert [g.status_label for g in groups] == ["exit 0", "error", "exit 2"]


def test_format_groups_prints_header_then_output() -> None:
    text = format_groups(group_results([
        result("web01", "Linux\n"),
        result("web02", "Linux\n"),
        result("web03", "out\n", 1, stderr="err\n", truncated=True),
        result("web04", "", None, error="web04: timed out after 5s"),
    ]))
    assert text == (
        "---------------- web[01-02] (exit 0)\n"
        "Linux\n"
        "---------------- web03 (exit 1)\n"
        "out\n"
        "err\n"
        "[output truncated]\n"
        "---------------- web04 (error)\n"
        "web04: timed out after 5s\n"
    )


def test_empty_output_prints_the_header_only() -> None:
    assert format_groups(group_results([result("h1"), result("h2")])) == (
        "---------------- h[1-2] (exit 0)\n"
    )
    assert format_groups([]) == ""
