"""The procedure runner on this machine through the local transport (hosts with address "local").

Real store files in a temp data dir, real audit log, real shell commands;
several "hosts" are names for this machine, told apart by ``{{ host }}``.
Different people are different OS logins: ``getpass.getuser()`` reads
``LOGNAME``, which each helper sets before opening its services.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from itop_tui.domain.models import Host
from itop_tui.domain.procedure import Step, Variable
from itop_tui.domain.procedure_loader import load_procedure
from itop_tui.domain.substitution import VariableError
from itop_tui.ops.procedure_report import replay, run_report
from itop_tui.ops.procedure_runner import (
    PermissionDenied,
    ProcedureRunner,
    ResumeRefused,
    RunCallbacks,
    RunEvent,
    RunnerError,
)
from itop_tui.services.context import ReadOnlyError, Services
from itop_tui.services.procedure_repo import (
    ProcedureRepository,
    ProcedureRun,
    RunBusy,
    RunRepository,
)
from itop_tui.settings import Settings

ROLES = {"alice": "operator", "bob": "approver", "carol": "approver", "tina": "trainee",
         "vic": "viewer"}
HOSTS = ("l1", "l2", "l3", "l4")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", roles=dict(ROLES))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory the test procedures write their traces to."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def login(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Services]:
    """Open the services as the OS login ``name``."""
    opened: list[Services] = []

    def open_as(name: str) -> Services:
        monkeypatch.setenv("LOGNAME", name)
        monkeypatch.setenv("USER", name)
        services = Services.open(settings)
        opened.append(services)
        return services

    services = open_as("alice")
    services.inventory.upsert_hosts([Host(name=h, address="local") for h in HOSTS])
    return open_as


def add_procedure(services: Services, text: str) -> str:
    procedure = load_procedure(text, "test.yaml")
    ProcedureRepository.in_data_dir(services.settings.data_dir).save(
        procedure, source="test.yaml", by=services.actor)
    return procedure.id


def runs_of(services: Services) -> RunRepository:
    return RunRepository.in_data_dir(services.settings.data_dir)


def audit_actions(services: Services, run_id: str | None = None) -> list[str]:
    return [
        e.action for e in services.audit.events()
        if e.action.startswith("procedure.")
        and (run_id is None or e.target == run_id or (isinstance(e.detail, dict) and e.detail.get("run") == run_id))
    ]


def states(run: ProcedureRun, step_id: str) -> dict[str, str]:
    return {h: r.state for h, r in run.step(step_id).hosts.items()}


class Person:
    """Answers the runner's questions and records what it was asked."""

    def __init__(self, confirm: bool | str = True, manual: bool | str = True,
                 answers: Iterator[str | None] | None = None) -> None:
        self.confirm_answer = confirm
        self.manual_answer = manual
        self.answers = answers or iter(())
        self.confirmed: list[tuple[str, list[str]]] = []
        self.manuals: list[tuple[str, list[str], str]] = []
        self.asked: list[tuple[str, str | None]] = []
        self.events: list[RunEvent] = []

    def callbacks(self, observer: Callable[[RunEvent], None] | None = None) -> RunCallbacks:
        def observe(event: RunEvent) -> None:
            self.events.append(event)
            if observer is not None:
                observer(event)

        return RunCallbacks(confirm=self.confirm, manual=self.manual, ask=self.ask, observer=observe)

    def confirm(self, step: Step, hosts: list[str]) -> bool | str:
        self.confirmed.append((step.id, list(hosts)))
        return self.confirm_answer

    async def manual(self, step: Step, hosts: list[str], instructions: str) -> bool | str:
        await asyncio.sleep(0)  # async callbacks are awaited
        self.manuals.append((step.id, list(hosts), instructions))
        return self.manual_answer

    def ask(self, variable: Variable, step: Step | None, problem: str | None) -> str | None:
        self.asked.append((variable.name, problem))
        return next(self.answers, None)


