"""The change state machine, exhaustively.

For every (state, action, type) the specification below says where the
change goes when every guard is met, or which guard refuses it whatever
the input (``state``, ``type``). Then, for each transition, every guard it
has is broken one at a time: the action must be refused naming exactly
that guard, and the change must be left as it was.

The specification is written out here from ARCHITECTURE.md section 4 and
issue 5, independently of the implementation's tables.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from itop_tui.domain.change import (
    ACTIONS,
    CHANGE_TYPES,
    STATES,
    ActionContext,
    ActionInput,
    Approval,
    Change,
    ChangeRefused,
    Review,
    apply,
    available_actions,
    check,
    iso,
    new_change,
)
from itop_tui.domain.roles import Role

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REQUESTER = "alice"
ACTOR = "carol"  # an admin, not the requester: every role and author rule passes


class Refused:
    """Expected refusal naming ``field``."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __repr__(self) -> str:
        return f"Refused({self.field!r})"


def spec(state: str, action: str, kind: str) -> str | Refused:
    """Where ``action`` takes a ``kind`` change in ``state`` with every guard met."""
    if action == "note":
        return state
    if state in ("closed", "cancelled"):
        return Refused("state")
    if action in ("edit", "set_type"):
        return "draft" if state == "draft" else Refused("state")
    if action == "submit":
        if state != "draft":
            return Refused("state")
        return {"normal": "assess", "emergency": "authorize", "standard": "scheduled"}[kind]
    if action == "assess":
        if state != "assess":
            return Refused("state")
        return "authorize" if kind == "normal" else Refused("type")
    if action == "approve":
        if state != "authorize":
            return Refused("state")
        by_type: dict[str, str | Refused] = {
            "normal": "authorize", "emergency": "scheduled", "standard": Refused("type")}
        return by_type[kind]
    if action == "reject":
        if state not in ("assess", "authorize"):
            return Refused("state")
        return Refused("type") if kind == "standard" else "draft"
    if action == "schedule":
        if state != "authorize":
            return Refused("state")
        return Refused("type") if kind == "standard" else "scheduled"
    if action == "implement":
        return "implement" if state in ("scheduled", "implement") else Refused("state")
    if action == "succeed":
        return "review" if state == "implement" else Refused("state")
    if action == "fail":
        return "failed" if state == "implement" else Refused("state")
    if action == "backout":
        return "backed_out" if state in ("implement", "failed") else Refused("state")
    if action == "review":
        return "review" if state in ("review", "failed", "backed_out") else Refused("state")
    if action == "close":
        return "closed" if state in ("review", "failed", "backed_out") else Refused("state")
    if action == "cancel":
        return "cancelled" if state in ("draft", "assess", "authorize", "scheduled") else Refused("state")
    raise AssertionError(f"no specification for {action}")


OUTCOME_OF = {"review": "succeeded", "failed": "failed", "backed_out": "backed_out",
              "closed": "succeeded"}


def ready(state: str, kind: str) -> Change:
    """A ``kind`` change in ``state`` that meets every guard of every action."""
    change = new_change(requester=REQUESTER, now=NOW - timedelta(days=1), change_type=kind,
                        ref="CHG-1")
    approvals: tuple[Approval, ...] = ()
    if kind != "standard" and state not in ("draft", "assess"):
        approvals = (Approval(by="bob", decision="approved", at=iso(NOW - timedelta(hours=2))),)
    return replace(
        change,
        state=state,
        title="Upgrade openssl",
        description="apt-get install openssl",
        justification="CVE-2025-0001",
        hosts=("web01", "web02"),
        selector="web",
        impact="web restarts",
        outage=False,
        risk="low",
        risk_computed="low",
        backout_plan="reinstall the previous package",
        template="patch" if kind == "standard" else None,
        window_start=iso(NOW - timedelta(hours=1)),
        window_end=iso(NOW + timedelta(hours=1)),
        approvals=approvals,
        outcome=OUTCOME_OF.get(state),
        review=Review("done", "", "", "alice", iso(NOW)) if state in (
            "review", "failed", "backed_out", "closed") else None,
    )


