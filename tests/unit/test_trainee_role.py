"""The trainee role outside procedure runs: what `itop` refuses and what it allows.

`itop` runs as a real subprocess as the login ``tina``, whom the config maps
to ``trainee``; ``alice`` (operator) prepares the inventory. The hosts are
this machine (address ``local``), so "nothing written on the host" is a
check of a temp directory. A trainee must not change production: no ad-hoc
command, no inventory change (such as taking a host out of production), no
trusted key, no procedure import, no backup job or run.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import MARK_PROCEDURE, ItopCli

from itop_tui.services.context import OperatorRequired, ReadOnlyError, Services
from itop_tui.settings import Settings

TRAINEE_MESSAGE = ("the trainee role runs procedures (trainee mode) and read-only commands "
                   "(itop run --observe), nothing else")


def config_text(backup_root: Path, work: Path) -> str:
    return (
        "ssh:\n"
        "  connect_timeout: 2\n"
        "  connect_retries: 0\n"
        "  config_files: []\n"
        "  known_hosts_files: []\n"
        "  use_agent: false\n"
        "roles:\n"
        "  tina: trainee\n"
        "  alice: operator\n"
        "  victor: viewer\n"
        "backups:\n"
        f"  destination_root: {json.dumps(str(backup_root))}\n"
        "  jobs:\n"
        "    - name: work\n"
        "      hosts: prod\n"
        f"      sources: [{json.dumps(str(work))}]\n"
    )


class Setup:
    """A data dir whose inventory holds ``prod`` (production) and ``dev``, both this machine."""

    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.work.mkdir()
        (self.work / "seen.txt").write_text("look at me\n")
        self.backup_root = root / "backups"
        config = root / "itop.yaml"
        config.write_text(config_text(self.backup_root, self.work))
        self.itop = ItopCli(config, root / "data", timeout=60, user="tina")
        self.itop.ok("inventory", "add", "prod", "--address", "local", "--status", "production",
                     user="alice")
        self.itop.ok("inventory", "add", "dev", "--address", "local", user="alice")

    def hosts(self) -> Any:
        return self.itop.json("inventory", "list", user="alice")

    def events_by(self, actor: str) -> list[dict[str, Any]]:
        return [e for e in self.itop.audit() if e.get("actor") == actor]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def refused(done: Any, what: str) -> None:
    """``done`` exited 1 with the trainee refusal for ``what``."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"itop: cannot {what}: {TRAINEE_MESSAGE}" in done.stderr


def test_trainee_cannot_change_the_inventory(setup: Setup, tmp_path: Path) -> None:
    itop = setup.itop
    before = setup.hosts()
    csv = tmp_path / "more.csv"
    csv.write_text("name,address,status\nnew1,local,development\n")
    refused(itop("inventory", "set", "prod", "status=development"), "change hosts")
    refused(itop("inventory", "add", "sneaky", "--address", "local"), "add hosts")
    refused(itop("inventory", "remove", "prod"), "remove hosts")
    refused(itop("inventory", "import", str(csv)), "import an inventory")
    assert setup.hosts() == before
    assert {h["name"]: h["status"] for h in before}["prod"] == "production"
    assert not [e for e in setup.events_by("tina") if e["action"].startswith("inventory.")]

    # Reading stays open to a trainee.
    listed = itop("inventory", "list", "prod")
    assert listed.returncode == 0 and "production" in listed.stdout
    assert itop("inventory", "show", "prod").returncode == 0


def test_trainee_cannot_run_commands_but_may_observe(setup: Setup) -> None:
    itop = setup.itop
    for host in ("prod", "dev"):
        mark = setup.work / f"mark-{host}"
        refused(itop("run", host, "--", f"touch {mark}"), "run commands")
        refused(itop("run", host, "--json", "--", f"touch {mark}"), "run commands")
        assert not mark.exists()
    refused(itop("run", "prod", "--emergency", "it is urgent", "--", "touch x"), "run commands")
    assert not [e for e in setup.events_by("tina") if e["action"] in ("run", "change.new")]

    observed = itop("run", "prod", "--observe", "--", f"ls {setup.work}")
    assert observed.returncode == 0, observed.stderr
    assert "seen.txt" in observed.stdout
    runs = [e for e in setup.events_by("tina") if e["action"] == "run"]
    assert [(e["target"], e["result"]) for e in runs] == [("prod", "ok")]
    # The allowlist still decides what observing means.
    not_read_only = itop("run", "prod", "--observe", "--", f"touch {setup.work}/mark")
    assert not_read_only.returncode == 2
    assert not (setup.work / "mark").exists()

    # Discovering facts runs read-only commands and stores facts only: allowed.
    discovered = itop("inventory", "discover", "dev")
    assert discovered.returncode == 0, discovered.stderr


