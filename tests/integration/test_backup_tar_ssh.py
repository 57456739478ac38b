"""The tar backup method against the real sshd: round trip, faults, scheduling, RPO.

Every backup here streams ``tar`` from the test sshd (the "host" is this
machine reached over SSH as ``testhost``) into a destination directory in
the test's temp dir, through the real :class:`BackupRunner`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from backup_trees import make_tree, sha256, snapshot_tree

from itop_tui.domain.backup import BackupJob, Retention, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import BackupError, BackupRunner, Progress
from itop_tui.services.backup_methods import manifest_path
from itop_tui.services.context import Services
from itop_tui.services.problem_repo import ProblemRepository

pytestmark = pytest.mark.integration

HOST = "testhost"  # an alias in the harness's ssh config


# -- helpers -------------------------------------------------------------------------


def kill_session_running(sshd: Any, text: str) -> list[int]:
    """SIGKILL the sshd session processes above the command containing ``text``.

    The connection drops as when the host dies; only the session serving
    that command is touched.
    """
    def parent(pid: int) -> int:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])

    killed: list[int] = []
    for pid in sshd.session_processes():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text not in command or "sshd" in command:
            continue
        above = parent(pid)
        while above not in (sshd.pid, 0, 1):
            os.kill(above, signal.SIGKILL)
            killed.append(above)
            above = parent(above)
        break
    return killed


@pytest.fixture
def services(trusted_settings: Any) -> Iterator[Services]:
    services = Services.open(trusted_settings)
    services.inventory.upsert_hosts([Host(name=HOST)])
    yield services


def add_job(runner: BackupRunner, name: str, sources: list[str], **fields: Any) -> BackupJob:
    fields.setdefault("verify", VerifyPolicy(when="never"))
    return runner.add_job(BackupJob(name=name, hosts=HOST, sources=sources, **fields))


def final_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) \
        if directory.exists() else []


def all_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# -- round trip ------------------------------------------------------------------------


def test_backup_verify_and_restore_round_trip(services: Services, tmp_path: Path) -> None:
    source = tmp_path / "source tree"
    source.mkdir()
    make_tree(source)
    runner = BackupRunner(services)
    add_job(runner, "tree", [str(source)], verify=VerifyPolicy(when="after-backup"))
    seen: list[Progress] = []

    runs = asyncio.run(runner.run_job("tree", on_progress=seen.append))

    backup, verify = runs
    assert (backup.kind, backup.status) == ("backup", "succeeded"), backup.log
    assert (verify.kind, verify.status, verify.of_run) == ("verify", "succeeded", backup.id), \
        verify.log
    assert seen and seen[-1].done > 0 and seen[-1].host == HOST
    archive = Path(backup.archive or "")
    assert archive.parent == services.settings.backup_root / "tree" / HOST
    assert archive.name.endswith(f"-{backup.id}.tar.gz")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert sha256(archive) == backup.sha256 == json.loads(
        manifest_path(archive).read_text())["sha256"]
    assert [p for p in all_files(archive.parent) if p.startswith(".")] == []

    # The manifest's per-file checksums are those of the source files.
    manifest = json.loads(manifest_path(archive).read_text())
    assert manifest["host"] == HOST and manifest["job"] == "tree" and manifest["run"] == backup.id
    prefix = str(source).lstrip("/") + "/"
    listed = {e["path"][len(prefix):]: e for e in manifest["files"] if e["path"].startswith(prefix)}
    original = snapshot_tree(source)
    for relative, (kind, mode, content) in original.items():
        entry = listed[relative]
        if kind == "file" and entry["type"] == "file":
            assert entry["sha256"] == content and entry["mode"] == mode, relative
        if kind == "symlink":
            assert entry["link"] == content
    assert manifest["file_count"] == backup.files == sum(
        1 for e in manifest["files"] if e["type"] == "file")

    # A dry run lists targets and writes nothing.
    target = tmp_path / "restored here"
    dry = asyncio.run(runner.restore("tree", backup.id, to=str(target), dry_run=True))
    assert not target.exists() and dry.run is None
    assert str(target / prefix / "text.txt") in {e.target for e in dry.entries}

    restored = asyncio.run(runner.restore("tree", backup.id, to=str(target)))
    assert restored.run is not None and restored.run.status == "succeeded", restored.run.log
    assert snapshot_tree(target / prefix.rstrip("/")) == original
    assert (target / prefix / "hard-link").stat().st_ino == (target / prefix / "text.txt").stat().st_ino

    # A directory that is not empty is never restored into: refused, nothing recorded.
    runs_before = len(runner.history("tree"))
    with pytest.raises(BackupError, match="exists and is not empty"):
        asyncio.run(runner.restore("tree", backup.id, to=str(target)))
    assert len(runner.history("tree")) == runs_before

    # In place needs a confirmation.
    with pytest.raises(BackupError, match="confirm"):
        asyncio.run(runner.restore("tree", backup.id, in_place=True))

    # A damaged archive fails its verification.
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    damaged = asyncio.run(runner.verify("tree", backup.id))
    assert damaged[0].status == "failed" and "damaged" in damaged[0].log
    events = [e.action for e in services.audit.events()]
    assert {"backup.backup", "backup.verify", "backup.restore"} <= set(events)


def test_restore_in_place_puts_files_back(services: Services, tmp_path: Path) -> None:
    source = tmp_path / "live"
    source.mkdir()
    (source / "config").write_text("good\n")
    os.chmod(source / "config", 0o640)
    runner = BackupRunner(services)
    add_job(runner, "live", [str(source)])
    (backup,) = asyncio.run(runner.run_job("live"))
    assert backup.status == "succeeded", backup.log
    (source / "config").write_text("broken by a bad change\n")
    os.chmod(source / "config", 0o666)

    result = asyncio.run(runner.restore("live", backup.id, in_place=True, confirmed=True))

    assert result.run is not None and result.run.status == "succeeded", result.run.log
    assert (source / "config").read_text() == "good\n"
    assert stat.S_IMODE((source / "config").stat().st_mode) == 0o640


# -- faults ----------------------------------------------------------------------------


def test_killed_connection_counts_no_backup_and_leaves_no_archive(
    services: Services, sshd: Any, tmp_path: Path
) -> None:
    source = tmp_path / "big"
    source.mkdir()
    for i in range(6):  # incompressible, so the stream lasts
        (source / f"random-{i}").write_bytes(os.urandom(8 * 1024 * 1024))
    runner = BackupRunner(services)
    add_job(runner, "big", [str(source)], compression="none")
    killed: list[int] = []
    calls: list[int] = []

    def kill_sessions(progress: Progress) -> None:
        calls.append(progress.done)
        if not killed and progress.done > 0:
            killed.extend(kill_session_running(sshd, "tar -c -f -"))

    runs = asyncio.run(runner.run_job("big", on_progress=kill_sessions))

    assert killed, f"no sshd session process to kill (progress calls: {calls})"
    (run,) = runs
    assert run.status == "failed"
    assert "connection lost" in run.log or "tar on the host" in run.log
    assert run.archive is None and run.sha256 is None
    directory = services.settings.backup_root / "big" / HOST
    assert final_files(directory) == []
    assert all_files(directory) == []  # not even the .partial file
    row = next(r for r in runner.status() if r.job == "big")
    assert row.last_success is None and row.last_run is not None and row.state == "failed"
    # The pool reconnects: the next backup works.
    (retry,) = asyncio.run(runner.run_job("big"))
    assert retry.status == "succeeded", retry.log


def test_failed_tar_and_cancel_leave_nothing_under_a_final_name(
    services: Services, tmp_path: Path
) -> None:
    runner = BackupRunner(services)
    add_job(runner, "missing", [str(tmp_path / "no such dir")])
    (failed,) = asyncio.run(runner.run_job("missing"))
    assert failed.status == "failed"
    assert "exited with status 2" in failed.log and "Cannot stat" in failed.log
    assert all_files(services.settings.backup_root / "missing" / HOST) == []

    source = tmp_path / "cancel me"
    source.mkdir()
    (source / "data").write_bytes(os.urandom(24 * 1024 * 1024))
    add_job(runner, "cancelled", [str(source)], compression="none")

    async def run_and_cancel() -> list[Any]:
        cancel = asyncio.Event()

        def on_progress(progress: Progress) -> None:
            cancel.set()

        return await runner.run_job("cancelled", on_progress=on_progress, cancel=cancel)

    (cancelled,) = asyncio.run(run_and_cancel())
    assert cancelled.status == "cancelled"
    assert all_files(services.settings.backup_root / "cancelled" / HOST) == []


# -- retention on real archives ------------------------------------------------------------


def test_prune_keeps_what_the_policy_keeps_and_dry_run_deletes_nothing(
    services: Services, tmp_path: Path
) -> None:
    source = tmp_path / "small"
    source.mkdir()
    (source / "f").write_text("x")
    runner = BackupRunner(services)
    add_job(runner, "small", [str(source)])
    backups = [asyncio.run(runner.run_job("small"))[0] for _ in range(3)]
    assert [b.status for b in backups] == ["succeeded"] * 3
    runner.repo.update_job("small", retention=Retention(keep_last=2))

    (dry,) = asyncio.run(runner.prune("small", dry_run=True))
    assert [i.run_id for i in dry.outcome.remove] == [backups[0].id]
    assert [i.run_id for i in dry.outcome.keep] == [backups[2].id, backups[1].id]
    assert Path(backups[0].archive or "").exists()

    (real,) = asyncio.run(runner.prune("small"))
    assert real.run is not None and real.run.status == "succeeded"
    assert not Path(backups[0].archive or "").exists()
    assert not manifest_path(Path(backups[0].archive or "")).exists()
    assert all(Path(b.archive or "").exists() for b in backups[1:])
    pruned = runner.repo.get_run(backups[0].id)
    assert pruned is not None and pruned.detail["pruned_by"] == real.run.id
    with pytest.raises(BackupError, match=f"{backups[0].id} was pruned by {real.run.id}"):
        asyncio.run(runner.list_files("small", backups[0].id))
    # Pruning again removes nothing more.
    (again,) = asyncio.run(runner.prune("small"))
    assert again.outcome.remove == []


# -- scheduling --------------------------------------------------------------------------


LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_run_due_skips_a_job_whose_lock_another_process_holds(
    services: Services, tmp_path: Path
) -> None:
    source = tmp_path / "scheduled"
    source.mkdir()
    (source / "f").write_text("x")
    runner = BackupRunner(services)
    job = add_job(runner, "every-minute", [str(source)], schedule="* * * * *")
    later = runner.clock() + timedelta(minutes=10)
    lock = runner.lock_for(job).path
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        (skipped,) = asyncio.run(runner.run_due(now=later))
        assert skipped.skipped is not None and "another itop" in skipped.skipped
        assert skipped.runs == [] and runner.repo.runs(job="every-minute") == []
    finally:
        holder.kill()
        holder.wait()

    # Lock free: the ten missed minutes are caught up by one run, then nothing is due.
    (ran,) = asyncio.run(runner.run_due(now=later))
    assert ran.skipped is None and ran.missed >= 9
    assert [r.status for r in ran.runs] == ["succeeded"]
    assert asyncio.run(runner.run_due(now=later)) == []
    assert len(runner.repo.runs(job="every-minute", kind="backup")) == 1
    audit = [e for e in services.audit.events() if e.action == "backup.due.backup"]
    assert [e.result for e in audit] == ["skipped", "ok"]
    assert {e.origin for e in audit} == {"scheduler"}


def test_rpo_breach_opens_a_problem_and_the_next_success_resolves_it(
    services: Services, tmp_path: Path
) -> None:
    source = tmp_path / "rpo"
    source.mkdir()
    (source / "f").write_text("x")
    runner = BackupRunner(services)
    add_job(runner, "rpo", [str(source)], rpo_hours=1)
    problems = ProblemRepository.in_data_dir(services.settings.data_dir)
    (first,) = asyncio.run(runner.run_job("rpo"))
    assert first.status == "succeeded"
    assert runner.check_rpo() == [] and problems.find_open(HOST, "backup:rpo") is None

    two_hours_later = runner.clock() + timedelta(hours=2)
    (opened,) = runner.check_rpo(now=two_hours_later)
    assert (opened.event, opened.host) == ("opened", HOST)
    problem = problems.find_open(HOST, "backup:rpo")
    assert problem is not None and problem.id == opened.problem_id
    assert problem.limit == 1 and problem.value is not None and problem.value >= 2
    assert next(r for r in runner.status(two_hours_later) if r.job == "rpo").state == "breached"
    assert runner.check_rpo(now=two_hours_later) == []  # idempotent: one problem

    (second,) = asyncio.run(runner.run_job("rpo"))
    assert second.status == "succeeded"
    assert problems.find_open(HOST, "backup:rpo") is None
    resolved = problems.get(opened.problem_id)
    assert resolved is not None and resolved.resolved is not None
    actions = [e.action for e in services.audit.events()]
    assert actions.index("backup.rpo.breach") < actions.index("backup.rpo.resolved")