BASIC = """
id: basic
title: Basic
version: "1"
variables:
  - name: dir
    required: true
steps:
  - id: ready
    title: Directory exists
    kind: check
    command: |
      d={{ dir }}; test -d "$d" && echo "ready on $(hostname)"
  - id: look
    title: Look
    kind: command
    mutates: false
    command: |
      d={{ dir }}; h={{ host }}; echo "look $h" >> "$d/look-$h"; echo looked at "$h"
  - id: change
    title: Change {{ host }}
    kind: command
    command: |
      d={{ dir }}; h={{ host }}; echo "changed" > "$d/changed-$h"
  - id: tell
    title: Tell people
    kind: manual
    instructions: Tell the users of {{ host }}.
"""


async def test_a_run_records_every_step_and_host_as_soon_as_known(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, BASIC)
    runs = runs_of(alice)
    persisted: list[tuple[str, str, str]] = []

    def observer(event: RunEvent) -> None:
        # Crash safety: when the display hears of a result, it is on disk already.
        if event.kind == "host.end":
            stored = runs.require(event.run_id).result(str(event.step_id), str(event.host))
            assert stored.state == event.state
            persisted.append((str(event.step_id), str(event.host), stored.state))

    person = Person(manual="told them")
    runner = ProcedureRunner(alice, person.callbacks(observer))
    run = await runner.start("basic", selector="l1:l2", variables={"dir": str(work)})

    assert run.status == "succeeded", run.reason
    assert run.operator == "alice" and run.mode == "normal" and run.targets == ["l1", "l2"]
    for step in ("ready", "look", "change", "tell"):
        assert states(run, step) == {"l1": "ok", "l2": "ok"}
    assert (work / "changed-l1").read_text() == "changed\n"
    assert (work / "changed-l2").read_text() == "changed\n"
    look = run.result("look", "l2")
    assert look.output == "looked at l2\n" and look.exit_code == 0 and look.attempts == 1
    assert look.command == f"d={work}; h=l2; echo \"look $h\" >> \"$d/look-$h\"; echo looked at \"$h\"\n"
    assert look.start is not None and look.end is not None and look.duration is not None
    assert run.result("change", "l1").confirmed_by == "alice"
    assert run.result("tell", "l2").note == "told them"
    # One confirmation per mutating step and batch; the manual step saw its instructions.
    assert person.confirmed == [("change", ["l1", "l2"])]
    assert person.manuals == [("tell", ["l1", "l2"], "Tell the users of l1, l2.")]
    assert len(persisted) == 8
    kinds = [e.kind for e in person.events]
    assert kinds[0] == "run.start" and kinds[-1] == "run.end"
    assert person.events[-1].state == "succeeded"

    actions = audit_actions(alice, run.id)
    assert actions[0] == "procedure.run.start" and actions[-1] == "procedure.run.end"
    assert actions.count("procedure.step") == 6  # three command steps on two hosts
    assert actions.count("procedure.confirm") == 2  # the mutating command and the manual step
    steps = [e for e in alice.audit.events() if e.action == "procedure.step"]
    assert {(e.target, e.detail["step"], e.detail["exit_status"]) for e in steps} >= {
        ("l1", "change", 0), ("l2", "change", 0)}
    assert all(isinstance(e.detail["duration"], float) for e in steps)
    assert runs.require(run.id).to_dict() == run.to_dict()


FLAKY = """
id: flaky
title: Some hosts fail
version: "1"
serial: 2
max_fail_percentage: {limit}
variables:
  - name: dir
    required: true
steps:
  - id: first
    title: First
    kind: command
    mutates: false
    command: |
      d={{{{ dir }}}}; h={{{{ host }}}}; echo first >> "$d/first-$h"
  - id: healthy
    title: Healthy
    kind: check
    command: |
      h={{{{ host }}}}; if [ "$h" = l2 ]; then echo "l2 is sick" >&2; exit 3; fi; echo fine
  - id: last
    title: Last
    kind: command
    mutates: false
    command: |
      d={{{{ dir }}}}; h={{{{ host }}}}; echo last >> "$d/last-$h"
"""


