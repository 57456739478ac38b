"""Top processes of a host: the command run for them and its parser.

The drill-down shows the busiest processes by CPU and by memory. ``%CPU``
is what ``top`` shows by default: the CPU a process used over the last
:data:`CPU_WINDOW` seconds, 100% being one core (Irix mode), not the
lifetime average ``ps`` prints (a process idle for a week that now spins
would show as idle).

On a remote host one exec of :data:`TOP_PROCESSES_COMMAND` measures it: two
snapshots of ``/proc/<pid>/stat`` a second apart, joined on pid and start
time (a reused pid is another process), print the clock ticks each process
used; ``ps`` then names the busiest and lists the largest by resident
memory. :func:`parse_top_processes` reads that output back. The local host
is measured with psutil and ranked by :func:`rank_processes`.

The parser never raises: lines it cannot read are skipped and counted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from itop_tui.domain.output import strip_control

TOP_LIMIT = 15
# Seconds between the two snapshots; a whole number, as POSIX sleep takes.
CPU_WINDOW = 1
# Pids (with the ticks they used) the command prints at most, busiest first.
SHARE_LINES = 200
# Pids the command asks ps to name: more than TOP_LIMIT, as some exit meanwhile.
NAMED_PIDS = 2 * TOP_LIMIT
PS_COLUMNS = "pid,user:32,pcpu,pmem,rss,comm"
PS_BY_MEMORY = f"ps -eo {PS_COLUMNS} --sort=-rss | head -n {TOP_LIMIT + 1}"
CPU_MARK = "@@itop-cpu"
CPU_ROWS_MARK = "@@itop-cpu-rows"
MEMORY_MARK = "@@itop-by-memory"
MAX_COMMAND_LENGTH = 64

# One line of a snapshot: "pid ticks starttime" from a line of
# grep '' /proc/[0-9]*/stat. grep, not cat: it prefixes every line with its
# file, so the pid comes from the file name even when a process name holds a
# newline and forges a second line; it also goes on past a process that
# exited (mawk reading the files itself aborts). The greedy "^.*\) " strips
# the name, which may hold spaces and parentheses; after it $12 and $13 are
# utime and stime, $20 starttime. printf %.0f: mawk prints a sum over 2^31
# as 3e+09, losing the ticks.
SNAPSHOT_AWK = (
    '{i=index($0,":");p=substr($0,7,i-12);l=substr($0,i+1);'
    'if(substr($0,1,6)=="/proc/"&&p~/^[0-9]+$/&&sub(/^.*\\) /,"",l)&&split(l,f," ")>=20)'
    'printf "%s %.0f %s\\n",p,f[12]+f[13],f[20]}'
)
# The join of two snapshots separated by a line "@@", each one the uptime,
# its process lines, the uptime again. Prints the clock line first (ticks
# per second "t", then the uptimes before and after each snapshot), then
# "pid ticks-used" for each process alive in both with the same start time
# (a reused pid is another process) that used CPU, busiest first.
JOIN_AWK = (
    "BEGIN{s=0}"
    '$0=="@@"{s=1;next}NF==2{u[s]=u[s]" "$1;next}NF!=3{next}'
    "!s{c[$1]=$2;st[$1]=$3;next}"
    "($1 in c)&&st[$1]==$3&&$2>c[$1]{d[$1]=$2-c[$1]}"
    f'END{{print "{CPU_MARK}",t u[0] u[1];fflush();'
    f'o="sort -k2 -nr|head -n {SHARE_LINES}";for(p in d)print p,d[p]|o;close(o)}}'
)
_SNAPSHOT = (
    "snap() { cat /proc/uptime; "
    f"grep -s '' /proc/[0-9]*/stat | awk '{SNAPSHOT_AWK}'; cat /proc/uptime; }}"
)
# LC_ALL=C: a decimal comma would not parse. Without /proc (not Linux) the
# CPU sections are left out and only the memory list is printed.
TOP_PROCESSES_COMMAND = "\n".join(
    [
        "LC_ALL=C; export LC_ALL",
        "if [ -r /proc/uptime ]; then",
        "t=$(getconf CLK_TCK 2>/dev/null || echo 100)",
        _SNAPSHOT,
        f"a=$(snap); sleep {CPU_WINDOW}; b=$(snap)",
        f"m=$(printf '%s\\n@@\\n%s\\n' \"$a\" \"$b\" | awk -v t=\"$t\" '{JOIN_AWK}')",
        "printf '%s\\n' \"$m\"",
        "p=$(printf '%s\\n' \"$m\" | awk "
        f"'NF==2&&n<{NAMED_PIDS}{{printf \"%s%s\",s,$1;s=\",\";n++}}')",
        f"echo {CPU_ROWS_MARK}",
        f'[ -z "$p" ] || ps -o {PS_COLUMNS} -p "$p"',
        "fi",
        f"echo {MEMORY_MARK}; {PS_BY_MEMORY}",
    ]
)


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process: ``rss`` in bytes, shares in percent, ``command`` its short name.

    ``cpu_percent`` is the CPU used over the measured window, 100 being one
    core (a process running on several cores can exceed 100).
    """

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

    ``cpu_window`` is the measured window in seconds of every ``cpu_percent``
    (``None`` when CPU could not be measured: every ``cpu_percent`` is then
    0 and ``error`` says why). ``error`` says why the lists are empty or
    short (the host could not be reached, ``ps`` is missing or does not take
    these options, the host has no ``/proc``). ``note`` explains an empty
    CPU list that is no failure: no process used CPU in the window.
    """

    host: str
    by_cpu: list[ProcessRow] = field(default_factory=list)
    by_memory: list[ProcessRow] = field(default_factory=list)
    error: str | None = None
    skipped_lines: int = 0
    cpu_window: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The stable ``--json`` form."""
        return {
            "host": self.host,
            "by_cpu": [row.to_dict() for row in self.by_cpu],
            "by_memory": [row.to_dict() for row in self.by_memory],
            "error": self.error,
            "cpu_window": None if self.cpu_window is None else round(self.cpu_window, 2),
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class CpuShares:
    """The CPU each process used over ``window`` seconds, in percent of one core.

    Processes absent from ``percent`` used no CPU in the window (or too
    little to be among the busiest :data:`SHARE_LINES`).
    """

    window: float
    percent: dict[int, float]


def idle_note(window: float) -> str:
    """What an empty CPU list means when nothing failed."""
    return f"no process used CPU in the {window:.1f} s window"


def _share(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _count(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def parse_ps_line(line: str) -> ProcessRow | None:
    """One data line of ``ps -eo pid,user,pcpu,pmem,rss,comm``, or ``None``.

    ``comm`` is last and may hold spaces (``tmux: server``), so the line is
    split five times only. RSS is in KiB. ``cpu_percent`` is what ``ps``
    printed (its lifetime average): callers replace it with the measured share.
    """
    parts = line.split(None, 5)
    if len(parts) < 6:
        return None
    pid_text, user, cpu_text, mem_text, rss_text, command = parts
    pid, rss_kib = _count(pid_text), _count(rss_text)
    if pid is None or rss_kib is None:
        return None
    cpu, mem = _share(cpu_text), _share(mem_text)
    if cpu is None or mem is None:
        return None
    # Process names are chosen by whoever started the process: never let
    # one carry terminal escapes to the operator's screen.
    name = strip_control(command).strip()[:MAX_COMMAND_LENGTH]
    return ProcessRow(
        pid=pid,
        user=strip_control(user)[:32],
        cpu_percent=cpu,
        mem_percent=mem,
        rss=rss_kib * 1024,
        command=name,
    )


def _is_header(line: str) -> bool:
    parts = line.split()
    return bool(parts) and parts[0] == "PID"


def parse_ps(lines: Iterable[str], limit: int | None = TOP_LIMIT) -> tuple[list[ProcessRow], int]:
    """Rows of one ``ps`` listing (header skipped) and the count of unreadable lines.

    ``limit`` ``None`` keeps every row.
    """
    rows: list[ProcessRow] = []
    skipped = 0
    for line in lines:
        if not line.strip() or _is_header(line):
            continue
        row = parse_ps_line(line)
        if row is None:
            skipped += 1
        elif limit is None or len(rows) < limit:
            rows.append(row)
    return rows, skipped


def parse_clock(fields: list[str]) -> tuple[int, float] | None:
    """Clock ticks per second and window in seconds from the fields after :data:`CPU_MARK`.

    The fields are the tick rate and four uptimes: before and after the
    first snapshot, before and after the second. The window runs between
    the snapshots' midpoints; ``None`` unless it is a positive duration.
    """
    if len(fields) != 5:
        return None
    hertz = _count(fields[0])
    uptimes = [value for value in map(_share, fields[1:]) if value is not None]
    if not hertz or len(uptimes) != 4:
        return None
    first_start, first_end, second_start, second_end = uptimes
    window = ((second_start + second_end) - (first_start + first_end)) / 2
    return (hertz, window) if window > 0 else None


def parse_cpu_shares(hertz: int, window: float, lines: Iterable[str]) -> tuple[CpuShares, int]:
    """The ``pid ticks`` lines of the measurement and the count of unreadable lines."""
    percent: dict[int, float] = {}
    skipped = 0
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        pid = _count(parts[0]) if len(parts) == 2 else None
        ticks = _count(parts[1]) if pid is not None else None
        if pid is None or not ticks or pid in percent:
            skipped += 1
            continue
        percent[pid] = ticks * 100.0 / hertz / window
    return CpuShares(window=window, percent=percent), skipped


def _sections(lines: list[str]) -> tuple[dict[str, list[str]], list[str] | None]:
    """Lines by the mark they follow (``""`` before any), and the clock fields."""
    sections: dict[str, list[str]] = {"": []}
    clock: list[str] | None = None
    current = ""
    for line in lines:
        head = line.split(None, 1)[0] if line.strip() else ""
        # Each mark once: a second one is foreign output, read as data.
        if head in (CPU_MARK, CPU_ROWS_MARK, MEMORY_MARK) and head not in sections:
            current = head
            sections[head] = []
            if head == CPU_MARK:
                clock = line.split()[1:]
            elif line.strip() != head:
                sections[head].append(line)
            continue
        sections[current].append(line)
    return sections, clock


def _with_share(row: ProcessRow, shares: CpuShares | None) -> ProcessRow:
    share = shares.percent.get(row.pid, 0.0) if shares is not None else 0.0
    return dataclasses.replace(row, cpu_percent=share)


def by_share(rows: Iterable[ProcessRow], limit: int) -> list[ProcessRow]:
    """The rows that used CPU, busiest first, ties by pid, at most ``limit``."""
    busy = [row for row in rows if row.cpu_percent > 0]
    return sorted(busy, key=lambda r: (-r.cpu_percent, r.pid))[:limit]


def parse_top_processes(host: str, text: str, limit: int = TOP_LIMIT) -> TopProcesses:
    """Both lists from the output of :data:`TOP_PROCESSES_COMMAND`.

    Every ``cpu_percent`` is the measured share (0 for a process that used
    no CPU in the window). Without a readable measurement (no ``/proc``) the
    memory list is kept and ``error`` says why the CPU list is empty; an
    idle host gets an empty CPU list and a ``note``. When no row at all
    could be read, ``error`` says so.
    """
    sections, clock_fields = _sections(text.splitlines())
    skipped = sum(1 for line in sections[""] if line.strip())
    shares: CpuShares | None = None
    clock = parse_clock(clock_fields) if clock_fields is not None else None
    if clock is not None:
        shares, bad_shares = parse_cpu_shares(*clock, sections.get(CPU_MARK, []))
        skipped += bad_shares
    else:
        skipped += sum(1 for line in sections.get(CPU_MARK, []) if line.strip())
    named, bad_named = parse_ps(sections.get(CPU_ROWS_MARK, []), None)
    by_memory, bad_memory = parse_ps(sections.get(MEMORY_MARK, []), limit)
    skipped += bad_named + bad_memory
    measured = [_with_share(row, shares) for row in named if shares and row.pid in shares.percent]
    # ps naming a pid the measurement did not print is foreign output.
    skipped += len(named) - len(measured)
    result = TopProcesses(
        host=host,
        by_cpu=by_share(measured, limit),
        by_memory=[_with_share(row, shares) for row in by_memory],
        skipped_lines=skipped,
        cpu_window=shares.window if shares is not None else None,
    )
    if shares is None and not by_memory:
        result.error = "no process list in the output of ps (is it procps ps?)"
    elif shares is None:
        if clock_fields is None:
            reason = "no /proc/uptime on the host (not Linux?)"
        else:
            reason = f"unreadable clock line {' '.join(clock_fields)[:80]!r}"
        result.error = f"%CPU not measured: {reason}"
    elif not shares.percent:
        result.note = idle_note(shares.window)
    elif not result.by_cpu:
        result.note = (
            f"ps named none of the {len(shares.percent)} processes that used CPU "
            f"in the {shares.window:.1f} s window (exited since?)"
        )
    return result


def rank_processes(rows: Iterable[ProcessRow], window: float, limit: int = TOP_LIMIT) -> TopProcesses:
    """Both lists from a full process table (the local host), ``host`` left empty.

    Each row's ``cpu_percent`` is its share over ``window`` seconds. The CPU
    list holds the processes that used CPU, busiest first; the memory list
    is sorted as ``ps --sort=-rss`` would; ties by pid.
    """
    table = list(rows)
    result = TopProcesses(
        host="",
        by_cpu=by_share(table, limit),
        by_memory=sorted(table, key=lambda r: (-r.rss, r.pid))[:limit],
        cpu_window=window,
    )
    if not result.by_cpu:
        result.note = idle_note(window)
    return result
