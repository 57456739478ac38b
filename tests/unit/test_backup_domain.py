"""Backup jobs and runs: validation naming the field, stored forms, RPO state;
the ``backups`` config section with file, line and field in its errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from itop_tui.domain.backup import (
    BackupJob,
    BackupRun,
    Retention,
    VerifyPolicy,
    effective_status,
    rpo_state,
)
from itop_tui.domain.models import ValidationError
from itop_tui.settings import ConfigError, load_settings


def job(**fields: Any) -> BackupJob:
    values: dict[str, Any] = {"name": "etc", "hosts": "web*", "sources": ["/etc"]}
    values.update(fields)
    return BackupJob(**values)


def test_a_minimal_job_is_valid_with_the_documented_defaults() -> None:
    j = job()
    j.validate()
    assert (j.method, j.compression, j.destination, j.schedule) == ("tar", "gzip", "", None)
    assert j.retention.is_empty and j.verify.when == "after-backup" and j.verify.scope == "full"
    assert j.active and j.problem_source == "backup:etc"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "two words"}, "name", "letters, digits"),
        ({"name": "../x"}, "name", "letters, digits"),
        ({"name": ""}, "name", "letters, digits"),
        ({"hosts": " "}, "hosts", "selector"),
        ({"method": "rsync"}, "method", "must be one of tar, restic, command"),
        ({"sources": []}, "sources", "at least one path"),
        ({"sources": ["/etc", "var/log"]}, "sources[1]", "absolute path"),
        ({"sources": ["/srv/../etc"]}, "sources[0]", "'..'"),
        ({"sources": ["/etc\nrm -rf /"]}, "sources[0]", "newline"),
        ({"excludes": [""]}, "excludes[0]", "non-empty pattern"),
        ({"destination": "relative/dir"}, "destination", "absolute directory"),
        ({"compression": "zstd"}, "compression", "gzip, none"),
        ({"schedule": "0 25 * * *"}, "schedule", "hour field '25'"),
        ({"retention": Retention(keep_daily=-1)}, "retention.keep_daily", "0-100000"),
        ({"retention": Retention(keep_last=True)}, "retention.keep_last", "whole number"),
        ({"verify": VerifyPolicy(when="sometimes")}, "verify.when", "after-backup, schedule"),
        ({"verify": VerifyPolicy(scope="half")}, "verify.scope", "full, sample"),
        ({"verify": VerifyPolicy(sample_percent=0)}, "verify.sample_percent", "above 0"),
        ({"verify": VerifyPolicy(when="schedule")}, "verify.schedule", "is needed"),
        ({"verify": VerifyPolicy(schedule="@reboot")}, "verify.schedule", "unknown cron macro"),
        ({"rpo_hours": 0}, "rpo_hours", "above 0"),
        ({"pre_command": "  "}, "pre_command", "non-empty"),
        ({"timeout": -5}, "timeout", "above 0"),
        ({"method": "restic"}, "destination", "repository"),
        ({"method": "restic", "destination": "/srv/r"}, "password_file", "password file"),
        ({"method": "restic", "destination": "/srv/r", "password_file": "pw"},
         "password_file", "absolute path"),
        ({"method": "command"}, "command", "backup command"),
    ],
)
def test_validation_names_the_field(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        job(**fields).validate()
    assert caught.value.field == field
    assert message in caught.value.message


def test_command_jobs_need_no_sources_and_restic_jobs_validate() -> None:
    job(method="command", sources=[], command="pg_dumpall > /var/backups/db.sql").validate()
    job(method="restic", destination="sftp:backup@vault:/srv/restic",
        password_file="/root/.restic-password").validate()


def test_stored_form_round_trips_and_definition_leaves_out_bookkeeping() -> None:
    original = job(retention=Retention(keep_last=3, keep_weekly=2),
                   verify=VerifyPolicy(when="schedule", schedule="0 4 * * 0", scope="sample"),
                   rpo_hours=26.5, excludes=["*.tmp"], id="BKJ-4", paused=True,
                   created="2024-05-01T00:00:00Z", last_due="2024-05-02T02:00:00Z")
    again = BackupJob.from_dict(original.to_dict())
    assert again == original
    assert "id" not in original.definition() and "paused" not in original.definition()
    assert original.definition()["retention"] == {"keep_last": 3, "keep_daily": 0,
                                                  "keep_weekly": 2, "keep_monthly": 0}
    assert not again.active
    assert BackupJob.from_dict({**original.to_dict(), "future_field": 1}) == original


def test_retention_describes_itself_and_its_restic_options() -> None:
    policy = Retention(keep_last=3, keep_monthly=6)
    assert policy.describe() == "keep_last 3, keep_monthly 6"
    assert policy.restic_options() == ["--keep-last", "3", "--keep-monthly", "6"]
    assert Retention().describe() == "keep everything" and Retention().restic_options() == []


def test_run_duration_status_and_stored_form() -> None:
    run = BackupRun(id="BKR-12", job="etc", host="web01", kind="backup",
                    start="2024-05-01T02:00:00Z", end="2024-05-01T02:03:30Z", status="warning",
                    bytes=1024, detail={"entries": 3})
    run.validate()
    assert run.number == 12 and run.duration == 210.0 and run.good
    data = run.to_dict()
    assert data["duration"] == 210.0
    assert BackupRun.from_dict(data) == run
    with pytest.raises(ValidationError) as caught:
        BackupRun(id="BKR-1", job="etc", host="h", kind="copy", start=run.start).validate()
    assert caught.value.field == "kind"
    running = BackupRun(id="BKR-2", job="etc", host="h", kind="backup", start=run.start)
    assert effective_status(running, job_locked=True) == "running"
    assert effective_status(running, job_locked=False) == "interrupted"
    assert effective_status(run, job_locked=False) == "warning"


def test_rpo_state_counts_from_the_last_success_or_the_job_creation() -> None:
    now = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
    with_rpo = job(rpo_hours=24, created="2024-05-01T00:00:00Z")
    assert rpo_state(job(), None, now) == "none"
    assert rpo_state(with_rpo, "2024-05-02T00:00:00Z", now) == "ok"
    assert rpo_state(with_rpo, "2024-05-01T11:59:00Z", now) == "breached"
    # Never backed up: the job had 24 hours from its creation (36 h ago).
    assert rpo_state(with_rpo, None, now) == "breached"
    assert rpo_state(job(rpo_hours=48, created="2024-05-01T00:00:00Z"), None, now) == "ok"


# -- the config file's backups section ------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "itop.yaml"
    path.write_text(text)
    return path


def test_config_jobs_load_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, """\
backups:
  destination_root: archives
  jobs:
    - name: etc
      hosts: "web*"
      sources: [/etc]
      destination: local-etc
      schedule: "0 2 * * *"
      retention: {keep_last: 3, keep_daily: 7}
      verify: {when: after-backup, scope: sample, sample_percent: 20}
      rpo_hours: 26
      pre_command: "pg_dumpall > /var/backups/all.sql"
    - name: db
      hosts: tag:db
      method: restic
      destination: /srv/restic
      password_file: /root/.restic-pw
      sources: [/var/lib/postgresql]
      retention:
