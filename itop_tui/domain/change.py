"""Change records and the change state machine (pure: no I/O, no clock).

A :class:`Change` is the record of ARCHITECTURE.md section 4. :func:`apply`
moves it through its life::

    draft -> assess -> authorize -> scheduled -> implement -> review -> closed

* ``standard`` changes come from a pre-approved template: ``submit`` takes
  them straight to ``scheduled``;
* ``normal`` changes are assessed, then authorized (one approval, two when
  the risk is high), then scheduled;
* ``emergency`` changes skip assessment; the first approval authorizes and
  schedules them at once (the window opens at the approval), and they cannot
  close without a post-implementation review.

A rejection needs a comment and sends the change back to ``draft`` (the
rejection stays in the approvals and the work log; approvals of the earlier
round no longer count). ``cancel`` works in any state before ``implement``.
From ``implement`` the outcome is ``succeed`` (to ``review``), ``fail``
(``failed``) or ``backout`` (``backed_out``). A failed change may still be
backed out; ``failed``, ``backed_out`` and ``review`` take the review form
and ``close``.

Every action is checked first (:func:`check`): a refusal is a
:class:`ChangeRefused` naming what is missing: a field of the change
(``window_start``, ``backout_plan``...), of the action's input
(``comment``, ``close_code``...), or ``state``, ``type``, ``role``,
``approver``, ``approvals``, ``window``, ``backup``. Nothing the caller
passes in is changed: :func:`apply` returns a new record with the work log
entry of the action appended.

Facts that need I/O arrive in :class:`ActionContext`: who acts with which
role, the time, whether the window hits a blackout (computed by
:mod:`itop_tui.domain.change_windows` over the inventory) and whether the
backup-freshness rule is met.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from itop_tui.domain.models import Host
from itop_tui.domain.roles import Role

CHANGE_TYPES = ("standard", "normal", "emergency")
STATES = (
    "draft",
    "assess",
    "authorize",
    "scheduled",
    "implement",
    "review",
    "closed",
    "cancelled",
    "failed",
    "backed_out",
)
# What a Changes pane lists first: work waiting for someone.
PENDING_STATES = ("assess", "authorize", "scheduled", "implement")
# Approved changes that open production hosts to mutating actions inside their window.
APPROVED_STATES = ("scheduled", "implement")
FINAL_STATES = ("closed", "cancelled")
CANCELLABLE_STATES = ("draft", "assess", "authorize", "scheduled")
ACTIONS = (
    "edit",
    "set_type",
    "submit",
    "assess",
    "approve",
    "reject",
    "schedule",
    "implement",
    "succeed",
    "fail",
    "backout",
    "review",
    "close",
    "cancel",
    "note",
)
RISKS = ("low", "moderate", "high")
CLOSE_CODES = ("successful", "successful_with_issues", "unsuccessful")
OUTCOMES = ("succeeded", "failed", "backed_out")
DECISIONS = ("approved", "rejected")
RUN_PURPOSES = ("implementation", "backout")
REF_PREFIX = "CHG-"
DEFAULT_EMERGENCY_WINDOW = timedelta(hours=4)
TEXT_LIMIT = 4000

# Fields `edit` may change (in draft only), with the kind of value each takes.
EDITABLE_FIELDS: dict[str, str] = {
    "title": "text",
    "description": "text",
    "justification": "text",
    "impact": "text",
    "outage": "bool",
    "hosts": "names",
    "selector": "text",
    "implementation": "optional",
    "backout": "optional",
    "variables": "mapping",
    "backout_plan": "text",
    "test_plan": "text",
    "window_start": "time",
    "window_end": "time",
    "assignee": "optional",
    "template": "optional",
}

# Risk points: the most critical host, then the number of hosts, then the outage.
CRITICALITY_POINTS = {"low": 1, "medium": 2, "high": 3}
MANY_HOSTS = 10
SEVERAL_HOSTS = 3
OUTAGE_POINTS = 2
# Score -> level: up to 2 low, 3-4 moderate, 5 and more high.
MODERATE_FROM = 3
HIGH_FROM = 5

_REF_RE = re.compile(r"^(?:chg-?)?(\d{1,9})$", re.IGNORECASE)


class ChangeRefused(Exception):
    """An action is not allowed now; ``missing_field`` names the unmet guard.

    ``str()`` is the user-facing ``reason``.
    """

    def __init__(
        self, reason: str, missing_field: str | None, *, action: str = "", state: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing_field = missing_field
        self.action = action
        self.state = state


# -- time helpers --------------------------------------------------------------


def iso(moment: datetime) -> str:
    """``moment`` as stored: UTC ISO 8601 to the second with a ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> datetime | None:
    """A stored time back as an aware UTC datetime (None stays None)."""
    if not text:
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def normalize_ref(text: str) -> str:
    """``CHG-7`` for ``CHG-7``, ``chg-7``, ``chg7`` or ``7``; ValueError otherwise."""
    match = _REF_RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a change reference: {text!r} (expected CHG-N)")
    return f"{REF_PREFIX}{int(match.group(1))}"


def ref_number(ref: str) -> int:
    """The number of a reference (``CHG-7`` -> 7)."""
    return int(normalize_ref(ref)[len(REF_PREFIX):])