@pytest.mark.parametrize(("limit", "goes_on"), [(49, False), (50, True)])
async def test_a_failed_check_stops_its_host_and_the_batch_limit_decides_the_rest(
    login: Callable[[str], Services], work: Path, limit: int, goes_on: bool
) -> None:
    alice = login("alice")
    add_procedure(alice, FLAKY.format(limit=limit))
    run = await ProcedureRunner(alice, Person().callbacks()).start(
        "flaky", selector="l1:l2:l3:l4", variables={"dir": str(work)})

    assert run.batches == [["l1", "l2"], ["l3", "l4"]]
    assert run.status == "failed"
    sick = run.result("healthy", "l2")
    assert (sick.state, sick.exit_code) == ("failed", 3)
    assert sick.reason == "exit status 3, expected 0" and sick.stderr == "l2 is sick\n"
    # The failed host stops there.
    assert run.result("last", "l2").state == "cancelled"
    assert "failed at step healthy" in str(run.result("last", "l2").reason)
    assert run.failed_hosts() == ["l2"]
    if goes_on:
        # 1 of 2 is 50%, not more than 50: the second batch runs.
        assert states(run, "last") == {"l1": "ok", "l2": "cancelled", "l3": "ok", "l4": "ok"}
        assert (work / "last-l4").exists()
        assert run.reason == "1 of 4 hosts failed: l2"
    else:
        # As in Ansible, the run stops after the step that exceeded the limit.
        assert states(run, "last") == {"l1": "cancelled", "l2": "cancelled", "l3": "cancelled",
                                       "l4": "cancelled"}
        assert run.result("last", "l1").reason == run.reason
        assert states(run, "first") == {"l1": "ok", "l2": "ok", "l3": "cancelled", "l4": "cancelled"}
        assert not (work / "first-l3").exists() and not (work / "first-l4").exists()
        assert run.reason == (
            "the run stopped: 1 of 2 hosts of batch 1 failed, more than max_fail_percentage 49%")


RETRIES = """
id: retries
title: Retries and polling
version: "1"
variables:
  - name: dir
    required: true
steps:
  - id: third-time
    title: Works the third time
    kind: command
    mutates: false
    retries: 3
    delay: 0.05
    command: |
      d={{ dir }}; echo x >> "$d/tries"; n=$(wc -l < "$d/tries"); echo "try $n"; [ "$n" -ge 3 ]
  - id: appears
    title: Polled until it passes
    kind: check
    until:
      timeout: 5
      interval: 0.05
    expect:
      regex: '^poll 4$'
    command: |
      d={{ dir }}; echo x >> "$d/polls"; echo "poll $(wc -l < "$d/polls" | tr -d ' ')"
  - id: never
    title: Polled in vain
    kind: check
    until:
      timeout: 0.3
      interval: 0.1
    command: |
      d={{ dir }}; echo x >> "$d/never"; false
"""


async def test_retries_and_until_polling(login: Callable[[str], Services], work: Path) -> None:
    alice = login("alice")
    add_procedure(alice, RETRIES)
    person = Person()
    run = await ProcedureRunner(alice, person.callbacks()).start(
        "retries", selector="l1", variables={"dir": str(work)})
    third = run.result("third-time", "l1")
    assert (third.state, third.attempts, third.output) == ("ok", 3, "try 3\n")
    appears = run.result("appears", "l1")
    assert (appears.state, appears.attempts, appears.output) == ("ok", 4, "poll 4\n")
    never = run.result("never", "l1")
    assert never.state == "failed" and 2 <= never.attempts <= 4
    assert len((work / "never").read_text().splitlines()) == never.attempts
    assert run.status == "failed"
    retried = [e for e in person.events if e.kind == "attempt"]
    assert [e.data["attempt"] for e in retried if e.step_id == "third-time"] == [1, 2]


CHECKED = """
id: checked
title: Check mode
version: "1"
variables:
  - name: dir
    required: true
  - name: note
    default: "it's $(id) fine"
steps:
  - id: look
    title: Look
    kind: command
    mutates: false
    command: |
      d={{ dir }}; echo looked > "$d/looked"
  - id: approve
    title: Lead agrees
    kind: approval
  - id: change
    title: Change
    kind: command
    command: |
      d={{ dir }}; n={{ note }}; printf '%s' "$n" > "$d/changed"
  - id: verify
    title: The change is there
    kind: check
    skip_in_check_mode: true
    command: |
      d={{ dir }}; test -f "$d/changed"
  - id: confirm-ticket
    title: Ticket updated
    kind: manual
    mutates: true
    instructions: Update the ticket.
"""


