"""A change whose implementation and backout procedures declare different variables,
implemented and backed out with `itop change` against the real sshd.

Each procedure gets only the variables it declares; a variable a procedure
needs and the change lacks is refused, naming the variable and its procedure,
before the change moves or anything runs. A window that ends before it starts
is refused when the change is written or edited.

alice (operator) writes the change, bob (approver) assesses and approves it:
two OS logins (``LOGNAME``/``USER``). ``prod1`` is the test sshd on 127.0.0.1,
in production; the procedures write and remove marks in a temp dir.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ItopCli, ssh_config, trust_sshd
from sshd_harness import LISTEN_ADDRESSES

pytestmark = pytest.mark.integration

PROCEDURES = {
    # Like the reviewer's deploy-motd: `text` is required, `fail` fails on purpose.
    "deploy-mark": """
        id: deploy-mark
        title: Write a mark with a text
        version: "1"
        variables:
          - name: dir
            required: true
          - name: text
            required: true
          - name: fail
            choices: ["yes", "no"]
            default: "no"
        steps:
          - id: write
            title: Write the mark
            kind: command
            command: |
              d={{ dir }}; t={{ text }}; h={{ host }}; printf '%s\\n' "$t" > "$d/mark-$h"
          - id: maybe-fail
            title: Fail when asked to
            kind: command
            mutates: false
            command: |
              f={{ fail }}; [ "$f" = no ]
    """,
    # The backout declares `dir` only.
    "remove-mark": """
        id: remove-mark
        title: Remove the mark
        version: "1"
        variables:
          - name: dir
            required: true
        steps:
          - id: remove
            title: Remove the mark
            kind: command
            command: |
              d={{ dir }}; h={{ host }}; rm -f -- "$d/mark-$h"
    """,
    # A backout that needs a variable the implementation does not have.
    "remove-mark-ticket": """
        id: remove-mark-ticket
        title: Remove the mark, quoting a ticket
        version: "1"
        variables:
          - name: dir
            required: true
          - name: ticket
            required: true
        steps:
          - id: remove
            title: Remove the mark
            kind: command
            command: |
              d={{ dir }}; h={{ host }}; t={{ ticket }}; rm -f -- "$d/mark-$h"
    """,
}


class Itop(ItopCli):
    """`python -m itop_tui` over one data dir and config, as alice (or bob when named)."""

    def __init__(self, root: Path, sshd: Any) -> None:
        trust_sshd(root / "data", sshd)
        self.work = root / "work"
        self.work.mkdir()
        config = root / "itop.yaml"
        config.write_text(ssh_config(sshd) + "roles:\n  alice: operator\n  bob: approver\n")
        super().__init__(config, root / "data", timeout=180, user="alice")
        hosts = root / "hosts.csv"
        hosts.write_text(
            "name,address,port,user,status,criticality\n"
            f"prod1,{LISTEN_ADDRESSES[0]},{sshd.port},{sshd.user},production,low\n")
        self.ok("inventory", "import", str(hosts))
        procedures = root / "procedures"
        procedures.mkdir()
        for name, text in PROCEDURES.items():
            (procedures / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
        self.ok("procedure", "import", str(procedures))

    def scheduled(self, backout: str, *variables: str) -> str:
        """A change on prod1 written by alice, approved by bob, scheduled from now."""
        done = self.ok(
            "change", "new", "--title", "Mark prod1", "--description", "write a mark",
            "--justification", "the test needs it", "--hosts", "prod1", "--impact", "none",
            "--outage", "no", "--implementation", "deploy-mark", "--backout", backout,
            "--backout-plan", f"run {backout}", "--start", "now", "--end", "+30m",
            *(arg for v in variables for arg in ("--var", v)), "--json")
        ref = str(json.loads(done.stdout)["ref"])
        self.ok("change", "submit", ref)
        self.ok("change", "assess", ref, "--comment", "one low host", user="bob")
        self.ok("change", "approve", ref, "--comment", "ok", user="bob")
        self.ok("change", "schedule", ref)
        return ref


@pytest.fixture
def itop(tmp_path: Path, sshd: Any) -> Itop:
    return Itop(tmp_path, sshd)


def test_backout_gets_only_the_variables_it_declares(itop: Itop) -> None:
    """The reviewer's repro: implement fails, no backout; `change backout` then works."""
    ref = itop.scheduled("remove-mark", f"dir={itop.work}", "text=bye", "fail=yes")
    mark = itop.work / "mark-prod1"

    done = itop("change", "implement", ref, "--yes", "--no-backout")
    assert done.returncode == 1, done.stderr
    assert mark.read_text() == "bye\n"
    assert itop.show(ref)["state"] == "failed"

    done = itop("change", "backout", ref, "--yes")
    assert done.returncode == 0, done.stderr
    assert "not a variable" not in done.stderr
    assert not mark.exists()
    change = itop.show(ref)
    assert change["state"] == "backed_out"
    assert [(r["purpose"], r["status"]) for r in change["runs"]] == [
        ("implementation", "failed"), ("backout", "succeeded")]