def ctx(**changes: Any) -> ActionContext:
    values: dict[str, Any] = {"actor": ACTOR, "role": Role.ADMIN, "now": NOW}
    values.update(changes)
    return ActionContext(**values)


def good_input(change: Change, action: str) -> ActionInput:
    """An input meeting every input guard of ``action``."""
    failed = change.state in ("failed", "backed_out")
    other_type = next(t for t in CHANGE_TYPES if t != change.type)
    return ActionInput(
        comment="looks right",
        text="a note",
        new_type=other_type,
        close_code="unsuccessful" if failed else "successful",
        notes="all good",
        what_happened="it went fine",
        fields={"title": "Upgrade openssl everywhere"},
    )


CASES = list(itertools.product(STATES, ACTIONS, CHANGE_TYPES))


def test_the_specification_covers_every_state_action_and_type() -> None:
    assert len(CASES) == len(STATES) * len(ACTIONS) * len(CHANGE_TYPES) == 450
    assert set(STATES) == {"draft", "assess", "authorize", "scheduled", "implement", "review",
                           "closed", "cancelled", "failed", "backed_out"}
    assert set(ACTIONS) >= {"submit", "assess", "approve", "reject", "schedule", "implement",
                            "succeed", "fail", "backout", "review", "close", "cancel", "set_type"}


@pytest.mark.parametrize(("state", "action", "kind"), CASES)
def test_every_state_action_and_type(state: str, action: str, kind: str) -> None:
    change = ready(state, kind)
    inp = good_input(change, action)
    expected = spec(state, action, kind)
    if isinstance(expected, Refused):
        with pytest.raises(ChangeRefused) as refused:
            apply(change, action, ctx(), inp)
        assert refused.value.missing_field == expected.field, refused.value.reason
        assert refused.value.reason
        assert check(change, action, ctx(), inp) is not None
        assert check(change, action, ctx()) is not None  # without input: refused too
        return
    after = apply(change, action, ctx(), inp)
    assert after.state == expected
    entry = after.work_log[-1]
    assert len(after.work_log) == len(change.work_log) + 1
    assert (entry.actor, entry.at, entry.action) == (ACTOR, iso(NOW), action)
    assert (entry.from_state, entry.to_state) == (state, expected)
    assert check(change, action, ctx(), inp) is None
    assert change.state == state  # the input record is never changed


# -- guards, broken one at a time -------------------------------------------------------

Break = tuple[str, str, str, str, Any]  # state, action, type, guard, how to break it


def _clear(name: str, value: Any = "") -> Any:
    return lambda c, x, i: (replace(c, **{name: value}), x, i)


def _input(**values: Any) -> Any:
    return lambda c, x, i: (c, x, replace(i, **values))


def _context(**values: Any) -> Any:
    return lambda c, x, i: (c, replace(x, **values), i)


BREAKS: list[Break] = []
for kind, fields_ in (
    ("normal", ("title", "description", "justification", "hosts")),
    ("emergency", ("title", "justification", "hosts")),
    ("standard", ("template", "title", "hosts", "window_start", "window_end", "impact",
                  "backout_plan")),
):
    for name in fields_:
        empty: Any = () if name == "hosts" else None if name.startswith(("window", "template")) else ""
        BREAKS.append(("draft", "submit", kind, name, _clear(name, empty)))
