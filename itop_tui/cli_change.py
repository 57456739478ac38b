"""``itop change ...``: the change process, headless.

Registered through ``EXTENSIONS`` in :mod:`itop_tui.cli`. Exit status: 0
ok; 1 the action was refused (state, role, separation of duties, a missing
guard: the message names the missing field) or an implementation did not
succeed; 2 a usage error (unknown change, bad time, unknown selector or
procedure). ``--json`` on ``list`` and ``show`` prints ``Change.to_dict()``
records (documented in docs/changes.md); ``show --json`` adds ``derived``.

Times (``--start``, ``--end``) are ISO 8601 (UTC when no offset is given),
``now``, or ``+DURATION`` from now (``+30m``, ``+2h``).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from itop_tui.cli import (
    EXIT_FAILED,
    EXIT_OK,
    OperationFailed,
    UsageError,
    add_actions,
    clean,
    err,
    open_services,
    positive_float,
    print_json,
    run_closing,
    split_assignment,
    table,
    warn_recovered,
)
from itop_tui.cli_prompt import (
    SECRET_ENV_PREFIX,
    RunConsole,
    ask_secret_async,
    env_value,
    interactive,
    prompt_async,
    said_yes,
)
from itop_tui.domain.change import (
    ACTIONS,
    CHANGE_TYPES,
    CLOSE_CODES,
    RISKS,
    STATES,
    Change,
    ChangeRefused,
    iso,
)
from itop_tui.domain.change_windows import time_left
from itop_tui.domain.output import shorten
from itop_tui.domain.substitution import VariableError
from itop_tui.domain.timespec import TimeSpecError, parse_duration, parse_when
from itop_tui.services.context import Services

COMMANDS: list[tuple[str, str]] = [
    ("change new --title T --hosts SEL", "write a change (--template NAME: a standard change)"),
    ("change list", "list changes, pending first (--state, --type, --host, --requester)"),
    ("change show CHG", "a change with its plans, approvals, runs and work log"),
    ("change edit CHG", "change fields of a draft"),
    ("change submit CHG", "submit a draft (standard: scheduled at once)"),
    ("change assess CHG", "assess a normal change (approvers; --risk raises it)"),
    ("change approve CHG", "approve a change (approvers, never the requester)"),
    ("change reject CHG --comment C", "reject a change: back to draft"),
    ("change schedule CHG", "schedule an authorized change in its window"),
    ("change implement CHG", "implement inside the window by its procedure"),
    ("change backout CHG", "back out a change being implemented or failed"),
    ("change review CHG", "record the post-implementation review"),
    ("change close CHG --code C", "close with a close code and notes"),
    ("change cancel CHG --reason R", "cancel a change not yet implemented"),
    ("change note CHG TEXT", "add a note to the work log"),
    ("change upcoming", "scheduled changes and windows of the next days, conflicts marked"),
]


TITLE_WIDTH = 40
VAR_HELP = ("a variable of the implementation or backout procedure, for this run only "
            "(each procedure gets the names it declares; repeatable)")


def register(sub: Any, add: Callable[[Any, str, str], argparse.ArgumentParser]) -> None:
    """Add ``itop change ...`` to the top-level subparsers ``sub``."""
    actions = add_actions(add, sub, "change",
                          "the change process: request, approve, schedule, implement, review")

    p = add(actions, "new", "write a change (a draft)")
    _field_options(p, new=True)
    p.add_argument("--json", action="store_true", help="print the change as JSON")
    p.set_defaults(handler=cmd_new)

    p = add(actions, "edit", "change fields of a draft")
    p.add_argument("ref", help="change reference (CHG-N)")
    _field_options(p, new=False)
    p.set_defaults(handler=cmd_edit)

    p = add(actions, "list", "list changes, pending first")
    p.add_argument("--state", action="append", choices=STATES, default=[],
                   help="only changes in this state (repeatable)")
    p.add_argument("--type", action="append", choices=CHANGE_TYPES, default=[], dest="types",
                   help="only changes of this type (repeatable)")
    p.add_argument("--host", default=None, help="only changes covering this host")
    p.add_argument("--requester", default=None, help="only changes asked by this login")
    p.add_argument("--all", action="store_true", help="include closed and cancelled changes")
    p.add_argument("--json", action="store_true", help="print a JSON list of changes")
    p.set_defaults(handler=cmd_list)

    p = add(actions, "show", "a change with its plans, approvals, runs and work log")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--json", action="store_true", help="print the change as JSON")
    p.set_defaults(handler=cmd_show)

    for name, text in (("submit", "submit a draft"), ("approve", "approve a change")):
        p = add(actions, name, text)
        p.add_argument("ref", help="change reference (CHG-N)")
        p.add_argument("--comment", default="", help="a comment for the work log")
        p.set_defaults(handler=cmd_simple, action=name)

    p = add(actions, "assess", "assess a normal change (approvers)")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--risk", choices=RISKS, default=None,
                   help="raise the risk (it cannot go below the computed risk)")
    p.add_argument("--comment", default="", help="the assessment, for the work log")
    p.set_defaults(handler=cmd_assess)

    p = add(actions, "reject", "reject a change: it goes back to draft")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--comment", required=True, help="why (required)")
    p.set_defaults(handler=cmd_simple, action="reject")

    p = add(actions, "schedule", "schedule an authorized change")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--start", default=None, metavar="WHEN",
                   help="window start: ISO time, now, or +DURATION (default: the change's)")
    p.add_argument("--end", default=None, metavar="WHEN", help="window end (same forms)")
    p.add_argument("--duration", default=None, metavar="D", help="window length (30m, 2h)")
    p.set_defaults(handler=cmd_schedule)

    p = add(actions, "implement", "implement the change inside its window")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help=VAR_HELP)
    p.add_argument("--outcome", choices=("succeeded", "failed"), default=None,
                   help="for a change implemented by hand (no procedure): record the outcome")
    p.add_argument("--comment", default="", help="a comment for the work log (with --outcome)")
    backout = p.add_mutually_exclusive_group()
    backout.add_argument("--backout-on-failure", action="store_const", const=True,
                         dest="backout_on_failure", default=None,
                         help="run the backout procedure if the implementation fails")
    backout.add_argument("--no-backout", action="store_const", const=False,
                         dest="backout_on_failure",
                         help="do not run the backout procedure if it fails (do not ask)")
    p.add_argument("--yes", action="store_true",
                   help="confirm manual steps without asking (mutating steps are authorized "
                        "by the change)")
    p.add_argument("--json", action="store_true", help="print the change as JSON at the end")
    p.set_defaults(handler=cmd_implement)

    p = add(actions, "backout", "back out a change being implemented or failed")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--comment", default="",
                   help="how it was backed out (required without a backout procedure)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help=VAR_HELP)
    p.add_argument("--yes", action="store_true", help="confirm manual steps without asking")
    p.add_argument("--json", action="store_true", help="print the change as JSON at the end")
    p.set_defaults(handler=cmd_backout)

    p = add(actions, "review", "record the post-implementation review")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--what-happened", required=True, help="what happened (required)")
    p.add_argument("--incidents", default="", help="incidents the change caused (none if empty)")
    p.add_argument("--lessons", default="", help="lessons learned")
    p.set_defaults(handler=cmd_review)

    p = add(actions, "close", "close a change")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--code", required=True, choices=CLOSE_CODES, help="close code")
    p.add_argument("--notes", required=True, help="closing notes")
    p.set_defaults(handler=cmd_close)

    p = add(actions, "cancel", "cancel a change not yet implemented")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("--reason", required=True, help="why")
    p.set_defaults(handler=cmd_cancel)

    p = add(actions, "note", "add a note to the work log")
    p.add_argument("ref", help="change reference (CHG-N)")
    p.add_argument("text", nargs="+", help="the note")
    p.set_defaults(handler=cmd_note)

    p = add(actions, "upcoming", "scheduled changes and windows of the next days")
    p.add_argument("--days", type=positive_float, default=7.0, help="how many days (default 7)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=cmd_upcoming)


def _field_options(p: argparse.ArgumentParser, *, new: bool) -> None:
    if new:
        p.add_argument("--template", default=None, metavar="NAME",
                       help="a standard change template from changes.templates in the config")
    p.add_argument("--type", choices=CHANGE_TYPES, default=None,
                   help="standard, normal or emergency (default: standard with --template, "
                        "else normal)")
    p.add_argument("--title", default=None)
    p.add_argument("--description", default=None)
    p.add_argument("--justification", default=None)
    p.add_argument("--hosts", default=None, metavar="SELECTOR",
                   help="affected hosts (resolved to names now)")
    p.add_argument("--impact", default=None)
    p.add_argument("--outage", choices=("yes", "no"), default=None,
                   help="is there an outage (yes or no)")
    p.add_argument("--implementation", default=None, metavar="PROC_ID",
                   help="the procedure that implements the change")
    p.add_argument("--backout", default=None, metavar="PROC_ID",
                   help="the procedure that backs it out")
    p.add_argument("--backout-plan", default=None, metavar="TEXT")
    p.add_argument("--test-plan", default=None, metavar="TEXT")
    p.add_argument("--risk", choices=RISKS, default=None,
                   help="raise the risk above the computed one (never lower it)")
    p.add_argument("--start", default=None, metavar="WHEN",
                   help="window start: ISO time, now, or +DURATION")
    p.add_argument("--end", default=None, metavar="WHEN", help="window end (same forms)")
    p.add_argument("--assignee", default=None, metavar="LOGIN")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="a non-secret variable of the procedures (repeatable)")


# -- errors ----------------------------------------------------------------------------


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map the change layer's errors to exit statuses: refusals 1, bad input 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from itop_tui.ops.procedure_runner import RunnerError
        from itop_tui.services.change_repo import ChangeNotFound
        from itop_tui.services.procedure_repo import RunBusy

        try:
            return handler(args)
        except ChangeRefused as exc:
            missing = f" (missing: {exc.missing_field})" if exc.missing_field else ""
            if exc.action == "new" and exc.missing_field != "role":
                # A new change refused for what the command line gave: bad input.
                raise UsageError(clean(exc.reason)) from None
            raise OperationFailed(f"{clean(exc.reason)}{missing}") from None
        except ChangeNotFound as exc:
            raise UsageError(str(exc)) from None
        except (TimeSpecError, VariableError) as exc:
            raise UsageError(str(exc)) from None
        except ValueError as exc:
            if "change reference" in str(exc):
                raise UsageError(str(exc)) from None
            raise
        except (RunnerError, RunBusy) as exc:
            raise OperationFailed(str(exc)) from None

    return run


# -- helpers ---------------------------------------------------------------------------


def _vars(words: list[str]) -> dict[str, str]:
    return dict(split_assignment(text, "NAME=VALUE") for text in words)


def _workflow(args: argparse.Namespace) -> tuple[Services, Any]:
    from itop_tui.ops.change_workflow import ChangeWorkflow

    services = open_services(args)
    workflow = ChangeWorkflow(services)
    warn_recovered(workflow.changes.store)
    return services, workflow


def _outage(text: str | None) -> bool | None:
    return None if text is None else text == "yes"


def _transition_line(before: str, change: Change) -> str:
    entry = change.work_log[-1] if change.work_log else None
    what = entry.text if entry is not None else ""
    arrow = f"{before} -> {change.state}" if before != change.state else change.state
    return clean(f"{change.ref}: {arrow}  ({what})")


def _window_text(change: Change, now: datetime) -> str:
    if not change.window_start and not change.window_end:
        return "-"
    text = f"{change.window_start or '?'} -> {change.window_end or '?'}"
    left = time_left(change, now)
    if left is not None:
        text += f"  (ACTIVE, {int(left.total_seconds() // 60)} min left)"
    return text


# -- commands --------------------------------------------------------------------------


@_guarded
def cmd_new(args: argparse.Namespace) -> int:
    """``itop change new [--template NAME] --title T --hosts SEL ...``."""
    from itop_tui.ops.change_workflow import ChangeSpec

    services, workflow = _workflow(args)
    now = workflow.clock()
    spec = ChangeSpec(
        type=args.type,
        title=args.title or "",
        description=args.description or "",
        justification=args.justification or "",
        hosts=args.hosts or "",
        impact=args.impact or "",
        outage=_outage(args.outage),
        implementation=args.implementation,
        backout=args.backout,
        backout_plan=args.backout_plan or "",
        test_plan=args.test_plan or "",
        risk=args.risk,
        template=args.template,
        start=parse_when(args.start, now) if args.start else None,
        end=parse_when(args.end, now) if args.end else None,
        assignee=args.assignee,
        variables=_vars(args.var),
    )
    change = workflow.create(spec)
    if args.json:
        print_json(change.to_dict())
    else:
        print(clean(f"{change.ref} created ({change.type}, {change.state}): {change.title}"))
        print(clean(f"  risk {change.risk}: {'; '.join(change.risk_reasons)}"))
        print(f"  next: `itop change submit {change.ref}`")
    return EXIT_OK


@_guarded
def cmd_edit(args: argparse.Namespace) -> int:
    """``itop change edit CHG [--field VALUE]...``."""
    services, workflow = _workflow(args)
    now = workflow.clock()
    fields: dict[str, Any] = {}
    for option, name in (("title", "title"), ("description", "description"),
                         ("justification", "justification"), ("impact", "impact"),
                         ("implementation", "implementation"), ("backout", "backout"),
                         ("backout_plan", "backout_plan"), ("test_plan", "test_plan"),
                         ("assignee", "assignee"), ("type", "type"), ("risk", "risk")):
        value = getattr(args, option)
        if value is not None:
            fields[name] = value
    if args.hosts is not None:
        fields["selector"] = args.hosts
    if args.outage is not None:
        fields["outage"] = _outage(args.outage)
    if args.start is not None:
        fields["window_start"] = parse_when(args.start, now)
    if args.end is not None:
        fields["window_end"] = parse_when(args.end, now)
    if args.var:
        current = workflow.get(args.ref)
        fields["variables"] = {**current.variables, **_vars(args.var)}
    if not fields:
        raise UsageError("itop change edit: give at least one field to change")
    change = workflow.edit(args.ref, fields)
    print(clean(f"{change.ref} edited: {', '.join(sorted(fields))}; risk {change.risk}"))
    return EXIT_OK


@_guarded
def cmd_list(args: argparse.Namespace) -> int:
    """``itop change list [--state S] [--type T] [--host H] [--requester R] [--all] [--json]``."""
    services, workflow = _workflow(args)
    changes = workflow.find(states=args.state, types=args.types, host=args.host,
                            requester=args.requester, include_final=args.all)
    if args.json:
        print_json([c.to_dict() for c in changes])
        return EXIT_OK
    if not changes:
        print(_no_changes(workflow, args))
        return EXIT_OK
    now = workflow.clock()
    conflicted = {ref for c in workflow.all_conflicts() for ref in (c.first, c.second)}
    rows = [["REF", "TYPE", "TITLE", "RISK", "STATE", "WINDOW", "HOSTS", "REQUESTER"]]
    for change in changes:
        window = list_window(change.start, change.end) if change.window_start else "-"
        if change.window_start and change.is_active(now):
            window += " ACTIVE"
        hosts = ",".join(change.hosts[:3]) + (f",+{len(change.hosts) - 3}"
                                              if len(change.hosts) > 3 else "")
        rows.append([clean(cell) for cell in (
            change.ref + (" !" if change.ref in conflicted else ""), change.type,
            shorten(clean(change.title), TITLE_WIDTH), change.risk or "-", change.state, window,
            hosts, change.requester,
        )])
    print(table(rows))
    if conflicted:
        err("! = window conflicts with another approved change (see `itop change upcoming`)",
            prefix=False)
    return EXIT_OK


def list_window(start: datetime | None, end: datetime | None) -> str:
    """A window for the list: ``2025-11-25 22:45Z..23:45Z``, with the end's date
    when it falls on another day (``..11-26 00:44Z``), and its year when it
    falls in another year."""
    if start is None:
        return "-"
    start = start.astimezone(UTC)
    text = start.strftime("%Y-%m-%d %H:%MZ") + ".."
    if end is None:
        return text + "?"
    end = end.astimezone(UTC)
    if end.date() == start.date():
        return text + end.strftime("%H:%MZ")
    if end.year == start.year:
        return text + end.strftime("%m-%d %H:%MZ")
    return text + end.strftime("%Y-%m-%d %H:%MZ")


def _no_changes(workflow: Any, args: argparse.Namespace) -> str:
    """What ``change list`` says when nothing is listed: closed and cancelled ones
    are left out unless ``--all``, so say when some match."""
    if args.all:
        return "no changes"
    final = workflow.find(states=args.state, types=args.types, host=args.host,
                          requester=args.requester, include_final=True)
    if not final:
        return "no changes"
    matches = "1 closed or cancelled change matches" if len(final) == 1 else (
        f"{len(final)} closed or cancelled changes match")
    return f"no open changes; {matches}: add --all to list them"


@_guarded
def cmd_show(args: argparse.Namespace) -> int:
    """``itop change show CHG [--json]``."""
    services, workflow = _workflow(args)
    change = workflow.get(args.ref)
    now = workflow.clock()
    warnings = workflow.warnings(change)
    available = workflow.available_actions(change)
    backups = workflow.backup_status(change)
    if args.json:
        data = change.to_dict()
        data["derived"] = {
            "approvals_needed": change.approvals_needed,
            "approved_by": change.approved_by,
            "active": change.is_active(now),
            "warnings": warnings,
            "approvers": workflow.approvers_for(change),
            "available_actions": available,
            "last_good_backup": {
                b.host: (iso(b.last_good) if b.last_good else None) for b in backups if b.known
            },
        }
        print_json(data)
        return EXIT_OK
    lines = [
        f"{change.ref}  {change.type}  {change.title}  [{change.state}]",
        f"  requester      {change.requester}    assignee {change.assignee or '-'}",
        f"  risk           {change.risk} (computed {change.risk_computed}"
        + (f", raised to {change.risk_requested}" if change.risk_requested else "") + ")",
    ]
    lines += [f"                 - {reason}" for reason in change.risk_reasons]
    lines += [
        f"  hosts          {', '.join(change.hosts) or '-'}"
        + (f"  (selector {change.selector})" if change.selector else ""),
        f"  impact         {change.impact or '-'}",
        "  outage         " + {True: "yes", False: "no", None: "not stated"}[change.outage],
        f"  window         {_window_text(change, now)}",
        f"  implementation {change.implementation or '- (by hand)'}",
        f"  backout        {change.backout or '- (by hand)'}",
        f"  backout plan   {change.backout_plan or '-'}",
        f"  test plan      {change.test_plan or '-'}",
    ]
    if change.template:
        lines.append(f"  template       {change.template}")
    if change.variables:
        lines.append("  variables      " + ", ".join(f"{k}={v}" for k, v in change.variables.items()))
    if change.description:
        lines.append("  description")
        lines += [f"    {line}" for line in change.description.splitlines()]
    if change.justification:
        lines.append(f"  justification  {change.justification}")
    lines.append(f"  approvals      {len(change.approved_by)} of {change.approvals_needed} "
                 f"needed this round")
    for approval in change.approvals:
        lines.append(f"                 {approval.at}  {approval.by} {approval.decision}"
                     + (" (self-approval allowed by config)" if approval.self_approval else "")
                     + (f": {approval.comment}" if approval.comment else ""))
    for run in change.runs:
        lines.append(f"  run            {run.id} {run.purpose} {run.status} (started {run.at})")
    if change.review is not None:
        review = change.review
        lines += [
            f"  review         by {review.by} at {review.at}",
            f"    what happened: {review.what_happened}",
            f"    incidents:     {review.incidents or 'none'}",
            f"    lessons:       {review.lessons or '-'}",
        ]
    if change.close_code:
        lines.append(f"  closed         {change.close_code}: {change.close_notes}")
    known = [b for b in backups if b.known]
    for number, backup in enumerate(known):
        label = "last backup" if number == 0 else ""
        lines.append(f"  {label:<15}{backup.host}: "
                     f"{iso(backup.last_good) if backup.last_good else 'none'}")
    for warning in warnings:
        lines.append(f"  WARNING        {warning}")
    possible = [a for a in ACTIONS if available.get(a) is None and a not in ("note", "edit")]
    lines.append(f"  you may        {', '.join(possible) or 'only add notes'}")
    lines.append("work log:")
    for entry in change.work_log:
        arrow = ""
        if entry.from_state and entry.to_state and entry.from_state != entry.to_state:
            arrow = f"{entry.from_state} -> {entry.to_state}  "
        elif entry.to_state and not entry.from_state:
            arrow = f"-> {entry.to_state}  "
        lines.append(f"  {entry.at}  {entry.actor:<10} {entry.kind:<10} {arrow}{entry.text}")
    print("\n".join(clean(line) for line in lines))
    return EXIT_OK


def _move(args: argparse.Namespace, act: Callable[[Any], Change], *, next_step: bool = False) -> int:
    """Do ``act(workflow)`` to the change ``args.ref``; print the transition (and what is next)."""
    _services, workflow = _workflow(args)
    before = workflow.get(args.ref).state
    change = act(workflow)
    print(_transition_line(before, change))
    if next_step:
        _next_step(workflow, change)
    return EXIT_OK


@_guarded
def cmd_simple(args: argparse.Namespace) -> int:
    """``submit``, ``approve`` and ``reject``: one action with a comment."""
    return _move(args, lambda workflow: workflow.act(
        args.ref, args.action, _input(comment=args.comment)), next_step=True)


def _input(**values: Any) -> Any:
    from itop_tui.domain.change import ActionInput

    return ActionInput(**values)


def _next_step(workflow: Any, change: Change) -> None:
    """One line saying what the change waits for."""
    if change.state == "assess":
        err(f"next: an approver assesses it: `itop change assess {change.ref}`", prefix=False)
    elif change.state == "authorize":
        missing = change.approvals_needed - len(change.approved_by)
        who = ", ".join(workflow.approvers_for(change)) or "someone with the approver role"
        if missing > 0:
            err(f"next: {missing} more approval{'s' if missing != 1 else ''} by an approver "
                f"other than {change.requester} ({who}): `itop change approve {change.ref}`",
                prefix=False)
        else:
            err(f"next: `itop change schedule {change.ref}`", prefix=False)
    elif change.state == "scheduled":
        err(f"window {change.window_start} -> {change.window_end}; implement inside it: "
            f"`itop change implement {change.ref}`", prefix=False)
        for warning in workflow.warnings(change):
            err(f"warning: {warning}")
    elif change.state == "draft" and change.last_rejection is not None:
        err(f"rejected by {change.last_rejection.by}: edit it and submit it again", prefix=False)


@_guarded
def cmd_assess(args: argparse.Namespace) -> int:
    """``itop change assess CHG [--risk R] [--comment C]``."""
    return _move(args, lambda workflow: workflow.assess(
        args.ref, risk=args.risk, comment=args.comment), next_step=True)


@_guarded
def cmd_schedule(args: argparse.Namespace) -> int:
    """``itop change schedule CHG [--start WHEN] [--end WHEN | --duration D]``."""
    services, workflow = _workflow(args)
    now = workflow.clock()
    change = workflow.get(args.ref)
    start = parse_when(args.start, now) if args.start else None
    if args.end and args.duration:
        raise UsageError("itop change schedule: give --end or --duration, not both")
    end = parse_when(args.end, now) if args.end else None
    if args.duration:
        base = start or change.start or now
        end = base + timedelta(seconds=parse_duration(args.duration))
    scheduled = workflow.schedule(args.ref, start, end)
    print(_transition_line(change.state, scheduled))
    _next_step(workflow, scheduled)
    return EXIT_OK


class _Console(RunConsole):
    """Progress of an implementation or backout run, and the questions it asks."""

    def callbacks(self) -> Any:
        from itop_tui.ops.procedure_runner import RunCallbacks

        return RunCallbacks(manual=self.manual, ask=self.ask, observer=self.observe)

    async def ask(self, variable: Any, step: Any, problem: str | None) -> str | None:
        value = env_value(variable.name)
        if value is not None and not problem:
            return value
        if not interactive():
            self.write(f"  {variable.name} is needed: set {SECRET_ENV_PREFIX}{variable.name}")
            return None
        if variable.secret:
            return await ask_secret_async(variable.name)
        return await prompt_async(f"{variable.name}: ")

    def observe(self, event: Any) -> None:
        data = event.data
        if event.kind == "run.start":
            self.write(f"{event.run_id}  {data.get('procedure')}: {data.get('title', '')}")
        elif event.kind == "step.start":
            self.write(f"[{data.get('number')}/{data.get('total')}] {data.get('kind')} "
                       f"{event.step_id}: {data.get('title')}")
        elif event.kind == "host.end":
            state = str(event.state)
            code = data.get("exit_code")
            self.write(f"  {event.host}: {state.upper() if state == 'failed' else state}"
                       + (f" (exit {code})" if code is not None else "")
                       + (f": {event.message}" if event.message and state != "ok" else ""))
            for line in str(data.get("output") or "").rstrip().splitlines()[-5:]:
                self.write(f"      > {line}")
        elif event.kind in ("notice", "wait"):
            self.write(f"  {event.message or data}")


def _secrets(workflow: Any, procedure_ids: list[str | None]) -> dict[str, str]:
    """Secret values of the change's procedures from ``ITOP_VAR_<NAME>`` (never stored)."""
    values: dict[str, str] = {}
    for procedure_id in procedure_ids:
        if not procedure_id:
            continue
        stored = workflow.procedures.get(procedure_id)
        if stored is None:
            continue
        for name in stored.procedure.secret_names():
            value = env_value(name)
            if value is not None:
                values[name] = value
    return values