""")
    settings = load_settings(path, data_dir=tmp_path / "data")
    assert settings.backup_root == tmp_path / "archives"
    etc, db = settings.backups.jobs
    assert etc.destination == str(tmp_path / "local-etc") and etc.origin == "config"
    assert etc.retention == Retention(keep_last=3, keep_daily=7)
    assert etc.verify == VerifyPolicy(when="after-backup", scope="sample", sample_percent=20)
    assert etc.pre_command == "pg_dumpall > /var/backups/all.sql"
    # A restic destination is the repository as the host sees it: never rewritten.
    assert db.destination == "/srv/restic" and db.retention.is_empty
    assert load_settings(None, data_dir=tmp_path / "d2").backup_root == tmp_path / "d2" / "backups"


def test_a_config_job_keeps_a_backup_host_destination_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, """\
backups:
  jobs:
    - name: etc
      hosts: all
      sources: [/etc]
      destination: ssh://vault/srv/backups/etc
""")
    [job] = load_settings(path, data_dir=tmp_path / "data").backups.jobs
    assert job.destination == "ssh://vault/srv/backups/etc"


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        ("  jobs:\n    - name: a\n      hosts: x\n      sources: [/a, b]\n",
         6, "backups.jobs[0].sources[1]", "must be an absolute path"),
        ("  jobs:\n    - name: a\n      hosts: x\n      sources: [/a]\n"
         "      retention:\n        keep_daily: -1\n",
         8, "backups.jobs[0].retention.keep_daily", "between 0 and 100000"),
        ("  jobs:\n    - name: a\n      hosts: x\n      sources: [/a]\n      schedule: 61 * * * *\n",
         7, "backups.jobs[0].schedule", "minute field '61'"),
        ("  jobs:\n    - name: a\n      hosts: x\n      sources: [/a]\n      method: borg\n",
         7, "backups.jobs[0].method", "must be one of tar, restic, command"),
        ("  jobs:\n    - name: a\n      sources: [/a]\n",
         4, "backups.jobs[0].hosts", "is required"),
        ("  jobs:\n    - name: a\n      hosts: x\n      sources: [/a]\n      keep_last: 3\n",
         7, "backups.jobs[0].keep_last", "unknown key"),
        ("  jobs:\n    - {name: a, hosts: x, sources: [/a]}\n    - {name: a, hosts: y, sources: [/b]}\n",
         5, "backups.jobs[1].name", "duplicate job name 'a'"),
        ("  jobs:\n    - name: a\n      hosts: x\n      method: restic\n      sources: [/a]\n"
         "      destination: /r\n",
         4, "backups.jobs[0].password_file", "password file"),
        ("  jobs: nope\n", 3, "backups.jobs", "expected a list of jobs"),
    ],
)
def test_config_errors_name_file_line_and_field(
    tmp_path: Path, body: str, line: int, field: str, message: str
) -> None:
    path = write(tmp_path, "# backups\nbackups:\n" + body)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, data_dir=tmp_path / "data")
    assert (caught.value.path, caught.value.line, caught.value.field) == (path, line, field)
    assert message in caught.value.message



def test_the_example_config_documents_valid_jobs(tmp_path: Path) -> None:
    # The commented jobs under `jobs: []` in config/itop.example.yaml are an
    # example a person uncomments: they must load as they are.
    example = Path(__file__).resolve().parents[2] / "config" / "itop.example.yaml"
    lines = example.read_text().splitlines()
    start = lines.index("backups:")
    block: list[str] = []
    for text in lines[start:]:
        if text.startswith("  #  "):
            block.append("  " + text[3:])
        elif text == "  jobs: []":
            block.append("  jobs:")
        elif text.startswith(("backups:", "  ")) and not text.startswith("  #"):
            block.append(text)
        elif not text.startswith("  #"):
            break
    settings = load_settings(write(tmp_path, "\n".join(block) + "\n"), data_dir=tmp_path)
    assert [j.name for j in settings.backups.jobs] == ["etc", "db"]
    assert settings.backups.jobs[1].verify.schedule == "0 5 * * 0"
    assert settings.backup_root == tmp_path / "backups"