BREAKS += [
    ("draft", "submit", "standard", "outage", _clear("outage", None)),
    ("draft", "submit", "standard", "window", _context(blackout="freeze")),
    ("draft", "submit", "standard", "window_end", _clear("window_end", iso(NOW - timedelta(minutes=1)))),
    ("draft", "submit", "normal", "role", _context(role=Role.TRAINEE)),
    ("draft", "submit", "normal", "requester", _context(role=Role.OPERATOR)),
    ("draft", "edit", "normal", "requester", _context(role=Role.APPROVER)),
    ("draft", "edit", "normal", "fields", _input(fields={})),
    ("draft", "edit", "normal", "state_field", _input(fields={"state": "closed"})),
    ("draft", "set_type", "normal", "type", _input(new_type="urgent")),
    ("draft", "set_type", "normal", "requester", _context(role=Role.OPERATOR)),
    ("draft", "cancel", "normal", "comment", _input(comment="  ")),
    ("draft", "cancel", "normal", "role", _context(role=Role.OPERATOR)),  # not the requester
    ("assess", "assess", "normal", "impact", _clear("impact")),
    ("assess", "assess", "normal", "outage", _clear("outage", None)),
    ("assess", "assess", "normal", "hosts", _clear("hosts", ())),
    ("assess", "assess", "normal", "role", _context(role=Role.OPERATOR)),
    ("assess", "assess", "normal", "risk", _input(risk="low")),  # computed is moderate below
    ("assess", "assess", "normal", "approver", _context(actor=REQUESTER)),  # self-assessment
    ("draft", "edit", "normal", "window_end",
     _input(fields={"window_end": iso(NOW - timedelta(hours=1))})),  # ends as it starts
    ("assess", "reject", "normal", "comment", _input(comment="")),
    ("authorize", "reject", "emergency", "approver", _context(actor=REQUESTER)),
    ("authorize", "approve", "normal", "role", _context(role=Role.OPERATOR)),
    ("authorize", "approve", "normal", "approver", _context(actor=REQUESTER)),
    ("authorize", "approve", "emergency", "approver", _context(actor=REQUESTER)),
    ("authorize", "approve", "normal", "approver", _context(actor="bob")),  # approved already
    ("authorize", "schedule", "normal", "approvals", _clear("approvals", ())),
    ("authorize", "schedule", "emergency", "approvals", _clear("approvals", ())),
    ("authorize", "schedule", "normal", "role", _context(role=Role.TRAINEE)),
    ("authorize", "schedule", "normal", "window", _context(blackout="year-end freeze")),
    ("authorize", "schedule", "emergency", "hosts", _clear("hosts", ())),
    ("scheduled", "implement", "normal", "window_start", _context(now=NOW - timedelta(hours=2))),
    ("scheduled", "implement", "normal", "window_end", _context(now=NOW + timedelta(hours=1))),
    ("scheduled", "implement", "emergency", "window_start", _clear("window_start", None)),
    ("scheduled", "implement", "normal", "backup", _context(backup_problem="no backup of web01")),
    ("scheduled", "implement", "standard", "role", _context(role=Role.TRAINEE)),
    ("implement", "implement", "normal", "window_end", _context(now=NOW + timedelta(days=1))),
    ("implement", "succeed", "normal", "role", _context(role=Role.VIEWER)),
    ("implement", "fail", "normal", "role", _context(role=Role.TRAINEE)),
    ("implement", "backout", "normal", "window_end", _context(now=NOW + timedelta(hours=3))),
    ("failed", "backout", "emergency", "role", _context(role=Role.TRAINEE)),
    ("review", "review", "normal", "what_happened", _input(what_happened=" ")),
    ("review", "close", "normal", "close_code", _input(close_code=None)),
    ("review", "close", "normal", "close_code", _input(close_code="fine")),
    ("review", "close", "normal", "close_notes", _input(notes="")),
    ("review", "close", "emergency", "review", _clear("review", None)),
    ("failed", "close", "normal", "close_code", _input(close_code="successful")),
    ("backed_out", "close", "standard", "close_code", _input(close_code="successful_with_issues")),
    ("review", "note", "normal", "text", _input(text="")),
    ("closed", "note", "normal", "role", _context(role=Role.VIEWER)),
]
for state in ("draft", "assess", "authorize", "scheduled"):
    for field_name, blank in (("window_start", None), ("window_end", None), ("backout_plan", ""),
                              ("impact", ""), ("outage", None), ("hosts", ())):
        if state == "authorize":
            BREAKS.append((state, "schedule", "normal", field_name, _clear(field_name, blank)))


@pytest.mark.parametrize(("state", "action", "kind", "guard", "breaker"), BREAKS,
                         ids=[f"{b[0]}-{b[1]}-{b[2]}-{b[3]}" for b in BREAKS])
