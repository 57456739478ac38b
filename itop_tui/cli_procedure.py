"""``itop procedure ...``: the procedure library and procedure runs, headless.

Registered through ``EXTENSIONS`` in :mod:`itop_tui.cli`. Exit status: 0 ok
(a run only when it succeeded), 1 the run failed, was aborted, stopped
waiting for an approval or a confirmation, or the action was refused; 2 a
usage, format or variable error. ``--json`` prints the run record
(``ProcedureRun.to_dict()``), documented in docs/procedures.md.

Secret variables are never taken from the command line (``ps`` and shell
history would show them): they come from ``ITOP_VAR_<NAME>`` in the
environment or from a prompt that does not echo.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from itop_tui.cli import (
    EXIT_FAILED,
    EXIT_OK,
    OperationFailed,
    UsageError,
    add_actions,
    clean,
    err,
    known_change,
    open_services,
    positive_float,
    print_json,
    run_closing,
    split_assignment,
    table,
    warn_recovered,
    write_atomic,
)
from itop_tui.cli_prompt import (
    SECRET_ENV_PREFIX,
    RunConsole,
    ask_secret,
    ask_secret_async,
    env_value,
    interactive,
    prompt_async,
    yes_or_note,
)
from itop_tui.domain.procedure import Procedure, Step, Variable
from itop_tui.domain.procedure_loader import ProcedureFormatError, dump_procedure, load_procedure
from itop_tui.domain.roles import Role, can_manage_library
from itop_tui.domain.substitution import VariableError
from itop_tui.services.context import Services
from itop_tui.services.procedure_repo import (
    RUN_STATUSES,
    ProcedureRepository,
    ProcedureRun,
    RunBusy,
    RunNotFound,
    RunRepository,
    StoredProcedure,
    normalize_run_id,
)

PROCEDURE_SUFFIXES = (".yaml", ".yml")

COMMANDS: list[tuple[str, str]] = [
    ("procedure list", "list the procedures in the library"),
    ("procedure show ID", "show a procedure: description, variables, steps"),
    ("procedure import FILE|DIR", "validate procedure files and store them (--builtin: the library)"),
    ("procedure export ID", "write a stored procedure as YAML"),
    ("procedure run ID --target SEL", "run a procedure on hosts (--check changes nothing)"),
    ("procedure resume RUN", "continue a paused, waiting or interrupted run"),
    ("procedure retry RUN", "rerun the failed hosts of a failed run"),
    ("procedure approve RUN", "approve the step a run waits for (approvers)"),
    ("procedure reject RUN --comment", "reject the step a run waits for: the run ends"),
    ("procedure abort RUN", "end a run that has not finished"),
    ("procedure runs", "list procedure runs"),
    ("procedure report RUN", "a run with its evidence, as Markdown"),
]


def register(sub: Any, add: Callable[[Any, str, str], argparse.ArgumentParser]) -> None:
    """Add ``itop procedure ...`` to the top-level subparsers ``sub``."""
    actions = add_actions(add, sub, "procedure", "guided procedures: library, runs, approvals, reports")

    p = add(actions, "list", "list the procedures in the library")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=cmd_list)

    p = add(actions, "show", "show a procedure: description, variables, steps")
    p.add_argument("id", help="procedure id")
    p.add_argument("--json", action="store_true", help="print the stored record as JSON")
    p.set_defaults(handler=cmd_show)

    p = add(actions, "import", "validate procedure files and store them")
    p.add_argument("paths", nargs="*", type=Path, metavar="FILE|DIR",
                   help="procedure YAML files, or directories holding them")
    p.add_argument("--builtin", action="store_true", help="import the built-in library")
    p.add_argument("--json", action="store_true", help="print what was imported as JSON")
    p.set_defaults(handler=cmd_import)

    p = add(actions, "export", "write a stored procedure as YAML")
    p.add_argument("id", help="procedure id")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="write to FILE instead of stdout")
    p.set_defaults(handler=cmd_export)

    p = add(actions, "run", "run a procedure on hosts")
    p.add_argument("id", help="procedure id")
    p.add_argument("--target", default=None, metavar="SELECTOR",
                   help="host selector (default: the procedure's targets)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="variable value (repeatable); secrets come from ITOP_VAR_NAME or a prompt")
    p.add_argument("--check", action="store_true",
                   help="check mode: run only checks and read-only steps, show what else would run")
    p.add_argument("--change", default=None, metavar="CHG",
                   help="run under this approved change, inside its window (production hosts "
                        "need one for mutating steps; default: the single active change)")
    _run_options(p)
    p.set_defaults(handler=cmd_run)

    p = add(actions, "resume", "continue a paused, waiting or interrupted run")
    p.add_argument("run", help="run id (RUN-N)")
    p.add_argument("--force", action="store_true",
                   help="continue even though the procedure changed since the run started (audited)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="value for an input step not answered yet")
    _change_option(p, "continue")
    _run_options(p)
    p.set_defaults(handler=cmd_resume)

    p = add(actions, "retry", "rerun the failed hosts of a failed run")
    p.add_argument("run", help="run id (RUN-N)")
    p.add_argument("--force", action="store_true",
                   help="retry even though the procedure changed since the run started (audited)")
    _change_option(p, "rerun")
    _run_options(p)
    p.set_defaults(handler=cmd_retry)

    p = add(actions, "approve", "approve the step a run waits for")
    p.add_argument("run", help="run id (RUN-N)")
    p.add_argument("--comment", default="", help="why, for the record")
    p.set_defaults(handler=cmd_approve)

    p = add(actions, "reject", "reject the step a run waits for; the run ends aborted")
    p.add_argument("run", help="run id (RUN-N)")
    p.add_argument("--comment", required=True, help="why (required)")
    p.set_defaults(handler=cmd_reject)

    p = add(actions, "abort", "end a run that has not finished")
    p.add_argument("run", help="run id (RUN-N)")
    p.add_argument("--comment", default="", help="why, for the record")
    p.set_defaults(handler=cmd_abort)

    p = add(actions, "runs", "list procedure runs")
    p.add_argument("--status", choices=RUN_STATUSES, default=None, help="only runs in this status")
    p.add_argument("--json", action="store_true", help="print a JSON list of run records")
    p.set_defaults(handler=cmd_runs)

    p = add(actions, "report", "a run with its evidence, as Markdown")
    p.add_argument("run", help="run id (RUN-N)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="write to FILE instead of stdout")
    p.add_argument("--json", action="store_true", help="print the run record as JSON instead")
    p.set_defaults(handler=cmd_report)


def _change_option(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("--change", default=None, metavar="CHG",
                   help=f"{verb} under this approved change, inside its window (production hosts "
                        "need one for mutating steps; default: the run's change, else the single "
                        "active change)")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true",
                   help="confirm every mutating and manual step without asking")
    p.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                   help="when an approval is needed, wait this long for it (default 0: stop, "
                        "the run stays waiting and `resume` continues it)")
    p.add_argument("--json", action="store_true", help="print the run record as JSON at the end")


def _seconds(text: str) -> float:
    return 0.0 if text.strip() == "0" else positive_float(text)


# -- error mapping ---------------------------------------------------------------------


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map the procedure layer's errors to the CLI's exit statuses (2 usage, 1 refused)."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from itop_tui.ops.procedure_runner import RunnerError

        try:
            return handler(args)
        except ProcedureFormatError as exc:
            raise UsageError(str(exc)) from None
        except VariableError as exc:
            raise UsageError(f"variables: {exc}") from None
        except RunNotFound as exc:
            raise UsageError(str(exc)) from None
        except (RunnerError, RunBusy) as exc:
            raise OperationFailed(str(exc)) from None

    return run


def _run_id(text: str) -> str:
    try:
        return normalize_run_id(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _repositories(services: Services) -> tuple[ProcedureRepository, RunRepository]:
    procedures = ProcedureRepository.in_data_dir(services.settings.data_dir)
    runs = RunRepository.in_data_dir(services.settings.data_dir)
    warn_recovered(procedures.store, runs.store)
    return procedures, runs


# -- library ---------------------------------------------------------------------------


@_guarded
def cmd_list(args: argparse.Namespace) -> int:
    """``itop procedure list [--json]``."""
    procedures, _runs = _repositories(open_services(args))
    stored = procedures.all()
    if args.json:
        print_json([{
            "id": s.id, "version": s.version, "hash": s.hash, "title": s.procedure.title,
            "steps": len(s.procedure.steps), "mutates": s.procedure.mutates,
            "imported_at": s.imported_at, "imported_by": s.imported_by, "source": s.source,
        } for s in stored])
        return EXIT_OK
    if not stored:
        print("no procedures; import some with `itop procedure import FILE|DIR` or `--builtin`")
        return EXIT_OK
    rows = [["ID", "VERSION", "STEPS", "CHANGES", "TITLE"]]
    rows += [[clean(s.id), clean(s.version), str(len(s.procedure.steps)),
              "yes" if s.procedure.mutates else "no", clean(s.procedure.title)] for s in stored]
    print(table(rows))
    return EXIT_OK


@_guarded
def cmd_show(args: argparse.Namespace) -> int:
    """``itop procedure show ID [--json]``."""
    procedures, _runs = _repositories(open_services(args))
    stored = _require_procedure(procedures, args.id)
    if args.json:
        print_json(stored.to_dict())
        return EXIT_OK
    procedure = stored.procedure
    lines = [
        f"{procedure.id} {procedure.version}: {procedure.title}",
        f"sha256 {stored.hash}, imported {stored.imported_at} by {stored.imported_by} "
        f"from {stored.source}",
    ]
    if procedure.targets:
        lines.append(f"default targets: {procedure.targets}")
    batching = [f"strategy {procedure.strategy}"]
    if procedure.serial:
        batching.append("serial " + ", ".join(str(s) for s in procedure.serial))
    if procedure.max_fail_percentage is not None:
        batching.append(f"max_fail_percentage {procedure.max_fail_percentage:g}")
    lines.append(", ".join(batching))
    if procedure.description.strip():
        lines += ["", procedure.description.rstrip()]
    if procedure.variables:
        lines += ["", "variables:"]
        for variable in procedure.variables:
            lines.append(f"  {variable.name}  {_variable_rules(variable)}")
            if variable.description:
                lines.append(f"      {variable.description}")
    lines += ["", "steps:"]
    for number, step in enumerate(procedure.steps, 1):
        lines.append(f"  {number}. [{step.kind}] {step.id}: {step.title}  ({_step_flags(step)})")
        for text in (step.instructions, step.command):
            if text and text.strip():
                lines += [f"      {line}".rstrip() for line in text.rstrip().splitlines()]
    print(clean("\n".join(lines)))
    return EXIT_OK


def _variable_rules(variable: Variable) -> str:
    rules = ["required" if variable.required else "optional"]
    if variable.secret:
        rules.append("secret")
    if variable.default is not None:
        rules.append(f"default {variable.default!r}")
    if variable.choices:
        rules.append("one of " + ", ".join(variable.choices))
    if variable.regex:
        rules.append(f"matches /{variable.regex}/")
    return ", ".join(rules)


def _step_flags(step: Step) -> str:
    flags = ["changes things" if step.mutates else "read-only"]
    if step.trainee_safe:
        flags.append("trainee-safe")
    if step.skip_in_check_mode:
        flags.append("skipped in check mode")
    return ", ".join(flags)


def _require_procedure(procedures: ProcedureRepository, procedure_id: str) -> StoredProcedure:
    stored = procedures.get(procedure_id)
    if stored is None:
        known = ", ".join(p.id for p in procedures.all()) or "none imported yet"
        raise UsageError(f"no procedure {procedure_id!r} in the library (known: {known})")
    return stored


def _procedure_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in PROCEDURE_SUFFIXES and p.is_file())
            if not found:
                raise UsageError(f"{path}: no procedure files (*.yaml, *.yml) in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    return files


@_guarded
def cmd_import(args: argparse.Namespace) -> int:
    """``itop procedure import FILE|DIR... | --builtin [--json]``: all or nothing."""
    from itop_tui.bundled import procedures_dir

    if args.builtin == bool(args.paths):
        raise UsageError("give procedure files or directories, or --builtin (not both)")
    services = open_services(args)
    services.require_operator("import procedures")
    role = Role.parse(services.role)
    if not can_manage_library(role):
        raise OperationFailed(f"{services.actor} has the role {role}: importing procedures needs operator or above")
    procedures, _runs = _repositories(services)
    files = _procedure_files([procedures_dir()] if args.builtin else list(args.paths))
    loaded: list[tuple[Procedure, str]] = []
    errors: list[str] = []
    seen: dict[str, Path] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{path}: cannot read: {exc}")
            continue
        try:
            procedure = load_procedure(text, str(path))
        except ProcedureFormatError as exc:
            errors.append(str(exc))
            continue
        if procedure.id in seen:
            errors.append(f"{path}: id: {procedure.id!r} is also the id of {seen[procedure.id]}")
            continue
        seen[procedure.id] = path
        source = f"builtin:{path.name}" if args.builtin else str(path.absolute())
        loaded.append((procedure, source))
    if errors:
        for message in errors:
            err(clean(message), prefix=False)
        raise UsageError(f"{len(errors)} of {len(files)} files are invalid: nothing was imported")
    results = procedures.save_many(loaded, services.actor)
    summary = []
    for outcome, previous, stored in results:
        entry = {"id": stored.id, "version": stored.version, "hash": stored.hash,
                 "outcome": outcome, "source": stored.source,
                 "previous_version": previous.version if previous else None,
                 "previous_hash": previous.hash if previous else None}
        summary.append(entry)
        if outcome != "unchanged":
            services.audit.append("procedure.import", stored.id, entry)
        if outcome == "updated" and previous is not None and previous.version == stored.version:
            err(f"warning: {stored.id}: the content changed but the version is still "
                f"{stored.version}; bump `version` so people can tell the versions apart")
    if args.json:
        print_json(summary)
    else:
        for entry in summary:
            was = f" (was {entry['previous_version']})" if entry["outcome"] == "updated" else ""
            print(clean(f"{entry['outcome']:9}  {entry['id']} {entry['version']}{was}  "
                        f"sha256 {str(entry['hash'])[:12]}"))
    return EXIT_OK


@_guarded
def cmd_export(args: argparse.Namespace) -> int:
    """``itop procedure export ID [-o FILE]``."""
    procedures, _runs = _repositories(open_services(args))
    stored = _require_procedure(procedures, args.id)
    text = (f"# Exported by itop: {stored.id} version {stored.version}, sha256 {stored.hash}\n"
            + dump_procedure(stored.procedure))
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    write_atomic(Path(args.output), text)
    err(f"wrote {stored.id} {stored.version} to {args.output}", prefix=False)
    return EXIT_OK


# -- runs ------------------------------------------------------------------------------


def _parse_vars(words: list[str], procedure: Procedure) -> dict[str, str]:
    values: dict[str, str] = {}
    for text in words:
        name, value = split_assignment(text, "NAME=VALUE")
        variable = procedure.variable(name)
        if variable is not None and variable.secret:
            raise UsageError(
                f"--var {name}: {name} is a secret variable and must not be given on the command "
                f"line (process listings and shell history would show it). Set "
                f"{SECRET_ENV_PREFIX}{name} in the environment, or run on a terminal to be asked"
            )
        if name in values:
            raise UsageError(f"--var {name} is given twice")
        values[name] = value
    return values


def _start_secrets(procedure: Procedure) -> dict[str, str]:
    """Secret values for a new run, from the environment or a prompt without echo."""
    values: dict[str, str] = {}
    asked_later = procedure.input_variable_names()
    for variable in procedure.variables:
        if not variable.secret or variable.name in asked_later:
            continue
        value = env_value(variable.name)
        if value is None and interactive():
            value = ask_secret(variable.name)
        if value is None:
            if variable.required:
                raise UsageError(
                    f"{variable.name} is a secret variable: set {SECRET_ENV_PREFIX}{variable.name} "
                    "in the environment, or run on a terminal to be asked (never on the command line)"
                )
            continue
        values[variable.name] = value
    return values


def _needs_a_person(procedure: Procedure) -> bool:
    return any(
        (step.kind == "command" and step.mutates) or step.kind == "manual"
        for step in procedure.steps
    )


class _Console(RunConsole):
    """The CLI side of a run: prompts, confirmations and progress lines."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.env_tried: set[str] = set()

    def callbacks(self) -> Any:
        from itop_tui.ops.procedure_runner import RunCallbacks

        return RunCallbacks(confirm=self.confirm, manual=self.manual, ask=self.ask,
                            observer=self.observe)

    async def answer(self, question: str) -> bool | str:
        return yes_or_note(await prompt_async(f"{question} (y NOTE to add a note) "))

    async def confirm(self, step: Step, hosts: list[str]) -> bool | str:
        if self.yes:
            return True
        if not interactive():
            self.write(f"  step {step.id} changes things: confirm on a terminal, or pass --yes")
            return False
        return await self.answer(f"Run {step.id} on {', '.join(hosts)}? [y/N]")

    async def ask(self, variable: Variable, step: Step | None, problem: str | None) -> str | None:
        if problem and step is not None:
            self.write(f"  {variable.name}: {problem}")
        if variable.name not in self.env_tried:
            self.env_tried.add(variable.name)
            value = env_value(variable.name)
            if value is not None:
                return value
        if not interactive():
            if self.yes and variable.default is not None and not problem:
                return ""
            self.write(f"  {variable.name} is needed: give --var {variable.name}=VALUE"
                       if not variable.secret else
                       f"  {variable.name} is needed: set {SECRET_ENV_PREFIX}{variable.name}")
            return None
        if variable.description:
            self.write(f"  {variable.name}: {variable.description}")
        if variable.secret:
            return await ask_secret_async(variable.name)
        default = f" [{variable.default}]" if variable.default is not None else ""
        choices = f" ({', '.join(variable.choices)})" if variable.choices else ""
        return await prompt_async(f"{variable.name}{choices}{default}: ")

    def observe(self, event: Any) -> None:
        data = event.data
        if event.kind == "run.start":
            self.write(f"{event.run_id}  {data['procedure']} {data['version']}: {data['title']}")
            batches = " | ".join(", ".join(b) for b in data["batches"])
            self.write(f"  mode {data['mode']}, targets {', '.join(data['targets'])}"
                       + (f", batches {batches}" if len(data["batches"]) > 1 else ""))
        elif event.kind == "batch.start" and data["total"] > 1:
            self.write(f"batch {data['number']}/{data['total']}: {', '.join(data['hosts'])}")
        elif event.kind == "step.start":
            flags = "changes things" if data["mutates"] else "read-only"
            self.write(f"[{data['number']}/{data['total']}] {data['kind']} {event.step_id}: "
                       f"{data['title']}  ({flags})")
            for line in str(data["instructions"]).strip().splitlines():
                self.write(f"      | {line}")
            if data["decision"] in ("skip", "signoff"):
                self.write(f"  {data['decision']}: {data['reason']}")
        elif event.kind == "attempt":
            self.write(f"  {event.host}: attempt {data['attempt']} of {data['of']} failed "
                       f"({event.message}); again in {data['delay']:g} s")
        elif event.kind == "host.end":
            self._host_end(event)
        elif event.kind == "wait":
            self.write(f"  waiting for an approver to {'sign off' if data['kind'] == 'signoff' else 'approve'} "
                       f"step {event.step_id} (asked by {data['requested_by']}): "
                       f"`itop procedure approve {event.run_id}`")
        elif event.kind == "approved":
            self.write(f"  approved by {data['by']}" + (f": {data['comment']}" if data["comment"] else ""))
        elif event.kind == "notice":
            self.write(f"  {event.message}")

    def _host_end(self, event: Any) -> None:
        result = event.data
        state = str(event.state)
        if state == "skipped":
            line = f"  {event.host}: skipped"
            if result.get("command"):
                self.write(line + ", would run:")
                for text in str(result["command"]).rstrip().splitlines():
                    self.write(f"      $ {text}")
            else:
                self.write(line)
            return
        facts = []
        if result.get("exit_code") is not None:
            facts.append(f"exit {result['exit_code']}")
        if result.get("duration"):
            facts.append(f"{result['duration']:g} s")
        if (result.get("attempts") or 0) > 1:
            facts.append(f"{result['attempts']} attempts")
        if result.get("confirmed_by"):
            facts.append(f"confirmed by {result['confirmed_by']}")
        if result.get("note"):
            facts.append(f"note: {result['note']}")
        text = f"  {event.host}: {state.upper() if state == 'failed' else state}"
        if facts:
            text += f" ({', '.join(facts)})"
        if event.message and state != "ok":
            text += f": {event.message}"
        self.write(text)
        for stream in ("output", "stderr"):
            for line in str(result.get(stream) or "").rstrip().splitlines():
                self.write(f"      {'>' if stream == 'output' else '!'} {line}")


