"""`itop backup ...` as a subprocess against the real sshd: jobs from the config file,
run, status, history, files, restore (dry run, new directory, in place), prune,
run-due, add/remove, and the exit statuses of mistakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from backup_trees import make_tree, snapshot_tree
from cli_helpers import ItopCli, ssh_config, trust_sshd
from sshd_harness import LISTEN_ADDRESSES

from itop_tui.domain.models import Host
from itop_tui.services.inventory_repo import InventoryRepository
from itop_tui.services.store import JsonStore

pytestmark = pytest.mark.integration


class Itop(ItopCli):
    """`python -m itop_tui` with a config file naming the fixture's ssh files, and ``backups``."""

    def __init__(self, tmp_path: Path, sshd: Any, backups: str) -> None:
        super().__init__(tmp_path / "itop.yaml", tmp_path / "data")
        # itop's own known_hosts trusts the test sshd on 127.0.0.1 (testhost).
        trust_sshd(self.data_dir, sshd, LISTEN_ADDRESSES[:1])
        self.config.write_text(ssh_config(sshd) + backups)


def test_backup_cli_end_to_end(tmp_path: Path, sshd: Any) -> None:
    source = tmp_path / "etc-like"
    source.mkdir()
    make_tree(source, seed=3)
    itop = Itop(tmp_path, sshd, (
        "backups:\n"
        "  destination_root: archives\n"
        "  jobs:\n"
        "    - name: etc\n"
        "      hosts: testhost\n"
        f"      sources: [{json.dumps(str(source))}]\n"
        "      excludes: ['*.bin']\n"
        "      schedule: '0 3 * * *'\n"
        "      retention: {keep_last: 1}\n"
        "      verify: {when: after-backup, scope: sample, sample_percent: 50}\n"
        "      rpo_hours: 26\n"
        "      pre_command: echo pre-ran > " + json.dumps(str(tmp_path / "pre-marker")) + "\n"
    ))
    InventoryRepository(JsonStore(itop.data_dir / "inventory.json")).upsert_hosts(
        [Host(name="testhost")])

    jobs = itop.json("backup", "list")
    assert [(j["id"], j["name"], j["origin"]) for j in jobs] == [("BKJ-1", "etc", "config")]
    assert jobs[0]["retention"]["keep_last"] == 1
    plain = itop("backup", "status")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split("\n")[1].split()[:3] == ["etc", "testhost", "never"]
    assert plain.stdout.split("\n")[1].split()[-3] == "03:00"  # next due (a date and a time)

    runs = itop.json("backup", "run", "etc")
    assert [(r["kind"], r["status"]) for r in runs] == [
        ("backup", "succeeded"), ("verify", "succeeded"), ("prune", "succeeded")]
    backup = runs[0]
    assert (tmp_path / "pre-marker").read_text() == "pre-ran\n"
    assert Path(backup["archive"]).parent == tmp_path / "archives" / "etc" / "testhost"
    status = itop.json("backup", "status")
    assert status[0]["last_success"]["id"] == backup["id"]
    assert status[0]["last_verified"]["id"] == runs[1]["id"]
    assert status[0]["rpo_state"] == "ok" and status[0]["state"] == "ok"
    assert status[0]["next_due"].endswith("T03:00:00Z")

    history = itop("backup", "history", "etc")
    assert history.returncode == 0
    assert [line.split()[0] for line in history.stdout.splitlines()[1:]] == [r["id"] for r in runs]
    files = itop.json("backup", "files", "etc", "--run", backup["id"])
    paths = {f["path"] for f in files}
    assert not any(p.endswith(".bin") for p in paths)  # excluded
    assert str(source).lstrip("/") + "/text.txt" in paths

    target = tmp_path / "restore target"
    dry = itop.json("backup", "restore", "etc", "--run", backup["id"], "--to", str(target),
                    "--dry-run")
    assert dry["dry_run"] and not target.exists()
    assert str(target / str(source).lstrip("/") / "text.txt") in {e["target"] for e in dry["entries"]}
    done = itop.json("backup", "restore", "etc", "--run", backup["id"], "--to", str(target))
    assert done["run"]["status"] == "succeeded"
    expected = {k: v for k, v in snapshot_tree(source).items() if not k.endswith(".bin")}
    assert snapshot_tree(target / str(source).lstrip("/")) == expected

    refused = itop("backup", "restore", "etc", "--run", backup["id"], "--in-place")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    (source / "text.txt").write_text("oops\n")
    in_place = itop("backup", "restore", "etc", "--run", backup["id"], "--in-place", "--yes")
    assert in_place.returncode == 0, in_place.stderr
    assert (source / "text.txt").read_text() == "hello\n" * 1000

    second = itop.json("backup", "run", "etc", "--host", "testhost")
    assert second[0]["status"] == "succeeded" and second[2]["kind"] == "prune"
    prune = itop.json("backup", "prune", "etc", "--dry-run")
    assert prune[0]["remove"] == [] and [k["run"] for k in prune[0]["keep"]] == [second[0]["id"]]
    assert not Path(backup["archive"]).exists()  # pruned after the second backup (keep_last 1)

    due = itop("backup", "run-due")
    assert due.returncode == 0 and "nothing due" in due.stdout

    added = itop.json("backup", "add", "adhoc", "--hosts", "testhost", "--source", str(source),
                      "--keep-daily", "7", "--schedule", "@daily")
    assert added["id"] == "BKJ-2" and added["origin"] == "manual"
    assert itop("backup", "remove", "etc").returncode == 2  # config jobs live in the file
    assert itop("backup", "remove", "adhoc").returncode == 0

    audit = [json.loads(line)["action"]
             for line in (itop.data_dir / "audit.jsonl").read_text().splitlines()]
    assert {"backup.job.sync", "backup.backup", "backup.verify", "backup.prune",
            "backup.restore", "backup.job.add", "backup.job.remove"} <= set(audit)


def test_backup_cli_mistakes_exit_2_with_a_message(tmp_path: Path, sshd: Any) -> None:
    itop = Itop(tmp_path, sshd, (
        "backups:\n"
        "  jobs:\n"
        "    - name: ok\n"
        "      hosts: testhost\n"
        "      sources: [/etc/hostname]\n"
    ))
    done = itop("backup", "run", "nope")
    assert done.returncode == 2 and "no backup job 'nope' (jobs: ok)" in done.stderr
    done = itop("backup", "run", "ok")
    assert done.returncode == 2 and "matches no host" in done.stderr
    done = itop("backup", "restore", "ok", "--run", "BKR-9", "--to", "/tmp/x")
    assert done.returncode == 2 and "no run BKR-9" in done.stderr
    done = itop("backup", "add", "rel", "--hosts", "all", "--source", "etc")
    assert done.returncode == 2 and "sources[0]" in done.stderr

    text = itop.config.read_text().replace("[/etc/hostname]", "[etc/hostname]")
    itop.config.write_text(text)
    line = text.splitlines().index("      sources: [etc/hostname]") + 1
    done = itop("backup", "list")
    assert done.returncode == 2
    assert f"{itop.config}:{line}: backups.jobs[0].sources[0]: must be an absolute path" \
        in done.stderr