def test_each_guard_refuses_naming_itself(
    state: str, action: str, kind: str, guard: str, breaker: Any
) -> None:
    change = ready(state, kind)
    if guard == "risk":
        change = replace(change, risk="moderate", risk_computed="moderate")
    inp = good_input(change, action)
    # The unbroken action is allowed: the guard alone makes the difference.
    apply(change, action, ctx(), inp)
    broken_change, broken_ctx, broken_inp = breaker(change, ctx(), inp)
    with pytest.raises(ChangeRefused) as refused:
        apply(broken_change, action, broken_ctx, broken_inp)
    expected = {"state_field": "state"}.get(guard, guard)
    assert refused.value.missing_field == expected, refused.value.reason
    assert refused.value.action == action


def test_every_transition_with_guards_is_exercised() -> None:
    transitions = {(s, a, k) for s, a, k in CASES if not isinstance(spec(s, a, k), Refused)}
    guarded = {(s, a) for s, a, *_ in BREAKS}
    # Every action that moves a change has at least one guard broken above.
    moving = {(s, a) for s, a, k in transitions if spec(s, a, k) != s}
    assert {a for _, a in moving} <= {a for _, a in guarded}


# -- behaviour in detail ----------------------------------------------------------------


def test_normal_change_from_draft_to_closed_with_work_log() -> None:
    change = ready("draft", "normal")
    change = replace(change, approvals=(), window_start=None, window_end=None)
    alice = ctx(actor="alice", role=Role.OPERATOR)
    bob = ctx(actor="bob", role=Role.APPROVER)
    change = apply(change, "submit", alice)
    change = apply(change, "assess", bob, ActionInput(comment="fine"))
    assert change.state == "authorize"
    change = apply(change, "approve", bob)
    assert change.state == "authorize" and change.authorized
    change = apply(change, "schedule", alice, ActionInput(start=NOW, end=NOW + timedelta(hours=1)))
    assert (change.window_start, change.window_end) == ("2025-06-01T12:00:00Z", "2025-06-01T13:00:00Z")
    change = apply(change, "implement", alice)
    change = apply(change, "succeed", alice, ActionInput(run_id="RUN-4"))
    assert change.outcome == "succeeded"
    change = apply(change, "close", alice, ActionInput(close_code="successful", notes="ok"))
    assert change.state == "closed" and change.close_code == "successful"
    assert [(e.actor, e.from_state, e.to_state) for e in change.work_log[-7:]] == [
        ("alice", "draft", "assess"), ("bob", "assess", "authorize"),
        ("bob", "authorize", "authorize"), ("alice", "authorize", "scheduled"),
        ("alice", "scheduled", "implement"), ("alice", "implement", "review"),
        ("alice", "review", "closed"),
    ]
    assert change.work_log[-2].detail["run"] == "RUN-4"


def test_high_risk_needs_two_different_approvers() -> None:
    change = replace(ready("authorize", "normal"), approvals=(), risk="high", risk_computed="high")
    assert change.approvals_needed == 2
    change = apply(change, "approve", ctx(actor="bob", role=Role.APPROVER))
    refused = check(change, "schedule", ctx())
    assert refused is not None and refused.missing_field == "approvals"
    with pytest.raises(ChangeRefused, match="approved CHG-1 already"):
        apply(change, "approve", ctx(actor="bob", role=Role.APPROVER))
    change = apply(change, "approve", ctx(actor="dave", role=Role.APPROVER))
    assert change.approved_by == ["bob", "dave"]
    assert apply(change, "schedule", ctx()).state == "scheduled"


def test_requester_never_approves_unless_config_allows_and_it_is_recorded() -> None:
    change = replace(ready("authorize", "normal"), approvals=(), requester="bob")
    bob = ctx(actor="bob", role=Role.ADMIN)
    with pytest.raises(ChangeRefused) as refused:
        apply(change, "approve", bob)
    assert refused.value.missing_field == "approver"
    assert "separation of duties" in refused.value.reason
    allowed = apply(change, "approve", replace(bob, allow_self_approval=True))
    assert allowed.self_approval_allowed
    assert allowed.approvals[-1].self_approval
    assert allowed.work_log[-1].detail["self_approval"] is True