def _show_backups(workflow: Any, change: Change) -> None:
    for status in workflow.backup_status(change):
        if status.known:
            when = iso(status.last_good) if status.last_good else "none"
            print(clean(f"  last good backup of {status.host}: {when}"))


@_guarded
def cmd_implement(args: argparse.Namespace) -> int:
    """``itop change implement CHG [--var K=V] [--outcome O] [--backout-on-failure|--no-backout]``."""
    services, workflow = _workflow(args)
    change = workflow.get(args.ref)
    if args.outcome is not None:
        if change.implementation:
            raise UsageError(
                f"{change.ref} is implemented by procedure {change.implementation}: "
                "its run decides the outcome (leave out --outcome)")
        before = change.state
        if change.state == "scheduled":
            change = workflow.act(change.ref, "implement")
        done = workflow.record_outcome(change.ref, args.outcome, args.comment)
        print(_transition_line(before, done))
        if args.json:
            print_json(done.to_dict())
        return EXIT_OK if args.outcome == "succeeded" else EXIT_FAILED
    _show_backups(workflow, change)
    console = _Console(args)
    variables = {**_vars(args.var), **_secrets(workflow, [change.implementation, change.backout])}

    async def offer(current: Change, run: Any) -> bool:
        if args.backout_on_failure is not None:
            return bool(args.backout_on_failure)
        if not interactive():
            return False
        return said_yes(await prompt_async(
            f"{run.id} {run.status}. Run the backout procedure {current.backout} on "
            f"{', '.join(current.hosts)} now? [y/N] "))

    result = run_closing(services, lambda: workflow.implement(
        change.ref, callbacks=console.callbacks(), variables=variables, backout_on_failure=offer))
    return _run_outcome(args, result)


