"""Which hosts a job's status and RPO cover, against the real sshd.

A restore onto another host (``to_host``) records a restore run there; that
must not make the host one of the job's (no status row, no RPO problem), and
an RPO problem such a row left behind (an older itop counted it) is resolved
by the next RPO check. A job whose selector matches no host is still listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from backup_trees import make_tree

from itop_tui.domain.backup import BackupJob, VerifyPolicy
from itop_tui.domain.models import Host
from itop_tui.ops.backup_runner import NO_HOSTS, BackupRunner
from itop_tui.services.context import Services

pytestmark = pytest.mark.integration


@pytest.fixture
def services(trusted_settings: Any) -> Iterator[Services]:
    services = Services.open(trusted_settings)
    services.inventory.upsert_hosts([Host(name="testhost"), Host(name="testhost2")])
    yield services


def test_restore_onto_another_host_adds_no_status_row_or_rpo_problem(
        services: Services, tmp_path: Path) -> None:
    source = tmp_path / "site"
    source.mkdir()
    make_tree(source, seed=11)
    runner = BackupRunner(services)
    runner.add_job(BackupJob(name="site", hosts="testhost", sources=[str(source)],
                             destination=str(tmp_path / "store"), rpo_hours=1,
                             verify=VerifyPolicy(when="never")))
    (backup,) = asyncio.run(runner.run_job("site"))
    assert backup.status == "succeeded", backup.log
    restored = asyncio.run(runner.restore("site", backup.id, to=str(tmp_path / "elsewhere"),
                                          to_host="testhost2"))
    assert restored.run is not None and restored.run.status == "succeeded", restored.run
    assert restored.run.host == "testhost2"

    # A phantom problem as an older itop opened it for the restore target.
    runner.problems.open("testhost2", "backup:site", "critical", datetime.now(UTC).timestamp())

    assert [(r.job, r.host) for r in runner.status()] == [("site", "testhost")]
    later = datetime.now(UTC) + timedelta(hours=2)  # past the RPO of testhost's backup
    changes = runner.check_rpo(later)
    assert sorted((c.host, c.event) for c in changes) == [("testhost", "opened"),
                                                          ("testhost2", "resolved")]
    open_problems = [(p.host, p.metric) for p in runner.problems.open_problems()]
    assert open_problems == [("testhost", "backup:site")]
    # Still only testhost, and the host of the restore cannot be backed up by the job.
    assert [r.host for r in runner.status(later)] == ["testhost"]
    with pytest.raises(Exception, match="it backs up only testhost"):
        asyncio.run(runner.run_job("site", "testhost2"))


def test_a_job_matching_no_host_is_listed_with_a_row_saying_so(services: Services,
                                                                 tmp_path: Path) -> None:
    runner = BackupRunner(services)
    assert runner.check_job_hosts(BackupJob(name="x", hosts="nohost", sources=["/etc"])) \
        == ["the hosts selector 'nohost' matches no host in the inventory (yet): "
            "job 'x' runs nowhere until it does"]
    runner.add_job(BackupJob(name="nowhere", hosts="nohost", sources=["/etc"], rpo_hours=1))
    (row,) = runner.status(datetime.now(UTC) + timedelta(days=3))
    assert (row.job, row.host, row.state, row.rpo_state) == ("nowhere", "", NO_HOSTS, "none")
    assert row.to_dict()["host"] is None
    assert runner.check_rpo(datetime.now(UTC) + timedelta(days=3)) == []  # no host, no problem


def test_rpo_problem_of_a_host_never_backed_up_has_its_age(services: Services) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    runner = BackupRunner(services, clock=lambda: created)
    runner.add_job(BackupJob(name="fresh", hosts="testhost", sources=["/etc"], rpo_hours=1))
    (change,) = runner.check_rpo(created + timedelta(hours=2, minutes=30))
    assert (change.host, change.event) == ("testhost", "opened")
    (problem,) = runner.problems.open_problems()
    assert (problem.value, problem.limit) == (2.5, 1.0)
