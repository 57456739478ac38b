"""Top processes of a host: the ``ps`` command run for them and its parser.

The drill-down shows the busiest processes by CPU and by memory. On a
remote host one exec of :data:`TOP_PROCESSES_COMMAND` prints both lists,
separated by :data:`MEMORY_MARK`; :func:`parse_top_processes` reads that
output back. ``%CPU`` is what ``ps`` reports: CPU time over the process's
lifetime, not the last interval (the local reader computes the same figure,
so both kinds of host mean the same thing).

The parser never raises: lines it cannot read are skipped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from itop_tui.domain.output import strip_control

TOP_LIMIT = 15
PS_COLUMNS = "pid,user:32,pcpu,pmem,rss,comm"
PS_BY_CPU = f"ps -eo {PS_COLUMNS} --sort=-pcpu | head -n {TOP_LIMIT + 1}"
PS_BY_MEMORY = f"ps -eo {PS_COLUMNS} --sort=-rss | head -n {TOP_LIMIT + 1}"
MEMORY_MARK = "@@itop-by-memory"
# LC_ALL=C: a decimal comma in %CPU would not parse.
TOP_PROCESSES_COMMAND = f"LC_ALL=C; export LC_ALL; {PS_BY_CPU}; echo {MEMORY_MARK}; {PS_BY_MEMORY}"
MAX_COMMAND_LENGTH = 64


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process: ``rss`` in bytes, shares in percent, ``command`` its short name."""

    pid: int
    user: str
    cpu_percent: float
    mem_percent: float
    rss: int
    command: str

    def to_dict(self) -> dict[str, object]:
        """The stable ``--json`` form."""
        return {
            "pid": self.pid,
            "user": self.user,
            "cpu_percent": round(self.cpu_percent, 1),
            "mem_percent": round(self.mem_percent, 1),
            "rss": self.rss,
            "command": self.command,
        }


@dataclass
class TopProcesses:
    """The busiest processes of one host, by CPU and by resident memory.

    ``error`` says why the lists are empty or short (the host could not be
    reached, ``ps`` is missing or does not take these options).
    """

    host: str
    by_cpu: list[ProcessRow] = field(default_factory=list)
    by_memory: list[ProcessRow] = field(default_factory=list)
    error: str | None = None
    skipped_lines: int = 0

    def to_dict(self) -> dict[str, object]:
        """The stable ``--json`` form."""
        return {
            "host": self.host,
            "by_cpu": [row.to_dict() for row in self.by_cpu],
            "by_memory": [row.to_dict() for row in self.by_memory],
            "error": self.error,
        }


def _share(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_ps_line(line: str) -> ProcessRow | None:
    """One data line of ``ps -eo pid,user,pcpu,pmem,rss,comm``, or ``None``.

    ``comm`` is last and may hold spaces (``tmux: server``), so the line is
    split five times only. RSS is in KiB.
    """
    parts = line.split(None, 5)
    if len(parts) < 6:
        return None
    pid_text, user, cpu_text, mem_text, rss_text, command = parts
    if not (pid_text.isascii() and pid_text.isdigit() and rss_text.isascii() and rss_text.isdigit()):
        return None
    cpu, mem = _share(cpu_text), _share(mem_text)
    if cpu is None or mem is None:
        return None
    # Process names are chosen by whoever started the process: never let
    # one carry terminal escapes to the operator's screen.
    name = strip_control(command).strip()[:MAX_COMMAND_LENGTH]
    return ProcessRow(
        pid=int(pid_text),
        user=strip_control(user)[:32],
        cpu_percent=cpu,
        mem_percent=mem,
        rss=int(rss_text) * 1024,
        command=name,
    )


def _is_header(line: str) -> bool:
    parts = line.split()
    return bool(parts) and parts[0] == "PID"


def parse_ps(lines: Iterable[str], limit: int = TOP_LIMIT) -> tuple[list[ProcessRow], int]:
    """Rows of one ``ps`` listing (header skipped) and the count of unreadable lines."""
    rows: list[ProcessRow] = []
    skipped = 0
    for line in lines:
        if not line.strip() or _is_header(line):
            continue
        row = parse_ps_line(line)
        if row is None:
            skipped += 1
        elif len(rows) < limit:
            rows.append(row)
    return rows, skipped


def parse_top_processes(host: str, text: str, limit: int = TOP_LIMIT) -> TopProcesses:
    """Both lists from the output of :data:`TOP_PROCESSES_COMMAND`.

    Output without the memory mark (the second ``ps`` never ran) gives the
    CPU list only. When no row at all could be read, ``error`` says so.
    """
    lines = text.splitlines()
    try:
        cut = lines.index(MEMORY_MARK)
    except ValueError:
        cut = len(lines)
    by_cpu, skipped_cpu = parse_ps(lines[:cut], limit)
    by_memory, skipped_memory = parse_ps(lines[cut + 1 :], limit)
    result = TopProcesses(
        host=host,
        by_cpu=by_cpu,
        by_memory=by_memory,
        skipped_lines=skipped_cpu + skipped_memory,
    )
    if not by_cpu and not by_memory:
        result.error = "no process list in the output of ps (is it procps ps?)"
    return result


def rank_processes(rows: Iterable[ProcessRow], limit: int = TOP_LIMIT) -> TopProcesses:
    """Both lists from a full process table (the local host), ``host`` left empty.

    Sorted as ``ps --sort=-pcpu`` and ``--sort=-rss`` would, ties by pid.
    """
    table = list(rows)
    return TopProcesses(
        host="",
        by_cpu=sorted(table, key=lambda r: (-r.cpu_percent, r.pid))[:limit],
        by_memory=sorted(table, key=lambda r: (-r.rss, r.pid))[:limit],
    )