def _execute(
    args: argparse.Namespace,
    services: Services,
    console: _Console,
    action: Callable[[Any], Any],
) -> int:
    """Run one runner coroutine, then print the outcome; exit 0 only when the run succeeded."""
    from itop_tui.ops.procedure_runner import ProcedureRunner

    runner = ProcedureRunner(services, console.callbacks(), approval_wait=args.wait)
    run: ProcedureRun = run_closing(services, lambda: action(runner))
    for name, exc in sorted(runner.unknown_keys.items()):
        err(f"{name}: unknown host key (fingerprint {exc.fingerprint}); check it, then "
            f"`itop trust {name}`")
    for name, changed in sorted(runner.changed_keys.items()):
        err(f"{name}: HOST KEY CHANGED (trusted {changed.known}, offered {changed.offered}); refused")
    for warning in runner.warnings:
        err(f"warning: {warning}")
    if args.json:
        print_json(run.to_dict())
    _outcome(run)
    return EXIT_OK if run.status == "succeeded" else EXIT_FAILED


def _outcome(run: ProcedureRun) -> None:
    reason = f": {run.reason}" if run.reason else ""
    if run.status == "succeeded":
        err(clean(f"{run.id} succeeded{reason}"), prefix=False)
    elif run.status == "waiting":
        err(clean(f"{run.id} is waiting{reason}. An approver runs `itop procedure approve {run.id}`;"
                  f" then continue with `itop procedure resume {run.id}`"), prefix=False)
    elif run.status == "paused":
        under = (" --change CHG-N" if "refused by the change gate" in (run.reason or "")
                 and run.change_id is None else "")
        err(clean(f"{run.id} is paused{reason}. Continue with "
                  f"`itop procedure resume {run.id}{under}`"), prefix=False)
    elif run.status == "failed":
        err(clean(f"{run.id} failed{reason}. Evidence: `itop procedure report {run.id}`; rerun the "
                  f"failed hosts with `itop procedure retry {run.id}`"), prefix=False)
    else:
        err(clean(f"{run.id} {run.status}{reason}"), prefix=False)