async def test_check_mode_changes_nothing_and_shows_what_would_run(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, CHECKED)
    person = Person()
    run = await ProcedureRunner(alice, person.callbacks()).start(
        "checked", selector="l1:l2", variables={"dir": str(work)}, check=True)
    assert run.status == "succeeded" and run.mode == "check"
    assert (work / "looked").exists()
    assert not (work / "changed").exists()
    assert states(run, "look") == {"l1": "ok", "l2": "ok"}
    for step in ("approve", "change", "verify", "confirm-ticket"):
        assert states(run, step) == {"l1": "skipped", "l2": "skipped"}, step
    would = run.result("change", "l2")
    assert would.command == f"d={work}; n='it'\"'\"'s $(id) fine'; printf '%s' \"$n\" > \"$d/changed\"\n"
    assert would.reason == "changes something: skipped in check mode"
    assert person.confirmed == [] and person.manuals == []
    assert run.pending is None and run.approvals == []


async def test_declining_a_mutating_step_pauses_and_resume_goes_on_from_there(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, BASIC)
    run = await ProcedureRunner(alice, Person(confirm=False).callbacks()).start(
        "basic", selector="l1", variables={"dir": str(work)})
    assert run.status == "paused" and run.reason == "step change was not confirmed"
    assert states(run, "change") == {"l1": "waiting"}
    assert not (work / "changed-l1").exists()
    assert ("procedure.confirm", "declined") in [
        (e.action, e.result) for e in alice.audit.events() if e.target == run.id]

    person = Person(confirm="window agreed with the users")
    resumed = await ProcedureRunner(alice, person.callbacks()).resume(run.id)
    assert resumed.status == "succeeded"
    assert (work / "changed-l1").exists()
    # The read-only steps before the pause ran once only.
    assert (work / "look-l1").read_text() == "look l1\n"
    assert resumed.result("change", "l1").note == "window agreed with the users"
    assert [r["kind"] for r in resumed.resumes] == ["resume"]


INPUTS = """
id: inputs
title: Inputs
version: "1"
variables:
  - name: size
    regex: '[0-9]+'
    required: true
  - name: colour
    choices: [red, blue]
    default: blue
steps:
  - id: ask-size
    title: Size
    kind: input
    variable: size
  - id: ask-colour
    title: Colour
    kind: input
    variable: colour
  - id: show
    title: Show
    kind: command
    mutates: false
    command: |
      s={{ size }}; c={{ colour }}; echo "$s $c"
"""


async def test_input_steps_validate_and_ask_again(login: Callable[[str], Services]) -> None:
    alice = login("alice")
    add_procedure(alice, INPUTS)
    person = Person(answers=iter(["ten", "10", ""]))
    run = await ProcedureRunner(alice, person.callbacks()).start("inputs", selector="l1")
    assert run.status == "succeeded", run.reason
    assert person.asked == [("size", None), ("size", "must match the regex `[0-9]+` (got 'ten')"), ("colour", None)]
    assert run.result("show", "l1").output == "10 blue\n"
    assert run.variables == {"size": "10", "colour": "blue"}
    inputs = [e.detail for e in alice.audit.events() if e.action == "procedure.input"]
    assert [(d["variable"], d["value"]) for d in inputs] == [("size", "10"), ("colour", "blue")]

    # Given when the run starts, a value is not asked again.
    person = Person()
    run = await ProcedureRunner(alice, person.callbacks()).start(
        "inputs", selector="l1", variables={"size": "3", "colour": "red"})
    assert person.asked == [] and run.result("show", "l1").output == "3 red\n"

    with pytest.raises(VariableError, match="colour: must be one of red, blue"):
        await ProcedureRunner(alice, person.callbacks()).start(
            "inputs", selector="l1", variables={"colour": "green"})


APPROVAL = """
id: approval
title: Needs an approval
version: "1"
variables:
  - name: dir
    required: true
steps:
  - id: before
    title: Before
    kind: command
    mutates: false
    command: |
      d={{ dir }}; echo before >> "$d/before"
  - id: lead
    title: The lead agrees
    kind: approval
  - id: after
    title: After
    kind: command
    command: |
      d={{ dir }}; echo after >> "$d/after"
"""


