"""Roles: who may run, sign off and approve which procedure steps."""

from __future__ import annotations

import pytest

from itop_tui.domain.procedure import Step, default_mutates
from itop_tui.domain.roles import (
    ROLE_NAMES,
    Role,
    StepDecision,
    can_approve,
    can_manage_library,
    can_run_step,
    can_start_run,
    needs_signoff,
    step_permission,
)
from itop_tui.settings import ROLES


def step(kind: str, *, mutates: bool | None = None, trainee_safe: bool = False,
         skip_in_check_mode: bool = False) -> Step:
    return Step(
        id="s", title="S", kind=kind,
        mutates=default_mutates(kind) if mutates is None else mutates,
        command="true" if kind in ("command", "check") else None,
        trainee_safe=trainee_safe, skip_in_check_mode=skip_in_check_mode,
    )


MUTATING = step("command")
READ_ONLY = step("command", mutates=False)
SAFE = step("command", trainee_safe=True)
CHECK = step("check")
VERIFY = step("check", skip_in_check_mode=True)
MANUAL_CHANGE = step("manual", mutates=True)
MANUAL = step("manual")
APPROVAL = step("approval")
INPUT = step("input")


def test_roles_are_ordered_and_named_as_in_settings() -> None:
    assert Role.VIEWER < Role.TRAINEE < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    assert ROLE_NAMES == ROLES
    assert [Role.parse(name) for name in ROLES] == list(Role)
    assert Role.parse(" Approver ") is Role.APPROVER
    assert str(Role.TRAINEE) == "trainee"


def test_unknown_role_names_the_roles() -> None:
    with pytest.raises(ValueError, match=r"unknown role 'oprator' \(did you mean 'operator'\?\); roles: viewer"):
        Role.parse("oprator")


def test_viewer_runs_nothing() -> None:
    for candidate in (MUTATING, READ_ONLY, CHECK, MANUAL, INPUT):
        for check_mode in (False, True):
            permission = step_permission(Role.VIEWER, candidate, check_mode)
            assert permission.decision is StepDecision.DENY
            assert not can_run_step(Role.VIEWER, candidate, check_mode)
    assert not can_start_run(Role.VIEWER)


def test_trainee_runs_checks_read_only_and_trainee_safe_steps() -> None:
    for allowed in (CHECK, READ_ONLY, SAFE, MANUAL, INPUT, APPROVAL):
        assert can_run_step(Role.TRAINEE, allowed, False), allowed
        assert not needs_signoff(Role.TRAINEE, allowed)
    assert can_start_run(Role.TRAINEE)
    assert not can_manage_library(Role.TRAINEE)


def test_trainee_needs_signoff_before_other_mutating_steps() -> None:
    for guarded in (MUTATING, MANUAL_CHANGE):
        assert needs_signoff(Role.TRAINEE, guarded)
        assert not can_run_step(Role.TRAINEE, guarded, False)
        permission = step_permission(Role.TRAINEE, guarded, False)
        assert permission.decision is StepDecision.SIGNOFF
        assert "sign-off" in permission.reason


def test_operator_and_above_run_everything_without_signoff() -> None:
    for role in (Role.OPERATOR, Role.APPROVER, Role.ADMIN):
        for candidate in (MUTATING, READ_ONLY, CHECK, MANUAL_CHANGE, APPROVAL, INPUT):
            assert can_run_step(role, candidate, False)
            assert not needs_signoff(role, candidate)
        assert can_manage_library(role)


@pytest.mark.parametrize("role", [Role.TRAINEE, Role.OPERATOR, Role.ADMIN])
def test_check_mode_runs_only_read_only_steps(role: Role) -> None:
    for runs in (CHECK, READ_ONLY, MANUAL, INPUT):
        assert can_run_step(role, runs, True), runs
    for skipped in (MUTATING, SAFE, MANUAL_CHANGE, APPROVAL, VERIFY):
        permission = step_permission(role, skipped, True)
        assert permission.decision is StepDecision.SKIP, skipped
        assert not can_run_step(role, skipped, True)
    assert "check mode" in step_permission(role, MUTATING, True).reason
    assert "verifies a change" in step_permission(role, VERIFY, True).reason


def test_approval_needs_approver_role_and_another_person() -> None:
    assert can_approve(Role.APPROVER, "bob", "alice")
    assert can_approve(Role.ADMIN, "bob", "alice")
    assert not can_approve(Role.APPROVER, "alice", "alice")
    assert not can_approve(Role.ADMIN, "alice", "alice")
    assert not can_approve(Role.OPERATOR, "bob", "alice")
    assert not can_approve(Role.TRAINEE, "bob", "alice")
    assert not can_approve(Role.APPROVER, "", "alice")
    assert not can_approve(Role.APPROVER, "  ", "alice")