@_guarded
def cmd_run(args: argparse.Namespace) -> int:
    """``itop procedure run ID [--target SEL] [--var K=V]... [--check] [--change CHG] [--yes] [--json]``."""
    services = open_services(args)
    services.require_writable("run procedures")
    procedures, _runs = _repositories(services)
    stored = _require_procedure(procedures, args.id)
    procedure = stored.procedure
    supplied = _parse_vars(args.var, procedure)
    if not args.check and not args.yes and not interactive() and _needs_a_person(procedure):
        raise UsageError(
            f"{procedure.id} has steps that change things or need a person: confirm them on a "
            "terminal, pass --yes to confirm them all, or use --check"
        )
    change_id = known_change(services, args.change)
    supplied.update(_start_secrets(procedure))
    console = _Console(args)
    return _execute(args, services, console, lambda runner: runner.start(
        procedure.id, selector=args.target, variables=supplied, check=bool(args.check),
        change_id=change_id))


def _run_procedure(services: Services, run_id: str) -> tuple[ProcedureRun, Procedure | None]:
    procedures, runs = _repositories(services)
    run = runs.require(run_id)
    stored = procedures.get(run.procedure_id)
    return run, stored.procedure if stored is not None else None


@_guarded
def cmd_resume(args: argparse.Namespace) -> int:
    """``itop procedure resume RUN [--force] [--var K=V]... [--change CHG] [--yes] [--json]``."""
    run_id = _run_id(args.run)
    services = open_services(args)
    services.require_writable("resume procedure runs")
    change_id = known_change(services, args.change)
    run, procedure = _run_procedure(services, run_id)
    supplied = _parse_vars(args.var, procedure) if procedure is not None else {}
    console = _Console(args)
    console.check = run.mode == "check"
    return _execute(args, services, console, lambda runner: runner.resume(
        run.id, force=bool(args.force), variables=supplied, change_id=change_id))


