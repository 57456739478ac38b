"""tar backups kept on a backup host (``ssh://testhost2/DIR``), against the real sshd.

The source host is ``testhost`` and the backup host ``testhost2``: two
aliases of the harness's sshd (127.0.0.1 and 127.0.0.2), so both see this
machine's file system and the test can look at what landed "on the backup
host". Everything goes through the real :class:`BackupRunner`: the archive
streams from tar on testhost, through itop, into ``dd`` on testhost2.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backup_trees import make_tree, sha256, snapshot_tree

from itop_tui.domain.backup import BackupJob, Retention, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupRunner, Progress
from itop_tui.services.context import Services

pytestmark = pytest.mark.integration

SOURCE = "testhost"
BACKUP_HOST = "testhost2"


@pytest.fixture
def services(trusted_settings: Any) -> Iterator[Services]:
    services = Services.open(trusted_settings)
    services.inventory.upsert_hosts([Host(name=SOURCE), Host(name=BACKUP_HOST)])
    yield services


def add_job(runner: BackupRunner, name: str, sources: list[str], store: Path,
            **fields: Any) -> BackupJob:
    fields.setdefault("verify", VerifyPolicy(when="never"))
    return runner.add_job(BackupJob(name=name, hosts=SOURCE, sources=sources,
                                    destination=f"ssh://{BACKUP_HOST}{store}", **fields))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_backup_to_a_backup_host_verify_restore_prune(services: Services, tmp_path: Path) -> None:
    source = tmp_path / "source tree"
    source.mkdir()
    make_tree(source)
    store = tmp_path / "on the backup host"
    runner = BackupRunner(services)
    add_job(runner, "remote", [str(source)], store, verify=VerifyPolicy(when="after-backup"),
            retention=Retention(keep_last=1))
    seen: list[Progress] = []

    first = asyncio.run(runner.run_job("remote", on_progress=seen.append))

    backup, verify, prune = first
    assert (prune.kind, prune.status, prune.files) == ("prune", "succeeded", 0), prune.log
    assert (backup.kind, backup.status) == ("backup", "succeeded"), backup.log
    assert (verify.kind, verify.status) == ("verify", "succeeded"), verify.log
    streamed = [p for p in seen if p.kind == "backup"]
    assert streamed and streamed[-1].done > 0
    directory = store / SOURCE
    assert backup.archive == f"ssh://{BACKUP_HOST}{directory}/{Path(backup.archive or '').name}"
    archive = directory / Path(backup.archive or "").name
    manifest_file = directory / archive.name.replace(".tar.gz", ".manifest.json")
    assert names(directory) == sorted([archive.name, manifest_file.name])  # no partials left
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert sha256(archive) == backup.sha256
    manifest = json.loads(manifest_file.read_text())
    assert (manifest["host"], manifest["run"], manifest["sha256"]) == (SOURCE, backup.id,
                                                                      backup.sha256)
    # Nothing of the archive stays on this machine.
    local = services.settings.backup_root
    assert [p for p in local.rglob("*") if p.is_file()] == []

    # The file list and a restore read from the backup host.
    files = asyncio.run(runner.list_files("remote", backup.id))
    prefix = str(source).lstrip("/")
    assert f"{prefix}/text.txt" in {f.path for f in files}
    target = tmp_path / "restored"
    restored = asyncio.run(runner.restore("remote", backup.id, to=str(target)))
    assert restored.run is not None and restored.run.status == "succeeded", restored.run.log
    assert snapshot_tree(target / prefix) == snapshot_tree(source)

    # A damaged copy on the backup host fails verification.
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    (damaged,) = asyncio.run(runner.verify("remote", backup.id))
    assert damaged.status == "failed" and "damaged" in damaged.log

    # A second backup: retention (keep_last 1) deletes the first on the backup host.
    second = asyncio.run(runner.run_job("remote"))
    kinds = [(r.kind, r.status) for r in second]
    assert kinds == [("backup", "succeeded"), ("verify", "succeeded"), ("prune", "succeeded")], \
        [r.log for r in second]
    assert not archive.exists() and not manifest_file.exists()
    newest = Path(second[0].archive or "").name
    assert names(directory) == sorted([newest, newest.replace(".tar.gz", ".manifest.json")])
    assert runner.repo.get_run(backup.id).detail["pruned_by"] == second[2].id  # type: ignore[union-attr]


def test_failed_write_on_the_backup_host_counts_no_backup(services: Services,
                                                          tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "file").write_text("data\n")
    blocked = tmp_path / "not a directory"
    blocked.write_text("a file where the backup directory should be\n")
    runner = BackupRunner(services)
    add_job(runner, "blocked", [str(source)], blocked)

    (run,) = asyncio.run(runner.run_job("blocked"))

    assert run.status == "failed" and run.archive is None, run.log
    assert blocked.read_text().startswith("a file")

    # tar failing on the source host (a missing source) leaves nothing on the backup host.
    store = tmp_path / "store"
    add_job(runner, "missing", [str(tmp_path / "no such dir")], store)
    (missing,) = asyncio.run(runner.run_job("missing"))
    assert missing.status == "failed" and "tar on the host" in missing.log, missing.log
    assert names(store / SOURCE) == []


def test_killed_backup_host_connection_leaves_no_archive(services: Services, sshd: Any,
                                                         tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.mkdir()
    for i in range(4):  # incompressible, so the stream lasts
        (source / f"random-{i}").write_bytes(os.urandom(8 * 1024 * 1024))
    store = tmp_path / "store"
    runner = BackupRunner(services)
    add_job(runner, "big", [str(source)], store, compression="none")
    killed: list[int] = []

    def kill_writer(progress: Progress) -> None:
        if not killed and progress.done > 0:
            # The dd writing on the backup host: its SSH session dies, as when that host does.
            for pid in sshd.session_processes_running("dd of="):
                killed.extend(sshd.kill_session_of(pid))
                break

    (run,) = asyncio.run(runner.run_job("big", on_progress=kill_writer))

    assert killed, f"no sshd session running dd to kill: {run.status} {run.log}"
    assert run.status == "failed" and run.archive is None, run.log
    final = [n for n in names(store / SOURCE) if not n.startswith(".")]
    assert final == []
    assert runner.status()[0].last_success is None
