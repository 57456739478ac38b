"""What an approver signs off: the facts of the step a waiting run asks about.

An approval or a trainee's sign-off is only worth something when the
approver sees what they approve: the step, its hosts, its command as it
will run (rendered the way the trainee's confirmation shows it: values
substituted, secrets as ``***``) and the run's variables (secret ones as
``***``, never their value; the run record does not hold them anyway).
The Procedures pane's approve dialog and ``itop procedure approve`` show
the same lines.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from itop_tui.domain.output import strip_control
from itop_tui.domain.procedure import Procedure
from itop_tui.domain.procedure_loader import ProcedureFormatError, procedure_from_dict
from itop_tui.domain.substitution import REDACTED, builtin_values, render_text
from itop_tui.services.procedure_repo import ProcedureRun

COMMAND_LINES = 12
"""Lines of the command shown (as in the trainee's confirmation); the rest are counted."""

VALUE_WIDTH = 80
"""A variable's value is shown on one line of at most this many characters."""

HOSTS_SHOWN = 8
"""Hosts named before the rest are counted."""


def _one_line(text: str, width: int) -> str:
    flat = " ".join(strip_control(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def host_list(hosts: list[str]) -> str:
    """``2 hosts (web01, web02)``; past :data:`HOSTS_SHOWN` the others are counted."""
    shown = ", ".join(hosts[:HOSTS_SHOWN])
    if len(hosts) > HOSTS_SHOWN:
        shown += f" and {len(hosts) - HOSTS_SHOWN} more"
    return f"{len(hosts)} host{'s' if len(hosts) != 1 else ''} ({shown})"


def variable_lines(run: ProcedureRun, procedure: Procedure | None) -> list[str]:
    """``name=value`` for each variable of the run, secrets as ``***``, in declared order."""
    names = [v.name for v in procedure.variables] if procedure is not None else []
    names += [n for n in [*run.variables, *run.secret_names] if n not in names]
    secret = set(run.secret_names)
    if procedure is not None:
        secret |= {v.name for v in procedure.variables if v.secret}
    lines = []
    for name in names:
        if name in secret:
            shown = f"{REDACTED} (secret)"
        elif name in run.variables:
            shown = _one_line(run.variables[name], VALUE_WIDTH)
        else:
            shown = "(not given yet)"
        lines.append(f"{name}={shown}")
    return lines


def shown_values(run: ProcedureRun, hosts: list[str], addresses: Mapping[str, str]) -> dict[str, str]:
    """The run's stored values with ``host`` and ``address`` of the first of ``hosts``."""
    values = dict(run.variables)
    if hosts:
        values.update(builtin_values(hosts[0], addresses.get(hosts[0], hosts[0])))
    return values


def command_preview(command: str, run: ProcedureRun, hosts: list[str],
                    addresses: Mapping[str, str]) -> list[str]:
    """The command as it will run on the first of ``hosts``, secrets as ``***``."""
    return preview_lines(command, shown_values(run, hosts, addresses), run.secret_names, hosts)


def preview_lines(command: str, values: Mapping[str, str], secret_names: Collection[str],
                  hosts: list[str]) -> list[str]:
    """``command`` rendered with ``values`` (the first host's), secrets as ``***``, at most
    :data:`COMMAND_LINES` lines, indented; the operator's question and the approver's
    sign-off show the same."""
    text = render_text(command, dict(values), secret_names=secret_names)
    lines = strip_control(text).strip().splitlines()
    if len(lines) > COMMAND_LINES:
        lines = [*lines[:COMMAND_LINES], f"… ({len(lines) - COMMAND_LINES} more lines)"]
    shown = [f"  {line}" for line in lines]
    if len(hosts) > 1:
        shown.append(f"(on {hosts[0]}; each host gets its own values)")
    return shown


def pending_facts(run: ProcedureRun, addresses: Mapping[str, str] | None = None) -> list[str]:
    """The lines that say what approving ``run``'s pending step allows.

    ``addresses`` maps host names to their connect address (the ``address``
    built-in variable); a host not in it reads its own name. Empty when the
    run waits for nothing.
    """
    pending = run.pending
    if pending is None:
        return []
    hosts = list(pending.hosts) or list(run.targets)
    procedure: Procedure | None = None
    problem = ""
    try:
        procedure = procedure_from_dict(run.procedure, f"{run.id} procedure snapshot")
    except ProcedureFormatError as exc:
        problem = str(exc)
    step = next((s for s in procedure.steps if s.id == pending.step), None) \
        if procedure is not None else None
    values = shown_values(run, hosts, addresses or {})
    title = (_one_line(render_text(step.title, values, secret_names=run.secret_names), 80)
             if step is not None else "")
    kind = "sign-off" if pending.kind == "signoff" else "approval"
    lines = [f"{kind.capitalize()} of step {pending.step}" + (f" ({title})" if title else "")
             + f" of {run.procedure_id} {run.procedure_version}, {run.mode} run by {run.operator}",
             f"Hosts: {host_list(hosts)}"]
    if procedure is None:
        lines.append(f"The run's procedure cannot be read ({_one_line(problem, 120)}): "
                     "read the run before deciding.")
    elif step is not None and step.command:
        lines.append("Command as it will run:")
        lines += command_preview(step.command, run, hosts, addresses or {})
    elif step is not None:
        lines.append(f"The step is {step.kind}: it runs no command.")
    variables = variable_lines(run, procedure)
    lines.append("Variables: " + (", ".join(variables) if variables else "none"))
    return lines
