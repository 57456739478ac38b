"""`itop change` end to end: a normal change from draft to closed, implemented
by a procedure over SSH on the real sshd; a failing implementation backed out;
a standard change from a template; separation of duties; conflicts; blackouts;
bad input.

Two people are two OS logins (``LOGNAME``/``USER``): alice (operator) writes
changes, bob and carol (approvers) assess and approve them. ``prod1`` and
``prod2`` are the test sshd on 127.0.0.1 and 127.0.0.2, both in production.
The procedures write and remove marks in a temp dir, so what ran is seen on
disk.
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
    "write-mark": """
        id: write-mark
        title: Write a mark on each host
        version: "1"
        variables:
          - name: dir
            required: true
        steps:
          - id: write
            title: Write the mark
            kind: command
            command: |
              d={{ dir }}; h={{ host }}; echo "changed by itop" > "$d/mark-$h"
          - id: verify
            title: The mark is there
            kind: check
            expect:
              regex: '^changed by itop$'
            command: |
              d={{ dir }}; h={{ host }}; cat "$d/mark-$h"
    """,
    "write-then-fail": """
        id: write-then-fail
        title: Write a mark, then a check that fails
        version: "1"
        variables:
          - name: dir
            required: true
        steps:
          - id: write
            title: Write the mark
            kind: command
            command: |
              d={{ dir }}; h={{ host }}; echo "changed by itop" > "$d/mark-$h"
          - id: verify
            title: A file that never exists
            kind: check
            command: |
              d={{ dir }}; h={{ host }}; test -e "$d/never-$h" || { echo "no $d/never-$h"; exit 1; }
    """,
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
              d={{ dir }}; h={{ host }}; rm -f "$d/mark-$h"
          - id: gone
            title: The mark is gone
            kind: check
            command: |
              d={{ dir }}; h={{ host }}; test ! -e "$d/mark-$h"
    """,
}

CHANGES_CONFIG = """\
changes:
  blackouts:
    - name: quarter-end
      hosts: tag:finance
      start: 2030-03-25T00:00:00Z
      end: 2030-04-02T00:00:00Z
  templates:
    mark-hosts:
      title: Write the mark on hosts
      description: the routine, pre-approved
      justification: routine
      impact: none
      outage: false
      implementation: write-mark
      backout: remove-mark
      backout_plan: run remove-mark
      duration_minutes: 30
"""