async def test_an_approval_step_waits_for_a_different_approver(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, APPROVAL)
    run = await ProcedureRunner(alice, Person().callbacks()).start(
        "approval", selector="l1:l2", variables={"dir": str(work)})
    assert run.status == "waiting"
    assert run.pending is not None and (run.pending.step, run.pending.kind) == ("lead", "approval")
    assert run.pending.requested_by == "alice" and run.pending.hosts == ["l1", "l2"]
    assert not (work / "after").exists()

    with pytest.raises(PermissionDenied, match="a different person"):
        ProcedureRunner(alice).approve(run.id)
    tina = login("tina")
    with pytest.raises(PermissionDenied, match="the role trainee"):
        ProcedureRunner(tina).approve(run.id)
    with pytest.raises(PermissionDenied, match="in the name of"):
        ProcedureRunner(tina).approve(run.id, approver="bob")
    bob = login("bob")
    approved = ProcedureRunner(bob).approve(run.id, comment="go ahead")
    assert approved.status == "paused" and approved.pending is None
    assert [(a.by, a.decision, a.comment, a.requested_by) for a in approved.approvals] == [
        ("bob", "approved", "go ahead", "alice")]
    with pytest.raises(RunnerError, match="not waiting for an approval"):
        ProcedureRunner(login("carol")).approve(run.id)
    decisions = [(e.actor, e.action, e.result) for e in bob.audit.events()
                 if e.action in ("procedure.approve", "procedure.reject")]
    assert decisions == [("alice", "procedure.approve", "refused"),
                         ("tina", "procedure.approve", "refused"),
                         ("bob", "procedure.approve", "ok")]

    alice = login("alice")
    done = await ProcedureRunner(alice, Person().callbacks()).resume(run.id)
    assert done.status == "succeeded"
    assert done.result("lead", "l1").confirmed_by == "bob"
    assert (work / "before").read_text() == "before\nbefore\n"  # once per host, not rerun
    assert (work / "after").read_text() == "after\nafter\n"


async def test_a_waiting_runner_continues_when_another_process_approves(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, APPROVAL)
    bob = login("bob")  # opened before: the runner's LOGNAME must stay alice's below
    alice = login("alice")
    runner = ProcedureRunner(alice, Person().callbacks(), approval_wait=20, poll_interval=0.05)
    task = asyncio.create_task(runner.start("approval", selector="l1", variables={"dir": str(work)}))
    runs = runs_of(alice)
    deadline = time.monotonic() + 10
    while not runs.all("waiting"):
        assert time.monotonic() < deadline, "the run never asked for its approval"
        await asyncio.sleep(0.05)
    run_id = runs.all("waiting")[0].id
    assert runs.is_locked(run_id)
    # bob's itop runs in another thread here; it only writes the store.
    await asyncio.to_thread(ProcedureRunner(bob).approve, run_id, None, "ok")
    run = await asyncio.wait_for(task, 10)
    assert run.status == "succeeded"
    assert (work / "after").read_text() == "after\n"
    assert not runs.is_locked(run_id)


async def test_rejection_ends_the_run(login: Callable[[str], Services], work: Path) -> None:
    alice = login("alice")
    add_procedure(alice, APPROVAL)
    run = await ProcedureRunner(alice, Person().callbacks()).start(
        "approval", selector="l1", variables={"dir": str(work)})
    bob = login("bob")
    with pytest.raises(RunnerError, match="comment"):
        ProcedureRunner(bob).reject(run.id, "")
    rejected = ProcedureRunner(bob).reject(run.id, "not during the sale")
    assert rejected.status == "aborted"
    assert rejected.reason == "approval of step lead rejected by bob: not during the sale"
    assert states(rejected, "lead") == {"l1": "failed"}
    assert states(rejected, "after") == {"l1": "cancelled"}
    with pytest.raises(RunnerError, match="finished"):
        await ProcedureRunner(login("alice"), Person().callbacks()).resume(run.id)


