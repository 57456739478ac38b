"""The restic method against the real sshd: back up, verify, prune, restore.

restic runs on the "host" (this machine reached over SSH), with a repository
and a password file created there in the test's temp dir; itop only passes
the password file's path and never stores the password.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backup_trees import make_tree, snapshot_tree

from itop_tui.domain.backup import BackupJob, Retention, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupRunner, Progress
from itop_tui.services.context import Services

RESTIC = shutil.which("restic")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(RESTIC is None, reason="restic is not installed: apt-get install restic "
                                              "(the test command installs it)"),
]

HOST = "testhost"


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A restic repository and its password file, made on the host side."""
    assert RESTIC is not None
    repo = tmp_path / "restic repo"
    password = f"not-in-itop-{secrets.token_hex(8)}"
    password_file = tmp_path / "restic-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    subprocess.run([RESTIC, "init", "-q", "-r", str(repo), "--password-file", str(password_file)],
                   check=True, capture_output=True)
    yield repo, password_file, password


def restic_snapshots(repo: Path, password_file: Path) -> list[dict[str, Any]]:
    assert RESTIC is not None
    out = subprocess.run([RESTIC, "-r", str(repo), "--password-file", str(password_file),
                          "snapshots", "--json"], capture_output=True, text=True, check=True)
    snapshots: list[dict[str, Any]] = json.loads(out.stdout)
    return snapshots


def test_restic_backup_verify_prune_and_restore(
    trusted_settings: Any, tmp_path: Path, repository: tuple[Path, Path, str]
) -> None:
    repo, password_file, password = repository
    source = tmp_path / "source tree"
    source.mkdir()
    make_tree(source)
    services = Services.open(trusted_settings)
    services.inventory.upsert_hosts([Host(name=HOST)])
    runner = BackupRunner(services)
    runner.add_job(BackupJob(
        name="restic-tree", hosts=HOST, method="restic", destination=str(repo),
        password_file=str(password_file), sources=[str(source)],
        retention=Retention(keep_last=1),
        verify=VerifyPolicy(when="after-backup", scope="sample", sample_percent=50),
    ))

    seen: list[Progress] = []
    first, first_verify, first_prune = asyncio.run(runner.run_job("restic-tree",
                                                                  on_progress=seen.append))
    assert first.status == "succeeded", first.log
    # Progress of the backup: never a total below what was done (restic's scanner
    # total grows while it runs), and the last report is the whole backup.
    streamed = [p for p in seen if p.kind == "backup"]
    assert streamed and all(p.total is None or p.total >= p.done for p in streamed)
    assert (streamed[-1].done, streamed[-1].total) == (first.bytes, first.bytes)
    assert first.snapshot_id and first.files == sum(
        1 for kind, _mode, _content in snapshot_tree(source).values() if kind == "file")
    assert first_verify.status == "succeeded", first_verify.log
    assert first_verify.detail["scope"] == "sample"
    assert 0 < first_verify.detail["files_restored"] < first_verify.detail["files_in_snapshot"]
    assert first_prune.status == "succeeded" and first_prune.files == 0
    assert [s["short_id"] for s in restic_snapshots(repo, password_file)] == [first.snapshot_id]
    snapshot = restic_snapshots(repo, password_file)[0]
    assert snapshot["hostname"] == HOST and "itop-job=restic-tree" in snapshot["tags"]

    original = snapshot_tree(source)
    (source / "text.txt").write_text("changed after the first backup\n")
    second, _verify, second_prune = asyncio.run(runner.run_job("restic-tree"))
    assert second.status == "succeeded", second.log
    # keep_last 1: the first snapshot is forgotten and pruned.
    assert second_prune.status == "succeeded", second_prune.log
    assert [s["short_id"] for s in restic_snapshots(repo, password_file)] == [second.snapshot_id]
    pruned = runner.repo.get_run(first.id)
    assert pruned is not None and pruned.detail["pruned_by"] == second_prune.id
    removed = second_prune.detail["removed"]
    assert [(r["snapshot_id"], r["run"]) for r in removed] == [(first.snapshot_id, first.id)]

    # A full verification reads all data and restores every file.
    runner.repo.update_job("restic-tree", verify=VerifyPolicy(when="after-backup", scope="full"))
    (full,) = asyncio.run(runner.verify("restic-tree", second.id))
    assert full.status == "succeeded", full.log
    assert full.detail["files_restored"] == full.detail["files_in_snapshot"] == second.files

    # Restore into a new directory: every file's content and mode as backed up.
    files = asyncio.run(runner.list_files("restic-tree", second.id))
    assert any(e.path.endswith("/ünïcödé ✓ dir") and e.type == "dir" for e in files)
    target = tmp_path / "restored"
    dry = asyncio.run(runner.restore("restic-tree", second.id, to=str(target), dry_run=True))
    assert not target.exists() and dry.entries
    restored = asyncio.run(runner.restore("restic-tree", second.id, to=str(target)))
    assert restored.run is not None and restored.run.status == "succeeded", restored.run.log
    layout = target / str(source).lstrip("/")  # restic keeps absolute paths whole
    expected = snapshot_tree(source)  # as at the second backup
    assert expected != original
    assert snapshot_tree(layout) == expected

    # In place: damaged, retargeted, deleted and re-moded entries come back.
    (source / "text.txt").write_text("damaged\n")
    (source / "relative-link").unlink()
    os.symlink("elsewhere", source / "relative-link")
    (source / "empty").unlink()
    (source / "secret").chmod(0o644)
    in_place = asyncio.run(runner.restore("restic-tree", second.id, in_place=True, confirmed=True))
    assert in_place.run is not None and in_place.run.status == "succeeded", in_place.run.log
    assert snapshot_tree(source) == expected

    # The password itself is nowhere in itop's files.
    data_dir = Path(services.settings.data_dir)
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    assert any(e.action == "backup.prune" for e in services.audit.events())
    os.remove(password_file)
