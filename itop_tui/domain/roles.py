"""Roles and what each may do with procedures.

Roles are ordered: viewer < trainee < operator < approver < admin; each has
the rights of those below it. A viewer reads procedures and runs, nothing
more. A trainee runs check steps, read-only steps and steps marked
``trainee_safe``; any other step that changes something needs an approver's
sign-off first. An approval is given by an approver (or admin) who is not
the person who asked for it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import Enum, IntEnum

from itop_tui.domain.procedure import Step


class Role(IntEnum):
    """A person's role; comparisons follow the order of rights."""

    VIEWER = 0
    TRAINEE = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        """The name used in config files and shown to people."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named ``text`` (case-insensitive); ValueError naming the roles otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = [role.label for role in cls]
            close = difflib.get_close_matches(text.strip().lower(), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown role {text!r}{hint}; roles: {', '.join(names)}"
            ) from None


ROLE_NAMES = tuple(role.label for role in Role)


class StepDecision(Enum):
    """What the runner does with a step for a given role and mode."""

    RUN = "run"
    SIGNOFF = "signoff"  # run only after an approver signed it off
    SKIP = "skip"  # check mode: the step would change something
    DENY = "deny"


@dataclass(frozen=True)
class StepPermission:
    """A :class:`StepDecision` with the reason to show the operator."""

    decision: StepDecision
    reason: str


def step_permission(role: Role, step: Step, check_mode: bool) -> StepPermission:
    """Decide whether ``role`` may run ``step`` now, in normal or check mode."""
    if role < Role.TRAINEE:
        return StepPermission(
            StepDecision.DENY, "a viewer can read procedures and runs, not run them"
        )
    if check_mode:
        if step.runs_in_check_mode:
            return StepPermission(StepDecision.RUN, "read-only: runs in check mode")
        if step.kind == "approval":
            return StepPermission(StepDecision.SKIP, "check mode changes nothing, so needs no approval")
        if step.skip_in_check_mode:
            return StepPermission(
                StepDecision.SKIP, "verifies a change that check mode does not make"
            )
        return StepPermission(StepDecision.SKIP, "changes something: skipped in check mode")
    if needs_signoff(role, step):
        return StepPermission(
            StepDecision.SIGNOFF,
            "a trainee needs an approver's sign-off before a step that changes something",
        )
    return StepPermission(StepDecision.RUN, "allowed")


def can_run_step(role: Role, step: Step, check_mode: bool) -> bool:
    """True when ``role`` may run ``step`` on its own (no sign-off) in this mode.

    False for a step to skip (check mode), to refuse (viewer), or one that
    :func:`needs_signoff` first.
    """
    return step_permission(role, step, check_mode).decision is StepDecision.RUN


def needs_signoff(role: Role, step: Step) -> bool:
    """True when a trainee is about to run a step that changes something and is not trainee_safe."""
    return role == Role.TRAINEE and step.mutates and not step.trainee_safe


def can_start_run(role: Role) -> bool:
    """True when ``role`` may start, resume or abort procedure runs."""
    return role >= Role.TRAINEE


def can_manage_library(role: Role) -> bool:
    """True when ``role`` may import, replace or delete procedures."""
    return role >= Role.OPERATOR


def can_approve(role: Role, approver: str, requester: str) -> bool:
    """True when ``approver``, holding ``role``, may approve what ``requester`` asked.

    Needs the approver role or above, and never the requester themself.
    """
    return role >= Role.APPROVER and bool(approver.strip()) and approver != requester