@_guarded
def cmd_retry(args: argparse.Namespace) -> int:
    """``itop procedure retry RUN [--force] [--change CHG] [--yes] [--json]``."""
    run_id = _run_id(args.run)
    services = open_services(args)
    services.require_writable("retry procedure runs")
    change_id = known_change(services, args.change)
    run, _procedure = _run_procedure(services, run_id)
    console = _Console(args)
    console.check = run.mode == "check"
    return _execute(args, services, console, lambda runner: runner.retry_failed(
        run.id, force=bool(args.force), change_id=change_id))


def _print_pending_facts(services: Services, run_id: str) -> None:
    """Say what is approved (step, hosts, command, variables) before it is recorded."""
    from itop_tui.ops.approval_facts import pending_facts

    _procedures, runs = _repositories(services)
    run = runs.require(run_id)
    if run.pending is None:
        return
    hosts = (run.pending.hosts or run.targets)[:1]
    addresses = {name: host.connect_address for name in hosts
                 if (host := services.inventory.get_host(name)) is not None}
    for line in pending_facts(run, addresses):
        print(clean(line))


@_guarded
def cmd_approve(args: argparse.Namespace) -> int:
    """``itop procedure approve RUN [--comment TEXT]``."""
    from itop_tui.ops.procedure_runner import PermissionDenied, ProcedureRunner

    run_id = _run_id(args.run)
    services = open_services(args)
    _print_pending_facts(services, run_id)
    try:
        run = ProcedureRunner(services).approve(run_id, comment=args.comment)
    except PermissionDenied as exc:
        raise OperationFailed(f"refused: {exc}") from None
    approval = run.approvals[-1]
    print(clean(f"{run.id}: {approval.kind} of step {approval.step} approved by {approval.by} "
                f"(asked by {approval.requested_by}). A runner waiting for it goes on by itself; "
                f"otherwise continue with `itop procedure resume {run.id}`"))
    return EXIT_OK