TRAINEE = """
id: trainee
title: Trainee work
version: "1"
variables:
  - name: dir
    required: true
steps:
  - id: look
    title: Look
    kind: check
    command: |
      d={{ dir }}; echo looked >> "$d/looked"
  - id: refresh
    title: Refresh a cache
    kind: command
    trainee_safe: true
    command: |
      d={{ dir }}; echo refreshed >> "$d/refreshed"
  - id: change
    title: A real change
    kind: command
    command: |
      d={{ dir }}; echo changed >> "$d/changed"
"""


async def test_a_trainee_needs_an_approvers_signoff_for_a_mutating_step(
    login: Callable[[str], Services], work: Path
) -> None:
    tina = login("tina")
    add_procedure(login("alice"), TRAINEE)
    tina = login("tina")
    person = Person()
    run = await ProcedureRunner(tina, person.callbacks()).start(
        "trainee", selector="l1", variables={"dir": str(work)})
    assert run.mode == "trainee" and run.status == "waiting"
    assert run.pending is not None and (run.pending.step, run.pending.kind) == ("change", "signoff")
    assert (work / "looked").exists() and (work / "refreshed").exists()
    assert not (work / "changed").exists()
    starts = {e.step_id: e.data["decision"] for e in person.events if e.kind == "step.start"}
    assert starts == {"look": "run", "refresh": "run", "change": "signoff"}

    with pytest.raises(PermissionDenied):
        ProcedureRunner(tina).approve(run.id)
    # Resuming without the sign-off changes nothing.
    still = await ProcedureRunner(tina, Person().callbacks()).resume(run.id)
    assert still.status == "waiting" and not (work / "changed").exists()

    ProcedureRunner(login("bob")).approve(run.id, comment="watched over it")
    tina = login("tina")
    done = await ProcedureRunner(tina, Person().callbacks()).resume(run.id)
    assert done.status == "succeeded"
    assert (work / "changed").read_text() == "changed\n"
    assert [(a.kind, a.step, a.by, a.requested_by) for a in done.approvals] == [
        ("signoff", "change", "bob", "tina")]
    # An operator resuming a trainee's run is held to the trainee's rules too.
    assert done.mode == "trainee"


async def test_a_viewer_cannot_start_runs(login: Callable[[str], Services], work: Path) -> None:
    add_procedure(login("alice"), BASIC)
    vic = login("vic")
    with pytest.raises(ReadOnlyError, match="viewer"):
        await ProcedureRunner(vic).start("basic", selector="l1", variables={"dir": str(work)})
    assert runs_of(vic).all() == []


async def test_resume_refuses_a_changed_procedure_unless_forced(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, BASIC)
    run = await ProcedureRunner(alice, Person(confirm=False).callbacks()).start(
        "basic", selector="l1", variables={"dir": str(work)})
    assert run.status == "paused"
    add_procedure(alice, BASIC.replace('version: "1"', 'version: "2"').replace(
        'echo "changed" >', 'echo "changed v2" >'))
    with pytest.raises(ResumeRefused, match=r"version 1.*now version 2.*--force"):
        await ProcedureRunner(alice, Person().callbacks()).resume(run.id)
    assert runs_of(alice).require(run.id).status == "paused"
    done = await ProcedureRunner(alice, Person().callbacks()).resume(run.id, force=True)
    assert done.status == "succeeded"
    assert (work / "changed-l1").read_text() == "changed v2\n"
    assert done.procedure_version == "2" and done.resumes[0]["kind"] == "force"
    events = [(e.action, e.result) for e in alice.audit.events() if e.target == run.id]
    assert ("procedure.run.resume", "refused") in events
    assert ("procedure.resume.force", "ok") in events


RETRY = """
id: retry
title: Retry failed hosts
version: "1"
variables:
  - name: dir
    required: true
steps:
  - id: count
    title: Count
    kind: command
    mutates: false
    command: |
      d={{ dir }}; h={{ host }}; echo x >> "$d/count-$h"
  - id: needs-fix
    title: Needs a fix on l2
    kind: check
    command: |
      d={{ dir }}; h={{ host }}; [ "$h" != l2 ] || [ -e "$d/fixed" ]
  - id: after
    title: After
    kind: command
    mutates: false
    command: |
      d={{ dir }}; h={{ host }}; echo x >> "$d/after-$h"
"""


