"""Procedures: runbooks kept as data (ARCHITECTURE.md section 4, docs/procedures.md).

A :class:`Procedure` is an ordered list of :class:`Step` objects plus the
:class:`Variable` declarations its commands use. The objects here are plain,
immutable values: :mod:`itop_tui.domain.procedure_loader` builds and validates
them from YAML, :mod:`itop_tui.domain.substitution` renders their commands,
and the runner in ``ops/`` executes them.

The content hash is the SHA-256 of :meth:`Procedure.canonical_json`, which
includes every field with its defaults filled in. Comments, key order and
YAML style in the source file therefore do not change it; any change to what
the procedure does does.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

STEP_KINDS = ("manual", "command", "check", "input", "approval")
STRATEGIES = ("step-first", "host-first")
DEFAULT_STRATEGY = "step-first"
DEFAULT_STEP_TIMEOUT = 60.0
DEFAULT_EXPECTED_EXIT: tuple[int, ...] = (0,)

# Kinds whose steps run a shell command on every target host.
COMMAND_KINDS = ("command", "check")


def default_mutates(kind: str) -> bool:
    """Whether a step of ``kind`` changes things unless it says otherwise.

    Only ``command`` steps are assumed to change the host: a command is
    read-only only when its author declares ``mutates: false``.
    """
    return kind == "command"


@dataclass(frozen=True)
class Expect:
    """What a command's result must look like for its step to pass.

    ``exit`` lists the accepted exit statuses; ``regex``, when set, must be
    found (``re.search``, multiline) in the command's standard output.
    """

    exit: tuple[int, ...] = DEFAULT_EXPECTED_EXIT
    regex: str | None = None

    def failure(self, exit_status: int | None, stdout: str) -> str | None:
        """Why a result does not meet the expectation, or None when it does.

        ``exit_status`` None means the command never finished (timeout,
        lost connection); that never passes.
        """
        if exit_status is None:
            return "the command did not finish"
        if exit_status not in self.exit:
            wanted = " or ".join(str(code) for code in self.exit)
            return f"exit status {exit_status}, expected {wanted}"
        if self.regex is not None and re.search(self.regex, stdout, re.MULTILINE) is None:
            return f"output does not match /{self.regex}/"
        return None

    def passes(self, exit_status: int | None, stdout: str) -> bool:
        """True when the result meets the expectation."""
        return self.failure(exit_status, stdout) is None


@dataclass(frozen=True)
class Until:
    """Poll a check until it passes: every ``interval`` seconds for ``timeout`` seconds."""

    timeout: float
    interval: float = 5.0

    def max_attempts(self) -> int:
        """How many times the check runs at most (the first try included)."""
        return int(self.timeout // self.interval) + 1 if self.interval > 0 else 1


@dataclass(frozen=True)
class Variable:
    """A value the operator supplies, substituted shell-quoted into commands.

    ``choices`` and ``regex`` restrict the value (``regex`` must match the
    whole value). A ``secret`` value is used in commands but never stored,
    logged or shown; secrets have no default.
    """

    name: str
    description: str = ""
    required: bool = False
    default: str | None = None
    choices: tuple[str, ...] = ()
    regex: str | None = None
    secret: bool = False


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a procedure.

    Kinds:

    - ``manual``: a person does what ``instructions`` say and confirms.
    - ``command``: ``command`` runs on each target; ``expect`` decides success;
      ``retries`` more attempts ``delay`` seconds apart on failure.
    - ``check``: a read-only command; with ``until`` it is polled until it
      passes or ``until.timeout`` runs out. A failed check stops the run.
    - ``input``: asks the operator for the value of ``variable``.
    - ``approval``: waits for a different person with the approver role.

    ``mutates`` says whether the step changes anything (callers pass
    :func:`default_mutates` when the author did not say). ``trainee_safe``
    lets a trainee run a mutating step without sign-off.
    ``skip_in_check_mode`` marks a check that verifies the effect of an
    earlier mutating step, so it would fail when that step was skipped.
    ``timeout`` is per attempt, in seconds; None for steps that run nothing.
    """

    id: str
    title: str
    kind: str
    mutates: bool
    instructions: str = ""
    command: str | None = None
    expect: Expect = Expect()
    retries: int = 0
    delay: float = 0.0
    until: Until | None = None
    timeout: float | None = None
    trainee_safe: bool = False
    variable: str | None = None
    skip_in_check_mode: bool = False

    @property
    def runs_command(self) -> bool:
        """True for steps that execute ``command`` on the target hosts."""
        return self.kind in COMMAND_KINDS

    @property
    def runs_in_check_mode(self) -> bool:
        """True when check mode executes or presents this step.

        Check mode runs only ``check`` steps and read-only commands, shows
        read-only manual steps and asks inputs (commands need their values);
        it skips anything that changes something, and approvals.
        """
        if self.skip_in_check_mode or self.kind == "approval":
            return False
        return not self.mutates

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able data."""
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "instructions": self.instructions,
            "command": self.command,
            "expect": {"exit": list(self.expect.exit), "regex": self.expect.regex},
            "retries": self.retries,
            "delay": self.delay,
            "until": (
                None
                if self.until is None
                else {"timeout": self.until.timeout, "interval": self.until.interval}
            ),
            "timeout": self.timeout,
            "mutates": self.mutates,
            "trainee_safe": self.trainee_safe,
            "variable": self.variable,
            "skip_in_check_mode": self.skip_in_check_mode,
        }


@dataclass(frozen=True)
class Procedure:
    """A runbook: metadata, variables and ordered steps.

    ``targets`` is a default host selector (the operator may override it).
    ``serial`` lists batch sizes as Ansible does (ints and ``"N%"`` strings;
    empty means all targets in one batch); ``max_fail_percentage`` stops the
    run when a batch's failures exceed it. ``strategy`` is ``step-first``
    (each step on every host of the batch, then the next step) or
    ``host-first`` (all steps on one host, then the next host).
    """

    id: str
    title: str
    version: str
    steps: tuple[Step, ...]
    description: str = ""
    targets: str | None = None
    variables: tuple[Variable, ...] = ()
    serial: tuple[int | str, ...] = ()
    max_fail_percentage: float | None = None
    strategy: str = DEFAULT_STRATEGY

    def step(self, step_id: str) -> Step:
        """The step with id ``step_id``; KeyError when there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def step_index(self, step_id: str) -> int:
        """The position of step ``step_id``; KeyError when there is none."""
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    def variable(self, name: str) -> Variable | None:
        """The declared variable ``name``, or None."""
        for variable in self.variables:
            if variable.name == name:
                return variable
        return None

    def secret_names(self) -> frozenset[str]:
        """Names of the secret variables (their values must never be stored)."""
        return frozenset(v.name for v in self.variables if v.secret)

    def input_variable_names(self) -> frozenset[str]:
        """Variables asked by ``input`` steps, so not needed when a run starts."""
        return frozenset(s.variable for s in self.steps if s.kind == "input" and s.variable)

    @property
    def mutates(self) -> bool:
        """True when any step changes something."""
        return any(step.mutates for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able data (what the store keeps)."""
        return {
            "id": self.id,
            "title": self.title,
            "version": self.version,
            "description": self.description,
            "targets": self.targets,
            "variables": [
                {
                    "name": v.name,
                    "description": v.description,
                    "required": v.required,
                    "default": v.default,
                    "choices": list(v.choices),
                    "regex": v.regex,
                    "secret": v.secret,
                }
                for v in self.variables
            ],
            "steps": [step.to_dict() for step in self.steps],
            "serial": list(self.serial),
            "max_fail_percentage": self.max_fail_percentage,
            "strategy": self.strategy,
        }

    def canonical_json(self) -> str:
        """The procedure as canonical JSON: sorted keys, no spaces, UTF-8 text."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    def content_hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`: identifies what the procedure does."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()
