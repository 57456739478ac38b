"""The questions `itop procedure run|resume` asks, against the real sshd.

* Ctrl-C at a ``[y/N]`` question, on a real terminal (a pty), stops the run
  at the first SIGINT: the run is recorded ``paused`` (audited), itop exits
  130, and ``resume`` continues it, as a user would.
* Check mode shows a read-only manual step without asking, so it runs to
  its end with no terminal and without ``--yes``.

``h1`` is the test sshd on 127.0.0.1; alice is an operator, carol a trainee.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ItopCli, ssh_config, trust_sshd
from sshd_harness import LISTEN_ADDRESSES

from itop_tui.ops.procedure_runner import CHECK_MODE_MANUAL
from itop_tui.services.procedure_repo import ProcedureRun, RunRepository

pytestmark = pytest.mark.integration

PROCEDURE = """
    id: tell-then-write
    title: Look, tell the team, write a mark
    version: "1"
    variables:
      - name: dir
        required: true
    steps:
      - id: look
        title: Look at the directory
        kind: check
        command: |
          d={{ dir }}; ls "$d"
      - id: tell
        title: Tell the team
        kind: manual
        instructions: Tell the team that {{ host }} changes now.
      - id: write
        title: Write the mark
        kind: command
        command: |
          d={{ dir }}; h={{ host }}; echo marked > "$d/mark-$h"
"""
WAIT = 90.0  # seconds: a deadline for conditions, never a measured time


class TerminalItop:
    """`itop ARGS` on a real terminal: stdin, stdout and stderr are a pty."""

    def __init__(self, cli: ItopCli, *args: str, user: str) -> None:
        self.master, slave = pty.openpty()
        try:
            self.proc = subprocess.Popen(cli.argv(*args), env=cli.env(user), stdin=slave,
                                         stdout=slave, stderr=slave, start_new_session=True)
        finally:
            os.close(slave)
        self.output = ""

    def expect(self, text: str) -> None:
        """Read the terminal until ``text`` shows (or the deadline passes)."""
        deadline = time.monotonic() + WAIT
        while text not in self.output:
            assert time.monotonic() < deadline, f"never saw {text!r} in:\n{self.output}"
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                self._read()
            elif self.proc.poll() is not None:
                raise AssertionError(f"itop exited {self.proc.returncode} before {text!r}:\n{self.output}")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def interrupt_once(self) -> int:
        """One SIGINT, as one Ctrl-C; the exit status, waiting for it with a deadline."""
        self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + WAIT
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"one Ctrl-C did not stop itop:\n{self.output}")
            if select.select([self.master], [], [], 0.2)[0]:
                self._read()
        self.drain()
        return self.proc.returncode

    def drain(self) -> None:
        while select.select([self.master], [], [], 0)[0] and self._read():
            pass

    def _read(self) -> bool:
        try:
            data = os.read(self.master, 4096)
        except OSError:  # the other side closed
            return False
        self.output += data.decode(errors="replace")
        return bool(data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def itop(tmp_path: Path, sshd: Any) -> ItopCli:
    data = tmp_path / "data"
    trust_sshd(data, sshd)
    config = tmp_path / "itop.yaml"
    config.write_text(ssh_config(sshd) + "roles:\n  alice: operator\n  carol: trainee\n")
    cli = ItopCli(config, data, timeout=120, user="alice")
    hosts = tmp_path / "hosts.csv"
    hosts.write_text(f"name,address,port,user\nh1,{LISTEN_ADDRESSES[0]},{sshd.port},{sshd.user}\n")
    cli.ok("inventory", "import", str(hosts))
    procedure = tmp_path / "tell-then-write.yaml"
    procedure.write_text(textwrap.dedent(PROCEDURE).lstrip())
    cli.ok("procedure", "import", str(procedure))
    (tmp_path / "work").mkdir()
    return cli


def stored_run(cli: ItopCli, run_id: str = "RUN-1") -> ProcedureRun:
    return RunRepository.in_data_dir(cli.data_dir).require(run_id)


def pauses(cli: ItopCli) -> list[dict[str, Any]]:
    return [e for e in cli.audit() if e["action"] == "procedure.run.pause"]


def test_one_ctrl_c_at_a_question_pauses_the_run_and_exits_130(itop: ItopCli) -> None:
    work = itop.data_dir.parent / "work"
    run = TerminalItop(itop, "procedure", "run", "tell-then-write", "--target", "h1",
                       "--var", f"dir={work}", user="alice")
    try:
        run.expect("Done on h1? [y/N]")
        run.type("y told them\n")
        run.expect("Run write on h1? [y/N]")
        assert run.interrupt_once() == 130
    finally:
        run.close()
    assert "itop: interrupted" in run.output
    record = stored_run(itop)
    assert record.status == "paused"
    assert record.reason is not None and record.reason.startswith("interrupted")
    assert record.result("tell", "h1").note == "told them"
    assert record.result("write", "h1").state == "waiting"
    assert [e["target"] for e in pauses(itop)] == ["RUN-1"]
    assert not (work / "mark-h1").exists()

    # The same at the question of a resumed run (the reviewer's case).
    resumed = TerminalItop(itop, "procedure", "resume", "RUN-1", user="alice")
    try:
        resumed.expect("Run write on h1? [y/N]")
        assert resumed.interrupt_once() == 130
    finally:
        resumed.close()
    assert stored_run(itop).status == "paused"
    assert len(pauses(itop)) == 2
    assert not (work / "mark-h1").exists()

    done = itop("procedure", "resume", "RUN-1", "--yes")
    assert done.returncode == 0, done.stderr
    assert stored_run(itop).status == "succeeded"
    assert (work / "mark-h1").read_text() == "marked\n"


def test_check_mode_shows_manual_steps_without_a_terminal(itop: ItopCli) -> None:
    work = itop.data_dir.parent / "work"
    done = itop("procedure", "run", "tell-then-write", "--target", "h1", "--var", f"dir={work}",
                "--check", user="carol")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "manual step tell shown, not confirmed" in done.stdout
    assert "confirm it on a terminal" not in done.stdout
    record = stored_run(itop)
    assert (record.status, record.mode) == ("succeeded", "check")
    assert record.result("look", "h1").state == "ok"
    tell = record.result("tell", "h1")
    assert (tell.state, tell.reason, tell.confirmed_by) == ("skipped", CHECK_MODE_MANUAL, None)
    assert record.result("write", "h1").state == "skipped"
    assert list(work.iterdir()) == []
