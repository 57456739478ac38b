"""Run a stored procedure step by step on the hosts a selector picks.

:class:`ProcedureRunner` is what ``itop procedure run|resume|retry|approve``
and the TUI's Procedures pane use. It never imports textual: the caller
talks to it through :class:`RunCallbacks` (questions for a person: confirm a
mutating step, confirm a manual step, give an input value) and an observer
receiving :class:`RunEvent` progress events.

How a run goes (docs/procedures.md, "Running procedures"):

* The targets are split into serial batches as Ansible does; with the
  default ``step-first`` strategy each step runs on every host of the batch
  (concurrently, at most ``run.forks`` at once) before the next step;
  ``host-first`` runs all steps on one host, then the next.
* A host whose step fails (command, check, unreachable host) stops there:
  its later steps are cancelled. After each step the batch's failures are
  compared with ``max_fail_percentage`` (:func:`batch_should_stop`); when
  the limit is exceeded the run stops and everything not done is cancelled.
* Every step result is written to the run record the moment it is known,
  each in its own store transaction, so a crash loses at most the steps
  running at that moment; ``resume`` reruns those and continues.
* Before a mutating command the operator confirms; manual steps are
  confirmed by a person; input steps ask. Declining pauses the run.
* ``approval`` steps, and a trainee's mutating steps that are not
  ``trainee_safe`` (a sign-off), put the run in status ``waiting`` with the
  pending approval stored. A different person with the approver role
  decides from their own itop (:meth:`ProcedureRunner.approve`); the waiting
  runner polls the store (``approval_wait``) or stops, and ``resume``
  continues later.
* A mutating step on production hosts asks the change gate first (under
  the run's ``change_id``); a refusal pauses the run before the operator is
  asked to confirm (see ``ProcedureRunner._gate``, docs/changes.md).
* Check mode runs only checks and read-only steps and records, for every
  other step and host, the exact (redacted) command that would have run.
* Secret values are used only in memory: commands receive them on stdin,
  host output is redacted before it is stored or shown, and neither the run
  record nor the audit log ever holds one.

Audit actions: ``procedure.run.start``, ``procedure.step`` (per host, with
exit status and duration), ``procedure.confirm``, ``procedure.input``,
``procedure.approval.request``, ``procedure.approve``, ``procedure.reject``,
``procedure.run.pause``, ``procedure.run.resume``, ``procedure.resume.force``,
``procedure.run.retry``, ``procedure.abort``, ``procedure.run.end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from itop_tui.domain.batches import batch_should_stop, serial_batches
from itop_tui.domain.models import Host
from itop_tui.domain.procedure import DEFAULT_STEP_TIMEOUT, Procedure, Step, Variable
from itop_tui.domain.procedure_loader import procedure_from_dict
from itop_tui.domain.roles import (
    Role,
    StepDecision,
    can_approve,
    can_start_run,
    step_permission,
)
from itop_tui.domain.selectors import select_hosts
from itop_tui.domain.substitution import (
    REDACTED,
    RenderedCommand,
    VariableError,
    builtin_values,
    in_posix_sh,
    redact_output,
    render_command,
    render_text,
    resolve_values,
    value_problem,
)
from itop_tui.ops.change_gate import PRODUCTION, ChangeGate
from itop_tui.ops.fleet import fan_out
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import (
    PREVIOUS_RESULTS_KEPT,
    UNFINISHED_STATES,
    Approval,
    HostResult,
    PendingApproval,
    ProcedureRepository,
    ProcedureRun,
    RunRepository,
    StepRecord,
    StoredProcedure,
    bounded_text,
    normalize_run_id,
    note_text,
    utc_now,
)
from itop_tui.services.transport import (
    HostKeyChanged,
    HostKeyUnknown,
    RunResult,
    TransportError,
)

T = TypeVar("T")

Answer = bool | str
"""A person's answer: True (yes), a note (yes, with this note), or False (no)."""

ConfirmCallback = Callable[[Step, list[str]], Answer | Awaitable[Answer]]
ManualCallback = Callable[[Step, list[str], str], Answer | Awaitable[Answer]]
AskCallback = Callable[[Variable, Step | None, str | None], str | None | Awaitable[str | None]]
Observer = Callable[["RunEvent"], None]

MAX_INPUT_TRIES = 5

# Progress event kinds, in the order a run emits them.
EVENT_KINDS = (
    "run.start",  # data: procedure, version, targets, batches, mode
    "batch.start",  # data: number, total, hosts
    "step.start",  # step_id; data: number, total, title, kind, mutates, hosts, instructions, decision, reason
    "host.start",  # step_id, host; data: command (redacted)
    "attempt",  # step_id, host; message: why the attempt failed; data: attempt, of, delay
    "host.end",  # step_id, host, state; data: the HostResult as a dict
    "wait",  # step_id; data: the PendingApproval as a dict
    "approved",  # step_id; data: the Approval as a dict
    "notice",  # message for the operator (e.g. an input value was refused)
    "run.end",  # state: the run's status; message: its reason
)


CHECK_MODE_MANUAL = "check mode: shown, not confirmed (nothing was done)"
"""Why a manual step of a check-mode run is recorded as skipped."""


@dataclass(frozen=True)
class RunEvent:
    """One progress event of a run, for a live display.

    ``kind`` is one of :data:`EVENT_KINDS`; ``state`` is a host state for
    ``host.end`` and the run status for ``run.end``. ``data`` holds plain
    JSON-able values and never a secret.
    """

    kind: str
    run_id: str
    step_id: str | None = None
    host: str | None = None
    state: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunCallbacks:
    """How the runner asks a person; each callable may be sync or async.

    ``confirm(step, hosts)``: before a mutating command step; True, a note
    (str) or False (the run pauses). ``manual(step, hosts, instructions)``:
    a manual step was done? Same answers. ``ask(variable, step, problem)``:
    the value for an input step (``problem`` says why the previous answer
    was refused); None cancels (the run pauses); an empty answer takes the
    variable's default. A missing callable counts as "no". ``observer``
    receives every :class:`RunEvent`; it must not block.
    """

    confirm: ConfirmCallback | None = None
    manual: ManualCallback | None = None
    ask: AskCallback | None = None
    observer: Observer | None = None