async def test_retry_reruns_only_the_failed_hosts(login: Callable[[str], Services], work: Path) -> None:
    alice = login("alice")
    add_procedure(alice, RETRY)
    run = await ProcedureRunner(alice, Person().callbacks()).start(
        "retry", selector="l1:l2", variables={"dir": str(work)})
    assert run.status == "failed" and run.failed_hosts() == ["l2"]
    with pytest.raises(RunnerError, match="retry"):
        await ProcedureRunner(alice, Person().callbacks()).resume(run.id)
    (work / "fixed").touch()
    again = await ProcedureRunner(alice, Person().callbacks()).retry_failed(run.id)
    assert again.status == "succeeded"
    assert states(again, "after") == {"l1": "ok", "l2": "ok"}
    assert (work / "count-l1").read_text() == "x\n"  # neither host reran what had passed
    assert (work / "count-l2").read_text() == "x\n"
    assert (work / "after-l1").read_text() == "x\n"
    previous = again.result("needs-fix", "l2").previous
    assert [(p["state"], p["exit_code"]) for p in previous] == [("failed", 1)]
    with pytest.raises(RunnerError, match="not failed"):
        await ProcedureRunner(alice, Person().callbacks()).retry_failed(run.id)


SLOW = """
id: slow
title: Slow
version: "1"
steps:
  - id: nap
    title: Nap
    kind: command
    mutates: false
    command: sleep 5
  - id: after
    title: After
    kind: command
    mutates: false
    command: "true"
"""


async def test_abort_from_another_itop_stops_the_running_step(
    login: Callable[[str], Services],
) -> None:
    alice = login("alice")
    add_procedure(alice, SLOW)
    runner = ProcedureRunner(alice, Person().callbacks(), poll_interval=0.1)
    started = time.monotonic()
    task = asyncio.create_task(runner.start("slow", selector="l1"))
    runs = runs_of(alice)
    while not runs.all() or runs.all()[0].result("nap", "l1").state != "running":
        assert time.monotonic() - started < 5
        await asyncio.sleep(0.05)
    run_id = runs.all()[0].id
    other = ProcedureRunner(login("bob"))
    with pytest.raises(RunBusy, match="another itop process"):
        await other.resume(run_id)
    other.abort(run_id, "wrong host")
    run = await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 4
    assert run.status == "aborted" and run.reason == "aborted by bob: wrong host"
    assert states(run, "nap") == {"l1": "cancelled"}
    assert states(run, "after") == {"l1": "cancelled"}
    with pytest.raises(RunnerError, match="finished"):
        other.abort(run_id)


async def test_abort_of_the_own_run_cancels_at_once(login: Callable[[str], Services]) -> None:
    alice = login("alice")
    add_procedure(alice, SLOW)
    runner = ProcedureRunner(alice, Person().callbacks(), poll_interval=30)

    def observer(event: RunEvent) -> None:
        if event.kind == "host.start":
            asyncio.get_running_loop().call_later(0.2, runner.abort, event.run_id, "")

    runner.callbacks = Person().callbacks(observer)
    started = time.monotonic()
    run = await runner.start("slow", selector="l1")
    assert time.monotonic() - started < 3
    assert run.status == "aborted" and states(run, "nap") == {"l1": "cancelled"}
    ends = [e for e in alice.audit.events() if e.action == "procedure.run.end"]
    assert [(e.target, e.result) for e in ends] == [(run.id, "aborted")]


async def test_cancelling_the_caller_pauses_the_run(login: Callable[[str], Services]) -> None:
    alice = login("alice")
    add_procedure(alice, SLOW)
    task = asyncio.create_task(ProcedureRunner(alice, Person().callbacks()).start("slow", selector="l1"))
    runs = runs_of(alice)
    while not runs.all() or runs.all()[0].result("nap", "l1").state != "running":
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # into the command, past its start
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    run = runs.all()[0]
    assert run.status == "paused" and states(run, "nap") == {"l1": "cancelled"}


SECRET = """
id: secret
title: Uses a secret
version: "1"
variables:
  - name: token
    secret: true
    required: true
  - name: dir
    required: true
steps:
  - id: use
    title: Use the token
    kind: command
    command: |
      t={{ token }}; d={{ dir }}; echo "token is $t"; printf '%s' "$t" | cksum > "$d/sum"
"""


