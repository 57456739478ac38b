"""A procedure run as evidence: a Markdown report, and a read-only replay.

:func:`run_report` writes every step and host of a run with who did it,
when, where, the (redacted) command, its exit status, an excerpt of its
output, confirmations and approvals: what an auditor or a reviewer of a
change needs. :func:`replay` yields the steps in order, with their rendered
instructions and per-host results, for stepping through a finished run in
the TUI or a teaching session. Both read only the run record: its snapshot
of the procedure keeps them true after the procedure changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from itop_tui.domain.output import strip_control
from itop_tui.domain.substitution import render_text
from itop_tui.services.procedure_repo import Approval, HostResult, ProcedureRun

# Lines of output shown per step and host in a report (the tail: errors come last).
EXCERPT_LINES = 30
EXCERPT_CHARS = 4000


@dataclass(frozen=True)
class ReplayStep:
    """One step of a run, as replayed: what it said and what it did on each host."""

    number: int
    total: int
    id: str
    title: str
    kind: str
    mutates: bool
    instructions: str
    command: str | None
    hosts: list[tuple[str, HostResult]]
    approvals: list[Approval] = field(default_factory=list)

    @property
    def states(self) -> dict[str, int]:
        """How many hosts ended in each state."""
        counts: dict[str, int] = {}
        for _host, result in self.hosts:
            counts[result.state] = counts.get(result.state, 0) + 1
        return counts


def replay(run: ProcedureRun) -> Iterator[ReplayStep]:
    """The run's steps in order, read-only, with instructions rendered from its variables.

    Secret variables show as ``***``; ``{{ host }}`` is filled in for a
    single-host run. Steps a forced resume dropped are not replayed (the
    report lists them).
    """
    snapshot = {s.get("id"): s for s in run.procedure.get("steps", []) if isinstance(s, dict)}
    secrets = set(run.secret_names)
    values = dict(run.variables)
    if len(run.targets) == 1:
        values["host"] = run.targets[0]
    total = len(run.steps)
    for number, record in enumerate(run.steps, 1):
        step = snapshot.get(record.id, {})
        yield ReplayStep(
            number=number,
            total=total,
            id=record.id,
            title=render_text(record.title, values, secret_names=secrets),
            kind=record.kind,
            mutates=record.mutates,
            instructions=render_text(str(step.get("instructions") or ""), values, secret_names=secrets),
            command=step.get("command"),
            hosts=[(host, record.hosts[host]) for host in run.targets if host in record.hosts],
            approvals=[a for a in run.approvals if a.step == record.id],
        )


def run_report(run: ProcedureRun) -> str:
    """The run as a Markdown document: summary, approvals, then every step and host."""
    lines: list[str] = [f"# {run.id}: {_inline(run.procedure_title)}", ""]
    lines += _summary(run)
    if run.approvals or run.pending is not None:
        lines += ["", "## Approvals", ""]
        lines += _approvals(run)
    if run.resumes:
        lines += ["", "## Resumes", ""]
        lines += ["| at | by | kind | procedure sha256 |", "|---|---|---|---|"]
        for entry in run.resumes:
            digest = str(entry.get("hash", ""))[:12]
            if entry.get("from_hash"):
                digest = f"{str(entry['from_hash'])[:12]} → {digest} (forced)"
            elif entry.get("forced"):
                digest += " (forced)"
            lines.append(
                f"| {_cell(entry.get('at'))} | {_cell(entry.get('by'))} | {_cell(entry.get('kind'))} "
                f"| {_cell(digest)} |"
            )
    lines += ["", "## Steps", ""]
    lines += _overview(run)
    for step in replay(run):
        lines += ["", *(_step(run, step))]
    if run.dropped_steps:
        lines += ["", "## Steps dropped by a forced resume", ""]
        for record in run.dropped_steps:
            lines.append(f"- `{_inline(record.id)}` {_inline(record.title)}: "
                         + ", ".join(f"{h} {r.state}" for h, r in record.hosts.items()))
    return "\n".join(lines).rstrip() + "\n"


def _summary(run: ProcedureRun) -> list[str]:
    variables = [f"{k}={v}" for k, v in sorted(run.variables.items())]
    variables += [f"{name}=*** (secret, not stored)" for name in run.secret_names]
    batches = " | ".join(", ".join(batch) for batch in run.batches)
    rows = [
        ("procedure", f"{run.procedure_id} version {run.procedure_version} (sha256 {run.procedure_hash})"),
        ("status", run.status + (f": {run.reason}" if run.reason else "")),
        ("mode", run.mode),
        ("operator", run.operator),
        ("started", run.started),
        ("ended", run.ended or "not yet"),
        ("targets", f"{run.selector} → {', '.join(run.targets)}"),
        ("batches", batches),
        ("variables", "; ".join(variables) or "none"),
        ("change", run.change_id or "none"),
    ]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {label} | {_cell(value)} |" for label, value in rows]
    return lines


def _approvals(run: ProcedureRun) -> list[str]:
    lines = ["| step | kind | requested by | decided by | decision | at | comment |",
             "|---|---|---|---|---|---|---|"]
    for approval in run.approvals:
        lines.append(
            f"| {_cell(approval.step)} | {_cell(approval.kind)} | {_cell(approval.requested_by)} "
            f"| {_cell(approval.by)} | {_cell(approval.decision)} | {_cell(approval.at)} "
            f"| {_cell(approval.comment)} |"
        )
    if run.pending is not None:
        pending = run.pending
        lines.append(
            f"| {_cell(pending.step)} | {_cell(pending.kind)} | {_cell(pending.requested_by)} "
            f"| | **pending** | {_cell(pending.requested_at)} | {_cell(pending.reason)} |"
        )
    return lines


def _overview(run: ProcedureRun) -> list[str]:
    lines = ["| # | step | kind | " + " | ".join(_cell(h) for h in run.targets) + " |",
             "|---|---|---|" + "---|" * len(run.targets)]
    for number, record in enumerate(run.steps, 1):
        states = [record.hosts.get(h, HostResult()).state for h in run.targets]
        lines.append(
            f"| {number} | {_cell(record.id)} | {_cell(record.kind)} | " + " | ".join(states) + " |"
        )
    return lines


def _step(run: ProcedureRun, step: ReplayStep) -> list[str]:
    flags = ", mutates" if step.mutates else ""
    lines = [f"### {step.number}. {_inline(step.title)} (`{_inline(step.id)}`, {step.kind}{flags})", ""]
    if step.instructions.strip():
        lines += [f"> {line}" if line else ">" for line in strip_control(step.instructions).strip().splitlines()]
        lines.append("")
    for approval in step.approvals:
        lines.append(
            f"- {approval.kind} {approval.decision} by **{_inline(approval.by)}** at {approval.at}"
            f" (asked by {_inline(approval.requested_by)})"
            + (f": {_inline(approval.comment)}" if approval.comment else "")
        )
    if step.approvals:
        lines.append("")
    for host, result in step.hosts:
        lines += _host(run, host, result)
    return lines


def _host(run: ProcedureRun, host: str, result: HostResult) -> list[str]:
    head = f"#### {_inline(host)}: {result.state}"
    if result.exit_code is not None:
        head += f", exit {result.exit_code}"
    lines = [head, ""]
    facts: list[str] = []
    if result.start:
        span = f"{result.start} → {result.end}" if result.end else f"{result.start} → (unfinished)"
        facts.append(f"- when: {span}" + (f" ({result.duration:g} s)" if result.duration else ""))
    if result.state in ("ok", "failed") and result.attempts:
        facts.append(f"- run by: {_inline(run.operator)}, attempts: {result.attempts}")
    if result.confirmed_by:
        facts.append(f"- confirmed by: {_inline(result.confirmed_by)}"
                     + (f", note: {_inline(result.note)}" if result.note else ""))
    if result.reason:
        facts.append(f"- {'reason' if result.state != 'failed' else 'failure'}: {_inline(result.reason)}")
    for number, earlier in enumerate(result.previous, 1):
        facts.append(
            f"- earlier attempt {number}: {earlier.get('state')} at {earlier.get('start')}, "
            f"exit {earlier.get('exit_code')}"
            + (f" ({_inline(str(earlier.get('reason')))})" if earlier.get("reason") else "")
        )
    lines += facts
    if result.command:
        label = "would run" if result.state == "skipped" else "command"
        lines += ["", f"{label}:", "", *_fenced(result.command, "sh")]
    excerpt = _excerpt(result.output)
    if excerpt:
        lines += ["", "output" + (" (last lines)" if excerpt != result.output.strip() else "") + ":",
                  "", *_fenced(excerpt, "text")]
    errors = _excerpt(result.stderr)
    if errors:
        lines += ["", "standard error:", "", *_fenced(errors, "text")]
    if result.truncated:
        lines += ["", "(output was cut: itop keeps a bounded amount)"]
    lines.append("")
    return lines


def _excerpt(text: str) -> str:
    text = strip_control(text).strip()
    if not text:
        return ""
    tail = text.splitlines()[-EXCERPT_LINES:]
    excerpt = "\n".join(tail)
    return excerpt[-EXCERPT_CHARS:]


def _fenced(text: str, language: str) -> list[str]:
    """``text`` in a code fence longer than any backtick run inside it."""
    text = strip_control(text).rstrip("\n")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", *text.splitlines(), fence]


def _inline(value: object) -> str:
    """One line of plain text, safe in Markdown prose (no control characters)."""
    return " ".join(strip_control("" if value is None else str(value)).split())


def _cell(value: object) -> str:
    """Text for a Markdown table cell."""
    return _inline(value).replace("|", "\\|")
