"""Helpers for the Procedures pane tests: real stores in a temp data dir, fixed records.

Procedures are stored through the repository (as ``itop procedure import``
does); runs are either made by the real runner through the pane, or built
here with fixed times so that snapshots do not depend on the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from ui_fixtures import open_services

from itop_tui.bundled import procedures_dir
from itop_tui.domain.models import Host
from itop_tui.domain.procedure_loader import load_procedure
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import (
    PROCEDURES_TABLE,
    HostResult,
    PendingApproval,
    ProcedureRepository,
    ProcedureRun,
    RunRepository,
    StepRecord,
)
from itop_tui.settings import Settings

FIXED_IMPORT = "2025-06-01T09:00:00.000Z"

SMALL = """
id: small-test
title: Small test procedure
version: "1.0"
description: |
  A **test** procedure: a manual step, a command that *changes* things,
  and a read-only check.
targets: all
variables:
  - name: greeting
    description: What the command prints.
    default: hello
    regex: '[a-z]+'
steps:
  - id: announce
    title: Tell the team
    kind: manual
    instructions: Say in the team channel that {{ host }} gets a greeting.
  - id: greet
    title: Print the greeting
    kind: command
    mutates: true
    instructions: Prints **{{ greeting }}**; pretend it changes the host.
    command: |
      g={{ greeting }}
      echo "$g"
  - id: verify
    title: The machine answers
    kind: check
    instructions: A read-only check that the shell works.
    command: echo ok
    expect:
      regex: '^ok$'
"""

DISK = """
id: disk-test
title: Disk usage of the root file system
version: "2"
description: Shows how full `/` is.
targets: all
steps:
  - id: usage
    title: Usage of /
    kind: check
    instructions: Read the **Use%** column.
    command: df -P /
"""


async def wait_for(pilot: Pilot[Any], test: Callable[[], bool], what: str,
                   timeout: float = 30.0) -> None:
    """Let the app run until ``test()`` holds (runs and look-ups work in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}; screen is {type(pilot.app.screen).__name__}")


def add_procedure(services: Services, text: str, *, fixed_time: bool = False) -> str:
    """Validate ``text`` and store it in ``services``' library; returns its id."""
    procedure = load_procedure(text, "test.yaml")
    repository = ProcedureRepository.in_data_dir(services.settings.data_dir)
    repository.save(procedure, source="test.yaml", by=services.actor)
    if fixed_time:
        fix_import_times(services)
    return procedure.id


def import_builtin(services: Services) -> list[str]:
    """Store every procedure of the built-in library; returns their ids."""
    files = sorted(procedures_dir().glob("*.yaml"))
    loaded = [(load_procedure(f.read_text(encoding="utf-8"), str(f)), f"builtin:{f.name}")
              for f in files]
    repository = ProcedureRepository.in_data_dir(services.settings.data_dir)
    return [stored.id for _outcome, _previous, stored in repository.save_many(loaded, services.actor)]


def fix_import_times(services: Services) -> None:
    """Give every stored procedure the same import time (for snapshots)."""
    repository = ProcedureRepository.in_data_dir(services.settings.data_dir)
    with repository.store.write() as db:
        db.table(PROCEDURES_TABLE).update({"imported_at": FIXED_IMPORT})


def local_hosts(*names: str) -> list[Host]:
    """Hosts that are this machine, reached through the local transport."""
    return [Host(name=name, address="local") for name in names]


def procedure_services(
    tmp_path: Path,
    hosts: list[Host],
    *,
    roles: dict[str, str] | None = None,
    login: str = "alice",
    read_only: bool = False,
) -> Services:
    """Services over a temp data dir holding ``hosts``, for the person ``login``."""
    settings = Settings(data_dir=tmp_path / "data", config_path=Path("/etc/itop/itop.yaml"),
                        roles=dict(roles or {}))
    services = open_services(tmp_path / "data", hosts, settings=settings, read_only=read_only)
    return as_login(services, login)


def as_login(services: Services, login: str) -> Services:
    """``services`` as the person ``login``: actor and configured role (viewers read only)."""
    services.actor = login
    services.role = services.settings.role_for(login)
    services.read_only = services.read_only or services.role == "viewer"
    return services


def second_login(tmp_path: Path, login: str, roles: dict[str, str]) -> Services:
    """Another person's itop on the same data dir (an approver, say)."""
    settings = Settings(data_dir=tmp_path / "data", config_path=Path("/etc/itop/itop.yaml"),
                        roles=dict(roles))
    return as_login(Services.open(settings, origin="tui"), login)


def _result(state: str, start: str, end: str, **fields: object) -> HostResult:
    return HostResult(state=state, start=start, end=end, **fields)  # type: ignore[arg-type]


def fixed_run(services: Services, *, finished: bool) -> ProcedureRun:
    """A stored run of :data:`SMALL` on web01 and web02 with fixed times and outputs.

    Finished: succeeded, every step done. Not finished: waiting for an
    approver's sign-off of ``greet`` after the manual step.
    """
    procedure = load_procedure(SMALL, "test.yaml")
    hosts = ["web01", "web02"]
    t = "2025-06-01T10:00:{:02d}.000Z".format
    steps = [StepRecord(s.id, s.title, s.kind, s.mutates, {h: HostResult() for h in hosts})
             for s in procedure.steps]
    for host in hosts:
        steps[0].hosts[host] = _result("ok", t(1), t(1), duration=0.0, confirmed_by="alice",
                                       note="posted in #ops")
    run = ProcedureRun(
        id="", procedure_id=procedure.id, procedure_version=procedure.version,
        procedure_hash=procedure.content_hash(), procedure_title=procedure.title,
        procedure=procedure.to_dict(), operator="alice", mode="trainee" if not finished else "normal",
        selector="web", targets=hosts, batches=[hosts], variables={"greeting": "hello"},
        secret_names=[], answered=["greeting"], status="running", started=t(0), steps=steps,
    )
    if finished:
        for index, host in enumerate(hosts):
            steps[1].hosts[host] = _result(
                "ok", t(2), t(3), duration=0.012 + index / 1000, exit_code=0, attempts=1,
                output="hello\n", command="g=hello\necho \"$g\"", confirmed_by="alice")
            steps[2].hosts[host] = _result(
                "ok", t(4), t(4), duration=0.005, exit_code=0, attempts=1, output="ok\n",
                command="echo ok")
        run.status = "succeeded"
        run.ended = t(5)
    else:
        run.status = "waiting"
        run.mode = "trainee"
        run.reason = "waiting for an approver to sign off step greet"
        run.pending = PendingApproval(
            step="greet", kind="signoff", requested_by="alice", requested_at=t(2), hosts=hosts,
            reason="a trainee needs an approver's sign-off before a step that changes something")
    runs = RunRepository.in_data_dir(services.settings.data_dir)
    return runs.create(run)