# -- records -------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """One decision on a change: ``approved`` or ``rejected``.

    ``round`` counts submissions: a rejection starts a new round, and only
    approvals of the current round authorize. ``self_approval`` records an
    approval by the requester allowed by ``changes.allow_self_approval``.
    """

    by: str
    decision: str
    at: str
    comment: str = ""
    round: int = 1
    self_approval: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store and ``--json``."""
        return {
            "by": self.by, "decision": self.decision, "at": self.at, "comment": self.comment,
            "round": self.round, "self_approval": self.self_approval,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Approval:
        """The approval stored as ``data``."""
        return cls(
            by=str(data["by"]), decision=str(data["decision"]), at=str(data["at"]),
            comment=str(data.get("comment") or ""), round=int(data.get("round") or 1),
            self_approval=bool(data.get("self_approval")),
        )


@dataclass(frozen=True)
class WorkLogEntry:
    """One line of a change's history: who, when, what.

    ``kind`` is ``transition`` (a state change or an action that kept the
    state, such as an approval), ``edit`` (fields of a draft changed, or its
    risk raised), ``note``, ``run`` (a procedure run or an ad-hoc command
    recorded against the change) or ``refused``.
    """

    at: str
    actor: str
    kind: str
    text: str
    action: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store and ``--json``."""
        return {
            "at": self.at, "actor": self.actor, "kind": self.kind, "text": self.text,
            "action": self.action, "from_state": self.from_state, "to_state": self.to_state,
            "detail": copy.deepcopy(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkLogEntry:
        """The entry stored as ``data``."""
        return cls(
            at=str(data["at"]), actor=str(data["actor"]), kind=str(data["kind"]),
            text=str(data.get("text") or ""), action=data.get("action"),
            from_state=data.get("from_state"), to_state=data.get("to_state"),
            detail=dict(data.get("detail") or {}),
        )


@dataclass(frozen=True)
class Review:
    """The post-implementation review form."""

    what_happened: str
    incidents: str
    lessons: str
    by: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store and ``--json``."""
        return {
            "what_happened": self.what_happened, "incidents": self.incidents,
            "lessons": self.lessons, "by": self.by, "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Review:
        """The review stored as ``data``."""
        return cls(
            what_happened=str(data.get("what_happened") or ""),
            incidents=str(data.get("incidents") or ""), lessons=str(data.get("lessons") or ""),
            by=str(data.get("by") or ""), at=str(data.get("at") or ""),
        )


@dataclass(frozen=True)
class LinkedRun:
    """A procedure run made for a change: its implementation or its backout."""

    id: str
    purpose: str
    status: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store and ``--json``."""
        return {"id": self.id, "purpose": self.purpose, "status": self.status, "at": self.at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinkedRun:
        """The link stored as ``data``."""
        return cls(
            id=str(data["id"]), purpose=str(data["purpose"]), status=str(data["status"]),
            at=str(data["at"]),
        )


@dataclass(frozen=True)
class ChangeTemplate:
    """A pre-approved standard change from config (``changes.templates``).

    ``hosts`` is a selector; ``duration_minutes`` the length of the window
    when only its start is given.
    """

    name: str
    title: str
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
    duration_minutes: int = 60
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """A change record (ARCHITECTURE.md section 4), stored in ``changes.json``.

    ``hosts`` are host names, resolved from ``selector`` when the change was
    written. ``risk`` is the effective risk: the higher of ``risk_computed``
    (with ``risk_reasons``) and ``risk_requested``. ``outage`` is None until
    stated. ``implementation`` and ``backout`` are procedure ids;
    ``variables`` their non-secret values. Times are UTC ISO 8601 strings.
    ``round`` counts submissions (see :class:`Approval`); ``outcome`` is set
    by ``succeed``, ``fail`` or ``backout``.
    """

    ref: str
    type: str = "normal"
    title: str = ""
    description: str = ""
    justification: str = ""
    hosts: tuple[str, ...] = ()
    selector: str = ""
    impact: str = ""
    outage: bool | None = None
    risk: str | None = None
    risk_computed: str | None = None
    risk_reasons: tuple[str, ...] = ()
    risk_requested: str | None = None
    implementation: str | None = None
    backout: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    backout_plan: str = ""
    test_plan: str = ""
    window_start: str | None = None
    window_end: str | None = None
    requester: str = ""
    assignee: str | None = None
    template: str | None = None
    state: str = "draft"
    round: int = 1
    approvals: tuple[Approval, ...] = ()
    self_approval_allowed: bool = False
    outcome: str | None = None
    runs: tuple[LinkedRun, ...] = ()
    close_code: str | None = None
    close_notes: str = ""
    review: Review | None = None
    work_log: tuple[WorkLogEntry, ...] = ()
    created: str = ""
    updated: str = ""

    # -- derived ---------------------------------------------------------------

    @property
    def start(self) -> datetime | None:
        """The window's start as a datetime."""
        return parse_iso(self.window_start)

    @property
    def end(self) -> datetime | None:
        """The window's end as a datetime."""
        return parse_iso(self.window_end)

    @property
    def approved_by(self) -> list[str]:
        """Who approved in the current round, in order."""
        return [a.by for a in self.approvals if a.decision == "approved" and a.round == self.round]

    @property
    def approvals_needed(self) -> int:
        """Approvals the current round needs: 0 standard, 1 emergency, 1 or 2 (high risk) normal."""
        return approvals_needed(self)

    @property
    def authorized(self) -> bool:
        """True when the current round has every approval it needs."""
        return len(self.approved_by) >= self.approvals_needed

    @property
    def last_rejection(self) -> Approval | None:
        """The latest rejection, if any (a rejected change is back in draft)."""
        rejections = [a for a in self.approvals if a.decision == "rejected"]
        return rejections[-1] if rejections else None

    @property
    def number(self) -> int:
        """The number of the reference, for sorting."""
        return ref_number(self.ref) if self.ref else 0

    def in_window(self, now: datetime) -> bool:
        """True when ``now`` is inside the window [start, end)."""
        start, end = self.start, self.end
        return start is not None and end is not None and start <= now < end

    def is_active(self, now: datetime) -> bool:
        """Approved (scheduled or implementing) and inside its window at ``now``."""
        return self.state in APPROVED_STATES and self.in_window(now)

    def covers(self, host: str) -> bool:
        """True when ``host`` is one of the change's hosts."""
        return host in self.hosts

    def linked_run(self, purpose: str) -> LinkedRun | None:
        """The latest run made for ``purpose`` (implementation or backout)."""
        found = [r for r in self.runs if r.purpose == purpose]
        return found[-1] if found else None

    # -- stored form -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able data (the stored and ``--json`` form)."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("approvals", "runs", "work_log"):
                data[f.name] = [item.to_dict() for item in value]
            elif f.name == "review":
                data[f.name] = value.to_dict() if value is not None else None
            elif isinstance(value, tuple):
                data[f.name] = list(value)
            elif isinstance(value, dict):
                data[f.name] = dict(value)
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        """The change stored as ``data`` (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        values["hosts"] = tuple(str(h) for h in values.get("hosts") or ())
        values["risk_reasons"] = tuple(str(r) for r in values.get("risk_reasons") or ())
        values["variables"] = {str(k): str(v) for k, v in (values.get("variables") or {}).items()}
        values["approvals"] = tuple(Approval.from_dict(a) for a in values.get("approvals") or ())
        values["runs"] = tuple(LinkedRun.from_dict(r) for r in values.get("runs") or ())
        values["work_log"] = tuple(WorkLogEntry.from_dict(e) for e in values.get("work_log") or ())
        review = values.get("review")
        values["review"] = Review.from_dict(review) if review else None
        return cls(**values)


def new_change(
    *,
    requester: str,
    now: datetime,
    change_type: str = "normal",
    ref: str = "",
    **values: Any,
) -> Change:
    """A draft change written by ``requester``, with its ``created`` entry in the work log.

    ``values`` are fields of :class:`Change` (lists become tuples). Raises
    :class:`ChangeRefused` for an unknown type or field.
    """
    if change_type not in CHANGE_TYPES:
        raise ChangeRefused(
            f"unknown change type {change_type!r}; types: {', '.join(CHANGE_TYPES)}", "type"
        )
    known = {f.name for f in fields(Change)}
    for name in values:
        if name not in known:
            raise ChangeRefused(f"unknown change field {name!r}", name)
    if "hosts" in values:
        values["hosts"] = tuple(dict.fromkeys(values["hosts"]))
    if "risk_reasons" in values:
        values["risk_reasons"] = tuple(values["risk_reasons"])
    stamp = iso(now)
    change = Change(
        ref=ref, type=change_type, requester=requester, state="draft", created=stamp,
        updated=stamp, **values,
    )
    if change.risk_requested is not None and change.risk_requested not in RISKS:
        raise ChangeRefused(f"risk must be one of {', '.join(RISKS)}", "risk")
    problem = window_problem(change.window_start, change.window_end)
    if problem is not None:
        raise ChangeRefused(problem, "window_end", action="new")
    article = "an" if change_type[0] in "aeiou" else "a"
    entry = WorkLogEntry(
        at=stamp, actor=requester, kind="transition", action="new", to_state="draft",
        text=f"created as {article} {change_type} change" + (
            f" from template {change.template}" if change.template else ""),
    )
    return replace(change, work_log=(entry,))


def window_problem(start: str | None, end: str | None) -> str | None:
    """Why a window written on a change is wrong (it ends before it starts), or None.

    A window given only in part is not a problem while the change is a
    draft: scheduling asks for both ends.
    """
    begins, ends = parse_iso(start), parse_iso(end)
    if begins is None or ends is None or ends > begins:
        return None
    return (f"the window must end after it starts: window_end {iso(ends)} is not after "
            f"window_start {iso(begins)}")


# -- risk ------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskAssessment:
    """A computed risk level with the score and the reasons behind it."""

    level: str
    score: int
    reasons: tuple[str, ...]


def risk_rank(level: str | None) -> int:
    """Position of a risk level in :data:`RISKS` (-1 for none)."""
    return RISKS.index(level) if level in RISKS else -1


def assess_risk(
    hosts: Sequence[Host], outage: bool | None, unknown: Sequence[str] = ()
) -> RiskAssessment:
    """The risk of changing ``hosts`` with or without an outage.

    Points: the most critical host (low 1, medium 2, high 3; a host missing
    from the inventory counts as high), plus 1 for 3 hosts or more or 2 for
    10 or more, plus 2 for an outage (an outage not stated counts as one).
    A score up to 2 is low, 3-4 moderate, 5 and more high.
    """
    reasons: list[str] = []
    top = 0
    points = [(h.name, CRITICALITY_POINTS.get(h.criticality, CRITICALITY_POINTS["high"]))
              for h in hosts]
    points += [(name, CRITICALITY_POINTS["high"]) for name in unknown]
    if points:
        top = max(p for _, p in points)
        label = next(k for k, v in CRITICALITY_POINTS.items() if v == top)
        top_names = [name for name, p in points if p == top]
        reasons.append(f"highest host criticality {label} ({_names(top_names)}): +{top}")
    if unknown:
        reasons.append(f"{_names(unknown)} not in the inventory: counted as criticality high")
    count = len(hosts) + len(unknown)
    if count == 0:
        reasons.append("no hosts given")
    elif count >= MANY_HOSTS:
        top += 2
        reasons.append(f"{count} hosts ({MANY_HOSTS} or more): +2")
    elif count >= SEVERAL_HOSTS:
        top += 1
        reasons.append(f"{count} hosts ({SEVERAL_HOSTS} or more): +1")
    else:
        reasons.append(f"{count} host{'s' if count != 1 else ''}: +0")
    if outage is None:
        top += OUTAGE_POINTS
        reasons.append(f"outage not stated, counted as yes: +{OUTAGE_POINTS}")
    elif outage:
        top += OUTAGE_POINTS
        reasons.append(f"outage expected: +{OUTAGE_POINTS}")
    else:
        reasons.append("no outage: +0")
    level = "high" if top >= HIGH_FROM else "moderate" if top >= MODERATE_FROM else "low"
    reasons.append(f"score {top}: {level} (moderate from {MODERATE_FROM}, high from {HIGH_FROM})")
    return RiskAssessment(level=level, score=top, reasons=tuple(reasons))


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def with_risk(change: Change, assessment: RiskAssessment) -> Change:
    """``change`` with the computed risk set and the effective risk updated."""
    effective = assessment.level
    if risk_rank(change.risk_requested) > risk_rank(effective):
        effective = str(change.risk_requested)
    return replace(
        change, risk_computed=assessment.level, risk_reasons=assessment.reasons, risk=effective
    )


def raise_risk(change: Change, level: str) -> Change:
    """``change`` with its risk raised to ``level``; refused below the computed risk."""
    if level not in RISKS:
        raise ChangeRefused(f"risk must be one of {', '.join(RISKS)}, got {level!r}", "risk")
    if change.risk_computed is not None and risk_rank(level) < risk_rank(change.risk_computed):
        raise ChangeRefused(
            f"risk cannot be lowered to {level}: the computed risk is {change.risk_computed} "
            f"({'; '.join(change.risk_reasons)}); it may only be raised",
            "risk",
        )
    effective = level
    if risk_rank(change.risk_computed) > risk_rank(level):
        effective = str(change.risk_computed)
    return replace(change, risk_requested=level, risk=effective)


def approvals_needed(change: Change) -> int:
    """Approvals the change needs: standard 0, emergency 1, normal 1 (2 at high risk)."""
    if change.type == "standard":
        return 0
    if change.type == "emergency":
        return 1
    return 2 if change.risk == "high" else 1


# -- the state machine -------------------------------------------------------------


@dataclass(frozen=True)
class ActionContext:
    """Who acts, when, and the facts an action's guards need that come from outside.

    ``blackout`` names the blackout the window to schedule falls in (None:
    none); ``backup_problem`` says why the backup-freshness rule is not met
    (None: met or not required).
    """

    actor: str
    role: Role
    now: datetime
    allow_self_approval: bool = False
    blackout: str | None = None
    backup_problem: str | None = None
    emergency_window: timedelta = DEFAULT_EMERGENCY_WINDOW


@dataclass(frozen=True)
class ActionInput:
    """What a person gives with an action (each action reads its own fields).

    ``comment`` (approve, reject, cancel, succeed, fail, backout, assess,
    submit), ``text`` (note), ``risk`` (assess: raise), ``start``/``end``
    (schedule; emergency approve), ``new_type`` (set_type), ``close_code``
    and ``notes`` (close), ``what_happened``/``incidents``/``lessons``
    (review), ``fields`` (edit), ``run_id`` (succeed, fail, backout: the run
    that decided it).
    """

    comment: str = ""
    text: str = ""
    risk: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    new_type: str | None = None
    close_code: str | None = None
    notes: str = ""
    what_happened: str = ""
    incidents: str = ""
    lessons: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None


@dataclass(frozen=True)
class _Plan:
    """What an allowed action does: the target state and a sentence for the log."""

    to_state: str
    text: str


def check(
    change: Change, action: str, ctx: ActionContext, inp: ActionInput | None = None
) -> ChangeRefused | None:
    """The refusal ``action`` would meet now, or None when it is allowed.

    With ``inp`` None, what the person would give with the action (a
    comment, a note's text, a close code, a review, a risk, a window) is not
    checked; everything else is: the state, the role, separation of duties,
    the change's own fields and the facts of ``ctx``. That includes the
    window *stored on the change*: ``schedule`` checks the change's window
    (set, end after start, not over, no blackout in ``ctx``) and refuses a
    change without one, naming ``window_start``, although a window given
    with the action would be accepted (the Changes pane judges ``schedule``
    with a probe window for that reason); ``implement`` and ``backout``
    check that ``ctx.now`` is inside the stored window; the last emergency
    ``approve`` keeps a stored window that has not ended, else opens one
    from ``ctx.now``. With an input, its fields are checked too, and a
    window it gives replaces the stored one.
    """
    try:
        _plan(change, action, ctx, inp)
    except ChangeRefused as refusal:
        return refusal
    return None


def available_actions(change: Change, ctx: ActionContext) -> dict[str, str | None]:
    """Every action with None when it is available, else the reason it is not."""
    result: dict[str, str | None] = {}
    for action in ACTIONS:
        refusal = check(change, action, ctx)
        result[action] = None if refusal is None else refusal.reason
    return result


def apply(
    change: Change, action: str, ctx: ActionContext, inp: ActionInput | None = None
) -> Change:
    """The change after ``action``, with its work log entry; :class:`ChangeRefused` if not allowed."""
    inp = inp if inp is not None else ActionInput()
    plan = _plan(change, action, ctx, inp)
    return _perform(change, action, ctx, inp, plan)


def _refuse(change: Change, action: str, reason: str, missing: str | None) -> ChangeRefused:
    return ChangeRefused(reason, missing, action=action, state=change.state)


def _require_state(change: Change, action: str, states: Sequence[str], why: str = "") -> None:
    if change.state not in states:
        allowed = ", ".join(states)
        raise _refuse(
            change, action,
            why or f"cannot {action.replace('_', ' ')} {change.ref or 'the change'} in state "
            f"{change.state} (only in {allowed})",
            "state",
        )


def _require_role(change: Change, action: str, ctx: ActionContext, minimum: Role) -> None:
    if ctx.role < minimum:
        raise _refuse(
            change, action,
            f"{ctx.actor} has the {ctx.role.label} role; {action.replace('_', ' ')} needs "
            f"{minimum.label} or above",
            "role",
        )


def _require_author(change: Change, action: str, ctx: ActionContext) -> None:
    """Only the requester (or an admin) edits, retypes and submits a draft."""
    if ctx.actor != change.requester and ctx.role < Role.ADMIN:
        raise _refuse(
            change, action,
            f"only the requester ({change.requester}) or an admin may "
            f"{action.replace('_', ' ')} {change.ref or 'the change'}",
            "requester",
        )


def _require_fields(change: Change, action: str, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(change, name)
        missing = value is None if name == "outage" else not value or (
            isinstance(value, str) and not value.strip())
        if missing:
            hint = " (yes or no)" if name == "outage" else ""
            raise _refuse(
                change, action,
                f"{action.replace('_', ' ')} needs {_FIELD_LABELS.get(name, name)}{hint}: "
                f"{name} is not set",
                name,
            )


_FIELD_LABELS = {
    "window_start": "the window start",
    "window_end": "the window end",
    "hosts": "the affected hosts",
    "impact": "the impact",
    "outage": "whether there is an outage",
    "backout_plan": "a backout plan",
    "title": "a title",
    "description": "a description",
    "justification": "a justification",
    "template": "a standard change template",
}

SUBMIT_FIELDS = {
    "normal": ("title", "description", "justification", "hosts"),
    "emergency": ("title", "justification", "hosts"),
    "standard": ("template", "title", "hosts"),
}
SCHEDULE_FIELDS = ("window_start", "window_end", "hosts", "impact", "outage", "backout_plan")
# Emergency changes are scheduled by their approval: the window opens then;
# impact, outage and backout are written up in the mandatory review.
EMERGENCY_SCHEDULE_FIELDS = ("hosts",)


def _window(change: Change, inp: ActionInput | None) -> Change:
    """``change`` with the window an action's input gives, if any."""
    if inp is None:
        return change
    updates: dict[str, Any] = {}
    if inp.start is not None:
        updates["window_start"] = iso(inp.start)
    if inp.end is not None:
        updates["window_end"] = iso(inp.end)
    return replace(change, **updates) if updates else change


def _schedule_guards(change: Change, action: str, ctx: ActionContext) -> None:
    """The guards of entering ``scheduled``: window, hosts, impact, outage, backout plan, blackout."""
    names = EMERGENCY_SCHEDULE_FIELDS if change.type == "emergency" else SCHEDULE_FIELDS
    _require_fields(change, action, names)
    start, end = change.start, change.end
    if start is None or end is None:
        return  # emergency: the approval opens the window
    if end <= start:
        raise _refuse(
            change, action,
            f"the window ends ({change.window_end}) before it starts ({change.window_start})",
            "window_end",
        )
    if end <= ctx.now:
        raise _refuse(
            change, action, f"the window ended already ({change.window_end})", "window_end"
        )
    if ctx.blackout and change.type != "emergency":
        raise _refuse(
            change, action,
            f"the window falls in blackout {ctx.blackout}: only emergency changes may be "
            "scheduled inside a blackout",
            "window",
        )


def _require_in_window(change: Change, action: str, ctx: ActionContext) -> None:
    start, end = change.start, change.end
    if start is None or end is None:
        raise _refuse(change, action, f"{change.ref} has no window", "window_start")
    if ctx.now < start:
        raise _refuse(
            change, action,
            f"{change.ref} may only be implemented inside its window, which opens at "
            f"{change.window_start}",
            "window_start",
        )
    if ctx.now >= end:
        raise _refuse(
            change, action,
            f"the window of {change.ref} closed at {change.window_end}; cancel it and raise a "
            "new change, or an emergency change",
            "window_end",
        )


def _require_text(change: Change, action: str, value: str, name: str, what: str) -> None:
    if not value.strip():
        raise _refuse(change, action, f"{action.replace('_', ' ')} needs {what}", name)


def _require_approver(change: Change, action: str, ctx: ActionContext) -> None:
    _require_role(change, action, ctx, Role.APPROVER)
    if ctx.actor == change.requester and not ctx.allow_self_approval:
        raise _refuse(
            change, action,
            f"{ctx.actor} requested {change.ref or 'this change'} and cannot "
            f"{'approve' if action == 'approve' else 'reject'} it: another approver must "
            "(separation of duties)",
            "approver",
        )


def _plan(change: Change, action: str, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    if action not in ACTIONS:
        raise _refuse(change, action, f"unknown action {action!r}; actions: {', '.join(ACTIONS)}",
                      "action")
    if action == "note":
        _require_role(change, action, ctx, Role.TRAINEE)
        if inp is not None:
            _require_text(change, action, inp.text, "text", "the text of the note")
        return _Plan(change.state, "note")
    if change.state in FINAL_STATES:
        raise _refuse(
            change, action, f"{change.ref or 'the change'} is {change.state}: it cannot change any more",
            "state",
        )
    handler = _HANDLERS[action]
    return handler(change, ctx, inp)


def _plan_edit(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "edit", ("draft",),
                   f"{change.ref or 'the change'} can only be edited in draft (it is {change.state})")
    _require_role(change, "edit", ctx, Role.OPERATOR)
    _require_author(change, "edit", ctx)
    if inp is not None:
        if not inp.fields:
            raise _refuse(change, "edit", "edit needs at least one field to change", "fields")
        for name in inp.fields:
            if name not in EDITABLE_FIELDS:
                raise _refuse(
                    change, "edit",
                    f"{name!r} cannot be edited; editable: {', '.join(EDITABLE_FIELDS)}", name,
                )
        window = {k: v for k, v in inp.fields.items() if k in ("window_start", "window_end")}
        if window:
            edited = _edited_fields(change, window)
            problem = window_problem(edited.get("window_start", change.window_start),
                                     edited.get("window_end", change.window_end))
            if problem is not None:
                raise _refuse(change, "edit", problem, "window_end")
    return _Plan("draft", "edited")


def _plan_set_type(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "set_type", ("draft",),
                   f"the type of {change.ref or 'a change'} can change only in draft "
                   f"(it is {change.state})")
    _require_role(change, "set_type", ctx, Role.OPERATOR)
    _require_author(change, "set_type", ctx)
    if inp is not None and inp.new_type not in CHANGE_TYPES:
        raise _refuse(change, "set_type",
                      f"the new type must be one of {', '.join(CHANGE_TYPES)}", "type")
    return _Plan("draft", f"type set to {inp.new_type if inp else '?'}")


def _plan_submit(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "submit", ("draft",))
    _require_role(change, "submit", ctx, Role.OPERATOR)
    _require_author(change, "submit", ctx)
    _require_fields(change, "submit", SUBMIT_FIELDS[change.type])
    if change.type == "standard":
        _schedule_guards(change, "submit", ctx)
        return _Plan("scheduled", "submitted; a standard change is pre-approved: scheduled")
    if change.type == "emergency":
        return _Plan("authorize", "submitted as an emergency: waits for one approver")
    return _Plan("assess", "submitted for assessment")


def _skip_for(change: Change, action: str, types: Sequence[str], why: str) -> None:
    if change.type in types:
        raise _refuse(change, action, why, "type")


def _plan_assess(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "assess", ("assess",))
    _skip_for(change, "assess", ("standard", "emergency"),
              f"{change.type} changes skip assessment")
    _require_role(change, "assess", ctx, Role.APPROVER)
    if ctx.actor == change.requester and not ctx.allow_self_approval:
        # Assessing moves the change towards its approval: the same separation of
        # duties as approving (ITIL, ServiceNow: the requester is not the assessor).
        raise _refuse(
            change, "assess",
            f"{ctx.actor} requested {change.ref or 'this change'} and cannot assess it: "
            "another approver must (separation of duties)",
            "approver",
        )
    _require_fields(change, "assess", ("hosts", "impact", "outage"))
    if inp is not None and inp.risk is not None:
        try:
            raise_risk(change, inp.risk)
        except ChangeRefused as refused:  # a lower risk than computed
            raise _refuse(change, "assess", refused.reason, refused.missing_field) from None
    return _Plan("authorize", "assessed: waits for authorization")


def _plan_approve(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "approve", ("authorize",))
    _skip_for(change, "approve", ("standard",), "standard changes are pre-approved")
    _require_approver(change, "approve", ctx)
    if ctx.actor in change.approved_by:
        raise _refuse(change, "approve",
                      f"{ctx.actor} approved {change.ref} already; another approver must",
                      "approver")
    complete = len(change.approved_by) + 1 >= change.approvals_needed
    if change.type == "emergency" and complete:
        scheduled = _emergency_window(change, ctx, inp)
        _schedule_guards(scheduled, "approve", ctx)
        return _Plan("scheduled", "approved: the emergency change is authorized and its window open")
    have = len(change.approved_by) + 1
    text = "approved" + (
        "" if complete else f" ({have} of {change.approvals_needed} approvals)")
    return _Plan("authorize", text)


def _emergency_window(change: Change, ctx: ActionContext, inp: ActionInput | None) -> Change:
    """The window an emergency change gets at its approval: as given, else from now."""
    change = _window(change, inp)
    end = change.end
    if change.start is not None and end is not None and end > ctx.now:
        return change
    return replace(change, window_start=iso(ctx.now), window_end=iso(ctx.now + ctx.emergency_window))


def _plan_reject(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "reject", ("assess", "authorize"))
    _skip_for(change, "reject", ("standard",), "standard changes are pre-approved")
    _require_approver(change, "reject", ctx)
    if inp is not None:
        _require_text(change, "reject", inp.comment, "comment", "a comment saying why")
    return _Plan("draft", "rejected: back to draft")


def _plan_schedule(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    if change.state == "scheduled":
        raise _refuse(
            change, "schedule",
            f"{change.ref} is scheduled already; an approved window cannot move: cancel it and "
            "raise a new change",
            "state",
        )
    if change.state == "draft" and change.type == "standard":
        raise _refuse(change, "schedule",
                      "submit a standard change: it is scheduled when submitted", "state")
    _require_state(change, "schedule", ("authorize",))
    _skip_for(change, "schedule", ("standard",), "standard changes are scheduled when submitted")
    _require_role(change, "schedule", ctx, Role.OPERATOR)
    if not change.authorized:
        raise _refuse(
            change, "schedule",
            f"{change.ref} needs {change.approvals_needed} approval"
            f"{'s' if change.approvals_needed != 1 else ''} before it is scheduled, "
            f"has {len(change.approved_by)}",
            "approvals",
        )
    _schedule_guards(_window(change, inp), "schedule", ctx)
    return _Plan("scheduled", "scheduled")


def _plan_implement(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "implement", ("scheduled", "implement"))
    _require_role(change, "implement", ctx, Role.OPERATOR)
    _require_in_window(change, "implement", ctx)
    if ctx.backup_problem:
        raise _refuse(change, "implement", ctx.backup_problem, "backup")
    if change.state == "implement":
        return _Plan("implement", "implementation continued")
    return _Plan("implement", "implementation started")


def _plan_succeed(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "succeed", ("implement",))
    _require_role(change, "succeed", ctx, Role.OPERATOR)
    return _Plan("review", "implemented successfully: up for review")


def _plan_fail(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "fail", ("implement",))
    _require_role(change, "fail", ctx, Role.OPERATOR)
    return _Plan("failed", "implementation failed")


def _plan_backout(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "backout", ("implement", "failed"))
    _require_role(change, "backout", ctx, Role.OPERATOR)
    _require_in_window(change, "backout", ctx)
    return _Plan("backed_out", "backed out")


def _plan_review(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "review", ("review", "failed", "backed_out"))
    _require_role(change, "review", ctx, Role.OPERATOR)
    if inp is not None:
        _require_text(change, "review", inp.what_happened, "what_happened",
                      "what happened (what_happened)")
    return _Plan("review", "post-implementation review recorded")


def _plan_close(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(change, "close", ("review", "failed", "backed_out"))
    _require_role(change, "close", ctx, Role.OPERATOR)
    if change.type == "emergency" and change.review is None:
        raise _refuse(
            change, "close",
            f"{change.ref} is an emergency change: it cannot close without its "
            "post-implementation review",
            "review",
        )
    if inp is not None:
        if inp.close_code not in CLOSE_CODES:
            raise _refuse(change, "close",
                          f"close needs a close code: {', '.join(CLOSE_CODES)}", "close_code")
        failed = change.outcome in ("failed", "backed_out") or change.state in ("failed", "backed_out")
        if failed and inp.close_code != "unsuccessful":
            raise _refuse(
                change, "close",
                f"{change.ref} {(change.outcome or change.state).replace('_', ' ')}: "
                "its close code must be unsuccessful",
                "close_code",
            )
        _require_text(change, "close", inp.notes, "close_notes", "closing notes")
    return _Plan("closed", f"closed: {inp.close_code if inp else '?'}")


def _plan_cancel(change: Change, ctx: ActionContext, inp: ActionInput | None) -> _Plan:
    _require_state(
        change, "cancel", CANCELLABLE_STATES,
        f"{change.ref or 'the change'} is in state {change.state}: only changes not yet "
        "implemented can be cancelled",
    )
    _require_role(change, "cancel", ctx, Role.OPERATOR)
    if ctx.actor != change.requester and ctx.role < Role.APPROVER:
        raise _refuse(change, "cancel",
                      f"only the requester ({change.requester}) or an approver may cancel "
                      f"{change.ref}", "role")
    if inp is not None:
        _require_text(change, "cancel", inp.comment, "comment", "a reason")
    return _Plan("cancelled", "cancelled")


_HANDLERS = {
    "edit": _plan_edit,
    "set_type": _plan_set_type,
    "submit": _plan_submit,
    "assess": _plan_assess,
    "approve": _plan_approve,
    "reject": _plan_reject,
    "schedule": _plan_schedule,
    "implement": _plan_implement,
    "succeed": _plan_succeed,
    "fail": _plan_fail,
    "backout": _plan_backout,
    "review": _plan_review,
    "close": _plan_close,
    "cancel": _plan_cancel,
}


def _clip(text: str) -> str:
    return text.strip()[:TEXT_LIMIT]


def _perform(
    change: Change, action: str, ctx: ActionContext, inp: ActionInput, plan: _Plan
) -> Change:
    stamp = iso(ctx.now)
    updates: dict[str, Any] = {"state": plan.to_state, "updated": stamp}
    detail: dict[str, Any] = {}
    comment = _clip(inp.comment)
    kind = "transition"
    text = plan.text
    if action == "note":
        kind = "note"
        text = _clip(inp.text)
        updates = {"updated": stamp}
    elif action == "edit":
        kind = "edit"
        edited = _edited_fields(change, inp.fields)
        updates.update(edited)
        detail["fields"] = sorted(edited)
        text = f"edited {', '.join(sorted(edited))}"
    elif action == "set_type":
        detail["from"] = change.type
        detail["to"] = inp.new_type
        updates["type"] = inp.new_type
        text = f"type changed from {change.type} to {inp.new_type}"
    elif action == "assess":
        if inp.risk is not None:
            raised = raise_risk(change, inp.risk)
            updates.update(risk_requested=raised.risk_requested, risk=raised.risk)
            detail["risk"] = raised.risk
        if ctx.actor == change.requester:
            updates["self_approval_allowed"] = True
            detail["self_assessment"] = True
    elif action == "approve":
        self_approval = ctx.actor == change.requester
        updates["approvals"] = (*change.approvals, Approval(
            by=ctx.actor, decision="approved", at=stamp, comment=comment, round=change.round,
            self_approval=self_approval,
        ))
        if self_approval:
            updates["self_approval_allowed"] = True
            detail["self_approval"] = True
        if plan.to_state == "scheduled":
            window = _emergency_window(change, ctx, inp)
            updates["window_start"] = window.window_start
            updates["window_end"] = window.window_end
            if ctx.blackout:
                detail["blackout"] = ctx.blackout
                text += f" (inside blackout {ctx.blackout}: allowed for an emergency)"
    elif action == "reject":
        updates["approvals"] = (*change.approvals, Approval(
            by=ctx.actor, decision="rejected", at=stamp, comment=comment, round=change.round,
        ))
        updates["round"] = change.round + 1
    elif action in ("schedule", "submit") and plan.to_state == "scheduled":
        window = _window(change, inp)
        updates["window_start"] = window.window_start
        updates["window_end"] = window.window_end
        if ctx.blackout:
            detail["blackout"] = ctx.blackout
    elif action == "succeed":
        updates["outcome"] = "succeeded"
    elif action == "fail":
        updates["outcome"] = "failed"
    elif action == "backout":
        updates["outcome"] = "backed_out"
    elif action == "review":
        updates["review"] = Review(
            what_happened=_clip(inp.what_happened), incidents=_clip(inp.incidents),
            lessons=_clip(inp.lessons), by=ctx.actor, at=stamp,
        )
    elif action == "close":
        updates["close_code"] = inp.close_code
        updates["close_notes"] = _clip(inp.notes)
        detail["close_code"] = inp.close_code
    if "window_start" in updates and action in ("schedule", "submit", "approve"):
        detail["window"] = [updates["window_start"], updates["window_end"]]
    if inp.run_id:
        detail["run"] = inp.run_id
    if comment and action not in ("note",):
        detail["comment"] = comment
        text = f"{text}: {comment}"
    entry = WorkLogEntry(
        at=stamp, actor=ctx.actor, kind=kind, text=text, action=action,
        from_state=change.state, to_state=updates.get("state", change.state), detail=detail,
    )
    updates["work_log"] = (*change.work_log, entry)
    return replace(change, **updates)


def _edited_fields(change: Change, values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``edit`` input as field values of the record (types checked)."""
    result: dict[str, Any] = {}
    for name, value in values.items():
        kind = EDITABLE_FIELDS[name]
        if kind == "text":
            result[name] = _clip(str(value or ""))
        elif kind == "optional":
            result[name] = str(value).strip() or None if value is not None else None
        elif kind == "bool":
            if value is not None and not isinstance(value, bool):
                raise _refuse(change, "edit", f"{name} must be yes or no", name)
            result[name] = value
        elif kind == "names":
            result[name] = tuple(dict.fromkeys(str(v) for v in value or ()))
        elif kind == "mapping":
            result[name] = {str(k): str(v) for k, v in dict(value or {}).items()}
        elif kind == "time":
            if value is None:
                result[name] = None
            elif isinstance(value, datetime):
                result[name] = iso(value)
            else:
                try:
                    parsed = parse_iso(str(value))
                except ValueError:
                    raise _refuse(change, "edit", f"{name} must be an ISO 8601 time", name) from None
                result[name] = iso(parsed) if parsed is not None else None
    return result


def log_entry(
    change: Change, *, actor: str, now: datetime, kind: str, text: str,
    detail: Mapping[str, Any] | None = None,
) -> Change:
    """``change`` with one more work log entry that does not change its state.

    For runs recorded against the change (``run``) and refusals worth
    keeping; notes go through :func:`apply` with ``note``.
    """
    entry = WorkLogEntry(
        at=iso(now), actor=actor, kind=kind, text=_clip(text), from_state=change.state,
        to_state=change.state, detail=dict(detail or {}),
    )
    return replace(change, work_log=(*change.work_log, entry), updated=iso(now))


def link_run(change: Change, run_id: str, purpose: str, status: str, now: datetime) -> Change:
    """``change`` with the run ``run_id`` recorded (or its status updated)."""
    if purpose not in RUN_PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(RUN_PURPOSES)}")
    link = LinkedRun(id=run_id, purpose=purpose, status=status, at=iso(now))
    runs = [r for r in change.runs if r.id != run_id]
    kept = [r for r in change.runs if r.id == run_id]
    if kept:
        link = replace(link, at=kept[0].at)
        runs = [link if r.id == run_id else r for r in change.runs]
    else:
        runs.append(link)
    return replace(change, runs=tuple(runs), updated=iso(now))


def from_template(template: ChangeTemplate) -> dict[str, Any]:
    """The change fields a standard template fills in (hosts stay a selector)."""
    values: dict[str, Any] = {
        "title": template.title,
        "description": template.description,
        "justification": template.justification,
        "selector": template.hosts,
        "impact": template.impact,
        "outage": template.outage,
        "implementation": template.implementation,
        "backout": template.backout,
        "backout_plan": template.backout_plan,
        "test_plan": template.test_plan,
        "template": template.name,
        "variables": dict(template.variables),
    }
    if template.risk is not None:
        values["risk_requested"] = template.risk
    return values
