"""BackupRepository on a real backups.json (JsonStore) in a temp dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from itop_tui.domain.backup import BackupJob, BackupRun, Retention
from itop_tui.domain.models import ValidationError
from itop_tui.services.backup_repo import (
    BACKUPS_FILE,
    BackupRecordError,
    BackupRepository,
    parse_job_id,
    parse_run_id,
)


def job(name: str, **fields: Any) -> BackupJob:
    values: dict[str, Any] = {"hosts": "all", "sources": ["/etc"], **fields}
    return BackupJob(name=name, **values)


@pytest.fixture
def repo(tmp_path: Path) -> BackupRepository:
    return BackupRepository.in_data_dir(tmp_path)


def test_jobs_get_ids_that_are_never_reused(repo: BackupRepository, tmp_path: Path) -> None:
    a = repo.add_job(job("a"), now="2024-05-01T00:00:00Z")
    b = repo.add_job(job("b"))
    assert (a.id, b.id, a.created) == ("BKJ-1", "BKJ-2", "2024-05-01T00:00:00Z")
    assert repo.remove_job("b") is not None
    assert repo.add_job(job("c")).id == "BKJ-3"
    with pytest.raises(BackupRecordError, match="exists already"):
        repo.add_job(job("a"))
    with pytest.raises(ValidationError):
        repo.add_job(job("bad", sources=["relative"]))
    assert [j.name for j in BackupRepository.in_data_dir(tmp_path).jobs()] == ["a", "c"]
    assert repo.get_job("BKJ-1") == repo.get_job("a") == a
    stored = json.loads((tmp_path / BACKUPS_FILE).read_text())
    assert stored["jobs"]["1"]["name"] == "a"


def test_update_job_validates_and_keeps_the_rest(repo: BackupRepository) -> None:
    repo.add_job(job("a"))
    changed = repo.update_job("a", retention=Retention(keep_last=2), paused=True)
    assert changed.retention.keep_last == 2 and changed.paused and changed.id == "BKJ-1"
    with pytest.raises(ValidationError):
        repo.update_job("a", schedule="not cron")
    with pytest.raises(ValidationError):
        repo.update_job("a", id="BKJ-9")
    with pytest.raises(BackupRecordError):
        repo.update_job("missing", paused=True)
    assert repo.get_job("a") == changed


def test_sync_config_adds_updates_removes_and_keeps_bookkeeping(repo: BackupRepository) -> None:
    first = repo.sync_config([job("etc"), job("db")], now="2024-05-01T00:00:00Z")
    assert (first.added, first.updated, first.removed) == (("etc", "db"), (), ())
    repo.update_job("etc", paused=True, last_due="2024-05-02T02:00:00Z")
    manual = repo.add_job(job("manual"))
    assert not repo.sync_config([job("etc"), job("db")]).changed  # nothing to write

    second = repo.sync_config([job("etc", schedule="0 3 * * *")])
    assert (second.added, second.updated, second.removed) == ((), ("etc",), ("db",))
    etc = repo.get_job("etc")
    assert etc is not None and etc.schedule == "0 3 * * *"
    assert (etc.id, etc.paused, etc.last_due, etc.created) == (
        "BKJ-1", True, "2024-05-02T02:00:00Z", "2024-05-01T00:00:00Z")
    assert repo.get_job("manual") == manual  # manual jobs are not the config's to remove

    # A config job named like a manual one takes it over (same id).
    third = repo.sync_config([job("etc", schedule="0 3 * * *"), job("manual", excludes=["*.tmp"])])
    assert third.updated == ("manual",)
    taken = repo.get_job("manual")
    assert taken is not None and taken.origin == "config" and taken.id == manual.id


def test_runs_start_finish_and_interrupted(repo: BackupRepository) -> None:
    start = "2024-05-01T02:00:00Z"
    one = repo.start_run(BackupRun(id="", job="etc", host="web01", kind="backup", start=start))
    two = repo.start_run(BackupRun(id="", job="etc", host="web02", kind="backup", start=start))
    assert (one.id, two.id) == ("BKR-1", "BKR-2")
    one.status, one.end, one.bytes = "succeeded", "2024-05-01T02:01:00Z", 10
    repo.finish_run(one)
    assert repo.get_run("1") == one and repo.get_run("BKR-1") == one
    assert repo.get_run("BKR-99") is None
    assert [r.id for r in repo.runs(job="etc", host="web01")] == ["BKR-1"]
    interrupted = repo.mark_interrupted("etc", at="2024-05-01T03:00:00Z")
    assert [r.id for r in interrupted] == ["BKR-2"]
    stored = repo.get_run("BKR-2")
    assert stored is not None and stored.status == "failed" and "interrupted" in stored.log
    assert repo.last_good_backups() == {"web01": one}
    with pytest.raises(BackupRecordError):
        repo.finish_run(BackupRun(id="BKR-7", job="etc", host="h", kind="backup", start=start))


def test_id_parsing() -> None:
    assert parse_run_id(" bkr-7 ") == "BKR-7" and parse_run_id("12") == "BKR-12"
    assert parse_job_id("BKJ-003") == "BKJ-3"
    for bad in ("BKR-", "BKR-0", "RUN-3", "x", "-1"):
        with pytest.raises(BackupRecordError, match="not a run id"):
            parse_run_id(bad)
