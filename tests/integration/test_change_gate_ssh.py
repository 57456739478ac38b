"""The change gate against the real sshd: production hosts refuse mutating
commands unless an approved change covering them is inside its window.

``itop`` runs as a subprocess as two OS logins: ``getpass.getuser()``
honours ``LOGNAME``/``USER``, so alice (operator) and bob (approver) are two
people; the sshd always serves the test user, whatever the login.
Hosts: ``prod1`` (127.0.0.1) and ``prod2`` (127.0.0.2) are in production,
``dev1`` (127.0.0.1) in development. Commands write marks in a temp dir, so
whether something reached the host is seen on disk.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import MARK_PROCEDURE, ItopCli, approved_change, ssh_config, trust_sshd
from sshd_harness import LISTEN_ADDRESSES

from itop_tui.domain.change import parse_iso

pytestmark = pytest.mark.integration


class Itop(ItopCli):
    """`python -m itop_tui` over one data dir and config, as alice (default) or bob."""

    def __init__(self, root: Path, sshd: Any, extra_config: str = "") -> None:
        super().__init__(root / "itop.yaml", root / "data", user="alice")
        self.root = root
        trust_sshd(self.data_dir, sshd)
        self.work = root / "work"
        self.work.mkdir(exist_ok=True)
        self.config.write_text(
            ssh_config(sshd)
            + "roles:\n  alice: operator\n  bob: approver\n  carol: approver\n"
            + extra_config
        )
        hosts = root / "hosts.csv"
        hosts.write_text(
            "name,address,port,user,status,criticality\n"
            f"prod1,{LISTEN_ADDRESSES[0]},{sshd.port},{sshd.user},production,low\n"
            f"prod2,{LISTEN_ADDRESSES[1]},{sshd.port},{sshd.user},production,low\n"
            f"dev1,{LISTEN_ADDRESSES[0]},{sshd.port},{sshd.user},development,low\n"
        )
        done = self("inventory", "import", str(hosts), user="alice")
        assert done.returncode == 0, done.stderr

    def touch(self, name: str) -> str:
        return f"touch {self.work / name}"


def test_production_refuses_mutations_outside_an_approved_window(tmp_path: Path, sshd: Any) -> None:
    itop = Itop(tmp_path, sshd)

    # No change: refused before anything reaches the host; development hosts are free.
    refused = itop("run", "prod1", "--", itop.touch("before"))
    assert refused.returncode == 1
    assert "prod1 is a production host" in refused.stderr and "--change" in refused.stderr
    assert not (itop.work / "before").exists()
    itop.ok("run", "dev1", "--", itop.touch("dev"))
    assert (itop.work / "dev").exists()
    # Read-only work is never blocked; the allowlist decides what read-only is.
    observed = itop.ok("run", "prod1:prod2", "--observe", "--", f"ls {itop.work}")
    assert "dev" in observed.stdout
    sneaky = itop("run", "prod1", "--observe", "--", f"ls {itop.work}; {itop.touch('sneaky')}")
    assert sneaky.returncode == 2 and "shell syntax" in sneaky.stderr
    assert itop("run", "prod1", "--observe", "--", itop.touch("x")).returncode == 2
    assert not (itop.work / "sneaky").exists() and not (itop.work / "x").exists()

    ref = approved_change(itop, "prod1")
    # Approved but not scheduled: still closed.
    assert itop("run", "--change", ref, "prod1", "--", itop.touch("early")).returncode == 1
    # A short window, opening now.
    itop.ok("change", "schedule", ref, "--start", "now", "--duration", "20s")
    window_end = parse_iso(itop.show(ref)["window_end"])
    assert window_end is not None

    during = itop("run", "--change", ref, "prod1", "--", itop.touch("during"))
    assert during.returncode == 0, during.stderr
    assert f"recorded against {ref}" in during.stderr
    # Without --change the single active change covering the host is used.
    found = itop("run", "prod1", "--", itop.touch("found"))
    assert found.returncode == 0, found.stderr
    # The change does not cover prod2: nothing runs on either host.
    wider = itop("run", "--change", ref, "prod1:prod2", "--", itop.touch("wider"))
    assert wider.returncode == 1 and "does not cover prod2" in wider.stderr
    assert {p.name for p in itop.work.iterdir()} == {"dev", "during", "found"}

    remaining = (window_end - datetime.now(UTC)).total_seconds()
    assert remaining > 0, "the test machine is too slow for a 20 s window"
    time.sleep(remaining + 0.5)
    after = itop("run", "--change", ref, "prod1", "--", itop.touch("after"))
    assert after.returncode == 1 and f"the window of {ref} closed at" in after.stderr
    again = itop("run", "prod1", "--", itop.touch("after"))
    assert again.returncode == 1 and "none is active" in again.stderr
    assert not (itop.work / "after").exists()

    # The audit log and the work log tell the same story.
    events = itop.audit()
    gate = [(e["target"], e["result"]) for e in events if e["action"] == "change.gate"]
    assert gate == [("prod1", "refused"), (ref, "refused"), (ref, "ok"), (ref, "ok"),
                    (ref, "refused"), (ref, "refused"), ("prod1", "refused")]
    runs = [e for e in events if e["action"] == "run" and e["target"] == "prod1"]
    assert [(e["detail"].get("change"), e["detail"].get("observe")) for e in runs] == [
        (None, True), (ref, None), (ref, None)]
    log = [entry for entry in itop.show(ref)["work_log"] if entry["kind"] == "run"]
    assert [entry["text"] for entry in log] == [
        f"run: {itop.touch('during')} on prod1", f"run: {itop.touch('found')} on prod1"]
    assert all(entry["actor"] == "alice" for entry in log)
    assert itop.ok("audit", "verify").returncode == 0


def test_emergency_run_waits_for_one_approver(tmp_path: Path, sshd: Any) -> None:
    itop = Itop(tmp_path, sshd)
    opened = itop("run", "prod1", "--emergency", "disk full on prod1", "--", itop.touch("fix"))
    assert opened.returncode == 1
    assert "CHG-1 opened: an emergency change for prod1. Nothing ran." in opened.stderr
    assert "approver other than alice (bob, carol)" in opened.stderr
    # The hint reruns the same command words, quoted for the shell.
    assert f"itop run --change CHG-1 prod1 -- 'touch {itop.work / 'fix'}'" in opened.stderr
    assert not (itop.work / "fix").exists()
    change = itop.show("CHG-1")
    assert (change["type"], change["state"], change["requester"]) == ("emergency", "authorize", "alice")
    assert change["justification"] == "disk full on prod1"

    # The requester cannot approve her own emergency change; nothing runs meanwhile.
    own = itop("change", "approve", "CHG-1")
    assert own.returncode == 1 and "(missing: role)" in own.stderr
    assert itop("run", "--change", "CHG-1", "prod1", "--", itop.touch("fix")).returncode == 1
    itop.ok("change", "approve", "CHG-1", "--comment", "go ahead", user="bob")
    change = itop.show("CHG-1")
    assert change["state"] == "scheduled" and change["derived"]["active"]
    window = parse_iso(change["window_end"]) - parse_iso(change["window_start"])  # type: ignore[operator]
    assert window == timedelta(minutes=240)

    itop.ok("run", "--change", "CHG-1", "prod1", "--", itop.touch("fix"))
    assert (itop.work / "fix").exists()
    # Emergency changes are reviewed before they close.
    itop.ok("change", "implement", "CHG-1", "--outcome", "succeeded")
    early = itop("change", "close", "CHG-1", "--code", "successful", "--notes", "freed space")
    assert early.returncode == 1 and "(missing: review)" in early.stderr
    itop.ok("change", "review", "CHG-1", "--what-happened", "removed old logs",
            "--incidents", "none", "--lessons", "rotate logs")
    itop.ok("change", "close", "CHG-1", "--code", "successful", "--notes", "freed space")
    history = [(e["actor"], e["action"], e["to_state"]) for e in itop.show("CHG-1")["work_log"]]
    assert history == [
        ("alice", "new", "draft"), ("alice", "submit", "authorize"),
        ("bob", "approve", "scheduled"), ("alice", None, "scheduled"),
        ("alice", "implement", "implement"), ("alice", "succeed", "review"),
        ("alice", "review", "review"), ("alice", "close", "closed"),
    ]


async def test_gate_in_process_with_a_clock(trusted_settings: Any, sshd: Any) -> None:
    """Two active changes on one host: the gate asks which; the clock decides the window."""
    from dataclasses import replace

    from itop_tui.domain.change import iso, new_change
    from itop_tui.domain.models import Host
    from itop_tui.ops.change_gate import ChangeGate, ChangeRequired
    from itop_tui.ops.fleet import FleetRunner
    from itop_tui.services.change_repo import ChangeRepository
    from itop_tui.services.context import Services

    services = Services.open(trusted_settings)
    host = Host(name="testhost", status="production")
    services.inventory.upsert_hosts([host])
    changes = ChangeRepository.in_data_dir(trusted_settings.data_dir)
    start = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    for _ in range(2):
        changes.create(replace(
            new_change(requester="alice", now=start, hosts=("testhost",)),
            state="scheduled", window_start=iso(start), window_end=iso(start + timedelta(hours=1))))
    now = {"t": start + timedelta(minutes=5)}
    gate = ChangeGate(services, changes=changes, clock=lambda: now["t"])
    runner = FleetRunner(services, gate=gate)
    try:
        with pytest.raises(ChangeRequired, match="several active changes cover testhost: CHG-1, CHG-2"):
            await runner.run([host], "true")
        (result,) = await runner.run([host], "echo under", change_ref="chg-2")
        assert result.ok and result.stdout == "under\n"
        assert runner.decision is not None and runner.decision.change_ref == "CHG-2"
        now["t"] = start + timedelta(hours=1)
        with pytest.raises(ChangeRequired, match="closed at 2030-01-01T11:00:00Z"):
            await runner.run([host], "true", change_ref="CHG-2")
        assert gate.check([host], mutating=False, change_ref=None).allowed
    finally:
        await services.close()
    logged = [e.text for e in changes.require("CHG-2").work_log if e.kind == "run"]
    assert logged == ["run: echo under on testhost"]
    assert not [e for e in changes.require("CHG-1").work_log if e.kind == "run"]


def test_resume_on_production_needs_a_change_as_a_run_does(tmp_path: Path, sshd: Any) -> None:
    itop = Itop(tmp_path, sshd)
    procedure = tmp_path / "mark.yaml"
    procedure.write_text(textwrap.dedent(MARK_PROCEDURE).lstrip())
    itop.ok("procedure", "import", str(procedure))
    mark = itop.work / "mark-prod1"

    # No change: the check runs over SSH, the mutating step does not; the run pauses.
    started = itop("procedure", "run", "mark", "--target", "prod1", "--var",
                   f"dir={itop.work}", "--yes")
    assert started.returncode == 1, started.stderr
    assert "refused by the change gate" in started.stderr
    assert "itop procedure resume RUN-1 --change CHG-N" in started.stderr
    assert not mark.exists()

    # Resuming without a change is refused the same way: still paused, nothing written.
    again = itop("procedure", "resume", "RUN-1", "--yes")
    assert again.returncode == 1 and "prod1 is a production host" in again.stderr, again.stderr
    assert not mark.exists()

    ref = approved_change(itop, "prod1")
    other = approved_change(itop, "prod2")
    for change in (ref, other):
        itop.ok("change", "schedule", change, "--start", "now", "--duration", "30m")
    assert itop("procedure", "resume", "RUN-1", "--change", "bogus").returncode == 2
    # A change that does not cover the host does not open it.
    wrong = itop("procedure", "resume", "RUN-1", "--change", other, "--yes")
    assert wrong.returncode == 1 and f"{other} does not cover prod1" in wrong.stderr, wrong.stderr
    assert not mark.exists()

    done = itop("procedure", "resume", "RUN-1", "--change", ref.lower(), "--yes", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["status"], run["change_id"]) == ("succeeded", ref)
    assert [r.get("change") for r in run["resumes"]] == [None, other, ref]
    assert mark.read_text() == "marked\n"

    # The audit log and the change's work log tell the same story.
    events = itop.audit()
    gate = [(e["target"], e["result"]) for e in events if e["action"] == "change.gate"]
    assert gate == [("prod1", "refused"), ("prod1", "refused"), (other, "refused"), (ref, "ok")]
    resumes = [e["detail"]["change_id"] for e in events if e["action"] == "procedure.run.resume"]
    assert resumes == [None, other, ref]
    log = [e["text"] for e in itop.show(ref)["work_log"] if e["kind"] == "run"]
    assert log == ["procedure mark step write (RUN-1) on prod1"]
    assert not [e for e in itop.show(other)["work_log"] if e["kind"] == "run"]
