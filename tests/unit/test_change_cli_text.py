"""What `itop change list|show` print, and `--change` references that name no change.

Runs `python -m itop_tui` as a subprocess over a private config and data dir.
The hosts have the address ``local`` (this machine, no SSH): nothing here
contacts any address.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cli_helpers import MARK_PROCEDURE, ItopCli

LONG_TITLE = "Replace the database replication after replication stopped on both"


@pytest.fixture
def itop(tmp_path: Path) -> ItopCli:
    config = tmp_path / "itop.yaml"
    config.write_text("roles:\n  alice: operator\n")
    cli = ItopCli(config, tmp_path / "data", timeout=60, user="alice")
    for name in ("web1", "web2"):
        cli.ok("inventory", "add", name, "--address", "local", "--status", "production")
    return cli


def new_change(itop: ItopCli, *extra: str, title: str = LONG_TITLE) -> str:
    done = itop.ok("change", "new", "--title", title, "--hosts", "web1:web2", "--impact", "none",
                   "--outage", "no", "--json", *extra)
    return str(json.loads(done.stdout)["ref"])


def test_show_puts_the_last_backups_of_all_hosts_under_one_label(itop: ItopCli) -> None:
    ref = new_change(itop)
    lines = itop.ok("change", "show", ref).stdout.splitlines()
    labelled = [i for i, line in enumerate(lines) if "last backup" in line]
    assert len(labelled) == 1, lines
    first = labelled[0]
    assert lines[first] == "  last backup    web1: none"
    assert lines[first + 1] == "                 web2: none"


def test_list_ends_cut_titles_with_an_ellipsis_and_dates_a_window_over_midnight(
        itop: ItopCli) -> None:
    over_midnight = new_change(itop, "--start", "2031-06-01T22:45:00Z", "--end", "2031-06-02T00:44:00Z")
    same_day = new_change(itop, "--start", "2031-06-03T10:00:00Z", "--end", "2031-06-03T11:30:00Z",
                          title="Short title")
    rows = {line.split()[0]: line for line in itop.ok("change", "list").stdout.splitlines()[1:]}
    assert "Replace the database replication after…" in rows[over_midnight]
    assert LONG_TITLE not in rows[over_midnight]
    assert "2031-06-01 22:45Z..06-02 00:44Z" in rows[over_midnight]
    assert "Short title " in rows[same_day] and "…" not in rows[same_day]
    assert "2031-06-03 10:00Z..11:30Z" in rows[same_day]


def test_list_says_when_closed_or_cancelled_changes_are_left_out(itop: ItopCli) -> None:
    assert itop.ok("change", "list").stdout.strip() == "no changes"
    ref = new_change(itop)
    itop.ok("change", "cancel", ref, "--reason", "not needed")
    listed = itop.ok("change", "list").stdout.strip()
    assert listed == "no open changes; 1 closed or cancelled change matches: add --all to list them"
    assert ref in itop.ok("change", "list", "--all").stdout
    # Filters count too: nothing of another requester, closed or not.
    assert itop.ok("change", "list", "--requester", "bob").stdout.strip() == "no changes"


def test_a_change_reference_that_names_no_change_is_a_usage_error(itop: ItopCli,
                                                                  tmp_path: Path) -> None:
    procedure = tmp_path / "mark.yaml"
    procedure.write_text(textwrap.dedent(MARK_PROCEDURE).lstrip())
    itop.ok("procedure", "import", str(procedure))
    work = tmp_path / "work"
    work.mkdir()
    itop.ok("procedure", "run", "mark", "--target", "web1", "--var", f"dir={work}", "--check")
    audited = len(itop.audit())
    for args in (
        ("run", "--change", "CHG-99", "web1", "--", "touch", str(work / "touched")),
        ("procedure", "run", "mark", "--target", "web1", "--var", f"dir={work}", "--yes",
         "--change", "CHG-99"),
        ("procedure", "resume", "RUN-1", "--yes", "--change", "chg-99"),
        ("procedure", "retry", "RUN-1", "--yes", "--change", "99"),
    ):
        done = itop(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "itop: --change: no change CHG-99 (see `itop change list`)" in done.stderr, args
    done = itop("run", "--change", "tomorrow", "web1", "--", "true")
    assert done.returncode == 2
    assert "--change: not a change reference: 'tomorrow'" in done.stderr
    # Refused before anything ran or was recorded.
    assert sorted(p.name for p in work.iterdir()) == []
    assert len(itop.audit()) == audited
    assert [run["id"] for run in itop.json("procedure", "runs")] == ["RUN-1"]


@pytest.mark.parametrize("action", ["implement", "backout"])
def test_var_help_says_whose_variable_it_is(itop: ItopCli, action: str) -> None:
    text = " ".join(itop.ok("change", action, "--help").stdout.split())
    assert ("--var NAME=VALUE a variable of the implementation or backout procedure, for this "
            "run only (each procedure gets the names it declares") in text
