"""Procedure steps and the change gate, with the local transport.

``itop`` runs as a subprocess as two OS logins (``LOGNAME``/``USER``):
alice (operator) writes the change and runs the procedure, bob (approver)
assesses and approves it. ``prod`` (address ``local``) is in production,
``dev`` (address ``local``) in development. The procedure's steps write
marks in a temp dir, so whether a step reached the host is seen on disk.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from cli_helpers import MARK_PROCEDURE, ItopCli, approved_change

pytestmark = pytest.mark.integration


class Itop(ItopCli):
    """`python -m itop_tui` over one data dir and config, as alice (default) or bob."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "itop.yaml", root / "data", user="alice")
        self.data_dir.mkdir()
        self.work = root / "work"
        self.work.mkdir()
        self.config.write_text("roles:\n  alice: operator\n  bob: approver\n")
        hosts = root / "hosts.csv"
        hosts.write_text("name,address,status\nprod,local,production\ndev,local,development\n")
        self.ok("inventory", "import", str(hosts))
        procedure = root / "mark.yaml"
        procedure.write_text(textwrap.dedent(MARK_PROCEDURE).lstrip())
        self.ok("procedure", "import", str(procedure))

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

    # A change written by alice, approved by bob: not enough before the window opens.
    ref = approved_change(itop, "prod", "Mark prod")
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
    shown = itop.show(ref)
    log = [entry["text"] for entry in shown["work_log"] if entry["kind"] == "run"]
    assert log == ["procedure mark step write (RUN-5) on prod"]
