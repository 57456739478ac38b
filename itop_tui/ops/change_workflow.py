"""The change process as use cases: write, move, implement and review changes.

:class:`ChangeWorkflow` is what ``itop change ...`` and the Changes pane
call. Every action loads the change, builds the :class:`ActionContext` (who
acts with which role, now, blackouts over the inventory, the backup rule),
applies the pure state machine of :mod:`itop_tui.domain.change` in one store
transaction (work log entry included) and writes ``change.<action>`` to the
audit log. A refusal raises :class:`ChangeRefused` naming the missing guard
and is audited with result ``refused``.

``implement`` runs the change's implementation procedure on the change's
hosts with the :class:`ProcedureRunner`, inside the window only, links the
run to the change, and sets the outcome: ``review`` when it succeeded;
when it failed, the backout procedure is offered (``backout_on_failure``)
and the change ends ``backed_out`` or ``failed``.

The backup-freshness hook: ``last_good_backup(host) -> datetime | None``.
Until the backups capability provides it, it is None, and ``implement`` is
refused only when the config requires a backup (``changes.require_backup_hours``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from itop_tui.domain.change import (
    CHANGE_TYPES,
    PENDING_STATES,
    ActionContext,
    ActionInput,
    Change,
    ChangeRefused,
    apply,
    assess_risk,
    available_actions,
    check,
    from_template,
    iso,
    link_run,
    log_entry,
    new_change,
    parse_iso,
    raise_risk,
    with_risk,
)
from itop_tui.domain.change_windows import (
    BlackoutHit,
    CalendarEntry,
    Conflict,
    blackout_hits,
    conflicts_with,
    find_conflicts,
    outside_maintenance,
    upcoming,
)
from itop_tui.domain.models import Host, Inventory
from itop_tui.domain.procedure import Procedure, Variable
from itop_tui.domain.roles import Role
from itop_tui.domain.selectors import select_hosts
from itop_tui.domain.substitution import (
    BUILTIN_VARIABLES,
    VariableError,
    resolve_values,
    value_problem,
)
from itop_tui.ops.procedure_runner import ProcedureRunner, RunCallbacks, RunEvent
from itop_tui.services.change_repo import ChangeRepository
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import ProcedureRepository, ProcedureRun, RunRepository

BackupLookup = Callable[[Host], datetime | None]
"""When ``host`` last had a good backup (UTC), or None when it never had one."""

BackoutDecision = bool | Callable[[Change, ProcedureRun], bool | Awaitable[bool]]
"""Whether to run the backout procedure after a failed implementation."""

# Run statuses after which the run is over for the change.
_RUN_OVER = ("succeeded", "failed", "aborted")
# Where a secret value comes from for `itop change implement|backout` (never stored).
SECRET_ENV_PREFIX = "ITOP_VAR_"


def default_backup_lookup(services: Services) -> BackupLookup | None:
    """When each host last had a good backup, from the backups capability's records.

    None when this itop has no backups capability (its repository cannot be
    imported): then the backup rule can only refuse, never check. The
    backups file is read once, on the first question.
    """
    try:
        from itop_tui.services.backup_repo import BackupRepository
    except ImportError:
        return None
    if not hasattr(BackupRepository, "last_good_backups"):
        return None
    data_dir = services.settings.data_dir
    known: dict[str, datetime | None] = {}
    loaded = False

    def lookup(host: Host) -> datetime | None:
        nonlocal loaded
        if not loaded:
            for name, run in BackupRepository.in_data_dir(data_dir).last_good_backups().items():
                known[name] = parse_iso(run.end or run.start)
            loaded = True
        return known.get(host.name)

    return lookup


@dataclass
class ChangeSpec:
    """What a new change is written from (CLI ``change new``, the pane's form).

    ``hosts`` is a selector, resolved to host names when the change is
    written. ``type`` None means standard with a template, else normal.
    ``risk`` may raise the computed risk, never lower it. ``start`` and
    ``end`` are the window (a template's duration gives the end when only the
    start is given).
    """

    type: str | None = None
    title: str = ""
    description: str = ""
    justification: str = ""
    hosts: str = ""
    impact: str = ""
    outage: bool | None = None
    implementation: str | None = None
    backout: str | None = None
    backout_plan: str = ""
    test_plan: str = ""
    risk: str | None = None
    template: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    assignee: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class ImplementResult:
    """What ``implement`` or ``backout`` did.

    ``ok`` is True when the change went where it should (implemented and up
    for review, or backed out as asked); ``message`` says what happened and
    what to do next.
    """

    change: Change
    ok: bool
    message: str
    run: ProcedureRun | None = None
    backout_run: ProcedureRun | None = None


@dataclass(frozen=True)
class NeededVariable:
    """A variable one of a change's procedures needs that has no value yet.

    Secret variables are always needed: they are never stored on a change.
    """

    purpose: str  # implementation or backout
    procedure: str
    variable: Variable

    @property
    def name(self) -> str:
        """The variable's name."""
        return self.variable.name


@dataclass(frozen=True)
class BackupStatus:
    """The last good backup of one host of a change, if the backups capability knows it."""

    host: str
    last_good: datetime | None
    known: bool  # False while no backup capability answers


class ChangeWorkflow:
    """Creates changes and applies actions to them for the person running this itop.

    ``clock`` returns now (UTC); ``last_good_backup`` is the backup-freshness
    hook. The repositories default to the data dir's files.
    """

    def __init__(
        self,
        services: Services,
        *,
        changes: ChangeRepository | None = None,
        procedures: ProcedureRepository | None = None,
        runs: RunRepository | None = None,
        last_good_backup: BackupLookup | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.services = services
        data_dir = services.settings.data_dir
        self.changes = changes or ChangeRepository.in_data_dir(data_dir)
        self.procedures = procedures or ProcedureRepository.in_data_dir(data_dir)
        self.runs = runs or RunRepository.in_data_dir(data_dir)
        self.last_good_backup = (
            last_good_backup if last_good_backup is not None else default_backup_lookup(services)
        )
        self.clock = clock or (lambda: datetime.now(UTC))

    # -- reading -------------------------------------------------------------------

    @property
    def role(self) -> Role:
        """The role of the person running this itop."""
        return Role.parse(self.services.role)

    def get(self, ref: str) -> Change:
        """The change ``ref``; ``ChangeNotFound`` or ValueError (malformed) otherwise."""
        return self.changes.require(ref)

    def find(
        self,
        *,
        states: Sequence[str] = (),
        types: Sequence[str] = (),
        host: str | None = None,
        requester: str | None = None,
        include_final: bool = True,
    ) -> list[Change]:
        """Changes matching the filters, pending ones first (assess, authorize,
        scheduled, implement), then the rest; newest first within each."""
        found = []
        for change in self.changes.all():
            if states and change.state not in states:
                continue
            if types and change.type not in types:
                continue
            if host is not None and not change.covers(host):
                continue
            if requester is not None and change.requester != requester:
                continue
            if not include_final and not states and change.state in ("closed", "cancelled"):
                continue
            found.append(change)
        return sorted(found, key=lambda c: (c.state not in PENDING_STATES, -c.number))

    def context(self, change: Change | None = None, inp: ActionInput | None = None,
                action: str | None = None) -> ActionContext:
        """The :class:`ActionContext` of the person running this itop, now.

        With a change and an action that schedules, the blackout its window
        falls in is looked up; for ``implement`` the backup rule is checked.
        """
        now = self.clock()
        settings = self.services.settings.changes
        blackout = None
        backup_problem = None
        if change is not None and action is not None:
            if _schedules(change, action):
                hits = self.blackouts_for(change, inp, now)
                blackout = "; ".join(hit.describe() for hit in hits) or None
            if action == "implement":
                backup_problem = self.backup_problem(change, now)
        return ActionContext(
            actor=self.services.actor,
            role=self.role,
            now=now,
            allow_self_approval=settings.allow_self_approval,
            blackout=blackout,
            backup_problem=backup_problem,
            emergency_window=timedelta(minutes=settings.emergency_window_minutes),
        )

    def available_actions(self, change: Change) -> dict[str, str | None]:
        """Each action with None when the state and the role allow it, else why not."""
        return available_actions(change, self.context(change, None, None))

    def blackouts_for(
        self, change: Change, inp: ActionInput | None = None, now: datetime | None = None
    ) -> list[BlackoutHit]:
        """Blackouts the change's window (or the one ``inp`` gives) overlaps on its hosts."""
        start, end = _window_of(change, inp, now or self.clock(),
                                self.services.settings.changes.emergency_window_minutes)
        if start is None or end is None:
            return []
        return blackout_hits(self.services.settings.changes.blackouts,
                             self.services.inventory.load(), list(change.hosts), start, end)

    def conflicts(self, change: Change) -> list[Conflict]:
        """Approved changes whose windows overlap this one's on a shared host."""
        return conflicts_with(change, self.changes.all())

    def all_conflicts(self) -> list[Conflict]:
        """Every conflict among approved changes."""
        return find_conflicts(self.changes.all())

    def warnings(self, change: Change) -> list[str]:
        """What a person should know about the change's schedule: conflicts,
        blackouts (for emergencies, which may ignore them), hosts outside their
        maintenance windows, and hosts no longer in the inventory."""
        notes = [f"conflict: {c.describe()}" for c in self.conflicts(change)]
        start, end = change.start, change.end
        inventory = self.services.inventory.load()
        if start is not None and end is not None:
            rules = self.services.settings.changes
            for hit in blackout_hits(rules.blackouts, inventory, list(change.hosts), start, end):
                notes.append(f"inside blackout {hit.describe()}")
            outside = outside_maintenance(rules.maintenance_windows, inventory,
                                          list(change.hosts), start, end)
            if outside:
                notes.append(f"outside the maintenance windows of {', '.join(outside)}")
        missing = [h for h in change.hosts if h not in inventory.hosts]
        if missing:
            notes.append(f"not in the inventory any more: {', '.join(missing)}")
        if change.state not in ("closed", "cancelled"):
            try:
                needed = [n for n in self.missing_variables(change) if not n.variable.secret]
            except ChangeRefused as refusal:
                notes.append(refusal.reason)
            else:
                notes.extend(f"variable {n.name} of {n.procedure} ({n.purpose}) has no value: "
                             "it is asked when implementing" for n in needed)
        return notes

    def calendar(self, days: float = 7.0) -> list[CalendarEntry]:
        """Approved change windows and config windows from now for ``days`` days."""
        now = self.clock()
        return upcoming(self.changes.all(), self.services.settings.changes.windows,
                        now, now + timedelta(days=days))

    def approvers_for(self, change: Change) -> list[str]:
        """Logins from ``roles`` in config who may approve ``change`` (not its requester,
        unless self-approval is allowed)."""
        settings = self.services.settings
        allow_self = settings.changes.allow_self_approval
        names = []
        for login, role in sorted(settings.roles.items()):
            may = Role.parse(role) >= Role.APPROVER and (allow_self or login != change.requester)
            if may and login not in change.approved_by:
                names.append(login)
        return names

    def backup_status(self, change: Change) -> list[BackupStatus]:
        """The last good backup of each host of the change, as far as it is known."""
        inventory = self.services.inventory.load()
        lookup = self.last_good_backup
        result = []
        for name in change.hosts:
            host = inventory.hosts.get(name)
            if lookup is None or host is None:
                result.append(BackupStatus(name, None, False))
            else:
                result.append(BackupStatus(name, lookup(host), True))
        return result

    def backup_problem(self, change: Change, now: datetime | None = None) -> str | None:
        """Why the backup rule forbids implementing now (None: it does not)."""
        hours = self.services.settings.changes.require_backup_hours
        if not hours:
            return None
        if self.last_good_backup is None:
            return (f"the config requires a good backup younger than {hours:g} h of every host "
                    "(changes.require_backup_hours), and no backup capability is available to "
                    "check it")
        now = now or self.clock()
        limit = timedelta(hours=hours)
        stale = []
        for status in self.backup_status(change):
            if status.last_good is None:
                stale.append(f"{status.host} (none)")
            elif now - status.last_good > limit:
                stale.append(f"{status.host} ({iso(status.last_good)})")
        if not stale:
            return None
        return (f"no good backup younger than {hours:g} h (changes.require_backup_hours) for: "
                f"{', '.join(stale)}")

    # -- writing a change ----------------------------------------------------------------

    def create(self, spec: ChangeSpec) -> Change:
        """Write a new draft change from ``spec`` (or a standard template); audited ``change.new``."""
        self.services.require_writable("write changes")
        ctx = self.context()
        if ctx.role < Role.OPERATOR:
            raise ChangeRefused(
                f"{ctx.actor} has the {ctx.role.label} role; writing a change needs operator "
                "or above", "role", action="new")
        values: dict[str, Any] = {}
        change_type = spec.type or ("standard" if spec.template else "normal")
        if change_type not in CHANGE_TYPES:
            raise ChangeRefused(
                f"unknown change type {change_type!r}; types: {', '.join(CHANGE_TYPES)}", "type",
                action="new")
        duration: timedelta | None = None
        if spec.template:
            templates = self.services.settings.changes.templates
            template = templates.get(spec.template)
            if template is None:
                known = ", ".join(sorted(templates)) or "none (changes.templates in the config)"
                raise ChangeRefused(
                    f"no standard change template {spec.template!r}; templates: {known}",
                    "template", action="new")
            if change_type != "standard":
                raise ChangeRefused(
                    "a change from a template is a standard change; leave out --type or give "
                    "--type standard", "type", action="new")
            values.update(from_template(template))
            duration = timedelta(minutes=template.duration_minutes)
        for name in ("title", "description", "justification", "impact", "implementation",
                     "backout", "backout_plan", "test_plan", "assignee"):
            given = getattr(spec, name)
            if given:
                values[name] = given
        if spec.outage is not None:
            values["outage"] = spec.outage
        if spec.hosts:
            values["selector"] = spec.hosts
        if spec.variables:
            values["variables"] = {**values.get("variables", {}), **spec.variables}
        if spec.start is not None:
            values["window_start"] = iso(spec.start)
            end = spec.end or (spec.start + duration if duration is not None else None)
            if end is not None:
                values["window_end"] = iso(end)
        elif spec.end is not None:
            values["window_end"] = iso(spec.end)
        inventory = self.services.inventory.load()
        if values.get("selector"):
            values["hosts"] = self._resolve(inventory, values["selector"], "new")
        self._check_procedures(values, "new")
        change = new_change(requester=self.services.actor, now=ctx.now,
                            change_type=change_type, **values)
        change = self._with_risk(change, inventory)
        requested = spec.risk or change.risk_requested
        if requested is not None:
            change = raise_risk(change, requested)
        stored = self.changes.create(change)
        self.services.audit.append("change.new", stored.ref, {
            "type": stored.type, "title": stored.title, "hosts": list(stored.hosts),
            "risk": stored.risk, "template": stored.template, "state": stored.state,
        })
        return stored

    def edit(self, ref: str, fields: Mapping[str, Any]) -> Change:
        """Change fields of a draft; ``selector`` re-resolves the hosts, ``risk`` raises the
        risk, ``type`` changes the type (draft only). Audited ``change.edit``."""
        self.services.require_writable("edit changes")
        fields = dict(fields)
        new_type = fields.pop("type", None)
        risk = fields.pop("risk", None)
        change = self.get(ref)
        if new_type is not None and new_type != change.type:
            change = self.act(change.ref, "set_type", ActionInput(new_type=new_type))
        if not fields and risk is None:
            return change
        inventory = self.services.inventory.load()
        if fields.get("selector"):
            fields["hosts"] = self._resolve(inventory, str(fields["selector"]), "edit")
        self._check_procedures({**change.to_dict(), **fields}, "edit")
        inp = ActionInput(fields=fields) if fields else None

        def edit(current: Change) -> Change:
            ctx = self.context(current, inp, "edit")
            refusal = check(current, "edit", ctx, inp)
            if refusal is not None:
                raise refusal
            updated = apply(current, "edit", ctx, inp) if inp is not None else current
            updated = self._with_risk(updated, inventory)
            if risk is not None:
                updated = raise_risk(updated, risk)
                updated = log_entry(updated, actor=ctx.actor, now=ctx.now, kind="edit",
                                    text=f"risk raised to {risk}", detail={"risk": updated.risk})
            return updated

        return self._audited(ref, "edit", edit, {"fields": sorted(fields), "risk": risk})

    def act(self, ref: str, action: str, inp: ActionInput | None = None) -> Change:
        """Apply ``action`` to the change ``ref``; audited ``change.<action>``.

        Raises :class:`ChangeRefused` (audited as refused) when the state, the
        role or a guard does not allow it.
        """
        verb = "add notes to" if action == "note" else action.replace("_", " ")
        self.services.require_writable(f"{verb} changes")
        inp = inp or ActionInput()
        inventory = self.services.inventory.load() if action in ("submit", "assess") else None

        def change(current: Change) -> Change:
            if inventory is not None and current.state in ("draft", "assess"):
                # Criticality may have changed in the inventory since the change was written.
                current = self._with_risk(current, inventory)
            ctx = self.context(current, inp, action)
            return apply(current, action, ctx, inp)

        detail: dict[str, Any] = {}
        if inp.comment:
            detail["comment"] = inp.comment
        return self._audited(ref, action, change, detail)

    def submit(self, ref: str, comment: str = "") -> Change:
        """draft -> assess (normal), authorize (emergency) or scheduled (standard)."""
        return self.act(ref, "submit", ActionInput(comment=comment))

    def assess(self, ref: str, *, risk: str | None = None, comment: str = "") -> Change:
        """assess -> authorize (approvers); ``risk`` may raise the risk."""
        return self.act(ref, "assess", ActionInput(risk=risk, comment=comment))

    def approve(self, ref: str, comment: str = "") -> Change:
        """Record an approval; an emergency change is scheduled by it at once."""
        return self.act(ref, "approve", ActionInput(comment=comment))

    def reject(self, ref: str, comment: str) -> Change:
        """Reject (a comment is required): the change goes back to draft."""
        return self.act(ref, "reject", ActionInput(comment=comment))

    def schedule(
        self, ref: str, start: datetime | None = None, end: datetime | None = None
    ) -> Change:
        """authorize -> scheduled, in the given window or the one the change has."""
        return self.act(ref, "schedule", ActionInput(start=start, end=end))

    def cancel(self, ref: str, reason: str) -> Change:
        """Cancel a change not yet implemented (a reason is required)."""
        return self.act(ref, "cancel", ActionInput(comment=reason))

    def review(self, ref: str, *, what_happened: str, incidents: str = "",
               lessons: str = "") -> Change:
        """Record the post-implementation review form."""
        return self.act(ref, "review", ActionInput(
            what_happened=what_happened, incidents=incidents, lessons=lessons))

    def close(self, ref: str, code: str, notes: str) -> Change:
        """Close with a close code and notes."""
        return self.act(ref, "close", ActionInput(close_code=code, notes=notes))

    def note(self, ref: str, text: str) -> Change:
        """Add a note to the work log."""
        return self.act(ref, "note", ActionInput(text=text))

    def record_outcome(self, ref: str, outcome: str, comment: str = "") -> Change:
        """Record the outcome of an implementation done by hand: ``succeeded`` or ``failed``."""
        action = {"succeeded": "succeed", "failed": "fail"}.get(outcome)
        if action is None:
            raise ChangeRefused("the outcome is succeeded or failed", "outcome", action="implement")
        return self.act(ref, action, ActionInput(comment=comment))

    def open_emergency(self, hosts: Sequence[Host], reason: str, command: str) -> Change:
        """Open and submit an emergency change for an ad-hoc command (``itop run --emergency``)."""
        names = [h.name for h in hosts]
        reason = reason.strip()
        if not reason:
            raise ChangeRefused("an emergency change needs a reason", "justification",
                                action="new")
        title = f"Emergency: {reason}"
        change = self.create(ChangeSpec(
            type="emergency",
            title=title if len(title) <= 100 else title[:97] + "...",
            description=f"Ad-hoc command opened with `itop run --emergency`: {command}",
            justification=reason,
            hosts=",".join(names),
        ))
        return self.submit(change.ref)

    # -- implementing ----------------------------------------------------------------------

    async def implement(
        self,
        ref: str,
        *,
        callbacks: RunCallbacks | None = None,
        variables: Mapping[str, str] | None = None,
        backout_on_failure: BackoutDecision = False,
    ) -> ImplementResult:
        """Implement the change inside its window by its implementation procedure.

        The change moves to ``implement`` (refused outside the window or when
        the backup rule is not met). Without an implementation procedure the
        work is done by hand: record the outcome with :meth:`record_outcome`.
        With one, it runs on the change's hosts (``variables`` adds secrets,
        never stored); a paused or waiting run of an earlier attempt is
        resumed. A succeeded run sends the change to review; a failed one
        offers the backout procedure (``backout_on_failure``: a bool or a
        callable asked with the change and the run) and ends ``backed_out``
        when the backout succeeds, else ``failed``.
        """
        current = self.get(ref)
        refusal = check(current, "implement", self.context(current, None, "implement"))
        if refusal is not None:
            self._audit_refusal(current.ref, "implement", refusal)
            raise refusal
        # Everything that can be known before the change moves to implement is
        # checked now: a refusal later would leave it stuck there.
        self._check_ready(current, ("implementation", "backout"), variables, "implement")
        change = self.act(ref, "implement")
        if not change.implementation:
            return ImplementResult(
                change, True,
                f"{change.ref} is being implemented by hand: record the outcome when done "
                f"(`itop change implement {change.ref} --outcome succeeded|failed`)",
            )
        run = await self._run_procedure(change, "implementation", callbacks, variables)
        if run is None:
            return ImplementResult(self.get(ref), False,
                                   f"{change.ref}: the implementation could not start")
        if run.status == "succeeded":
            done = self.act(ref, "succeed", ActionInput(
                comment=f"implementation {run.id} succeeded", run_id=run.id))
            return ImplementResult(
                done, True,
                f"{run.id} succeeded: {done.ref} is up for review "
                f"(`itop change review {done.ref}`, then `itop change close {done.ref}`)",
                run=run,
            )
        if run.status not in _RUN_OVER:
            return ImplementResult(
                self.get(ref), False,
                f"{run.id} is {run.status}{': ' + run.reason if run.reason else ''}; "
                f"{change.ref} stays in implement. Continue with `itop change implement "
                f"{change.ref}` (inside the window)",
                run=run,
            )
        return await self._after_failure(change, run, callbacks, variables, backout_on_failure)

    async def backout(
        self,
        ref: str,
        *,
        callbacks: RunCallbacks | None = None,
        variables: Mapping[str, str] | None = None,
        comment: str = "",
    ) -> ImplementResult:
        """Back out a change being implemented or failed, inside its window.

        With a backout procedure it runs on the change's hosts and the change
        ends ``backed_out`` when it succeeds (a failed implementing change
        ends ``failed`` when it does not). Without one, the backout was done
        by hand and ``comment`` must say how.
        """
        change = self.get(ref)
        refusal = check(change, "backout", self.context(change, None, "backout"))
        if refusal is not None:
            self._audit_refusal(change.ref, "backout", refusal)
            raise refusal
        if not change.backout:
            if not comment.strip():
                refusal = ChangeRefused(
                    f"{change.ref} has no backout procedure: say how it was backed out by hand "
                    "(a comment)", "comment", action="backout", state=change.state)
                self._audit_refusal(change.ref, "backout", refusal)
                raise refusal
            done = self.act(ref, "backout", ActionInput(comment=comment))
            return ImplementResult(done, True, f"{done.ref} backed out by hand")
        self._check_ready(change, ("backout",), variables, "backout")
        run = await self._run_procedure(change, "backout", callbacks, variables)
        return self._backout_outcome(change, run, None)

    async def _after_failure(
        self,
        change: Change,
        run: ProcedureRun,
        callbacks: RunCallbacks | None,
        variables: Mapping[str, str] | None,
        backout_on_failure: BackoutDecision,
    ) -> ImplementResult:
        why = f"implementation {run.id} {run.status}" + (f": {run.reason}" if run.reason else "")
        wanted = False
        if change.backout:
            decision = backout_on_failure
            if callable(decision):
                answer = decision(change, run)
                wanted = bool(await answer) if inspect.isawaitable(answer) else bool(answer)
            else:
                wanted = bool(decision)
        if not wanted:
            failed = self.act(change.ref, "fail", ActionInput(comment=why, run_id=run.id))
            hint = (f"; back it out with `itop change backout {failed.ref}`" if failed.backout
                    else "; it has no backout procedure")
            return ImplementResult(failed, False, f"{why}: {failed.ref} failed{hint}", run=run)
        backout_run = await self._run_procedure(change, "backout", callbacks, variables)
        return self._backout_outcome(change, backout_run, run, why)

    def _backout_outcome(
        self, change: Change, backout_run: ProcedureRun | None, run: ProcedureRun | None,
        why: str = "",
    ) -> ImplementResult:
        current = self.get(change.ref)
        prefix = f"{why}; " if why else ""
        if backout_run is not None and backout_run.status == "succeeded":
            done = self.act(change.ref, "backout", ActionInput(
                comment=f"{prefix}backout {backout_run.id} succeeded", run_id=backout_run.id))
            # After a failed implementation the change was not made: not a success.
            return ImplementResult(
                done, run is None,
                f"{prefix}backout {backout_run.id} succeeded: {done.ref} is backed out; review "
                f"and close it", run=run, backout_run=backout_run)
        state = backout_run.status if backout_run is not None else "could not start"
        text = f"{prefix}backout {backout_run.id if backout_run else ''} {state}".replace("  ", " ")
        if current.state == "implement":
            current = self.act(change.ref, "fail", ActionInput(
                comment=text, run_id=backout_run.id if backout_run else None))
        else:
            current = self.changes.append_log(
                change.ref, actor=self.services.actor, now=self.clock(), kind="run", text=text,
                detail={"run": backout_run.id if backout_run else None})
            self.services.audit.append("change.backout", change.ref, {"comment": text},
                                       result="failed")
        return ImplementResult(
            current, False,
            f"{text}: {current.ref} is {current.state}; the hosts need attention",
            run=run, backout_run=backout_run)

    async def _run_procedure(
        self,
        change: Change,
        purpose: str,
        callbacks: RunCallbacks | None,
        variables: Mapping[str, str] | None,
    ) -> ProcedureRun | None:
        """Run (or resume) the change's ``purpose`` procedure on its hosts; None if it could not start."""
        procedure_id = change.implementation if purpose == "implementation" else change.backout
        assert procedure_id is not None
        inventory = self.services.inventory.load()
        selector = ",".join(change.hosts)
        picked = [h.name for h in select_hosts(inventory, selector)] if change.hosts else []
        if sorted(picked) != sorted(change.hosts):
            missing = sorted(set(change.hosts) - set(picked))
            extra = sorted(set(picked) - set(change.hosts))
            problem = (f"not in the inventory: {', '.join(missing)}" if missing
                       else f"the host names also select {', '.join(extra)}")
            self._log(change.ref, f"{purpose} procedure {procedure_id} not started: {problem}")
            refusal = ChangeRefused(
                f"{change.ref}: cannot run {procedure_id} on exactly its hosts ({problem})",
                "hosts", action=purpose, state=change.state)
            self._audit_refusal(change.ref, "implement" if purpose == "implementation"
                                else "backout", refusal)
            raise refusal
        runner = ProcedureRunner(
            self.services, self._callbacks(change, purpose, callbacks),
            procedures=self.procedures, runs=self.runs,
        )
        earlier = change.linked_run(purpose)
        earlier_run = self.runs.get(earlier.id) if earlier is not None else None
        stored = self.procedures.get(procedure_id)
        # Each procedure gets only the variables it declares: the implementation
        # and the backout procedures seldom declare the same ones.
        declared = ({v.name for v in stored.procedure.variables} if stored is not None
                    else set(change.variables) | set(variables or {}))
        values = {k: v for k, v in {**change.variables, **dict(variables or {})}.items()
                  if k in declared}
        given = {k: v for k, v in dict(variables or {}).items() if k in declared}
        try:
            if earlier_run is not None and not earlier_run.finished:
                # Values fixed when the run started are not given again.
                given = {k: v for k, v in given.items()
                         if not (k in earlier_run.answered and earlier_run.variables.get(k) == v)}
                run = await runner.resume(earlier_run.id, variables=given)
            else:
                run = await runner.start(procedure_id, selector=selector, variables=values,
                                         change_id=change.ref)
        except Exception as exc:
            self._log(change.ref, f"{purpose} procedure {procedure_id} could not start: {exc}")
            raise
        finally:
            for name, key_error in sorted(runner.unknown_keys.items()):
                self._log(change.ref, f"{name}: unknown host key {key_error.fingerprint}")
        now = self.clock()
        self.changes.update(change.ref, lambda c: link_run(c, run.id, purpose, run.status, now))
        self._log(change.ref, f"{purpose} run {run.id} {run.status}"
                  + (f": {run.reason}" if run.reason else ""),
                  {"run": run.id, "status": run.status, "procedure": procedure_id})
        return run

    def _callbacks(
        self, change: Change, purpose: str, given: RunCallbacks | None
    ) -> RunCallbacks:
        """The caller's callbacks; mutating steps are confirmed by the change itself."""
        callbacks = replace(given) if given is not None else RunCallbacks()
        if callbacks.confirm is None:
            def confirm(step: Any, hosts: list[str]) -> str:
                return f"authorized by {change.ref}"

            callbacks.confirm = confirm
        outer = callbacks.observer

        def observe(event: RunEvent) -> None:
            if event.kind == "run.start":
                # Linked at once, so a crash mid-run leaves the change pointing at its run.
                now = self.clock()
                self.changes.update(
                    change.ref, lambda c: link_run(c, event.run_id, purpose, "running", now))
            if outer is not None:
                outer(event)

        callbacks.observer = observe
        return callbacks

    # -- internals ---------------------------------------------------------------------

    def _resolve(self, inventory: Inventory, selector: str, action: str) -> tuple[str, ...]:
        hosts = select_hosts(inventory, selector)
        if not hosts:
            raise ChangeRefused(f"the selector {selector!r} matches no host "
                                "(see `itop inventory list`)", "hosts", action=action)
        return tuple(h.name for h in hosts)

    def _check_procedures(self, values: Mapping[str, Any], action: str) -> None:
        """The procedures are in the library and the variables fit them (create, edit)."""
        procedures: dict[str, Procedure] = {}
        for name in ("implementation", "backout"):
            procedure_id = values.get(name)
            if not procedure_id:
                continue
            stored = self.procedures.get(str(procedure_id))
            if stored is None:
                raise ChangeRefused(
                    f"no procedure {procedure_id!r} in the library for the {name} "
                    "(see `itop procedure list`)", name, action=action)
            procedures[name] = stored.procedure
        problem = variables_problem(dict(values.get("variables") or {}), procedures)
        if problem is not None:
            raise ChangeRefused(problem, "variables", action=action)

    def procedures_of(self, change: Change, purposes: Sequence[str]) -> dict[str, Procedure]:
        """The change's procedures for ``purposes`` (implementation, backout), by purpose.

        Raises :class:`ChangeRefused` naming the field when one is no longer
        in the library.
        """
        found: dict[str, Procedure] = {}
        for purpose in purposes:
            procedure_id = change.implementation if purpose == "implementation" else change.backout
            if not procedure_id:
                continue
            stored = self.procedures.get(procedure_id)
            if stored is None:
                raise ChangeRefused(
                    f"{change.ref}: its {purpose} procedure {procedure_id!r} is not in the "
                    "library any more (see `itop procedure list`)",
                    "implementation" if purpose == "implementation" else "backout",
                    action="implement" if purpose == "implementation" else "backout",
                    state=change.state)
            found[purpose] = stored.procedure
        return found

    def missing_variables(
        self, change: Change, given: Mapping[str, str] | None = None,
        purposes: Sequence[str] = ("implementation", "backout"),
    ) -> list[NeededVariable]:
        """Variables the change's procedures need that neither the change nor ``given`` holds.

        Required variables without a default (those an ``input`` step asks
        during the run excepted), and every secret a procedure uses that is
        not given (secrets are never stored, so they are asked each time; an
        optional secret left empty is fine). A procedure missing from the
        library raises :class:`ChangeRefused`.
        """
        values = {**change.variables, **dict(given or {})}
        needed: list[NeededVariable] = []
        for purpose, procedure in self.procedures_of(change, purposes).items():
            deferred = procedure.input_variable_names()
            for variable in procedure.variables:
                if variable.name in values or variable.name in deferred:
                    continue
                if variable.required and variable.default is None or variable.secret:
                    needed.append(NeededVariable(purpose, procedure.id, variable))
        return needed

    def _check_ready(
        self, change: Change, purposes: Sequence[str], given: Mapping[str, str] | None,
        action: str,
    ) -> None:
        """Refuse (audited) before anything moves when a procedure cannot start.

        Checked: the procedures are in the library, every given variable is
        declared by one of them, and each procedure's variables (the change's
        values, ``given`` over them, only the names it declares) resolve:
        required ones present, values fitting their rules. A run of an
        earlier attempt that is to be resumed keeps its own values.
        """
        try:
            procedures = self.procedures_of(change, purposes)
            self._check_given(change, given or {}, procedures, action)
            for purpose, procedure in procedures.items():
                earlier = change.linked_run(purpose)
                earlier_run = self.runs.get(earlier.id) if earlier is not None else None
                if earlier_run is not None and not earlier_run.finished:
                    continue
                declared = {v.name for v in procedure.variables}
                values = {k: v for k, v in {**change.variables, **dict(given or {})}.items()
                          if k in declared}
                try:
                    resolve_values(procedure.variables, values,
                                   deferred=procedure.input_variable_names())
                except VariableError as exc:
                    raise ChangeRefused(
                        _variable_refusal(change, action, purpose, procedure, exc.problems),
                        "variables", action=action, state=change.state) from None
        except ChangeRefused as refusal:
            self._audit_refusal(change.ref, action, refusal)
            raise

    @staticmethod
    def _check_given(change: Change, given: Mapping[str, str],
                     procedures: Mapping[str, Procedure], action: str) -> None:
        declared = {v.name for p in procedures.values() for v in p.variables}
        unknown = sorted(set(given) - declared)
        if unknown:
            names = " or ".join(p.id for p in procedures.values()) or "no procedure"
            known = ", ".join(sorted(declared)) or "none"
            raise ChangeRefused(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a variable of "
                f"{names}, the procedures of {change.ref} (variables: {known})",
                "variables", action=action, state=change.state)

    def _with_risk(self, change: Change, inventory: Inventory) -> Change:
        hosts = [inventory.hosts[n] for n in change.hosts if n in inventory.hosts]
        unknown = [n for n in change.hosts if n not in inventory.hosts]
        return with_risk(change, assess_risk(hosts, change.outage, unknown))

    def _audited(
        self, ref: str, action: str, change: Callable[[Change], Change], detail: dict[str, Any]
    ) -> Change:
        before: dict[str, str] = {}

        def wrapped(current: Change) -> Change:
            before["state"] = current.state
            return change(current)

        try:
            updated = self.changes.update(ref, wrapped)
        except ChangeRefused as refusal:
            self._audit_refusal(ref, action, refusal)
            raise
        entry = updated.work_log[-1].detail if updated.work_log else {}
        self.services.audit.append(f"change.{action}", updated.ref, {
            **{k: v for k, v in entry.items() if k != "comment"},
            **detail, "from": before.get("state"), "to": updated.state,
        })
        return updated

    def _audit_refusal(self, ref: str, action: str, refusal: ChangeRefused) -> None:
        self.services.audit.append(f"change.{action}", ref, {
            "reason": refusal.reason, "missing": refusal.missing_field, "state": refusal.state,
        }, result="refused")

    def _log(self, ref: str, text: str, detail: dict[str, Any] | None = None) -> None:
        self.changes.append_log(ref, actor=self.services.actor, now=self.clock(), kind="run",
                                text=text, detail=detail)


def variables_problem(variables: Mapping[str, str],
                      procedures: Mapping[str, Procedure]) -> str | None:
    """Why ``variables`` cannot be stored on a change with ``procedures`` (by purpose), or None.

    Each name must be declared by one of the procedures (the built-ins
    ``host`` and ``address`` are set by itop), its value must fit the rules
    of every procedure declaring it, and no secret is ever stored.
    """
    for name, value in variables.items():
        if name in BUILTIN_VARIABLES:
            return f"variables: {name} is set by itop for each host and cannot be given"
        declaring = [(purpose, p, p.variable(name)) for purpose, p in procedures.items()
                     if p.variable(name) is not None]
        if not declaring:
            if not procedures:
                return (f"variables: {name}: the change has no implementation or backout "
                        "procedure to take variables (choose the procedures first)")
            known = ", ".join(sorted({v.name for p in procedures.values()
                                      for v in p.variables})) or "none"
            ids = " or ".join(p.id for p in procedures.values())
            return f"variables: {name} is not a variable of {ids} (variables: {known})"
        for purpose, procedure, variable in declaring:
            assert variable is not None
            if variable.secret:
                return (f"variables: {name} is a secret variable of procedure {procedure.id} "
                        f"and is never stored on a change: give it when implementing "
                        f"({SECRET_ENV_PREFIX}{name} in the environment of `itop change "
                        "implement`, or when the Changes pane asks for it)")
            problem = value_problem(variable, value)
            if problem is not None:
                return (f"variables: {name} ({purpose} procedure {procedure.id}) {problem}")
    return None


def _variable_refusal(change: Change, action: str, purpose: str, procedure: Procedure,
                      problems: Sequence[tuple[str, str]]) -> str:
    """A sentence per variable problem: whose variable it is and how to give it."""
    sentences = []
    for name, problem in problems:
        variable = procedure.variable(name)
        secret = variable is not None and variable.secret
        kind = "secret variable" if secret else "variable"
        how = (f"give it in {SECRET_ENV_PREFIX}{name} (`itop change {action} {change.ref}`; "
               "secrets are never stored), or when the Changes pane asks for it") if secret else (
            f"give it with --var {name}=VALUE (`itop change {action} {change.ref}`), or when "
            "the Changes pane asks for it" + (
                f"; or store it on the draft (`itop change edit {change.ref} --var "
                f"{name}=VALUE`, or the Variables field of the edit form)"
                if change.state == "draft" else ""))
        sentences.append(f"{name} is a {kind} of procedure {procedure.id} (the {purpose} of "
                         f"{change.ref}) and {problem}: {how}")
    return "; ".join(sentences)


def _schedules(change: Change, action: str) -> bool:
    """True when ``action`` on ``change`` would put it in the ``scheduled`` state."""
    return (action == "schedule"
            or (action == "submit" and change.type == "standard")
            or (action == "approve" and change.type == "emergency"))


def _window_of(
    change: Change, inp: ActionInput | None, now: datetime, emergency_minutes: float
) -> tuple[datetime | None, datetime | None]:
    start = inp.start if inp is not None and inp.start is not None else change.start
    end = inp.end if inp is not None and inp.end is not None else change.end
    if change.type == "emergency" and (start is None or end is None or end <= now):
        return now, now + timedelta(minutes=emergency_minutes)
    return start, end