def test_rejection_needs_a_comment_returns_to_draft_and_resets_approvals() -> None:
    change = replace(ready("authorize", "normal"), risk="high", risk_computed="high")
    assert change.approved_by == ["bob"]
    rejected = apply(change, "reject", ctx(actor="dave", role=Role.APPROVER),
                     ActionInput(comment="no backout tested"))
    assert rejected.state == "draft"
    assert rejected.last_rejection is not None and rejected.last_rejection.comment == "no backout tested"
    assert rejected.round == 2 and rejected.approved_by == []
    assert "no backout tested" in rejected.work_log[-1].text


def test_emergency_approval_opens_the_window_now_even_in_a_blackout() -> None:
    change = replace(ready("authorize", "emergency"), approvals=(), window_start=None,
                     window_end=None, impact="", outage=None, backout_plan="")
    approved = apply(change, "approve",
                     ctx(actor="bob", role=Role.APPROVER, blackout="year-end freeze",
                         emergency_window=timedelta(minutes=30)))
    assert approved.state == "scheduled"
    assert (approved.start, approved.end) == (NOW, NOW + timedelta(minutes=30))
    assert approved.work_log[-1].detail["blackout"] == "year-end freeze"
    assert approved.is_active(NOW)


def test_standard_change_is_scheduled_at_submit_and_never_approved() -> None:
    change = ready("draft", "standard")
    scheduled = apply(change, "submit", ctx(actor=REQUESTER, role=Role.OPERATOR))
    assert scheduled.state == "scheduled" and scheduled.approvals == ()
    assert scheduled.approvals_needed == 0


def test_type_changes_only_in_draft() -> None:
    change = apply(ready("draft", "normal"), "set_type", ctx(), ActionInput(new_type="emergency"))
    assert change.type == "emergency"
    for state in STATES:
        if state == "draft":
            continue
        refusal = check(ready(state, "normal"), "set_type", ctx(), ActionInput(new_type="standard"))
        assert refusal is not None and refusal.missing_field == "state", state


def test_cancel_only_before_implement() -> None:
    for state in STATES:
        refusal = check(ready(state, "normal"), "cancel", ctx(), ActionInput(comment="dup"))
        assert (refusal is None) == (state in ("draft", "assess", "authorize", "scheduled")), state


def test_available_actions_name_the_reason() -> None:
    change = ready("authorize", "normal")
    actions = available_actions(change, ctx(actor="alice", role=Role.OPERATOR))
    assert actions["approve"] is not None and "approver" in actions["approve"]
    assert actions["cancel"] is None  # the requester cancels her own change
    assert actions["schedule"] is None
    assert actions["close"] is not None and "state authorize" in actions["close"]
    assert set(actions) == set(ACTIONS)


def test_edit_in_draft_changes_fields_and_logs_them() -> None:
    change = ready("draft", "normal")
    edited = apply(change, "edit", ctx(actor=REQUESTER, role=Role.OPERATOR), ActionInput(
        fields={"outage": True, "hosts": ["db1", "db1", "db2"], "window_start": "2025-07-01T10:00",
                "window_end": "2025-07-01T11:00"}))
    assert edited.outage is True and edited.hosts == ("db1", "db2")
    assert edited.window_start == "2025-07-01T10:00:00Z"
    assert edited.work_log[-1].detail["fields"] == [
        "hosts", "outage", "window_end", "window_start"]
    # An edit is logged as an edit, not as a transition.
    assert (edited.work_log[-1].kind, edited.work_log[-1].action) == ("edit", "edit")
    with pytest.raises(ChangeRefused) as refused:
        apply(change, "edit", ctx(), ActionInput(fields={"outage": "maybe"}))
    assert refused.value.missing_field == "outage"