def test_trainee_cannot_trust_keys_or_import_procedures(setup: Setup, tmp_path: Path) -> None:
    itop = setup.itop
    refused(itop("trust", "prod", "--yes"), "trust host keys")
    procedure = tmp_path / "mark.yaml"
    procedure.write_text(textwrap.dedent(MARK_PROCEDURE).lstrip())
    refused(itop("procedure", "import", str(procedure)), "import procedures")
    assert itop.json("procedure", "list") == []
    # An operator imports it: the refusal is the role's, not the file's.
    itop.ok("procedure", "import", str(procedure), user="alice")


def test_trainee_cannot_touch_backups(setup: Setup) -> None:
    itop = setup.itop
    refused(itop("backup", "add", "more", "--hosts", "dev", "--source", str(setup.work)),
            "add backup jobs")
    refused(itop("backup", "run", "work"), "run backups")
    refused(itop("backup", "pause", "work"), "pause backup jobs")
    refused(itop("backup", "run-due"), "run scheduled backups")
    assert not setup.backup_root.exists() or not any(setup.backup_root.rglob("*.tar*"))
    assert not [e for e in setup.events_by("tina")
                if e["action"].startswith("backup.") and e["action"] != "backup.job.sync"]
    listed = itop("backup", "list")
    assert listed.returncode == 0 and "work" in listed.stdout


def test_trainee_may_add_notes_to_changes_only(setup: Setup) -> None:
    itop = setup.itop
    created = itop("change", "new", "--title", "t", "--hosts", "prod", "--json", user="alice")
    assert created.returncode == 0, created.stderr
    ref = json.loads(created.stdout)["ref"]
    noted = itop("change", "note", ref, "watched the disk")
    assert noted.returncode == 0, noted.stderr
    log = itop.show(ref)["work_log"]
    assert [(e["actor"], e["text"]) for e in log if e["kind"] == "note"] == \
        [("tina", "watched the disk")]
    done = itop("change", "new", "--title", "mine", "--hosts", "prod")
    assert done.returncode == 1 and "operator or above" in done.stderr


def services_as(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str,
                read_only: bool = False) -> Services:
    monkeypatch.setenv("LOGNAME", "someone")
    monkeypatch.setenv("USER", "someone")
    settings = Settings(data_dir=tmp_path / role, roles={"someone": role})
    return Services.open(settings, read_only=read_only)


def test_require_operator_by_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainee = services_as(tmp_path, monkeypatch, "trainee")
    trainee.require_writable("discover facts")
    with pytest.raises(OperatorRequired, match="cannot add hosts: the trainee role runs"):
        trainee.require_operator("add hosts")
    assert not trainee.may_operate

    viewer = services_as(tmp_path, monkeypatch, "viewer")
    with pytest.raises(ReadOnlyError, match=r"read-only \(the viewer role\)") as caught:
        viewer.require_operator("add hosts")
    assert not isinstance(caught.value, OperatorRequired)

    for role in ("operator", "approver", "admin"):
        allowed = services_as(tmp_path, monkeypatch, role)
        allowed.require_operator("add hosts")
        assert allowed.may_operate
    read_only = services_as(tmp_path, monkeypatch, "admin", read_only=True)
    with pytest.raises(ReadOnlyError, match="--read-only"):
        read_only.require_operator("add hosts")


def test_fleet_runner_refuses_a_trainee_unless_observing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from itop_tui.domain.models import Host
    from itop_tui.ops.fleet import FleetRunner

    trainee = services_as(tmp_path, monkeypatch, "trainee")
    host = Host(name="here", address="local", status="development")
    mark = tmp_path / "mark"
    runner = FleetRunner(trainee)
    with pytest.raises(OperatorRequired, match="cannot run commands: the trainee role"):
        asyncio.run(runner.run([host], f"touch {mark}"))
    assert not mark.exists()
    results = asyncio.run(runner.run([host], f"ls {tmp_path}", mutating=False))
    asyncio.run(trainee.close())
    assert [(r.host, r.exit_status) for r in results] == [("here", 0)]
    assert "trainee" in results[0].stdout