@_guarded
def cmd_backout(args: argparse.Namespace) -> int:
    """``itop change backout CHG [--comment C]``."""
    services, workflow = _workflow(args)
    change = workflow.get(args.ref)
    console = _Console(args)
    variables = {**_vars(args.var), **_secrets(workflow, [change.backout])}
    result = run_closing(services, lambda: workflow.backout(
        change.ref, callbacks=console.callbacks(), variables=variables, comment=args.comment))
    return _run_outcome(args, result)


def _run_outcome(args: argparse.Namespace, result: Any) -> int:
    """The change after an implementation or backout run: exit 0 when the run succeeded."""
    if args.json:
        print_json(result.change.to_dict())
    err(clean(result.message), prefix=False)
    return EXIT_OK if result.ok else EXIT_FAILED


@_guarded
def cmd_review(args: argparse.Namespace) -> int:
    """``itop change review CHG --what-happened T [--incidents T] [--lessons T]``."""
    return _move(args, lambda workflow: workflow.review(
        args.ref, what_happened=args.what_happened, incidents=args.incidents,
        lessons=args.lessons))


@_guarded
def cmd_close(args: argparse.Namespace) -> int:
    """``itop change close CHG --code C --notes N``."""
    return _move(args, lambda workflow: workflow.close(args.ref, args.code, args.notes))


