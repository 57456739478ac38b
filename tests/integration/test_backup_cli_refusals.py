"""`itop backup` as a subprocess against the real sshd: requests refused up front (exit 2,
nothing recorded), hosts checked when a job is added, the change gate's wording for a
restore, the history's pruned marks and the progress lines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from backup_trees import make_tree
from sshd_harness import LISTEN_ADDRESSES
from test_backup_cli import Itop

from itop_tui.domain.models import Host
from itop_tui.services.inventory_repo import InventoryRepository
from itop_tui.services.store import JsonStore

pytestmark = pytest.mark.integration


def job_config(source: Path, keep_last: int | None = None) -> str:
    retention = f"      retention: {{keep_last: {keep_last}}}\n" if keep_last else ""
    return ("backups:\n"
            "  destination_root: archives\n"
            "  jobs:\n"
            "    - name: site\n"
            "      hosts: testhost\n"
            f"      sources: [{json.dumps(str(source))}]\n"
            "      verify: {when: never}\n" + retention)


def setup(tmp_path: Path, sshd: Any, *, production: bool = False) -> tuple[Itop, Path]:
    source = tmp_path / "site"
    source.mkdir()
    make_tree(source, seed=9)
    itop = Itop(tmp_path, sshd, job_config(source))
    with open(itop.data_dir / "known_hosts", "a") as known:  # testhost2 is 127.0.0.2
        known.write(sshd.host_key_line(LISTEN_ADDRESSES[1]) + "\n")
    InventoryRepository(JsonStore(itop.data_dir / "inventory.json")).upsert_hosts(
        [Host(name="testhost", status="production" if production else "staging"),
         Host(name="testhost2")])
    return itop, source


def run_ids(itop: Itop) -> list[str]:
    return [r["id"] for r in itop.json("backup", "history", "site")]


def test_prune_marks_history_and_refuses_pruned_runs(tmp_path: Path, sshd: Any) -> None:
    itop, source = setup(tmp_path, sshd)
    backups = []
    for _ in range(3):
        done = itop("backup", "run", "site")
        assert done.returncode == 0, done.stderr
        # The rate is measured from the first report on, never a flat 0 B/s.
        lines = [line for line in done.stderr.splitlines() if " backup BKR-" in line]
        assert lines and not any(line.endswith(" 0 B/s") for line in lines), done.stderr
        backups.append(run_ids(itop)[-1])

    itop.config.write_text(itop.config.read_text().replace(
        job_config(source), job_config(source, keep_last=1)))
    prune = itop("backup", "prune", "site")
    assert prune.returncode == 0, prune.stderr
    progress = [line for line in prune.stderr.splitlines() if " prune BKR-" in line]
    assert progress and progress[-1].endswith(": 2 of 2 backup(s) deleted"), prune.stderr

    history = itop("backup", "history", "site")
    status_of = {line.split()[0]: line.split()[4:6] for line in history.stdout.splitlines()[1:]}
    assert status_of[backups[0]] == ["succeeded", "(pruned)"]
    assert status_of[backups[1]] == ["succeeded", "(pruned)"]
    assert status_of[backups[2]][1] != "(pruned)"

    # A pruned backup can be neither verified nor restored: refused, nothing recorded.
    before = run_ids(itop)
    verify = itop("backup", "verify", "site", "--run", backups[0])
    assert verify.returncode == 2 and f"{backups[0]} was pruned" in verify.stderr
    restore = itop("backup", "restore", "site", "--run", backups[0], "--to",
                   str(tmp_path / "new"))
    assert restore.returncode == 2 and "was pruned" in restore.stderr
    assert run_ids(itop) == before


def test_restore_refusals_exit_2_and_record_nothing(tmp_path: Path, sshd: Any) -> None:
    itop, source = setup(tmp_path, sshd, production=True)
    assert itop("backup", "run", "site").returncode == 0
    backup = run_ids(itop)[-1]
    before = run_ids(itop)

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine\n")
    done = itop("backup", "restore", "site", "--run", backup, "--to", str(occupied))
    assert done.returncode == 2 and "exists and is not empty" in done.stderr, done.stderr
    assert (occupied / "keep.txt").read_text() == "mine\n"

    # The gate refuses in place on production, naming only what restore accepts.
    refused = itop("backup", "restore", "site", "--run", backup, "--in-place", "--yes")
    assert refused.returncode == 1, refused.stderr
    assert "--change CHG-N" in refused.stderr
    assert "--emergency" not in refused.stderr and "--observe" not in refused.stderr
    unknown = itop("backup", "restore", "site", "--run", backup, "--in-place", "--yes",
                   "--change", "CHG-1")
    assert unknown.returncode == 2 and "no change CHG-1" in unknown.stderr, unknown.stderr

    nohost = itop("backup", "restore", "site", "--run", backup, "--to", str(tmp_path / "n"),
                  "--to-host", "nohost")
    assert nohost.returncode == 2
    assert "host 'nohost' is not in the inventory" in nohost.stderr
    wrong = itop("backup", "run", "site", "--host", "testhost2")
    assert wrong.returncode == 2 and "it backs up only testhost" in wrong.stderr
    assert "(testhost: testhost)" not in wrong.stderr
    assert run_ids(itop) == before


def test_add_checks_hosts_and_lists_jobs_without_hosts(tmp_path: Path, sshd: Any) -> None:
    itop, source = setup(tmp_path, sshd)
    bad = itop("backup", "add", "x", "--hosts", "testhost", "--source", str(source),
               "--destination", "ssh://nohost/srv/x")
    assert bad.returncode == 2
    assert "backup host 'nohost'" in bad.stderr and "not in the inventory" in bad.stderr
    assert "ssh://HOST/DIR" in itop("backup", "add", "--help").stdout

    orphan = itop("backup", "add", "orphan", "--hosts", "nohost", "--source", str(source))
    assert orphan.returncode == 0, orphan.stderr
    assert "warning: the hosts selector 'nohost' matches no host" in orphan.stderr
    rows = itop.json("backup", "status")
    assert [(r["job"], r["host"], r["state"]) for r in rows] == [
        ("orphan", None, "no hosts"), ("site", "testhost", "never")]
    plain = itop("backup", "status")
    assert "(no host matches)" in plain.stdout

    command = itop("backup", "add", "dump", "--hosts", "testhost", "--method", "command",
                   "--command", "true")
    assert command.returncode == 0, command.stderr
    listed = itop("backup", "list")
    dump = next(line for line in listed.stdout.splitlines() if " dump " in line)
    assert "after-backup" not in dump and "keep everything" not in dump
    assert re.search(r"\bcommand\s+manual\s+-\s+-\s", dump), dump
