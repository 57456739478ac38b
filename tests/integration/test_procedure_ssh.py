"""`itop procedure` as a subprocess against the real sshd: runs, failures,
batches, a kill and resume, changed procedures, approvals by a second login,
trainees, secrets and injection attempts.

Hosts ``h1``/``h2`` and ``a1``..``a4`` are names for the test sshd on
127.0.0.1 and 127.0.0.2; ``a2`` points at a closed port, so it fails. A
second person is a second OS login: ``getpass.getuser()`` honours
``LOGNAME``/``USER``, so ``itop procedure approve`` runs with ``LOGNAME=bob``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ItopCli, ssh_config, trust_sshd
from sshd_harness import LISTEN_ADDRESSES, free_port, pids_running

from itop_tui.services.procedure_repo import ProcedureRun, RunRepository

pytestmark = pytest.mark.integration

PROCEDURES: dict[str, str] = {
    "hello": """
        id: hello
        title: Hello over SSH
        version: "1"
        variables:
          - name: dir
            required: true
        steps:
          - id: reachable
            title: The host answers
            kind: check
            command: |
              h={{ host }}; echo "hello from $h"
          - id: write
            title: Write a mark on {{ host }}
            kind: command
            command: |
              d={{ dir }}; h={{ host }}; echo "written by itop" > "$d/mark-$h"
          - id: verify
            title: The mark is there
            kind: check
            skip_in_check_mode: true
            expect:
              regex: '^written by itop$'
            command: |
              d={{ dir }}; h={{ host }}; cat "$d/mark-$h"
    """,
    "gate": """
        id: gate
        title: A precondition that fails
        version: "1"
        variables:
          - name: dir
            required: true
        steps:
          - id: precondition
            title: The flag file exists
            kind: check
            command: |
              d={{ dir }}; test -e "$d/flag" || { echo "missing: $d/flag"; exit 1; }
          - id: change
            title: Change
            kind: command
            command: |
              d={{ dir }}; touch "$d/changed"
    """,
    "batch49": """
        id: batch49
        title: Two at a time, stop when more than 49% of a batch fails
        version: "1"
        serial: 2
        max_fail_percentage: 49
        variables:
          - name: dir
            required: true
        steps:
          - id: reachable
            title: Reachable
            kind: check
            command: echo up
          - id: write
            title: Write
            kind: command
            command: |
              d={{ dir }}; h={{ host }}; echo x > "$d/$h"
    """,
    # The nap lasts until the test creates go-HOST (60 s at most), so a kill
    # lands inside it however slow the machine is.
    "slow": """
        id: slow
        title: One host at a time, with a nap
        version: "1"
        serial: 1
        variables:
          - name: dir
            required: true
        steps:
          - id: mark
            title: Mark
            kind: command
            mutates: false
            command: |
              d={{ dir }}; h={{ host }}; echo mark >> "$d/mark-$h"
          - id: nap
            title: Nap
            kind: command
            command: |
              d={{ dir }}; h={{ host }}; echo start >> "$d/nap-$h"; for i in $(seq 600); do test -e "$d/go-$h" && break; sleep 0.1; done; echo end >> "$d/nap-$h"
          - id: done
            title: Done
            kind: check
            command: |
              d={{ dir }}; h={{ host }}; grep -qx end "$d/nap-$h" && echo "done on $h"
    """,
    "changing": """
        id: changing
        title: Changes between start and resume
        version: "1"
        variables:
          - name: answer
            required: true
            regex: '[0-9]+'
          - name: dir
            required: true
        steps:
          - id: ask
            title: The answer
            kind: input
            variable: answer
          - id: write
            title: Write the answer
            kind: command
            mutates: false
            command: |
              a={{ answer }}; d={{ dir }}; echo "v1 $a" > "$d/answer"
    """,
    "gated": """
        id: gated
        title: A change the lead approves
        version: "1"
        variables:
          - name: dir
            required: true
        steps:
          - id: before
            title: Look first
            kind: check
            command: echo looked
          - id: lead
            title: The lead agrees
            kind: approval
          - id: change
            title: Change
            kind: command
            command: |
              d={{ dir }}; echo changed > "$d/changed"
    """,
    "literal": """
        id: literal
        title: Values stay literal, secrets stay secret
        version: "1"
        variables:
          - name: value
          - name: token
            secret: true
          - name: dir
            required: true
        steps:
          - id: keep
            title: Keep the value
            kind: command
            mutates: false
            command: |
              v={{ value }}; d={{ dir }}; printf '%s' "$v" > "$d/value"; echo "kept $v"
          - id: use-token
            title: Use the token
            kind: command
            mutates: false
            command: |
              t={{ token }}; d={{ dir }}; printf '%s' "$t" | cksum > "$d/token-sum"; echo "the token is $t"
    """,
}


def _roles(roles: dict[str, str]) -> str:
    lines = ["roles:" + ("" if roles else " {}"), *(f"  {login}: {role}" for login, role in roles.items())]
    return "\n".join(lines) + "\n"


class Itop(ItopCli):
    """`python -m itop_tui` over one data dir, as one OS login or another."""

    def __init__(self, root: Path, data_dir: Path, sshd: Any, roles: dict[str, str]) -> None:
        super().__init__(root / "itop.yaml", data_dir)
        self.config.write_text(ssh_config(sshd) + _roles(roles))
        self.work = root / "work"
        self.work.mkdir(exist_ok=True)

    def run(self, run_id: str = "RUN-1") -> ProcedureRun:
        return RunRepository.in_data_dir(self.data_dir).require(run_id)

    def wait_for(self, test: Callable[[ProcedureRun], bool], proc: subprocess.Popen[str],
                 timeout: float = 60) -> ProcedureRun:
        repo = RunRepository.in_data_dir(self.data_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = repo.get("RUN-1")
            if run is not None and test(run):
                return run
            if proc.poll() is not None:
                raise AssertionError(f"itop exited {proc.returncode}: {proc.communicate()}")
            time.sleep(0.1)
        raise AssertionError("the run never got there")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, sshd: Any) -> Path:
    """A data dir with the hosts and procedures imported once, copied by each test."""
    root = tmp_path_factory.mktemp("procedure-template")
    data = root / "data"
    data.mkdir()
    trust_sshd(data, sshd)
    closed = free_port()
    rows = ["name,address,port,user"]
    for name, address, port in (("h1", 0, sshd.port), ("h2", 1, sshd.port), ("a1", 0, sshd.port),
                                ("a2", 0, closed), ("a3", 1, sshd.port), ("a4", 0, sshd.port)):
        rows.append(f"{name},{LISTEN_ADDRESSES[address]},{port},{sshd.user}")
    (root / "hosts.csv").write_text("\n".join(rows) + "\n")
    procedures = root / "procedures"
    procedures.mkdir()
    for name, text in PROCEDURES.items():
        (procedures / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
    itop = Itop(root, data, sshd, {})
    done = itop("inventory", "import", str(root / "hosts.csv"))
    assert done.returncode == 0, done.stderr
    done = itop("procedure", "import", str(procedures))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("added") == len(PROCEDURES)
    return data


@pytest.fixture
def itop(tmp_path: Path, template: Path, sshd: Any) -> Callable[..., Itop]:
    def make(**roles: str) -> Itop:
        shutil.copytree(template, tmp_path / "data")
        return Itop(tmp_path, tmp_path / "data", sshd, roles)

    return make


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_run_succeeds_and_check_mode_only_shows_the_change(itop: Callable[..., Itop]) -> None:
    cli = itop()
    check = cli("procedure", "run", "hello", "--target", "h1:h2", "--var", f"dir={cli.work}", "--check")
    assert check.returncode == 0, check.stderr
    assert not list(cli.work.iterdir())
    assert f"h2: skipped, would run:\n      $ d={cli.work}; h=h2; echo \"written by itop\" > \"$d/mark-$h\"" in check.stdout
    assert "h1: ok (exit 0" in check.stdout and "      > hello from h1" in check.stdout

    done = cli("procedure", "run", "hello", "--target", "h1:h2", "--var", f"dir={cli.work}",
               "--yes", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["id"], run["status"], run["mode"]) == ("RUN-2", "succeeded", "normal")
    for step in run["steps"]:
        assert {h: r["state"] for h, r in step["hosts"].items()} == {"h1": "ok", "h2": "ok"}
    assert run["steps"][2]["hosts"]["h2"]["output"] == "written by itop\n"
    assert lines(cli.work / "mark-h1") == lines(cli.work / "mark-h2") == ["written by itop"]
    steps = [e for e in cli.audit() if e["action"] == "procedure.step" and e["detail"]["run"] == "RUN-2"]
    assert sorted((e["target"], e["detail"]["step"], e["detail"]["exit_status"]) for e in steps) == sorted(
        (h, s, 0) for h in ("h1", "h2") for s in ("reachable", "write", "verify"))


def test_a_failing_check_stops_the_run(itop: Callable[..., Itop]) -> None:
    cli = itop()
    done = cli("procedure", "run", "gate", "--target", "h1", "--var", f"dir={cli.work}", "--yes")
    assert done.returncode == 1
    assert "h1: FAILED (exit 1, " in done.stdout and f"> missing: {cli.work}/flag" in done.stdout
    assert "RUN-1 failed: 1 of 1 hosts of batch 1 failed" in done.stderr.replace("the run stopped: ", "")
    run = cli.run()
    assert run.status == "failed"
    assert run.result("precondition", "h1").reason == "exit status 1, expected 0"
    assert run.result("change", "h1").state == "cancelled"
    assert not (cli.work / "changed").exists()


def test_serial_batches_and_max_fail_percentage(itop: Callable[..., Itop]) -> None:
    cli = itop()
    done = cli("procedure", "run", "batch49", "--target", "a1:a2:a3:a4", "--var", f"dir={cli.work}", "--yes")
    assert done.returncode == 1
    run = cli.run()
    assert run.batches == [["a1", "a2"], ["a3", "a4"]]
    unreachable = run.result("reachable", "a2")
    assert unreachable.state == "failed" and unreachable.exit_code is None
    assert "connect" in str(unreachable.reason)
    assert run.reason == "the run stopped: 1 of 2 hosts of batch 1 failed, more than max_fail_percentage 49%"
    assert {h: r.state for h, r in run.step("write").hosts.items()} == {
        "a1": "cancelled", "a2": "cancelled", "a3": "cancelled", "a4": "cancelled"}
    assert not list(cli.work.iterdir())

    # 50%: one failed host of two does not exceed it; the other batch runs.
    (cli.data_dir.parent / "p50.yaml").write_text(textwrap.dedent(PROCEDURES["batch49"]).replace(
        "max_fail_percentage: 49", "max_fail_percentage: 50").replace("id: batch49", "id: batch50"))
    assert cli("procedure", "import", str(cli.data_dir.parent / "p50.yaml")).returncode == 0
    done = cli("procedure", "run", "batch50", "--target", "a1:a2:a3:a4", "--var", f"dir={cli.work}", "--yes")
    assert done.returncode == 1, done.stderr
    run = cli.run("RUN-2")
    assert run.reason == "1 of 4 hosts failed: a2"
    assert {h: r.state for h, r in run.step("write").hosts.items()} == {
        "a1": "ok", "a2": "cancelled", "a3": "ok", "a4": "ok"}
    assert sorted(p.name for p in cli.work.iterdir()) == ["a1", "a3", "a4"]


def naps_running(work: Path) -> set[int]:
    """Pids of this test's step commands still running (orphans of a killed itop).

    Their command lines hold the work dir, as no other process does once
    itop itself has ended.
    """
    return pids_running(str(work))


def wait_until_no_nap(work: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while naps_running(work):
        assert time.monotonic() < deadline, f"naps still running: {naps_running(work)}"
        time.sleep(0.05)


def test_a_killed_run_resumes_where_it_stopped(itop: Callable[..., Itop]) -> None:
    cli = itop()
    nap_h1 = cli.work / "nap-h1"
    proc = cli.popen("procedure", "run", "slow", "--target", "h1:h2", "--var", f"dir={cli.work}", "--yes")
    try:
        cli.wait_for(lambda r: r.result("nap", "h1").state == "running", proc)
        # Into the nap on the host: it started and waits for go-h1.
        deadline = time.monotonic() + 60
        while lines(nap_h1) != ["start"]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the nap never started on h1"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        # Let the nap the kill orphaned on the host finish, then wait until
        # it did, so it cannot write into the resumed run's files.
        for host in ("h1", "h2"):
            (cli.work / f"go-{host}").touch()
        wait_until_no_nap(cli.work)
    killed = cli.run()
    assert killed.status == "running"  # nobody could record anything else
    assert killed.result("mark", "h1").state == "ok"
    assert killed.result("nap", "h1").state == "running"
    assert {s.hosts["h2"].state for s in killed.steps} == {"waiting"}
    cut = lines(nap_h1)
    assert cut in (["start"], ["start", "end"])  # the orphan may end its nap
    assert not (cli.work / "nap-h2").exists()

    done = cli("procedure", "resume", "RUN-1", "--yes")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "[1/3]" not in done.stdout.split("batch 2/2")[0]  # h1's mark step was not run again
    assert lines(cli.work / "mark-h1") == ["mark"] and lines(cli.work / "mark-h2") == ["mark"]
    assert lines(nap_h1) == [*cut, "start", "end"]  # the cut step ran again, whole
    assert lines(cli.work / "nap-h2") == ["start", "end"]
    run = cli.run()
    assert run.status == "succeeded" and [r["kind"] for r in run.resumes] == ["resume"]

    report = cli("procedure", "report", "RUN-1")
    assert report.returncode == 0, report.stderr
    text = report.stdout
    for number, step in enumerate(("mark", "nap", "done"), 1):
        assert f"### {number}. " in text and f"(`{step}`, " in text
    for host in ("h1", "h2"):
        assert text.count(f"#### {host}: ok, exit 0") == 3
    assert f"- run by: {cli.run().operator}, attempts: 1" in text
    assert "```text\ndone on h1\n```" in text
    assert 'echo start >> "$d/nap-$h"; for i in $(seq 600)' in text
    assert "| resume |" in text
    assert "- earlier attempt 1: running at " in text and "cut off: itop stopped while it ran" in text
    actions = [e["action"] for e in cli.audit() if e["target"] == "RUN-1"]
    assert actions[0] == "procedure.run.start" and "procedure.run.resume" in actions
    assert actions[-1] == "procedure.run.end"


def test_resume_refuses_a_changed_procedure_unless_forced(itop: Callable[..., Itop]) -> None:
    cli = itop()
    done = cli("procedure", "run", "changing", "--target", "h1", "--var", f"dir={cli.work}")
    assert done.returncode == 1 and "answer is needed" in done.stdout
    assert cli.run().status == "paused"
    changed = cli.data_dir.parent / "changing.yaml"
    changed.write_text(textwrap.dedent(PROCEDURES["changing"]).replace('version: "1"', 'version: "2"')
                       .replace('echo "v1 $a"', 'echo "v2 $a"'))
    imported = cli("procedure", "import", str(changed))
    assert imported.returncode == 0 and "updated    changing 2 (was 1)" in imported.stdout

    refused = cli("procedure", "resume", "RUN-1", "--var", "answer=42")
    assert refused.returncode == 1
    assert "procedure changing changed since RUN-1 started (version 1" in refused.stderr
    assert "--force" in refused.stderr and not (cli.work / "answer").exists()
    forced = cli("procedure", "resume", "RUN-1", "--force", "--var", "answer=42")
    assert forced.returncode == 0, forced.stderr
    assert lines(cli.work / "answer") == ["v2 42"]
    audit = [(e["action"], e["result"]) for e in cli.audit() if e["target"] == "RUN-1"]
    assert ("procedure.run.resume", "refused") in audit and ("procedure.resume.force", "ok") in audit


def test_an_approval_comes_from_a_second_login(itop: Callable[..., Itop], sshd: Any) -> None:
    me = sshd.user
    cli = itop(**{me: "operator", "bob": "approver"})
    proc = cli.popen("procedure", "run", "gated", "--target", "h1", "--var", f"dir={cli.work}",
                     "--yes", "--wait", "90", "--json")
    try:
        cli.wait_for(lambda r: r.status == "waiting", proc)
        assert not (cli.work / "changed").exists()
        own = cli("procedure", "approve", "RUN-1")
        assert own.returncode == 1 and "a different person with the approver role" in own.stderr
        approved = cli("procedure", "approve", "RUN-1", "--comment", "fine by me", user="bob")
        assert approved.returncode == 0, approved.stderr
        assert f"approved by bob (asked by {me})" in approved.stdout
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    run = json.loads(out)
    assert run["status"] == "succeeded"
    assert [(a["by"], a["decision"], a["comment"]) for a in run["approvals"]] == [
        ("bob", "approved", "fine by me")]
    assert lines(cli.work / "changed") == ["changed"]
    decisions = [(e["actor"], e["result"]) for e in cli.audit() if e["action"] == "procedure.approve"]
    assert decisions == [(me, "refused"), ("bob", "ok")]


def test_a_trainee_waits_for_an_approvers_signoff(itop: Callable[..., Itop], sshd: Any) -> None:
    me = sshd.user
    cli = itop(**{me: "trainee", "bob": "approver"})
    done = cli("procedure", "run", "hello", "--target", "h1", "--var", f"dir={cli.work}", "--yes")
    assert done.returncode == 1 and "signoff: a trainee needs an approver's sign-off" in done.stdout
    run = cli.run()
    assert (run.mode, run.status) == ("trainee", "waiting")
    assert run.pending is not None and (run.pending.step, run.pending.kind) == ("write", "signoff")
    assert run.result("reachable", "h1").state == "ok"  # checks need no sign-off
    assert not (cli.work / "mark-h1").exists()
    assert cli("procedure", "approve", "RUN-1").returncode == 1
    assert cli("procedure", "resume", "RUN-1", "--yes").returncode == 1  # still waiting
    assert not (cli.work / "mark-h1").exists()
    assert cli("procedure", "approve", "RUN-1", user="bob").returncode == 0
    done = cli("procedure", "resume", "RUN-1", "--yes")
    assert done.returncode == 0, done.stderr
    assert lines(cli.work / "mark-h1") == ["written by itop"]
    assert cli.run().approvals[0].kind == "signoff"


def test_a_secret_is_never_stored_or_audited(itop: Callable[..., Itop]) -> None:
    cli = itop()
    canary = "canary-5b1e0d9f-never-store-me"
    on_command_line = cli("procedure", "run", "literal", "--target", "h1", "--var", f"dir={cli.work}",
                          "--var", f"token={canary}")
    assert on_command_line.returncode == 2
    assert "token is a secret variable and must not be given on the command line" in on_command_line.stderr
    assert "ITOP_VAR_token" in on_command_line.stderr
    done = cli("procedure", "run", "literal", "--target", "h1", "--var", f"dir={cli.work}",
               env={"ITOP_VAR_token": canary})
    assert done.returncode == 0, done.stderr
    assert canary not in done.stdout + done.stderr and "> the token is ***" in done.stdout
    expected = subprocess.run(["cksum"], input=canary.encode(), capture_output=True, check=True).stdout
    assert (cli.work / "token-sum").read_bytes() == expected  # the host got the real value
    for path in cli.data_dir.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), f"{path} holds the secret"
    report = cli("procedure", "report", "RUN-1")
    assert canary not in report.stdout and "token=*** (secret, not stored)" in report.stdout


def test_an_injection_attempt_stays_a_literal_value(itop: Callable[..., Itop]) -> None:
    cli = itop()
    work = cli.work
    value = (f"x'; touch {work}/pwned1; echo '\n$(touch {work}/pwned2) `touch {work}/pwned3`"
             f" \"; touch {work}/pwned4 #\\ $HOME *")
    done = cli("procedure", "run", "literal", "--target", "h2", "--var", f"dir={work}",
               "--var", f"value={value}")
    assert done.returncode == 0, done.stderr
    assert (work / "value").read_text() == value
    assert sorted(p.name for p in work.iterdir()) == ["token-sum", "value"]