@_guarded
def cmd_reject(args: argparse.Namespace) -> int:
    """``itop procedure reject RUN --comment TEXT``."""
    from itop_tui.ops.procedure_runner import PermissionDenied, ProcedureRunner

    run_id = _run_id(args.run)
    services = open_services(args)
    try:
        run = ProcedureRunner(services).reject(run_id, args.comment)
    except PermissionDenied as exc:
        raise OperationFailed(f"refused: {exc}") from None
    print(clean(f"{run.id}: rejected; the run ended ({run.reason})"))
    return EXIT_OK


@_guarded
def cmd_abort(args: argparse.Namespace) -> int:
    """``itop procedure abort RUN [--comment TEXT]``."""
    from itop_tui.ops.procedure_runner import ProcedureRunner

    run_id = _run_id(args.run)
    services = open_services(args)
    run = ProcedureRunner(services).abort(run_id, args.comment)
    print(clean(f"{run.id}: {run.reason}"))
    return EXIT_OK


@_guarded
def cmd_runs(args: argparse.Namespace) -> int:
    """``itop procedure runs [--status S] [--json]``."""
    _procedures, runs = _repositories(open_services(args))
    found = runs.all(args.status)
    if args.json:
        print_json([run.to_dict() for run in found])
        return EXIT_OK
    if not found:
        print("no runs" + (f" in status {args.status}" if args.status else ""))
        return EXIT_OK
    rows = [["RUN", "STATUS", "MODE", "PROCEDURE", "OPERATOR", "STARTED", "HOSTS", "NOTE"]]
    for run in found:
        note = run.reason or ""
        if run.pending is not None:
            note = f"needs {run.pending.kind} of {run.pending.step}"
        rows.append([clean(cell) for cell in (
            run.id, run.status, run.mode, f"{run.procedure_id} {run.procedure_version}",
            run.operator, run.started, str(len(run.targets)), note)])
    print(table(rows))
    return EXIT_OK


@_guarded
def cmd_report(args: argparse.Namespace) -> int:
    """``itop procedure report RUN [-o FILE] [--json]``."""
    from itop_tui.ops.procedure_report import run_report

    run_id = _run_id(args.run)
    _procedures, runs = _repositories(open_services(args))
    run = runs.require(run_id)
    if args.json:
        print_json(run.to_dict())
        return EXIT_OK
    text = run_report(run)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    write_atomic(Path(args.output), text)
    err(f"wrote the report of {run.id} to {args.output}", prefix=False)
    return EXIT_OK
