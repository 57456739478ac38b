"""A trainee against the real sshd: ad-hoc commands refused, `--observe` allowed.

``itop`` runs as a subprocess as ``tina`` (trainee) and ``alice``
(operator); the sshd serves the test user whatever the login. ``testhost``
(127.0.0.1) is in production, ``testhost2`` (127.0.0.2) in development.
Commands write marks in a temp dir, so whether something reached the host
is seen on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ItopCli, ssh_config, trust_sshd
from sshd_harness import LISTEN_ADDRESSES

pytestmark = pytest.mark.integration

REFUSAL = ("itop: cannot run commands: the trainee role runs procedures (trainee mode) "
           "and read-only commands (itop run --observe), nothing else")


def trainee_itop(root: Path, sshd: Any, *, trusted: bool = True) -> ItopCli:
    """An itop whose config maps tina to trainee and alice to operator, with two hosts."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "itop.yaml"
    config.write_text(ssh_config(sshd) + "roles:\n  tina: trainee\n  alice: operator\n")
    itop = ItopCli(config, root / "data", timeout=90, user="tina")
    if trusted:
        trust_sshd(itop.data_dir, sshd)
    hosts = root / "hosts.csv"
    hosts.write_text(
        "name,address,port,user,status\n"
        f"testhost,{LISTEN_ADDRESSES[0]},{sshd.port},{sshd.user},production\n"
        f"testhost2,{LISTEN_ADDRESSES[1]},{sshd.port},{sshd.user},development\n"
    )
    itop.ok("inventory", "import", str(hosts), user="alice")
    return itop


def run_events(itop: ItopCli, actor: str) -> list[tuple[str, str, bool]]:
    return [(e["target"], e["result"], bool(e.get("detail", {}).get("observe")))
            for e in itop.audit() if e["action"] == "run" and e["actor"] == actor]


def test_trainee_cannot_run_or_ungate_but_may_observe(tmp_path: Path, sshd: Any) -> None:
    itop = trainee_itop(tmp_path / "itop", sshd)
    work = tmp_path / "work"
    work.mkdir()
    (work / "status.txt").write_text("all quiet\n")

    for selector in ("testhost2", "testhost", "testhost:testhost2"):
        done = itop("run", selector, "--", f"touch {work}/mark-{selector}")
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(REFUSAL), done.stderr
        assert done.stdout == ""
    # Taking the production host out of the change gate is refused too.
    done = itop("inventory", "set", "testhost", "status=development")
    assert done.returncode == 1 and "the trainee role" in done.stderr
    assert itop.json("inventory", "list", "testhost")[0]["status"] == "production"
    done = itop("run", "testhost", "--", f"touch {work}/mark-after")
    assert done.returncode == 1 and done.stderr.startswith(REFUSAL)
    assert sorted(p.name for p in work.iterdir()) == ["status.txt"]
    assert run_events(itop, "tina") == []

    observed = itop("run", "testhost:testhost2", "--observe", "--", f"cat {work}/status.txt")
    assert observed.returncode == 0, observed.stderr
    assert observed.stdout == "---------------- testhost,testhost2 (exit 0)\nall quiet\n"
    assert sorted(run_events(itop, "tina")) == [("testhost", "ok", True),
                                               ("testhost2", "ok", True)]

    # The command itself works: an operator runs it on the development host.
    itop.ok("run", "testhost2", "--", f"touch {work}/mark-alice", user="alice")
    assert sorted(p.name for p in work.iterdir()) == ["mark-alice", "status.txt"]


def test_trainee_cannot_trust_a_host_key(tmp_path: Path, sshd: Any) -> None:
    itop = trainee_itop(tmp_path / "itop", sshd, trusted=False)
    done = itop("trust", "testhost", "--yes")
    assert done.returncode == 1
    assert "cannot trust host keys: the trainee role" in done.stderr
    assert "fingerprint" not in done.stdout
    assert not (itop.data_dir / "known_hosts").exists()
    assert not [e for e in itop.audit() if e["action"] == "host.trust"]