class Itop(ItopCli):
    """`python -m itop_tui` over one data dir and config, as alice (default), bob or carol."""

    def __init__(self, root: Path, sshd: Any) -> None:
        super().__init__(root / "itop.yaml", root / "data", timeout=180, user="alice")
        trust_sshd(self.data_dir, sshd)
        self.work = root / "work"
        self.work.mkdir()
        self.config.write_text(
            ssh_config(sshd)
            + "roles:\n  alice: operator\n  bob: approver\n  carol: approver\n  tim: trainee\n"
            + CHANGES_CONFIG
        )
        hosts = root / "hosts.csv"
        hosts.write_text(
            "name,address,port,user,status,criticality,tags\n"
            f"prod1,{LISTEN_ADDRESSES[0]},{sshd.port},{sshd.user},production,low,\n"
            f"prod2,{LISTEN_ADDRESSES[1]},{sshd.port},{sshd.user},production,low,finance\n"
        )
        self.ok("inventory", "import", str(hosts))
        procedures = root / "procedures"
        procedures.mkdir()
        for name, text in PROCEDURES.items():
            (procedures / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
        self.ok("procedure", "import", str(procedures))

    def new(self, *args: str, user: str = "alice") -> str:
        return str(json.loads(self.ok("change", "new", *args, "--json", user=user).stdout)["ref"])

    def marks(self) -> set[str]:
        return {p.name for p in self.work.iterdir()}


@pytest.fixture
def itop(tmp_path: Path, sshd: Any) -> Itop:
    return Itop(tmp_path, sshd)


def normal_change(itop: Itop, implementation: str, *extra: str) -> str:
    return itop.new(
        "--title", "Mark the web hosts", "--description", "write a mark on each host",
        "--justification", "the test needs marks", "--hosts", "prod1:prod2",
        "--impact", "none", "--outage", "no", "--implementation", implementation,
        "--backout", "remove-mark", "--backout-plan", "run remove-mark",
        "--test-plan", "the verify step reads the mark", "--var", f"dir={itop.work}",
        "--start", "now", "--end", "+30m", *extra)


def authorized(itop: Itop, ref: str) -> None:
    itop.ok("change", "submit", ref)
    itop.ok("change", "assess", ref, "--comment", "two low hosts, no outage", user="bob")
    itop.ok("change", "approve", ref, "--comment", "ok", user="bob")
    itop.ok("change", "schedule", ref)


def test_normal_change_from_draft_to_closed_implemented_over_ssh(itop: Itop) -> None:
    ref = normal_change(itop, "write-mark")
    assert ref == "CHG-1"
    change = itop.show(ref)
    assert (change["state"], change["risk"], change["hosts"]) == ("draft", "low", ["prod1", "prod2"])
    assert change["risk_reasons"][0] == "highest host criticality low (prod1, prod2): +1"

    # Implementing before approval is refused, and nothing runs.
    early = itop("change", "implement", ref)
    assert early.returncode == 1 and "(missing: state)" in early.stderr
    itop.ok("change", "submit", ref)
    assessed = itop("change", "assess", ref)  # alice is no approver
    assert assessed.returncode == 1 and "(missing: role)" in assessed.stderr
    itop.ok("change", "assess", ref, "--comment", "two low hosts, no outage", user="bob")
    unapproved = itop("change", "schedule", ref)
    assert unapproved.returncode == 1 and "(missing: approvals)" in unapproved.stderr
    itop.ok("change", "approve", ref, "--comment", "ok", user="bob")
    scheduled = itop.ok("change", "schedule", ref)
    assert f"{ref}: authorize -> scheduled" in scheduled.stdout
    assert itop.marks() == set()

    done = itop("change", "implement", ref)
    assert done.returncode == 0, done.stderr
    assert "RUN-1 succeeded" in done.stderr and "up for review" in done.stderr
    assert "prod1: ok" in done.stdout and "prod2: ok" in done.stdout
    assert itop.marks() == {"mark-prod1", "mark-prod2"}
    assert (itop.work / "mark-prod2").read_text() == "changed by itop\n"

    change = itop.show(ref)
    assert (change["state"], change["outcome"]) == ("review", "succeeded")
    assert [(r["id"], r["purpose"], r["status"]) for r in change["runs"]] == [
        ("RUN-1", "implementation", "succeeded")]
    itop.ok("change", "review", ref, "--what-happened", "marks written on both hosts",
            "--lessons", "none")
    itop.ok("change", "close", ref, "--code", "successful", "--notes", "verified by the check")

    change = itop.show(ref)
    assert (change["state"], change["close_code"]) == ("closed", "successful")
    history = [(e["actor"], e["action"], e["from_state"], e["to_state"]) for e in change["work_log"]
               if e["kind"] == "transition"]
    assert history == [
        ("alice", "new", None, "draft"),
        ("alice", "submit", "draft", "assess"),
        ("bob", "assess", "assess", "authorize"),
        ("bob", "approve", "authorize", "authorize"),
        ("alice", "schedule", "authorize", "scheduled"),
        ("alice", "implement", "scheduled", "implement"),
        ("alice", "succeed", "implement", "review"),
        ("alice", "review", "review", "review"),
        ("alice", "close", "review", "closed"),
    ]
    runs_logged = [e["text"] for e in change["work_log"] if e["kind"] == "run"]
    assert runs_logged == ["implementation run RUN-1 succeeded"]

    events = itop.audit()
    changes = [(e["actor"], e["action"], e["result"]) for e in events
               if e["action"].startswith("change.")]
    assert changes == [
        ("alice", "change.new", "ok"),
        ("alice", "change.implement", "refused"),
        ("alice", "change.submit", "ok"),
        ("alice", "change.assess", "refused"),
        ("bob", "change.assess", "ok"),
        ("alice", "change.schedule", "refused"),
        ("bob", "change.approve", "ok"),
        ("alice", "change.schedule", "ok"),
        ("alice", "change.implement", "ok"),
        ("alice", "change.succeed", "ok"),
        ("alice", "change.review", "ok"),
        ("alice", "change.close", "ok"),
    ]
    start = next(e for e in events if e["action"] == "procedure.run.start")
    assert (start["target"], start["detail"]["change_id"]) == ("RUN-1", ref)
    steps = [(e["target"], e["detail"]["step"]) for e in events if e["action"] == "procedure.step"]
    assert sorted(steps) == sorted((h, s) for h in ("prod1", "prod2") for s in ("write", "verify"))
    assert itop.ok("audit", "verify").returncode == 0

    listed = json.loads(itop.ok("change", "list", "--json").stdout)
    assert listed == []  # closed changes only with --all or --state
    assert [c["ref"] for c in json.loads(itop.ok("change", "list", "--all", "--json").stdout)] == [ref]
    assert [c["ref"] for c in json.loads(
        itop.ok("change", "list", "--state", "closed", "--json").stdout)] == [ref]


def test_failed_implementation_is_backed_out(itop: Itop) -> None:
    ref = normal_change(itop, "write-then-fail")
    authorized(itop, ref)
    done = itop("change", "implement", ref, "--backout-on-failure")
    assert done.returncode == 1
    assert "implementation RUN-1 failed" in done.stderr
    assert "backout RUN-2 succeeded" in done.stderr
    assert itop.marks() == set()  # written by the implementation, removed by the backout
    change = itop.show(ref)
    assert (change["state"], change["outcome"]) == ("backed_out", "backed_out")
    assert [(r["id"], r["purpose"], r["status"]) for r in change["runs"]] == [
        ("RUN-1", "implementation", "failed"), ("RUN-2", "backout", "succeeded")]
    wrong = itop("change", "close", ref, "--code", "successful", "--notes", "it worked")
    assert wrong.returncode == 1 and "(missing: close_code)" in wrong.stderr
    itop.ok("change", "close", ref, "--code", "unsuccessful", "--notes", "backed out, see RUN-1")
    assert itop.show(ref)["state"] == "closed"

    # Without the backout at once: failed, then backed out later on request.
    second = normal_change(itop, "write-then-fail")
    authorized(itop, second)
    failed = itop("change", "implement", second, "--no-backout")
    assert failed.returncode == 1 and f"itop change backout {second}" in failed.stderr
    assert itop.show(second)["state"] == "failed"
    assert itop.marks() == {"mark-prod1", "mark-prod2"}
    itop.ok("change", "backout", second)
    assert itop.show(second)["state"] == "backed_out"
    assert itop.marks() == set()
    results = [(e["action"], e["result"]) for e in itop.audit()
               if e["action"] in ("change.fail", "change.backout")]
    assert results == [("change.backout", "ok"), ("change.fail", "ok"), ("change.backout", "ok")]


def test_standard_change_from_a_template_is_scheduled_at_once(itop: Itop) -> None:
    ref = itop.new("--template", "mark-hosts", "--hosts", "prod1", "--start", "now",
                   "--var", f"dir={itop.work}")
    change = itop.show(ref)
    assert (change["type"], change["template"], change["implementation"]) == (
        "standard", "mark-hosts", "write-mark")
    submitted = itop.ok("change", "submit", ref)
    assert f"{ref}: draft -> scheduled" in submitted.stdout
    change = itop.show(ref)
    assert change["approvals"] == [] and change["derived"]["active"]
    approve = itop("change", "approve", ref, user="bob")
    assert approve.returncode == 1 and "(missing: state)" in approve.stderr  # nothing to approve
    itop.ok("change", "implement", ref)
    assert itop.marks() == {"mark-prod1"}
    assert itop.show(ref)["state"] == "review"
    unknown = itop("change", "new", "--template", "nope", "--hosts", "prod1")
    assert unknown.returncode == 2 and "templates: mark-hosts" in unknown.stderr


def test_nobody_approves_their_own_change(itop: Itop) -> None:
    ref = itop.new("--title", "Bob's change", "--description", "d", "--justification", "j",
                   "--hosts", "prod1", "--impact", "none", "--outage", "yes", "--risk", "high",
                   user="bob")
    assert itop.show(ref)["risk"] == "high"
    itop.ok("change", "submit", ref, user="bob")
    itop.ok("change", "assess", ref, user="carol")
    own = itop("change", "approve", ref, user="bob")
    assert own.returncode == 1
    assert "bob requested CHG-1 and cannot approve it" in own.stderr
    assert "(missing: approver)" in own.stderr
    itop.ok("change", "approve", ref, user="carol")
    twice = itop("change", "approve", ref, user="carol")
    assert twice.returncode == 1 and "approved CHG-1 already" in twice.stderr
    # High risk: a second, different approver is still needed.
    assert itop.show(ref)["derived"]["approvals_needed"] == 2
    needed = itop("change", "schedule", ref, "--start", "now", "--duration", "1h", user="bob")
    assert needed.returncode == 1 and "(missing: approvals)" in needed.stderr
    rejected = itop("change", "reject", ref, "--comment", "", user="tim")
    assert rejected.returncode == 1 and "(missing: role)" in rejected.stderr
    events = [e for e in itop.audit() if e["action"] == "change.approve"]
    assert [(e["actor"], e["result"]) for e in events] == [
        ("bob", "refused"), ("carol", "ok"), ("carol", "refused")]


def test_blackouts_conflicts_and_bad_input(itop: Itop) -> None:
    def ready(hosts: str) -> str:
        ref = itop.new("--title", "t", "--description", "d", "--justification", "j",
                       "--hosts", hosts, "--impact", "i", "--outage", "no",
                       "--backout-plan", "b")
        itop.ok("change", "submit", ref)
        itop.ok("change", "assess", ref, user="bob")
        itop.ok("change", "approve", ref, user="bob")
        return ref

    first = ready("prod2")
    blocked = itop("change", "schedule", first, "--start", "2030-03-30T10:00Z", "--duration", "1h")
    assert blocked.returncode == 1
    assert "blackout quarter-end" in blocked.stderr and "(missing: window)" in blocked.stderr
    itop.ok("change", "schedule", first, "--start", "2030-04-10T10:00Z", "--duration", "2h")
    second = ready("prod1:prod2")
    itop.ok("change", "schedule", second, "--start", "2030-04-10T11:00Z", "--end", "2030-04-10T13:00Z")
    listed = itop.ok("change", "list")
    assert f"{first} !" in listed.stdout and f"{second} !" in listed.stdout
    shown = itop.show(second)
    assert shown["derived"]["warnings"] == [
        f"conflict: {first} and {second} overlap on prod2 from 2030-04-10T11:00:00Z "
        "to 2030-04-10T12:00:00Z"]
    upcoming = json.loads(itop.ok("change", "upcoming", "--days", "36500", "--json").stdout)
    assert upcoming["conflicts"] == [{"changes": [first, second], "hosts": ["prod2"],
                                      "start": "2030-04-10T11:00:00Z",
                                      "end": "2030-04-10T12:00:00Z"}]

    assert itop("change", "show", "CHG-99").returncode == 2
    assert itop("change", "show", "banana").returncode == 2
    bad_time = itop("change", "schedule", first, "--start", "tomorrowish")
    assert bad_time.returncode == 2 and "invalid time" in bad_time.stderr
    unknown = itop("change", "new", "--title", "t", "--hosts", "prod1", "--implementation", "nope")
    assert unknown.returncode == 2 and "no procedure 'nope'" in unknown.stderr
    nohost = itop("change", "new", "--title", "t", "--hosts", "web*")
    assert nohost.returncode == 2 and "matches no host" in nohost.stderr
    trainee = itop("change", "new", "--title", "t", "--hosts", "prod1", user="tim")
    assert trainee.returncode == 1 and "operator or above" in trainee.stderr
