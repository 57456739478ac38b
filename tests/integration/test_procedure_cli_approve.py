"""`itop procedure approve` says what is approved before recording it.

``itop`` runs as a subprocess as two OS logins (``LOGNAME``/``USER``): tina
(trainee) runs a procedure on ``dev`` (address ``local``, this machine)
whose mutating step needs a sign-off; bob (approver) signs it off. The
step writes a mark in a temp dir, so whether it ran is seen on disk.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from cli_helpers import ItopCli

pytestmark = pytest.mark.integration

ROTATE = """
    id: rotate-mark
    title: Rotate a mark
    version: "1"
    variables:
      - name: dir
        required: true
      - name: keep
        default: "5"
      - name: token
        secret: true
        required: true
    steps:
      - id: rotate
        title: Rotate on {{ host }}
        kind: command
        command: |
          d={{ dir }}; k={{ keep }}; h={{ host }}; t={{ token }}
          echo "kept $k" > "$d/mark-$h"
"""

CANARY = "canary-approve-4d2e"


def test_approve_prints_step_hosts_command_and_variables_first(tmp_path: Path) -> None:
    itop = ItopCli(tmp_path / "itop.yaml", tmp_path / "data", user="tina")
    itop.data_dir.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    itop.config.write_text("roles:\n  tina: trainee\n  bob: approver\n")
    hosts = tmp_path / "hosts.csv"
    hosts.write_text("name,address,status\ndev,local,development\n")
    itop.ok("inventory", "import", str(hosts), user="bob")
    procedure = tmp_path / "rotate.yaml"
    procedure.write_text(textwrap.dedent(ROTATE).lstrip())
    itop.ok("procedure", "import", str(procedure), user="bob")

    waiting = itop("procedure", "run", "rotate-mark", "--target", "dev", "--var", f"dir={work}",
                   "--yes", env={"ITOP_VAR_token": CANARY})
    assert waiting.returncode == 1 and "sign-off" in waiting.stdout, waiting.stdout
    assert not (work / "mark-dev").exists()

    approved = itop("procedure", "approve", "RUN-1", "--comment", "checked", user="bob")
    assert approved.returncode == 0, approved.stderr
    out = approved.stdout
    assert CANARY not in out + approved.stderr
    lines = out.splitlines()
    facts = lines[:lines.index(next(line for line in lines if "approved by bob" in line))]
    text = "\n".join(facts)
    assert "Sign-off of step rotate (Rotate on dev) of rotate-mark 1, trainee run by tina" in text
    assert "Hosts: 1 host (dev)" in text
    # The command as the trainee's confirmation shows it: values in, the secret as ***.
    assert f"  d={work}; k=5; h=dev; t=***" in facts
    assert '  echo "kept $k" > "$d/mark-$h"' in facts
    assert f"Variables: dir={work}, keep=5, token=*** (secret)" in facts
    assert not (work / "mark-dev").exists()  # approving records; it runs nothing
