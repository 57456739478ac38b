"""`itop backup` with a backup host and restores elsewhere, as a subprocess against the real sshd.

The job backs up ``testhost`` into ``ssh://testhost2/...``; restores go to
another host (``--to-host``), and a restore in place on a production host
meets the change gate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from backup_trees import make_tree, snapshot_tree
from sshd_harness import LISTEN_ADDRESSES
from test_backup_cli import Itop

from itop_tui.domain.models import Host
from itop_tui.services.inventory_repo import InventoryRepository
from itop_tui.services.store import JsonStore

pytestmark = pytest.mark.integration


def test_backup_host_restore_to_another_host_and_the_change_gate(tmp_path: Path,
                                                                  sshd: Any) -> None:
    source = tmp_path / "site"
    source.mkdir()
    make_tree(source, seed=5)
    store = tmp_path / "backup host store"
    itop = Itop(tmp_path, sshd, "")
    with open(itop.data_dir / "known_hosts", "a") as known:  # testhost2 is 127.0.0.2
        known.write(sshd.host_key_line(LISTEN_ADDRESSES[1]) + "\n")
    InventoryRepository(JsonStore(itop.data_dir / "inventory.json")).upsert_hosts(
        [Host(name="testhost", status="production"), Host(name="testhost2")])
    added = itop.json("backup", "add", "site", "--hosts", "testhost", "--source", str(source),
                      "--destination", f"ssh://testhost2{store}", "--keep-last", "1")
    assert added["destination"] == f"ssh://testhost2{store}"
    bad = itop("backup", "add", "bad", "--hosts", "testhost", "--source", str(source),
               "--destination", "ssh://testhost2")
    assert bad.returncode == 2 and "destination" in bad.stderr

    runs = itop.json("backup", "run", "site")
    assert [(r["kind"], r["status"]) for r in runs] == [
        ("backup", "succeeded"), ("verify", "succeeded"), ("prune", "succeeded")], runs
    backup = runs[0]
    assert backup["archive"].startswith(f"ssh://testhost2{store}/testhost/")
    assert (store / "testhost" / Path(backup["archive"]).name).is_file()

    # Onto another host: the run is recorded there, with where it came from.
    target = tmp_path / "on testhost2"
    done = itop.json("backup", "restore", "site", "--run", backup["id"], "--to", str(target),
                     "--to-host", "testhost2")
    assert done["host"] == "testhost2" and done["run"]["status"] == "succeeded", done
    assert done["run"]["host"] == "testhost2"
    assert done["run"]["detail"]["from_host"] == "testhost"
    assert snapshot_tree(target / str(source).lstrip("/")) == snapshot_tree(source)
    unknown = itop("backup", "restore", "site", "--run", backup["id"], "--to", str(target),
                   "--to-host", "nohost")
    assert unknown.returncode == 2 and "nohost" in unknown.stderr

    # In place on the production host: refused by the change gate, nothing written.
    (source / "text.txt").write_text("changed\n")
    refused = itop("backup", "restore", "site", "--run", backup["id"], "--in-place", "--yes")
    assert refused.returncode == 1, refused.stderr
    assert "production" in refused.stderr
    assert (source / "text.txt").read_text() == "changed\n"
    audit = [json.loads(line) for line in
             (itop.data_dir / "audit.jsonl").read_text().splitlines()]
    assert any(e["action"] == "change.gate" and e["result"] == "refused" for e in audit)

    # The same restore in place onto the non-production host goes ahead.
    in_place = itop("backup", "restore", "site", "--run", backup["id"], "--in-place", "--yes",
                    "--to-host", "testhost2")
    assert in_place.returncode == 0, in_place.stderr
    assert (source / "text.txt").read_text() == "hello\n" * 1000

    # Prune reports its progress; a dry run deletes nothing.
    prune = itop("backup", "prune", "site", "--dry-run")
    assert prune.returncode == 0 and "keeps 1" in prune.stdout, prune.stderr