async def test_a_secret_reaches_the_command_and_nothing_stored(
    login: Callable[[str], Services], work: Path, settings: Settings
) -> None:
    canary = "CANARY-7f3a9c-secret"
    alice = login("alice")
    add_procedure(alice, SECRET)
    person = Person()
    run = await ProcedureRunner(alice, person.callbacks()).start(
        "secret", selector="l1", variables={"token": canary, "dir": str(work)})
    assert run.status == "succeeded"
    assert run.result("use", "l1").output == "token is ***\n"
    assert "token" not in run.variables and run.secret_names == ["token"]
    assert '"$ITOP_SECRET_token"' not in str(run.result("use", "l1").command)
    assert "t=***;" in str(run.result("use", "l1").command)
    import subprocess

    expected = subprocess.run(["cksum"], input=canary.encode(), capture_output=True).stdout.decode()
    assert (work / "sum").read_text() == expected
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    assert canary not in json.dumps([e.data for e in person.events])
    report = run_report(run)
    assert canary not in report and "token=*** (secret, not stored)" in report


async def test_report_and_replay_show_every_step_and_host(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, BASIC)
    run = await ProcedureRunner(alice, Person(manual="done").callbacks()).start(
        "basic", selector="l1:l2", variables={"dir": str(work)})
    steps = list(replay(run))
    assert [(s.number, s.id, s.kind) for s in steps] == [
        (1, "ready", "check"), (2, "look", "command"), (3, "change", "command"), (4, "tell", "manual")]
    assert [h for h, _ in steps[2].hosts] == ["l1", "l2"]
    assert steps[3].instructions == "Tell the users of {{ host }}."  # two hosts: not one name
    report = run_report(run)
    assert report.startswith(f"# {run.id}: Basic\n")
    for step in steps:
        assert f"(`{step.id}`, {step.kind}" in report
    assert report.count("#### l1: ok") == 4 and report.count("#### l2: ok") == 4
    assert "```text\nlooked at l2\n```" in report
    assert "- confirmed by: alice, note: done" in report
    assert "| operator | alice |" in report


async def test_host_first_strategy_finishes_one_host_before_the_next(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, RETRY.replace("id: retry\n", "id: retry\nstrategy: host-first\n"))
    (work / "fixed").touch()
    person = Person()
    run = await ProcedureRunner(alice, person.callbacks()).start(
        "retry", selector="l1:l2", variables={"dir": str(work)})
    assert run.status == "succeeded"
    order = [(e.step_id, e.host) for e in person.events if e.kind == "host.end"]
    assert order == [("count", "l1"), ("needs-fix", "l1"), ("after", "l1"),
                     ("count", "l2"), ("needs-fix", "l2"), ("after", "l2")]


async def test_start_reports_bad_requests_before_storing_anything(
    login: Callable[[str], Services], work: Path
) -> None:
    alice = login("alice")
    add_procedure(alice, BASIC)
    runner = ProcedureRunner(alice, Person().callbacks())
    with pytest.raises(RunnerError, match="no procedure 'nope'.*known: basic"):
        await runner.start("nope", selector="l1")
    with pytest.raises(RunnerError, match="matches no host"):
        await runner.start("basic", selector="nothing*", variables={"dir": str(work)})
    with pytest.raises(RunnerError, match="no default targets"):
        await runner.start("basic", variables={"dir": str(work)})
    with pytest.raises(VariableError, match="dir: is required"):
        await runner.start("basic", selector="l1")
    assert runs_of(alice).all() == []


def test_run_records_refuse_secret_values(login: Callable[[str], Services], work: Path) -> None:
    alice = login("alice")
    runs = runs_of(alice)
    record = ProcedureRun(
        id="", procedure_id="p", procedure_version="1", procedure_hash="0" * 64,
        procedure_title="p", procedure={}, operator="alice", mode="normal", selector="l1",
        targets=["l1"], batches=[["l1"]], variables={"token": "x"}, secret_names=["token"],
        status="running", started="now", steps=[])
    with pytest.raises(ValueError, match="secret"):
        runs.create(record)
    assert runs.all() == []