def test_backout_on_failure_gets_only_its_variables(itop: Itop) -> None:
    ref = itop.scheduled("remove-mark", f"dir={itop.work}", "text=hello", "fail=yes")
    done = itop("change", "implement", ref, "--yes", "--backout-on-failure")
    assert done.returncode == 1, done.stderr  # the change was not made
    assert "backout RUN-2 succeeded" in done.stderr, done.stderr
    assert not (itop.work / "mark-prod1").exists()
    assert itop.show(ref)["state"] == "backed_out"


def test_a_variable_the_backout_needs_is_named_before_anything_runs(itop: Itop) -> None:
    ref = itop.scheduled("remove-mark-ticket", f"dir={itop.work}", "text=hello")
    done = itop("change", "implement", ref, "--yes", "--no-backout")
    assert done.returncode == 1
    assert ("ticket is a variable of procedure remove-mark-ticket (the backout of "
            f"{ref}) and is required: give it with --var ticket=VALUE") in done.stderr
    change = itop.show(ref)
    assert change["state"] == "scheduled" and change["runs"] == []
    assert not (itop.work / "mark-prod1").exists()

    # Given on the command line, it reaches the backout procedure only.
    done = itop("change", "implement", ref, "--yes", "--no-backout", "--var", "ticket=OPS-9")
    assert done.returncode == 0, done.stderr
    assert itop.show(ref)["state"] == "review"
    assert (itop.work / "mark-prod1").read_text() == "hello\n"


def test_a_missing_implementation_variable_leaves_the_change_scheduled(itop: Itop) -> None:
    ref = itop.scheduled("remove-mark", f"dir={itop.work}")
    done = itop("change", "implement", ref, "--yes")
    assert done.returncode == 1
    assert (f"text is a variable of procedure deploy-mark (the implementation of {ref}) "
            "and is required") in done.stderr
    change = itop.show(ref)
    assert change["state"] == "scheduled" and change["runs"] == []
    refused = [json.loads(line) for line in (itop.data_dir / "audit.jsonl").read_text().splitlines()
               if '"change.implement"' in line]
    assert [e["result"] for e in refused] == ["refused"]

    # A name neither procedure declares is refused too, naming both procedures.
    done = itop("change", "implement", ref, "--yes", "--var", "text=x", "--var", "colour=red")
    assert done.returncode == 1
    assert "colour is not a variable of deploy-mark or remove-mark" in done.stderr
    assert itop.show(ref)["state"] == "scheduled"


def test_variables_are_checked_against_the_procedures_when_written(itop: Itop) -> None:
    base = ("change", "new", "--title", "t", "--hosts", "prod1", "--implementation",
            "deploy-mark", "--backout", "remove-mark")
    done = itop(*base, "--var", "colour=red")
    assert done.returncode == 2
    assert "colour is not a variable of deploy-mark or remove-mark" in done.stderr
    done = itop(*base, "--var", "fail=maybe")
    assert done.returncode == 2
    assert "fail (implementation procedure deploy-mark) must be one of yes, no" in done.stderr


def test_a_window_that_ends_before_it_starts_is_refused(itop: Itop) -> None:
    done = itop("change", "new", "--title", "t", "--hosts", "prod1",
                "--start", "+1h", "--end", "+30m")
    assert done.returncode == 2
    assert "the window must end after it starts" in done.stderr
    assert "window_end" in done.stderr
    ref = str(json.loads(itop.ok("change", "new", "--title", "t", "--hosts", "prod1",
                                 "--start", "+1h", "--end", "+2h", "--json").stdout)["ref"])
    done = itop("change", "edit", ref, "--end", "+30m")
    assert done.returncode == 1
    assert "the window must end after it starts" in done.stderr
    assert itop.show(ref)["window_end"] is not None