class RunnerError(Exception):
    """A run cannot start or go on as asked; ``str()`` is a user-facing message."""


class PermissionDenied(RunnerError):
    """The person's role does not allow this."""


class ResumeRefused(RunnerError):
    """The procedure changed since the run started (resume with force to go on)."""


class _Halt(Exception):
    """Stops the execution of a run with a status (internal)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Context:
    """What one execution of a run needs in memory (secrets included)."""

    run: ProcedureRun
    procedure: Procedure
    hosts: dict[str, Host | None]
    values: dict[str, str]
    given: set[str]
    role: Role
    check: bool
    abort_requested: bool = False

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def secret_names(self) -> frozenset[str]:
        return self.procedure.secret_names()

    def secret_values(self) -> list[str]:
        return [self.values[n] for n in self.secret_names if self.values.get(n)]

    def display_values(self, hosts: list[str]) -> dict[str, str]:
        """Values for display text: secrets left to render_text, built-ins for one host."""
        values = {k: v for k, v in self.values.items() if k not in self.secret_names}
        if len(hosts) == 1:
            host = self.hosts.get(hosts[0])
            address = host.connect_address if host is not None else hosts[0]
            values.update(builtin_values(hosts[0], address))
        else:
            values["host"] = ", ".join(hosts)
        return values


class ProcedureRunner:
    """Starts, resumes, retries, approves and aborts procedure runs.

    ``approval_wait`` is how long a run waiting for an approval keeps
    polling the store before it stops in status ``waiting`` (0: stop at
    once, the CLI's default; None: until decided, for the TUI).
    ``poll_interval`` is how often the store is polled for approvals and
    for an abort made by another process.

    After a run, :attr:`unknown_keys` and :attr:`changed_keys` hold hosts
    whose SSH host key was unknown or changed, and :attr:`warnings` any
    problem that did not stop the run (a failing observer).
    """

    def __init__(
        self,
        services: Services,
        callbacks: RunCallbacks | None = None,
        *,
        procedures: ProcedureRepository | None = None,
        runs: RunRepository | None = None,
        approval_wait: float | None = 0.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.services = services
        self.callbacks = callbacks or RunCallbacks()
        data_dir = services.settings.data_dir
        self.procedures = procedures or ProcedureRepository.in_data_dir(data_dir)
        self.runs = runs or RunRepository.in_data_dir(data_dir)
        self.approval_wait = approval_wait
        self.poll_interval = poll_interval
        self.unknown_keys: dict[str, HostKeyUnknown] = {}
        self.changed_keys: dict[str, HostKeyChanged] = {}
        self.warnings: list[str] = []
        self._active: tuple[_Context, asyncio.Task[Any], asyncio.AbstractEventLoop] | None = None

    # -- public API ------------------------------------------------------------

    @property
    def role(self) -> Role:
        """The role of the person running this itop."""
        return Role.parse(self.services.role)

    @property
    def active_run_id(self) -> str | None:
        """The id of the run this runner executes right now, if any."""
        return self._active[0].run_id if self._active is not None else None

    async def start(
        self,
        procedure_id: str,
        *,
        selector: str | None = None,
        variables: Mapping[str, str] | None = None,
        check: bool = False,
        change_id: str | None = None,
    ) -> ProcedureRun:
        """Start a run of a stored procedure and execute it; returns the run as it ended.

        ``selector`` defaults to the procedure's ``targets``. ``variables``
        may hold secrets (used in memory only). Raises :class:`RunnerError`
        (unknown procedure, no targets, not allowed), ``SelectorError`` and
        ``VariableError`` before anything is stored or run.
        """
        self.services.require_writable("run procedures")
        role = self._require_runner_role()
        stored = self._stored(procedure_id)
        procedure = stored.procedure
        selector = selector or procedure.targets
        if not selector:
            raise RunnerError(
                f"procedure {procedure.id} has no default targets: give a host selector"
            )
        hosts = select_hosts(self.services.inventory.load(), selector)
        if not hosts:
            raise RunnerError(f"selector {selector!r} matches no host (see `itop inventory list`)")
        supplied = dict(variables or {})
        values = resolve_values(
            procedure.variables, supplied, deferred=procedure.input_variable_names()
        )
        secrets = procedure.secret_names()
        mode = "check" if check else "trainee" if role == Role.TRAINEE else "normal"
        names = [host.name for host in hosts]
        run = ProcedureRun(
            id="",
            procedure_id=procedure.id,
            procedure_version=procedure.version,
            procedure_hash=stored.hash,
            procedure_title=procedure.title,
            procedure=procedure.to_dict(),
            change_id=change_id,
            operator=self.services.actor,
            mode=mode,
            selector=selector,
            targets=names,
            batches=serial_batches(names, procedure.serial),
            variables={k: v for k, v in values.items() if k not in secrets},
            secret_names=sorted(secrets),
            answered=sorted(supplied),
            status="running",
            started=utc_now(),
            steps=_step_records(procedure, names),
        )
        run = self.runs.create(run)
        self.services.audit.append(
            "procedure.run.start",
            run.id,
            {
                "procedure": procedure.id,
                "version": procedure.version,
                "hash": stored.hash,
                "selector": selector,
                "targets": names,
                "mode": mode,
                "variables": dict(run.variables),
                "change_id": change_id,
            },
        )
        context = _Context(
            run=run,
            procedure=procedure,
            hosts={host.name: host for host in hosts},
            values=values,
            given=set(supplied),
            role=role,
            check=check,
        )
        with self.runs.lock(run.id):
            return await self._execute(context)

    async def resume(
        self,
        run_id: str,
        *,
        force: bool = False,
        variables: Mapping[str, str] | None = None,
        change_id: str | None = None,
    ) -> ProcedureRun:
        """Continue a paused, waiting or interrupted run from its first unfinished step and host.

        Refuses (:class:`ResumeRefused`) when the stored procedure's hash
        differs from the run's, unless ``force`` (audited as
        ``procedure.resume.force``). ``variables`` gives the secret values
        again (they were never stored) and values for input steps not yet
        answered; a missing secret is asked through ``callbacks.ask``.
        ``change_id`` puts the rest of the run under that change (the change
        gate decides its mutating steps on production hosts as on a new
        run; None keeps the run's change). Raises ``RunBusy`` when another
        process executes the run.
        """
        self.services.require_writable("resume procedure runs")
        self._require_runner_role()
        run = self.runs.require(run_id)
        with self.runs.lock(run.id):
            run = self.runs.require(run.id)
            if run.status == "failed":
                raise RunnerError(
                    f"{run.id} failed ({run.reason or 'see its report'}); "
                    f"rerun its failed hosts with `itop procedure retry {run.id}`"
                )
            if run.finished:
                raise RunnerError(f"{run.id} has finished ({run.status}): nothing to resume")
            self._check_change_move(run, change_id)
            run, procedure = self._current_procedure(run, force)
            context = await self._context(run, procedure, variables)

            def resumed(stored: ProcedureRun) -> None:
                entry: dict[str, Any] = {"at": utc_now(), "by": self.services.actor,
                                         "kind": "resume", "hash": stored.procedure_hash,
                                         "forced": force}
                if change_id is not None:
                    entry["change"] = change_id
                    stored.change_id = change_id
                stored.resumes.append(entry)
                if stored.status != "waiting":
                    stored.status = "running"
                    stored.reason = None

            context.run = self.runs.update(run.id, resumed)[0]
            self.services.audit.append(
                "procedure.run.resume", run.id,
                {"procedure": run.procedure_id, "forced": force,
                 "change_id": context.run.change_id},
            )
            return await self._execute(context)

    def _check_change_move(self, run: ProcedureRun, change_id: str | None) -> None:
        """Refuse to move a run the change workflow made for its change to another change.

        Such a run is that change's implementation or backout: it goes on
        with ``itop change implement|backout``, under its own change.
        """
        if change_id is None or run.change_id in (None, change_id):
            return
        assert run.change_id is not None
        current = ChangeGate(self.services).changes.get(run.change_id)
        linked = [r.purpose for r in current.runs if r.id == run.id] if current else []
        if linked:
            raise RunnerError(
                f"{run.id} is the {linked[0]} run of {run.change_id}: it stays under that "
                f"change (continue it with `itop change "
                f"{'backout' if linked[0] == 'backout' else 'implement'} {run.change_id}`)"
            )

    async def retry_failed(
        self,
        run_id: str,
        *,
        force: bool = False,
        variables: Mapping[str, str] | None = None,
        change_id: str | None = None,
    ) -> ProcedureRun:
        """Rerun the failed hosts of a failed run, from the step where each failed.

        Hosts that succeeded are not run again. Work the failure cancelled
        (later batches) continues as on resume. Earlier results of the rerun
        steps are kept in each result's ``previous``. ``change_id`` puts
        the rerun under that change, as on :meth:`resume`.
        """
        self.services.require_writable("retry procedure runs")
        self._require_runner_role()
        run = self.runs.require(run_id)
        with self.runs.lock(run.id):
            run = self.runs.require(run.id)
            if run.status != "failed":
                hint = (
                    f"; continue it with `itop procedure resume {run.id}`"
                    if not run.finished else ""
                )
                raise RunnerError(f"{run.id} is {run.status}, not failed: nothing to retry{hint}")
            failed = run.failed_hosts()
            if not failed:
                raise RunnerError(f"{run.id} has no failed host to retry")
            self._check_change_move(run, change_id)
            run, procedure = self._current_procedure(run, force)
            context = await self._context(run, procedure, variables)

            def reset(stored: ProcedureRun) -> None:
                for record in stored.steps:
                    for host in failed:
                        result = record.hosts.get(host)
                        if result is not None and result.state in ("failed", "cancelled"):
                            record.hosts[host] = HostResult(previous=_previous(result))
                stored.status = "running"
                stored.ended = None
                stored.reason = None
                entry: dict[str, Any] = {"at": utc_now(), "by": self.services.actor,
                                         "kind": "retry", "hash": stored.procedure_hash,
                                         "forced": force, "hosts": failed}
                if change_id is not None:
                    entry["change"] = change_id
                    stored.change_id = change_id
                stored.resumes.append(entry)

            context.run = self.runs.update(run.id, reset)[0]
            self.services.audit.append("procedure.run.retry", run.id,
                                       {"hosts": failed, "change_id": context.run.change_id})
            return await self._execute(context)

    def approve(self, run_id: str, approver: str | None = None, comment: str = "") -> ProcedureRun:
        """Approve the pending approval or sign-off of a waiting run.

        ``approver`` must be this itop's user (the default). Needs the
        approver role or above, and a person other than the one who asked
        and the run's operator. The run becomes ``paused``; a runner
        waiting for the decision continues by itself, else ``resume`` does.
        """
        return self._decide(run_id, "approved", approver, comment)

    def reject(self, run_id: str, comment: str, approver: str | None = None) -> ProcedureRun:
        """Reject the pending approval: the run ends ``aborted``. A comment is required."""
        if not comment or not comment.strip():
            raise RunnerError("say why in a comment when rejecting")
        return self._decide(run_id, "rejected", approver, comment)

    def abort(self, run_id: str, reason: str = "") -> ProcedureRun:
        """End a run that has not finished: status ``aborted``, unfinished work cancelled.

        Works for a run executed by this runner (its current step is
        cancelled at once), by another process (which notices within
        ``poll_interval``), or by nobody (paused, waiting, crashed).
        """
        self.services.require_writable("abort procedure runs")
        self._require_runner_role()
        actor = self.services.actor
        text = f"aborted by {actor}" + (f": {note_text(reason)}" if note_text(reason) else "")

        def change(run: ProcedureRun) -> None:
            if run.finished:
                raise RunnerError(f"{run.id} has finished ({run.status}): nothing to abort")
            run.status = "aborted"
            run.ended = utc_now()
            run.reason = text
            run.pending = None
            _cancel_unfinished(run, "aborted", include_running=True)

        run = self.runs.update(run_id, change)[0]
        self.services.audit.append("procedure.abort", run.id, {"reason": note_text(reason)})
        self.services.audit.append(
            "procedure.run.end", run.id, {"status": "aborted", "reason": text}, result="aborted"
        )
        active = self._active
        if active is not None and active[0].run_id == run.id:
            context, task, loop = active
            context.abort_requested = True
            loop.call_soon_threadsafe(task.cancel)
        return run

    # -- permissions and loading -----------------------------------------------

    def _require_runner_role(self) -> Role:
        role = self.role
        if not can_start_run(role):
            raise PermissionDenied(
                f"{self.services.actor} has the role {role}: a viewer can read procedures and "
                "runs, not run them"
            )
        return role

    def _stored(self, procedure_id: str) -> StoredProcedure:
        stored = self.procedures.get(procedure_id)
        if stored is None:
            known = ", ".join(p.id for p in self.procedures.all()) or "none imported yet"
            raise RunnerError(
                f"no procedure {procedure_id!r} in the library (known: {known}); "
                "import it with `itop procedure import FILE`"
            )
        return stored

    def _current_procedure(self, run: ProcedureRun, force: bool) -> tuple[ProcedureRun, Procedure]:
        """The procedure to continue ``run`` with, checking its hash."""
        stored = self.procedures.get(run.procedure_id)
        if stored is None:
            raise RunnerError(
                f"procedure {run.procedure_id} is no longer in the library; import it again to "
                f"continue {run.id}"
            )
        if stored.hash == run.procedure_hash:
            return run, procedure_from_dict(run.procedure, source=f"{run.id} snapshot")
        detail = {
            "procedure": run.procedure_id,
            "run_hash": run.procedure_hash,
            "run_version": run.procedure_version,
            "stored_hash": stored.hash,
            "stored_version": stored.version,
        }
        if not force:
            self.services.audit.append("procedure.run.resume", run.id, detail, result="refused")
            raise ResumeRefused(
                f"procedure {run.procedure_id} changed since {run.id} started (version "
                f"{run.procedure_version}, sha256 {run.procedure_hash[:12]}; now version "
                f"{stored.version}, sha256 {stored.hash[:12]}). Compare them, then continue "
                "with the new version using --force"
            )
        self.services.audit.append("procedure.resume.force", run.id, detail)
        procedure = stored.procedure

        def adopt(stored_run: ProcedureRun) -> None:
            old = {record.id: record for record in stored_run.steps}
            fresh = _step_records(procedure, stored_run.targets)
            for record in fresh:
                if record.id in old:
                    record.hosts = old.pop(record.id).hosts
            stored_run.steps = fresh
            stored_run.dropped_steps.extend(old.values())
            stored_run.procedure = procedure.to_dict()
            stored_run.procedure_hash = stored.hash
            stored_run.procedure_version = procedure.version
            stored_run.procedure_title = procedure.title
            stored_run.resumes.append(
                {"at": utc_now(), "by": self.services.actor, "kind": "force",
                 "from_hash": detail["run_hash"], "hash": stored.hash}
            )
            secrets = procedure.secret_names()
            stored_run.secret_names = sorted(secrets)
            stored_run.variables = {
                k: v for k, v in stored_run.variables.items()
                if k not in secrets and procedure.variable(k) is not None
            }

        return self.runs.update(run.id, adopt)[0], procedure

    async def _context(
        self, run: ProcedureRun, procedure: Procedure, variables: Mapping[str, str] | None
    ) -> _Context:
        """The in-memory context to continue ``run``: hosts, values (secrets asked again)."""
        role = self.role
        if run.mode == "trainee":
            role = min(role, Role.TRAINEE)
        supplied = dict(variables or {})
        secrets = procedure.secret_names()
        problems: list[tuple[str, str]] = []
        for name, value in supplied.items():
            variable = procedure.variable(name)
            if variable is None:
                problems.append((name, f"is not a variable of {procedure.id}"))
            elif name not in secrets and name in run.answered:
                problems.append((name, f"was fixed when {run.id} started and cannot change"))
            else:
                problem = value_problem(variable, value)
                if problem is not None:
                    problems.append((name, problem))
        if problems:
            raise VariableError(problems)
        values = {**run.variables, **supplied}
        given = {n for n in run.answered if n not in secrets} | set(supplied)
        context = _Context(
            run=run,
            procedure=procedure,
            hosts=self._hosts(run.targets),
            values=values,
            given=given,
            role=role,
            check=run.mode == "check",
        )
        for variable in procedure.variables:
            if variable.name in values:
                continue
            asked_later = any(
                step.kind == "input" and step.variable == variable.name
                and any(r.state in UNFINISHED_STATES for r in run.step(step.id).hosts.values())
                for step in procedure.steps
            )
            if asked_later:
                continue
            if not variable.secret:
                # Declared by a newer version adopted with force: as on start.
                if variable.default is not None or not variable.required:
                    values[variable.name] = variable.default or ""
                    continue
                raise VariableError([(variable.name, f"is required by {procedure.id} "
                                      f"{procedure.version}: give it with --var")])
            if variable.name not in run.answered and not variable.required:
                values[variable.name] = ""
                continue
            secret = await self._ask_value(
                context, variable, None, f"needed again to continue {run.id}: secrets are never stored"
            )
            if secret is None:
                raise RunnerError(
                    f"the secret variable {variable.name} is needed to continue {run.id}; "
                    f"give it again (itop never stores secrets)"
                )
            values[variable.name] = secret
            given.add(variable.name)
        return context

    def _hosts(self, names: list[str]) -> dict[str, Host | None]:
        inventory = self.services.inventory.load()
        return {name: inventory.hosts.get(name) for name in names}

    # -- execution ---------------------------------------------------------------

    async def _execute(self, context: _Context) -> ProcedureRun:
        task = asyncio.current_task()
        assert task is not None
        self._active = (context, task, asyncio.get_running_loop())
        watcher = asyncio.create_task(self._watch(context, task))
        try:
            if context.run.status not in ("running", "waiting"):
                context.run = self.runs.update(context.run_id, _set_running)[0]
            self._emit(context, "run.start", data={
                "procedure": context.procedure.id,
                "version": context.procedure.version,
                "title": context.procedure.title,
                "targets": list(context.run.targets),
                "batches": [list(b) for b in context.run.batches],
                "mode": context.run.mode,
            })
            try:
                await self._batches(context)
            except _Halt as halt:
                self._halted(context, halt)
            else:
                self._completed(context)
        except asyncio.CancelledError:
            if not context.abort_requested:
                self._interrupted(context)
                raise
            task.uncancel()
            self._aborted(context)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._active = None
        run = self.runs.require(context.run_id)
        self._emit(context, "run.end", state=run.status, message=run.reason or "")
        return run

    async def _watch(self, context: _Context, task: asyncio.Task[Any]) -> None:
        """Cancel the run's task when another process aborts (or rejects) the run."""
        while True:
            await asyncio.sleep(self.poll_interval)
            run = self.runs.get(context.run_id)
            if run is not None and run.status == "aborted" and not context.abort_requested:
                context.abort_requested = True
                task.cancel()
                return

    async def _batches(self, context: _Context) -> None:
        procedure = context.procedure
        batches = context.run.batches
        for number, batch in enumerate(batches, 1):
            if not any(self._todo(context, step, batch) for step in procedure.steps):
                continue
            self._emit(context, "batch.start", data={
                "number": number, "total": len(batches), "hosts": list(batch)})
            if procedure.strategy == "host-first":
                for host in batch:
                    for step in procedure.steps:
                        if self._todo(context, step, [host]):
                            await self._step(context, step, [host])
                            self._after_step(context, batch, number)
            else:
                for step in procedure.steps:
                    hosts = self._todo(context, step, batch)
                    if hosts:
                        await self._step(context, step, hosts)
                        self._after_step(context, batch, number)

    def _todo(self, context: _Context, step: Step, hosts: list[str]) -> list[str]:
        """Hosts of ``hosts`` where ``step`` is unfinished and that have not failed."""
        failed = set(context.run.failed_hosts())
        record = context.run.step(step.id)
        return [
            h for h in hosts
            if h not in failed and record.hosts.get(h, HostResult()).state in UNFINISHED_STATES
        ]

    def _after_step(self, context: _Context, batch: list[str], number: int) -> None:
        """Cancel the rest of failed hosts; stop the run when the batch fails too much."""
        failed_anywhere = set(context.run.failed_hosts())
        failed = [h for h in batch if h in failed_anywhere]
        if failed:
            def cancel_rest(run: ProcedureRun) -> None:
                for host in failed:
                    at = next(
                        (r.id for r in run.steps if r.hosts.get(host, HostResult()).state == "failed"),
                        "?",
                    )
                    for record in run.steps:
                        result = record.hosts.get(host)
                        if result is not None and result.state == "waiting":
                            result.state = "cancelled"
                            result.reason = f"not run: the host failed at step {at}"

            context.run = self.runs.update(context.run_id, cancel_rest)[0]
        limit = context.procedure.max_fail_percentage
        if batch_should_stop(len(failed), len(batch), limit):
            share = f"{len(failed)} of {len(batch)} hosts of batch {number} failed"
            why = (
                f"{share}, more than max_fail_percentage {limit:g}%" if limit is not None
                and len(failed) < len(batch) else share
            )
            reason = f"the run stopped: {why}"

            def stop(run: ProcedureRun) -> None:
                _cancel_unfinished(run, reason, include_running=False)

            context.run = self.runs.update(context.run_id, stop)[0]
            raise _Halt("failed", reason)

    async def _step(self, context: _Context, step: Step, hosts: list[str]) -> None:
        procedure = context.procedure
        permission = step_permission(context.role, step, context.check)
        display = context.display_values(hosts)
        secrets = context.secret_names
        instructions = render_text(step.instructions, display, secret_names=secrets)
        self._emit(context, "step.start", step_id=step.id, data={
            "number": procedure.step_index(step.id) + 1,
            "total": len(procedure.steps),
            "title": render_text(step.title, display, secret_names=secrets),
            "kind": step.kind,
            "mutates": step.mutates,
            "trainee_safe": step.trainee_safe,
            "hosts": list(hosts),
            "instructions": instructions,
            "decision": permission.decision.value,
            "reason": permission.reason,
        })
        if permission.decision is StepDecision.DENY:
            raise PermissionDenied(permission.reason)
        if permission.decision is StepDecision.SKIP:
            self._skip(context, step, hosts, permission.reason)
            return
        if permission.decision is StepDecision.SIGNOFF:
            await self._decision(context, step, "signoff", hosts, permission.reason)
        if step.kind == "approval":
            approval = await self._decision(
                context, step, "approval", hosts, "the procedure asks for an approval here"
            )
            now = utc_now()
            self._record(context, step, {
                h: HostResult(state="ok", start=now, end=now, duration=0.0,
                              confirmed_by=approval.by, note=approval.comment or None,
                              reason=f"approved by {approval.by}")
                for h in hosts
            })
        elif step.kind == "input":
            await self._input(context, step, hosts)
        elif step.kind == "manual":
            await self._manual(context, step, hosts, instructions)
        else:
            await self._commands(context, step, hosts)

    def _skip(self, context: _Context, step: Step, hosts: list[str], reason: str) -> None:
        now = utc_now()
        results: dict[str, HostResult] = {}
        for name in hosts:
            command = None
            if step.runs_command:
                try:
                    command = self._render(context, step, name).redacted()
                except (VariableError, RunnerError) as exc:
                    command = f"(cannot show the command yet: {exc})"
            results[name] = HostResult(
                state="skipped", start=now, end=now, duration=0.0, command=command, reason=reason
            )
        self._record(context, step, results)

    async def _decision(
        self, context: _Context, step: Step, kind: str, hosts: list[str], reason: str
    ) -> Approval:
        """The approval of ``step``; waits (or halts in ``waiting``) until one is given."""
        run = self.runs.require(context.run_id)
        decided = run.decision(step.id, kind)
        if decided is not None and decided.decision == "approved":
            return decided
        pending = run.pending
        if pending is None or pending.step != step.id or pending.kind != kind:
            pending = PendingApproval(
                step=step.id, kind=kind, requested_by=self.services.actor,
                requested_at=utc_now(), hosts=list(hosts), reason=reason,
            )
            request = pending

            def ask(stored: ProcedureRun) -> None:
                stored.status = "waiting"
                stored.pending = request
                stored.reason = f"waiting for an approver to {'sign off' if kind == 'signoff' else 'approve'} step {step.id}"

            context.run = self.runs.update(context.run_id, ask)[0]
            self.services.audit.append("procedure.approval.request", context.run_id, {
                "step": step.id, "kind": kind, "hosts": list(hosts), "reason": reason})
        self._emit(context, "wait", step_id=step.id, message=reason, data=pending.to_dict())
        deadline = None if self.approval_wait is None else time.monotonic() + self.approval_wait
        while deadline is None or time.monotonic() < deadline:
            pause = self.poll_interval if deadline is None else min(
                self.poll_interval, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause)
            run = self.runs.require(context.run_id)
            if run.status == "aborted":
                raise _Halt("aborted", run.reason or "aborted")
            decided = run.decision(step.id, kind)
            if decided is not None and decided.decision == "approved" and run.pending is None:
                context.run = self.runs.update(context.run_id, _set_running)[0]
                self._emit(context, "approved", step_id=step.id, data=decided.to_dict())
                return decided
        raise _Halt("waiting", f"waiting for an approver: `itop procedure approve {context.run_id}`")

    async def _input(self, context: _Context, step: Step, hosts: list[str]) -> None:
        variable = context.procedure.variable(step.variable or "")
        if variable is None:
            raise RunnerError(f"step {step.id} asks for an undeclared variable {step.variable!r}")
        if variable.name in context.given and variable.name in context.values:
            note = "given when the run started"
        else:
            value = await self._ask_value(context, variable, step, None)
            if value is None:
                raise _Halt("paused", f"step {step.id} needs a value for {variable.name}")
            context.values[variable.name] = value
            context.given.add(variable.name)
            name = variable.name

            def remember(run: ProcedureRun) -> None:
                if not variable.secret:
                    run.variables[name] = value
                if name not in run.answered:
                    run.answered.append(name)

            context.run = self.runs.update(context.run_id, remember)[0]
            self.services.audit.append("procedure.input", context.run_id, {
                "step": step.id, "variable": name,
                "value": REDACTED if variable.secret else value})
            note = "value given"
        now = utc_now()
        self._record(context, step, {
            h: HostResult(state="ok", start=now, end=now, duration=0.0,
                          confirmed_by=self.services.actor, note=note)
            for h in hosts
        })

    async def _ask_value(
        self, context: _Context, variable: Variable, step: Step | None, problem: str | None
    ) -> str | None:
        """Ask for a valid value (at most MAX_INPUT_TRIES times); None when cancelled."""
        if self.callbacks.ask is None:
            return None
        for _ in range(MAX_INPUT_TRIES):
            value = await _answer(self.callbacks.ask(variable, step, problem))
            if value is None:
                return None
            if value == "" and variable.default is not None:
                value = variable.default
            problem = value_problem(variable, value)
            if problem is None:
                return value
            self._emit(context, "notice", step_id=step.id if step else None,
                       message=f"{variable.name}: {problem}")
        return None

    async def _manual(self, context: _Context, step: Step, hosts: list[str], instructions: str) -> None:
        answer: Answer = False
        if self.callbacks.manual is not None:
            answer = await _answer(self.callbacks.manual(step, hosts, instructions))
        if context.check:
            # Check mode shows the instructions and does nothing: nobody
            # confirmed anything, whatever the operator answered.
            now = utc_now()
            self._record(context, step, {
                h: HostResult(state="skipped", start=now, end=now, duration=0.0,
                              reason=CHECK_MODE_MANUAL)
                for h in hosts
            })
            return
        note = note_text(answer) if isinstance(answer, str) else None
        detail = {"step": step.id, "kind": "manual", "hosts": list(hosts), "note": note}
        if answer is False:
            self.services.audit.append("procedure.confirm", context.run_id, detail, result="declined")
            raise _Halt("paused", f"manual step {step.id} was not confirmed as done")
        self.services.audit.append("procedure.confirm", context.run_id, detail)
        now = utc_now()
        self._record(context, step, {
            h: HostResult(state="ok", start=now, end=now, duration=0.0,
                          confirmed_by=self.services.actor, note=note)
            for h in hosts
        })

    def _gate(self, context: _Context, step: Step, hosts: list[str]) -> None:
        """Ask the change gate before a mutating step runs on production hosts.

        Only a mutating step in normal (or trainee) mode, not check mode, on
        a batch holding at least one host with status ``production`` is
        gated, under the run's ``change_id`` when it has one (else the
        single active change covering those hosts). A refusal runs the step
        on none of ``hosts`` and *pauses* the run with the gate's reason
        (the hosts are not failed: nothing went wrong on them, and ``itop
        procedure resume`` continues once a change is active). The gate
        audits its decision and writes the step to the change's work log.

        A run the change workflow made for its change is let through by
        the gate's own rule (:meth:`ChangeGate.check_step`).
        """
        targets = [h for h in (context.hosts.get(n) for n in hosts) if h is not None]
        if not any(h.status == PRODUCTION for h in targets):
            return
        run = context.run
        decision = ChangeGate(self.services).check_step(
            targets, run_id=run.id, change_ref=run.change_id,
            what=f"procedure {run.procedure_id} step {step.id} ({run.id})",
        )
        if not decision.allowed:
            raise _Halt("paused", f"step {step.id} refused by the change gate: {decision.reason}")

    async def _commands(self, context: _Context, step: Step, hosts: list[str]) -> None:
        confirmed_by: str | None = None
        note: str | None = None
        if step.mutates and not context.check:
            self._gate(context, step, hosts)
            answer: Answer = False
            if self.callbacks.confirm is not None:
                answer = await _answer(self.callbacks.confirm(step, hosts))
            note = note_text(answer) if isinstance(answer, str) else None
            detail = {"step": step.id, "kind": step.kind, "hosts": list(hosts), "note": note}
            if answer is False:
                self.services.audit.append("procedure.confirm", context.run_id, detail, result="declined")
                raise _Halt("paused", f"step {step.id} was not confirmed")
            self.services.audit.append("procedure.confirm", context.run_id, detail)
            confirmed_by = self.services.actor

        rendered: dict[str, RenderedCommand] = {}
        starting: dict[str, HostResult] = {}
        now = utc_now()
        record = context.run.step(step.id)
        for name in hosts:
            earlier = _previous(record.hosts.get(name, HostResult()))
            result = HostResult(state="running", start=now, confirmed_by=confirmed_by,
                                note=note, previous=earlier)
            try:
                rendered[name] = self._render(context, step, name)
                result.command = rendered[name].redacted()
            except (VariableError, RunnerError) as exc:
                result.state = "failed"
                result.end = now
                result.duration = 0.0
                result.reason = str(exc)
            starting[name] = result
        self._record(context, step, starting, emit=False)
        for name, result in starting.items():
            if result.state == "failed":
                self._emit_host_end(context, step, name, result)
        runnable = [h for h in hosts if h in rendered]
        targets = [context.hosts[h] for h in runnable]
        known = [h for h in targets if h is not None]

        async def work(host: Host) -> None:
            begin = starting[host.name]
            self._emit(context, "host.start", step_id=step.id, host=host.name,
                       data={"command": begin.command})
            result = await self._attempts(context, step, host, rendered[host.name], begin)
            self._finish_host(context, step, host.name, result)

        def cancelled(host: Host, elapsed: float) -> None:
            begin = starting[host.name]
            reason = "aborted" if context.abort_requested else "interrupted"
            result = HostResult(
                state="cancelled", start=begin.start, end=utc_now(), duration=round(elapsed, 3),
                command=begin.command, reason=f"{reason} while running",
                confirmed_by=begin.confirmed_by, note=begin.note, previous=begin.previous,
            )
            self._finish_host(context, step, host.name, result)

        await fan_out(known, work, limit=self.services.settings.forks, on_cancelled=cancelled)

    def _render(self, context: _Context, step: Step, host_name: str) -> RenderedCommand:
        host = context.hosts.get(host_name)
        if host is None:
            raise RunnerError(f"host {host_name} is no longer in the inventory")
        values = {**context.values, **builtin_values(host.name, host.connect_address)}
        return render_command(step.command or "", values, secret_names=context.secret_names)

    async def _attempts(
        self, context: _Context, step: Step, host: Host, command: RenderedCommand, begin: HostResult
    ) -> HostResult:
        """Run the step's command on one host with its retries or ``until`` polling."""
        if step.until is not None:
            max_attempts, delay = step.until.max_attempts(), step.until.interval
            deadline: float | None = time.monotonic() + step.until.timeout
        else:
            max_attempts, delay, deadline = step.retries + 1, step.delay, None
        timeout = step.timeout if step.timeout is not None else DEFAULT_STEP_TIMEOUT
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(host, command, timeout)
            failure = outcome.error or step.expect.failure(outcome.exit_status, outcome.stdout)
            final = (
                failure is None
                or host.name in self.unknown_keys
                or host.name in self.changed_keys
                or attempt >= max_attempts
                or (deadline is not None and time.monotonic() + delay > deadline)
            )
            if final:
                break
            self._emit(context, "attempt", step_id=step.id, host=host.name,
                       message=redact_output(failure or "", context.secret_values()),
                       data={"attempt": attempt, "of": max_attempts, "delay": delay})
            await asyncio.sleep(delay)
        secrets = context.secret_values()
        output, cut_out = bounded_text(redact_output(outcome.stdout, secrets))
        errors, cut_err = bounded_text(redact_output(outcome.stderr, secrets))
        return HostResult(
            state="ok" if failure is None else "failed",
            start=begin.start,
            end=utc_now(),
            duration=round(time.monotonic() - started, 3),
            exit_code=outcome.exit_status,
            attempts=attempt,
            output=output,
            stderr=errors,
            truncated=outcome.truncated or cut_out or cut_err,
            command=begin.command,
            reason=None if failure is None else redact_output(failure, secrets),
            confirmed_by=begin.confirmed_by,
            note=begin.note,
            previous=begin.previous,
        )

    async def _attempt(self, host: Host, command: RenderedCommand, timeout: float) -> RunResult:
        started = time.monotonic()
        text = command.redacted()
        try:
            transport = self.services.transports.for_host(host)
            return await transport.run(
                in_posix_sh(command.text),
                timeout=timeout,
                limit=self.services.settings.output_limit,
                stdin=command.stdin,
            )
        except HostKeyUnknown as exc:
            self.unknown_keys[host.name] = exc
            error = str(exc)
        except HostKeyChanged as exc:
            self.changed_keys[host.name] = exc
            error = str(exc)
        except (TransportError, OSError) as exc:
            error = str(exc) or type(exc).__name__
        return RunResult(host.name, text, None, "", "", time.monotonic() - started, error=error)

    def _finish_host(self, context: _Context, step: Step, host: str, result: HostResult) -> None:
        """Persist one host's result at once, audit it, tell the observer."""
        context.run = self.runs.set_host_result(context.run_id, step.id, host, result)
        self.services.audit.append(
            "procedure.step",
            host,
            {
                "run": context.run_id,
                "step": step.id,
                "kind": step.kind,
                "state": result.state,
                "command": result.command,
                "exit_status": result.exit_code,
                "attempts": result.attempts,
                "duration": result.duration,
                "reason": result.reason,
            },
            result={"ok": "ok", "failed": "failed"}.get(result.state, result.state),
        )
        self._emit_host_end(context, step, host, result)

    def _record(
        self, context: _Context, step: Step, results: dict[str, HostResult], *, emit: bool = True
    ) -> None:
        context.run = self.runs.set_host_results(context.run_id, step.id, results)
        if emit:
            for host, result in results.items():
                self._emit_host_end(context, step, host, result)

    def _emit_host_end(self, context: _Context, step: Step, host: str, result: HostResult) -> None:
        self._emit(context, "host.end", step_id=step.id, host=host, state=result.state,
                   message=result.reason or "", data=result.to_dict())

    # -- how a run ends ------------------------------------------------------------

    def _completed(self, context: _Context) -> None:
        failed = context.run.failed_hosts()
        reason: str | None
        if failed:
            status = "failed"
            reason = f"{len(failed)} of {len(context.run.targets)} hosts failed: {', '.join(failed)}"
        else:
            status = "succeeded"
            reason = "check mode: nothing was changed" if context.check else None
        self._end(context, status, reason)

    def _halted(self, context: _Context, halt: _Halt) -> None:
        if halt.status == "failed":
            self._end(context, "failed", halt.reason)
        elif halt.status == "aborted":
            self._aborted(context)
        elif halt.status == "paused":
            self._pause(context, halt.reason)
        # "waiting": the pending approval is stored already.

    def _end(self, context: _Context, status: str, reason: str | None) -> None:
        def end(run: ProcedureRun) -> None:
            if run.finished:
                return
            run.status = status
            run.ended = utc_now()
            run.reason = reason
            run.pending = None

        context.run = self.runs.update(context.run_id, end)[0]
        self.services.audit.append(
            "procedure.run.end",
            context.run_id,
            {"status": status, "reason": reason, "counts": context.run.counts()},
            result={"succeeded": "ok"}.get(status, status),
        )

    def _pause(self, context: _Context, reason: str) -> None:
        def pause(run: ProcedureRun) -> None:
            if run.finished:
                return
            for record in run.steps:
                for result in record.hosts.values():
                    if result.state == "running":
                        result.state = "cancelled"
                        result.reason = reason
            if run.status != "waiting":
                run.status = "paused"
                run.reason = reason

        context.run = self.runs.update(context.run_id, pause)[0]
        self.services.audit.append("procedure.run.pause", context.run_id, {"reason": reason})

    def _interrupted(self, context: _Context) -> None:
        self._pause(context, "interrupted: continue with `itop procedure resume`")

    def _aborted(self, context: _Context) -> None:
        # abort() or reject() recorded the end already (maybe in another process).
        def tidy(run: ProcedureRun) -> None:
            if not run.finished:
                run.status = "aborted"
                run.ended = utc_now()
                run.reason = run.reason or "aborted"
            _cancel_unfinished(run, "aborted", include_running=True)

        context.run = self.runs.update(context.run_id, tidy)[0]

    # -- approvals -------------------------------------------------------------------

    def _decide(self, run_id: str, decision: str, approver: str | None, comment: str) -> ProcedureRun:
        run_id = normalize_run_id(run_id)
        actor = self.services.actor
        approver = approver or actor
        action = "procedure.approve" if decision == "approved" else "procedure.reject"
        if approver != actor:
            raise PermissionDenied(f"{actor} cannot decide in the name of {approver}")
        self.services.require_writable("approve procedure runs")
        role = Role.parse(self.services.settings.role_for(approver))
        comment = note_text(comment) or ""

        def change(run: ProcedureRun) -> Approval:
            pending = run.pending
            if run.status != "waiting" or pending is None:
                raise RunnerError(f"{run.id} is not waiting for an approval (status {run.status})")
            if approver in (pending.requested_by, run.operator):
                raise PermissionDenied(
                    f"{approver} asked for this approval of {run.id} (or runs it): a different "
                    "person with the approver role must decide"
                )
            if not can_approve(role, approver, pending.requested_by):
                raise PermissionDenied(
                    f"{approver} has the role {role}; deciding needs the approver or admin role "
                    "(roles: in the config)"
                )
            approval = Approval(
                step=pending.step, kind=pending.kind, by=approver, decision=decision,
                at=utc_now(), comment=comment, requested_by=pending.requested_by,
            )
            run.approvals.append(approval)
            run.pending = None
            if decision == "approved":
                run.status = "paused"
                run.reason = f"{pending.kind} of step {pending.step} approved by {approver}"
            else:
                reason = f"{pending.kind} of step {pending.step} rejected by {approver}: {comment}"
                record = run.step(pending.step)
                for host in pending.hosts:
                    record.hosts[host] = HostResult(
                        state="failed", start=pending.requested_at, end=approval.at,
                        reason=reason, confirmed_by=approver, note=comment or None,
                    )
                run.status = "aborted"
                run.ended = approval.at
                run.reason = reason
                _cancel_unfinished(run, "rejected", include_running=False)
            return approval

        try:
            run, approval = self.runs.update(run_id, change)
        except PermissionDenied as exc:
            self.services.audit.append(action, run_id, {"comment": comment, "refused": str(exc)},
                                       result="refused")
            raise
        self.services.audit.append(action, run.id, {
            "step": approval.step, "kind": approval.kind, "comment": comment,
            "requested_by": approval.requested_by})
        if decision == "rejected":
            self.services.audit.append("procedure.run.end", run.id,
                                       {"status": "aborted", "reason": run.reason}, result="aborted")
        return run

    # -- events --------------------------------------------------------------------

    def _emit(
        self,
        context: _Context,
        kind: str,
        *,
        step_id: str | None = None,
        host: str | None = None,
        state: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        observer = self.callbacks.observer
        if observer is None:
            return
        event = RunEvent(kind, context.run_id, step_id, host, state, message, data or {})
        try:
            observer(event)
        except Exception as exc:  # noqa: BLE001 - a display problem must not break a run
            self.warnings.append(f"progress display failed: {type(exc).__name__}: {exc}")


# -- helpers ---------------------------------------------------------------------------


async def _answer(value: T | Awaitable[T]) -> T:
    """The callback's answer, awaited when it is awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


def _step_records(procedure: Procedure, hosts: list[str]) -> list[StepRecord]:
    return [
        StepRecord(step.id, step.title, step.kind, step.mutates, {h: HostResult() for h in hosts})
        for step in procedure.steps
    ]


def _previous(result: HostResult) -> list[dict[str, Any]]:
    """``result.previous`` plus ``result`` itself when it started (kept as evidence).

    A result still ``running`` is an attempt cut off by a crash.
    """
    earlier = list(result.previous)
    if result.state in ("running", "ok", "failed", "cancelled") and result.start is not None:
        entry = result.to_dict()
        entry.pop("previous", None)
        if result.state == "running":
            entry["reason"] = "cut off: itop stopped while it ran"
        earlier.append(entry)
    return earlier[-PREVIOUS_RESULTS_KEPT:]


def _set_running(run: ProcedureRun) -> None:
    if not run.finished:
        run.status = "running"
        run.reason = None


def _cancel_unfinished(run: ProcedureRun, reason: str, *, include_running: bool) -> None:
    states = {"waiting", "running"} if include_running else {"waiting"}
    for record in run.steps:
        for result in record.hosts.values():
            if result.state in states:
                result.state = "cancelled"
                result.reason = reason
