"""Procedure steps and the change gate, with the local transport.

``itop`` runs as a subprocess as two OS logins (``LOGNAME``/``USER``):
alice (operator) writes the change and runs the procedure, bob (approver)
assesses and approves it. ``prod`` (address ``local``) is in production,
``dev`` (address ``local``) in development. The procedure's steps write
marks in a temp dir, so whether a step reached the host is seen on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PROCEDURE = """
    id: mark
    title: Look, then write a mark
    version: "1"
    variables:
      - name: dir
        required: true
    steps:
      - id: look
        title: Look at the directory
        kind: check
        command: ls {{ dir }}
      - id: write
        title: Write the mark
        kind: command
        command: |
          d={{ dir }}; h={{ host }}; echo marked > "$d/mark-$h"
"""


class Itop:
    """`python -m itop_tui` over one data dir and config, as alice or bob."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.data_dir.mkdir()
        self.work = root / "work"
        self.work.mkdir()
        self.config = root / "itop.yaml"
        self.config.write_text("roles:\n  alice: operator\n  bob: approver\n")
        hosts = root / "hosts.csv"
        hosts.write_text("name,address,status\nprod,local,production\ndev,local,development\n")
        self.ok("inventory", "import", str(hosts))
        procedure = root / "mark.yaml"
        procedure.write_text(textwrap.dedent(PROCEDURE).lstrip())
        self.ok("procedure", "import", str(procedure))

    def __call__(self, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ITOP_")}
        env.update(ITOP_CONFIG=str(self.config), LOGNAME=user, USER=user)
        done = subprocess.run(
            [sys.executable, "-m", "itop_tui", "--data-dir", str(self.data_dir), *args],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def ok(self, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
        done = self(*args, user=user)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def audit(self) -> list[dict[str, Any]]:
        text = (self.data_dir / "audit.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    def procedure(self, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self("procedure", "run", "mark", "--target", target, "--var",
                    f"dir={self.work}", "--yes", *extra)


def test_a_mutating_step_on_production_needs_an_approved_change(tmp_path: Path) -> None:
    itop = Itop(tmp_path)

    # Development hosts are free; check mode is never blocked.
    itop.ok("procedure", "run", "mark", "--target", "dev", "--var", f"dir={itop.work}", "--yes")
    assert (itop.work / "mark-dev").exists()
    itop.ok("procedure", "run", "mark", "--target", "prod", "--var", f"dir={itop.work}", "--check")
    assert not (itop.work / "mark-prod").exists()

    # No change: the read-only check runs, the mutating step does not; the run pauses.
    refused = itop.procedure("prod")
    assert refused.returncode == 1, refused.stderr
    assert "refused by the change gate" in refused.stderr
    assert "prod is a production host" in refused.stderr
    assert not (itop.work / "mark-prod").exists()

    # A change written by alice, approved by bob, scheduled by alice for now.
    done = itop.ok("change", "new", "--title", "Mark prod", "--description", "write a mark",
                   "--justification", "test the gate", "--hosts", "prod", "--impact", "none",
                   "--outage", "no", "--backout-plan", "remove the mark", "--json")
    ref = str(json.loads(done.stdout)["ref"])
    itop.ok("change", "submit", ref)
    # Approved is not enough before the window opens.
    itop.ok("change", "assess", ref, "--comment", "harmless", user="bob")
    itop.ok("change", "approve", ref, "--comment", "go", user="bob")
    early = itop.procedure("prod", "--change", ref)
    assert early.returncode == 1 and "refused by the change gate" in early.stderr, early.stderr
    assert ref in early.stderr
    assert not (itop.work / "mark-prod").exists()
    itop.ok("change", "schedule", ref, "--start", "now", "--duration", "30m")

    during = itop.procedure("prod", "--change", ref)
    assert during.returncode == 0, during.stderr
    assert (itop.work / "mark-prod").read_text() == "marked\n"

    bad = itop.procedure("prod", "--change", "nonsense")
    assert bad.returncode == 2 and "--change" in bad.stderr

    # The audit log and the change's work log tell the same story.
    gate = [(e["target"], e["result"]) for e in itop.audit() if e["action"] == "change.gate"]
    assert gate == [("prod", "refused"), (ref, "refused"), (ref, "ok")]
    starts = [e["detail"]["change_id"] for e in itop.audit()
              if e["action"] == "procedure.run.start"]
    assert starts == [None, None, None, ref, ref]
    shown = json.loads(itop.ok("change", "show", ref, "--json").stdout)
    log = [entry["text"] for entry in shown["work_log"] if entry["kind"] == "run"]
    assert log == ["procedure mark step write (RUN-5) on prod"]