@_guarded
def cmd_cancel(args: argparse.Namespace) -> int:
    """``itop change cancel CHG --reason R``."""
    return _move(args, lambda workflow: workflow.cancel(args.ref, args.reason))


@_guarded
def cmd_note(args: argparse.Namespace) -> int:
    """``itop change note CHG TEXT``."""
    services, workflow = _workflow(args)
    change = workflow.note(args.ref, " ".join(args.text))
    print(clean(f"{change.ref}: note added"))
    return EXIT_OK


@_guarded
def cmd_upcoming(args: argparse.Namespace) -> int:
    """``itop change upcoming [--days N] [--json]``."""
    services, workflow = _workflow(args)
    entries = workflow.calendar(args.days)
    conflicts = [c for c in workflow.all_conflicts() if c.end > workflow.clock()]
    if args.json:
        print_json({
            "entries": [{
                "start": iso(e.start), "end": iso(e.end), "kind": e.kind, "name": e.name,
                "hosts": list(e.hosts) if isinstance(e.hosts, tuple) else e.hosts,
                "conflict": e.conflict,
            } for e in entries],
            "conflicts": [{
                "changes": [c.first, c.second], "hosts": list(c.hosts),
                "start": iso(c.start), "end": iso(c.end),
            } for c in conflicts],
        })
        return EXIT_OK
    if not entries:
        print(f"nothing scheduled in the next {args.days:g} days")
    rows = [["START", "END", "KIND", "NAME", "HOSTS"]]
    for e in entries:
        hosts = ",".join(e.hosts) if isinstance(e.hosts, tuple) else f"selector {e.hosts}"
        rows.append([clean(cell) for cell in (
            iso(e.start), iso(e.end), e.kind, e.name + (" CONFLICT" if e.conflict else ""), hosts)])
    if entries:
        print(table(rows))
    for conflict in conflicts:
        print(clean(f"CONFLICT: {conflict.describe()}"))
    return EXIT_OK