def test_a_window_that_ends_before_it_starts_is_refused_when_written_or_edited() -> None:
    with pytest.raises(ChangeRefused) as refused:
        new_change(requester=REQUESTER, now=NOW, window_start=iso(NOW + timedelta(hours=1)),
                   window_end=iso(NOW + timedelta(minutes=30)))
    assert refused.value.missing_field == "window_end"
    assert "must end after it starts" in refused.value.reason
    # Moving only the start past the end is refused too, naming the end.
    change = ready("draft", "normal")
    with pytest.raises(ChangeRefused) as refused:
        apply(change, "edit", ctx(), ActionInput(fields={"window_start": NOW + timedelta(hours=2)}))
    assert refused.value.missing_field == "window_end"
    assert apply(change, "edit", ctx(), ActionInput(fields={
        "window_start": NOW + timedelta(hours=2),
        "window_end": NOW + timedelta(hours=3)})).window_end == iso(NOW + timedelta(hours=3))
    # Half a window is fine in a draft: scheduling asks for both ends.
    half = new_change(requester=REQUESTER, now=NOW, window_start=iso(NOW))
    assert half.window_end is None


def test_the_first_work_log_entry_reads_well() -> None:
    texts = [new_change(requester=REQUESTER, now=NOW, change_type=kind).work_log[0].text
             for kind in CHANGE_TYPES]
    assert texts == ["created as a standard change", "created as a normal change",
                     "created as an emergency change"]


def test_requester_never_assesses_unless_self_approval_is_allowed() -> None:
    """ITIL and ServiceNow: the requester is not the assessor. Assessing moves the
    change on to authorization, so it follows the rule of self-approval."""
    change = ready("assess", "normal")
    alice = ctx(actor=REQUESTER, role=Role.APPROVER)
    refusal = check(change, "assess", alice)
    assert refusal is not None and refusal.missing_field == "approver"
    assert "cannot assess it" in refusal.reason and "separation of duties" in refusal.reason
    assert available_actions(change, alice)["assess"] == refusal.reason
    allowed = apply(change, "assess", replace(alice, allow_self_approval=True))
    assert allowed.state == "authorize" and allowed.self_approval_allowed
    assert allowed.work_log[-1].detail["self_assessment"] is True
    # Another approver assesses without any mark.
    other = apply(change, "assess", ctx(actor="bob", role=Role.APPROVER))
    assert not other.self_approval_allowed and "self_assessment" not in other.work_log[-1].detail


def test_stored_form_round_trips() -> None:
    change = apply(ready("review", "emergency"), "review", ctx(),
                   ActionInput(what_happened="x", incidents="INC-1", lessons="test first"))
    again = Change.from_dict(change.to_dict())
    assert again == change
    assert again.review is not None and again.review.incidents == "INC-1"


def test_check_without_input_judges_the_stored_window() -> None:
    """As ``check``'s docstring says: without an input the window stored on the change
    is checked (a missing one is refused, naming it); a window given with the action
    is judged only when given."""
    authorized = replace(ready("authorize", "normal"), window_start=None, window_end=None)
    refusal = check(authorized, "schedule", ctx())
    assert refusal is not None and refusal.missing_field == "window_start"
    given = ActionInput(start=NOW + timedelta(hours=1), end=NOW + timedelta(hours=2))
    assert check(authorized, "schedule", ctx(), given) is None
    # A stored window that is over is refused without an input too ...
    over = replace(authorized, window_start=iso(NOW - timedelta(hours=3)),
                   window_end=iso(NOW - timedelta(hours=2)))
    refusal = check(over, "schedule", ctx())
    assert refusal is not None and refusal.missing_field == "window_end"
    # ... and a window given with the action replaces it.
    assert check(over, "schedule", ctx(), given) is None
    # A blackout from the context counts without an input.
    refusal = check(ready("authorize", "normal"), "schedule", ctx(blackout="year-end freeze"))
    assert refusal is not None and refusal.missing_field == "window"
    # Implementing and backing out need now inside the stored window.
    later = ctx(now=NOW + timedelta(hours=2))
    for state, action in (("scheduled", "implement"), ("failed", "backout")):
        refusal = check(ready(state, "normal"), action, later)
        assert refusal is not None and refusal.missing_field == "window_end", action
        assert check(ready(state, "normal"), action, ctx()) is None
    # Inputs are not judged without one: a rejection's comment, for instance.
    assert check(ready("authorize", "normal"), "reject", ctx()) is None
    refusal = check(ready("authorize", "normal"), "reject", ctx(), ActionInput())
    assert refusal is not None and refusal.missing_field == "comment"
