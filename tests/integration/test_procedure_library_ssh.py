"""Every built-in procedure imports and runs against the test sshd.

Procedures that would change the machine run in check mode: their read-only
steps really run over SSH, the others are recorded with the exact command
that would have run. Read-only procedures run for real. Outcomes that
depend on this machine (systemd present, time synchronised, disks below a
threshold) may fail, but only in a check or a read-only command that says
why, never with "command not found", a lost connection or a runner error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from itop_tui.bundled import procedures_dir
from itop_tui.domain.models import Host
from itop_tui.domain.procedure import Step, Variable
from itop_tui.domain.procedure_loader import load_procedure
from itop_tui.ops.procedure_report import run_report
from itop_tui.ops.procedure_runner import CHECK_MODE_MANUAL, ProcedureRunner, RunCallbacks
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import ProcedureRepository
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

LIBRARY = sorted(procedures_dir().glob("*.yaml"))
SAMPLE_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN3iNUwuNdd9k1khVOgxD4Gln2Bqbx9jpwBeQ5ldHWTa itop-test"
)


def test_the_cli_imports_the_whole_builtin_library(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITOP_")}
    config = tmp_path / "itop.yaml"
    config.write_text("{}\n")

    def itop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "itop_tui", "--config", str(config), "--data-dir",
             str(tmp_path / "data"), "procedure", *args],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    done = itop("import", "--builtin", "--json")
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert sorted(e["id"] for e in imported) == sorted(p.stem for p in LIBRARY)
    assert {e["outcome"] for e in imported} == {"added"}
    stored = ProcedureRepository.in_data_dir(tmp_path / "data").all()
    assert [p.id for p in stored] == sorted(p.stem for p in LIBRARY)
    assert all(p.source.startswith("builtin:") and p.imported_by for p in stored)
    for entry, path in zip(sorted(imported, key=lambda e: e["id"]), LIBRARY, strict=True):
        assert entry["hash"] == load_procedure(path.read_text(encoding="utf-8"), "x").content_hash()


def _certificate(directory: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: install it to test cert-expiry-check")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "90", "-subj", "/CN=itop-test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert


def _setup(name: str, tmp_path: Path, sshd: Any) -> tuple[dict[str, str], bool, bool]:
    """(variables, check mode?, must succeed here?) for library procedure ``name``."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    root = os.geteuid() == 0
    if name == "add-user-ssh-key":
        return {"user": "itoptestnobody", "ssh_key": SAMPLE_KEY, "full_name": "Test User"}, True, root
    if name == "cert-expiry-check":
        return {"certificate": str(_certificate(work)), "days": "30"}, False, True
    if name == "decommission-checklist":
        (work / "backup.log").write_text("backup done\n")
        return {"ticket": "CHG-1", "backup_path": str(work), "max_backup_age_hours": "2"}, True, True
    if name == "disk-space-triage":
        (work / "data").mkdir(exist_ok=True)
        (work / "data" / "file").write_bytes(b"x" * 100_000)
        # The last check fails when some disk of this machine is above the threshold.
        return {"path": str(work), "depth": "2", "du_seconds": "20", "threshold": "99"}, False, False
    if name == "port-listening-check":
        return {"port": str(sshd.port)}, False, True
    if name == "restart-service":
        return {"service": "ssh"}, True, False
    if name == "rotate-log":
        log = work / "app.log"
        log.write_text("line\n" * 1000)
        return {"path": str(log), "keep": "3"}, True, True
    read_only = {"high-load-triage", "new-server-baseline", "time-sync-check"}
    return {}, name not in read_only, False


class _Operator:
    """Confirms manual steps (check mode asks nothing else) and answers input steps."""

    def __init__(self) -> None:
        self.manual_steps: list[str] = []

    def callbacks(self) -> RunCallbacks:
        return RunCallbacks(confirm=self.refuse, manual=self.manual, ask=self.ask)

    def refuse(self, step: Step, hosts: list[str]) -> bool:
        raise AssertionError(f"check mode or a read-only procedure asked to confirm {step.id}")

    def manual(self, step: Step, hosts: list[str], instructions: str) -> str:
        assert instructions.strip(), f"{step.id}: a manual step says what to do"
        self.manual_steps.append(step.id)
        return "checked in the test"

    def ask(self, variable: Variable, step: Step | None, problem: str | None) -> str | None:
        assert problem is None, problem
        return ""  # take the default


@pytest.fixture
def services(trusted_settings: Settings) -> Callable[[], Services]:
    def open_services() -> Services:
        opened = Services.open(trusted_settings)
        opened.inventory.upsert_hosts([Host(name="testhost")])  # the ssh config's alias
        return opened

    return open_services


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
async def test_each_builtin_procedure_runs_against_the_test_sshd(
    path: Path, tmp_path: Path, sshd: Any, services: Callable[[], Services]
) -> None:
    opened = services()
    procedure = load_procedure(path.read_text(encoding="utf-8"), str(path))
    outcome, stored = ProcedureRepository.in_data_dir(opened.settings.data_dir).save(
        procedure, source=f"builtin:{path.name}", by=opened.actor)
    assert outcome == "added" and stored.hash == procedure.content_hash()
    variables, check, must_succeed = _setup(procedure.id, tmp_path, sshd)
    operator = _Operator()
    runner = ProcedureRunner(opened, operator.callbacks())
    try:
        run = await runner.start(procedure.id, selector="testhost", variables=variables, check=check)
    finally:
        await opened.close()

    report = run_report(run)
    assert run.status in ("succeeded", "failed"), f"{run.status}: {run.reason}\n{report}"
    if must_succeed:
        assert run.status == "succeeded", report
    assert run.mode == ("check" if check else "normal")
    assert not runner.unknown_keys and not runner.changed_keys
    ran = 0
    for step in procedure.steps:
        result = run.result(step.id, "testhost")
        if result.state == "cancelled":
            # An earlier check failed: the host stopped there.
            assert run.status == "failed" and "failed at step" in str(result.reason)
            continue
        if check and step.kind == "manual" and step.runs_in_check_mode:
            # Shown to the operator, confirmed by nobody: nothing was done.
            assert (result.state, result.reason) == ("skipped", CHECK_MODE_MANUAL), step.id
            continue
        if check and not step.runs_in_check_mode:
            # Check mode changed nothing and shows what would have run.
            assert result.state == "skipped", (step.id, result)
            if step.runs_command:
                assert result.command and "{{" not in result.command, (step.id, result.command)
            continue
        assert result.state in ("ok", "failed"), (step.id, result)
        if step.runs_command:
            ran += 1
            assert result.exit_code is not None, f"{step.id}: {result.reason}"  # it really ran
            assert result.exit_code not in (126, 127), f"{step.id}: a tool is missing\n{report}"
            if result.state == "failed":
                assert (result.output + result.stderr).strip(), f"{step.id} failed without a word"
    assert ran >= 1
    assert f"#### testhost: {run.result(procedure.steps[0].id, 'testhost').state}" in report
    if procedure.id == "rotate-log":
        assert (tmp_path / "work" / "app.log").read_text() == "line\n" * 1000  # untouched
