"""The top-processes command's parts and parser, on real and broken output.

The awk programs of the command run here on crafted input (a reused pid,
a name forging a line, tick counts past 2^31); the whole command runs
under ``sh`` against this machine's /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itop_tui.domain.processes import (
    CPU_MARK,
    CPU_ROWS_MARK,
    CPU_WINDOW,
    JOIN_AWK,
    MEMORY_MARK,
    NAMED_PIDS,
    SHARE_LINES,
    SNAPSHOT_AWK,
    TOP_LIMIT,
    TOP_PROCESSES_COMMAND,
    ProcessRow,
    parse_clock,
    parse_ps,
    parse_ps_line,
    parse_top_processes,
    rank_processes,
)

# Captured on the development VM (Linux, procps-ng ps, mawk, bash) by running
# TOP_PROCESSES_COMMAND while a busy loop named "spin (x) y" ran.
SPINNER = "spin (x) y"
CAPTURE = """\
@@itop-cpu 100 23915.64 23915.64 23916.65 23916.66
14305 100
8082 93
17148 1
@@itop-cpu-rows
  PID USER                             %CPU %MEM   RSS COMMAND
 8082 root                             10.5  0.6 159408 python
14305 root                             98.1  0.0 13560 spin (x) y
17148 root                              0.0  0.0  1076 memfd:sealed-91
@@itop-by-memory
  PID USER                             %CPU %MEM   RSS COMMAND
 8082 root                             10.5  0.6 159408 python
14264 root                              4.9  0.0 15528 python
14305 root                             99.0  0.0 13560 spin (x) y
    1 root                              0.6  0.0 10712 process_api
 3072 root                              0.0  0.0  9020 sshd
14331 root                              0.0  0.0  4316 ps
17149 root                              0.0  0.0  4256 bash
10441 root                              0.0  0.0  4116 bash
14306 root                              0.0  0.0  3292 bash
28744 root                              0.0  0.0  2944 bash
14261 root                              0.0  0.0  2868 bash
28745 root                              0.0  0.0  2152 bash
14262 root                              0.0  0.0  2076 bash
 8081 root                              0.0  0.0  1860 tail
 8080 root                              0.0  0.0  1704 timeout
"""


def section(text: str, mark: str) -> list[str]:
    """The non-blank lines after ``mark`` up to the next mark."""
    lines = text.splitlines()
    start = lines.index(mark) + 1 if mark != CPU_MARK else 1
    out: list[str] = []
    for line in lines[start:]:
        if line.startswith("@@"):
            break
        if line.strip():
            out.append(line)
    return out


def data_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.split()[0] != "PID"]


def capture_window() -> float:
    """The window as the clock line of the capture gives it (midpoint to midpoint)."""
    _, _, s1, e1, s2, e2 = CAPTURE.splitlines()[0].split()
    return ((float(s2) + float(e2)) - (float(s1) + float(e1))) / 2


def capture_ticks() -> dict[int, int]:
    return {int(p): int(t) for p, t in (line.split() for line in section(CAPTURE, CPU_MARK))}


def test_real_capture_gives_the_measured_share_of_each_process() -> None:
    result = parse_top_processes("web01", CAPTURE)
    assert result.error is None and result.note is None and result.skipped_lines == 0
    assert result.host == "web01"
    window = capture_window()
    assert result.cpu_window == pytest.approx(window)
    hertz = int(CAPTURE.split()[1])
    ticks = capture_ticks()
    named = data_lines(section(CAPTURE, CPU_ROWS_MARK))
    # By CPU: the processes ps named, busiest in the window first.
    named_pids = [int(line.split()[0]) for line in named]
    expected = sorted(named_pids, key=lambda pid: (-ticks[pid], pid))[:TOP_LIMIT]
    assert [row.pid for row in result.by_cpu] == expected
    for row in result.by_cpu:
        assert row.cpu_percent == pytest.approx(ticks[row.pid] * 100 / hertz / window)
    # The spinner used the most CPU, and its name keeps spaces and parentheses.
    spinner = [row for row in result.by_cpu if row.command == SPINNER]
    assert spinner and ticks[spinner[0].pid] == max(ticks.values())
    # By memory: in ps order, with the measured share (0 when none was used).
    memory = data_lines(section(CAPTURE, MEMORY_MARK))
    assert [row.pid for row in result.by_memory] == [int(x.split()[0]) for x in memory]
    for row in result.by_memory:
        used = ticks.get(row.pid, 0)
        assert row.cpu_percent == pytest.approx(used * 100 / hertz / window)
    rss = [r.rss for r in result.by_memory]
    assert rss == sorted(rss, reverse=True)
    first = parse_ps_line(memory[0])
    assert first is not None and result.by_memory[0].rss == first.rss


def test_the_command_asks_for_both_snapshots_and_both_lists() -> None:
    assert TOP_PROCESSES_COMMAND.startswith("LC_ALL=C; export LC_ALL")
    assert f"sleep {CPU_WINDOW}" in TOP_PROCESSES_COMMAND
    assert TOP_PROCESSES_COMMAND.count("a=$(snap)") == 1 and "b=$(snap)" in TOP_PROCESSES_COMMAND
    assert f"head -n {SHARE_LINES}" in TOP_PROCESSES_COMMAND
    assert f"n<{NAMED_PIDS}" in TOP_PROCESSES_COMMAND
    assert "--sort=-rss" in TOP_PROCESSES_COMMAND and f"head -n {TOP_LIMIT + 1}" in TOP_PROCESSES_COMMAND
    for mark in (CPU_MARK, CPU_ROWS_MARK, MEMORY_MARK):
        assert mark in TOP_PROCESSES_COMMAND


# -- the awk programs on crafted input ----------------------------------------------


def stat_tail(utime: int, stime: int, start: int) -> str:
    """The fields after the name of a /proc/<pid>/stat line, from this process's own."""
    own = Path("/proc/self/stat").read_text().rsplit(") ", 1)[1].split()
    own[11], own[12], own[19] = str(utime), str(stime), str(start)
    return " ".join(own)


def awk(program: str, text: str, *variables: str) -> str:
    args = ["awk"]
    for variable in variables:
        args += ["-v", variable]
    env = {**os.environ, "LC_ALL": "C"}
    done = subprocess.run(
        [*args, program], input=text, capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def test_the_snapshot_reads_pid_ticks_and_start_from_stat_lines() -> None:
    lines = [
        f"/proc/42/stat:42 (tmux: server) {stat_tail(7, 3, 900)}",
        # A name with ") " in it, and tick counts past 2^31 (mawk's %d limit).
        f"/proc/43/stat:43 (odd) R (name) {stat_tail(3_000_000_000, 1_000_000_001, 4_444_444_444)}",
        # A name holding a newline that forges a line for pid 1: grep puts the
        # file name on both halves, so the forged half counts for pid 44.
        "/proc/44/stat:44 (a",
        f"/proc/44/stat:1 (x) S 1 1) {stat_tail(5, 5, 1000)}",
        f"/proc/self/stat:45 (self) {stat_tail(1, 1, 1)}",
        "/proc/46/stat:46 (short) S 1 2 3",
        "not a stat line",
    ]
    out = awk(SNAPSHOT_AWK, "\n".join(lines) + "\n")
    assert out.splitlines() == ["42 10 900", "43 4000000001 4444444444", "44 10 1000"]


def test_the_join_keeps_processes_alive_in_both_snapshots_under_the_same_start() -> None:
    first = ["1000.00 10.00", "1 100 10", "2 200 20", "3 300 30", "4 400 40",
             "5 3000000000 50", "1000.10 10.00"]
    second = ["1001.00 11.00",
              "1 150 10",  # 50 ticks
              "2 200 20",  # idle: left out
              "3 5 99",  # pid 3 reused by another process: left out
              "5 3000000100 50",  # 100 ticks past 2^31
              "6 10 60",  # born in the window: left out
              "1001.20 11.00"]
    out = awk(JOIN_AWK, "\n".join([*first, "@@", *second]) + "\n", "t=100")
    assert out.splitlines() == [f"{CPU_MARK} 100 1000.00 1000.10 1001.00 1001.20", "5 100", "1 50"]
    rows = [f"{pid:>5} root 0.0 0.1 {1000 * pid} p{pid}" for pid in (1, 5)]
    result = parse_top_processes("h", "\n".join([out, CPU_ROWS_MARK, *rows]))
    assert result.cpu_window == pytest.approx(1.05)
    assert [(r.pid, r.cpu_percent) for r in result.by_cpu] == [
        (5, pytest.approx(100 / 1.05)), (1, pytest.approx(50 / 1.05))
    ]


def test_the_join_of_an_idle_host_prints_the_clock_only() -> None:
    snapshot = ["50.00 1.00", "1 100 10", "50.01 1.00"]
    out = awk(JOIN_AWK, "\n".join([*snapshot, "@@", *snapshot]) + "\n", "t=250")
    assert out.splitlines() == [f"{CPU_MARK} 250 50.00 50.01 50.00 50.01"]


# -- the whole command on this machine ------------------------------------------------


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen[str]]:
    """A busy loop named ``spin (x) y``."""
    code = (
        f"open('/proc/self/comm', 'w').write({SPINNER!r}); print('ready', flush=True)\n"
        "while True: pass"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(30)


def test_the_command_measures_a_busy_process_under_sh(spinner: subprocess.Popen[str]) -> None:
    done = subprocess.run(
        ["sh", "-c", TOP_PROCESSES_COMMAND], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result = parse_top_processes("here", done.stdout)
    assert result.error is None and result.skipped_lines == 0
    assert result.cpu_window is not None and result.cpu_window > 0
    # The spinner ran the whole window: it used CPU, whatever the load.
    mine = [row for row in result.by_cpu if row.pid == spinner.pid]
    assert mine and mine[0].command == SPINNER and mine[0].cpu_percent > 0
    assert len(done.stdout.splitlines()) <= 1 + SHARE_LINES + 2 + NAMED_PIDS + 2 + TOP_LIMIT


# -- the parser on broken and foreign output -----------------------------------------


def test_control_sequences_in_process_names_are_stripped() -> None:
    row = parse_ps_line("  42 mallory  1.0  0.5  2048 \x1b]0;pwned\x07evil\x1b[2Jname")
    assert row is not None
    assert row.command == "evilname"
    assert "\x1b" not in row.command


def test_broken_ps_lines_are_skipped_and_counted() -> None:
    text = "\n".join(
        [
            "  PID USER     %CPU %MEM   RSS COMMAND",
            "  100 root      1.0  0.1  1000 good",
            "  101 root      1.0  0.1",  # truncated
            "  abc root      1.0  0.1  1000 notapid",
            "  102 root      nan  0.1  1000 nancpu",
            "  103 root     -1.0  0.1  1000 negative",
            "  104 root      1.0  0.1  12k3 badrss",
            "  105 root      2,5  0.1  1000 comma",
            "  106 root      0.0  0.0     0 kthreadd",
        ]
    )
    rows, skipped = parse_ps(text.splitlines())
    assert [r.pid for r in rows] == [100, 106]
    assert skipped == 6


def test_broken_share_lines_are_skipped_and_counted() -> None:
    text = "\n".join(
        [
            f"{CPU_MARK} 100 10.0 10.0 11.0 11.0",
            "7 50",
            "8",  # truncated
            "9 -3",
            "x 4",
            "7 20",  # a pid twice
            "10 0",  # used nothing: not a share line
            "11 2 3",
            CPU_ROWS_MARK,
            "    7 root 0.0 0.0 10 seven",
            "   99 root 0.0 0.0 10 unmeasured",  # ps named a pid never measured
        ]
    )
    result = parse_top_processes("h", text)
    assert [(r.pid, r.cpu_percent) for r in result.by_cpu] == [(7, 50.0)]
    assert result.skipped_lines == 7


def test_output_of_a_host_without_proc_keeps_the_memory_list_and_says_why() -> None:
    memory = section(CAPTURE, MEMORY_MARK)
    result = parse_top_processes("bsd", "\n".join([MEMORY_MARK, *memory]))
    assert result.by_cpu == [] and result.cpu_window is None
    assert len(result.by_memory) == len(data_lines(memory))
    assert all(row.cpu_percent == 0.0 for row in result.by_memory)
    assert result.error is not None and "not measured" in result.error and "/proc" in result.error


def test_an_unreadable_clock_line_is_an_error_not_a_share() -> None:
    for clock in (f"{CPU_MARK} 100 5.0 5.0 4.0 4.0", f"{CPU_MARK} 0 1 1 2 2", f"{CPU_MARK} 100"):
        text = "\n".join([clock, "7 50", CPU_ROWS_MARK, "    7 root 0.0 0.0 10 seven",
                          MEMORY_MARK, "    7 root 0.0 0.0 10 seven"])
        result = parse_top_processes("h", text)
        assert result.by_cpu == [] and [r.cpu_percent for r in result.by_memory] == [0.0]
        assert result.error is not None and "unreadable clock line" in result.error, clock
    assert parse_clock(["100", "1", "1", "nan", "2"]) is None
    assert parse_clock(["100", "1", "1", "2", "2"]) == (100, 1.0)


def test_an_idle_host_gives_an_empty_cpu_list_and_a_note() -> None:
    memory = section(CAPTURE, MEMORY_MARK)
    text = "\n".join([f"{CPU_MARK} 100 10.00 10.02 11.00 11.02", CPU_ROWS_MARK, MEMORY_MARK,
                      *memory])
    result = parse_top_processes("h", text)
    assert result.error is None and result.by_cpu == []
    assert result.note == "no process used CPU in the 1.0 s window"
    assert result.by_memory and all(row.cpu_percent == 0.0 for row in result.by_memory)


def test_busy_processes_that_exited_before_ps_named_them_give_a_note() -> None:
    text = "\n".join([f"{CPU_MARK} 100 10.00 10.00 11.00 11.00", "7 50", CPU_ROWS_MARK,
                      "  PID USER %CPU %MEM RSS COMMAND", MEMORY_MARK])
    result = parse_top_processes("h", text)
    assert result.by_cpu == [] and result.error is None
    assert result.note is not None and "none of the 1 processes" in result.note


def test_empty_or_foreign_output_says_why() -> None:
    assert parse_top_processes("h", "").error is not None
    busybox = "ps: unrecognized option: e\nBusyBox v1.36.1 multi-call binary.\n"
    result = parse_top_processes("h", busybox)
    assert result.by_cpu == [] and result.by_memory == [] and result.error is not None
    assert result.skipped_lines == 2


def test_a_repeated_mark_is_foreign_data_not_a_new_section() -> None:
    full = parse_top_processes("h", CAPTURE)
    result = parse_top_processes("h", CAPTURE + f"{CPU_MARK} 100 1 1 9 9\n{CPU_ROWS_MARK}\n")
    assert (result.by_cpu, result.by_memory) == (full.by_cpu, full.by_memory)
    assert result.cpu_window == full.cpu_window
    assert result.skipped_lines == 2 and result.error is None


def test_limit_cuts_each_list_keeping_the_busiest() -> None:
    full = parse_top_processes("h", CAPTURE)
    result = parse_top_processes("h", CAPTURE, limit=3)
    assert result.by_cpu == full.by_cpu[:3] and result.by_memory == full.by_memory[:3]


def test_rank_processes_lists_the_busy_by_share_and_all_by_memory() -> None:
    rows = [
        ProcessRow(3, "a", 5.0, 1.0, 300, "c"),
        ProcessRow(1, "a", 5.0, 2.0, 900, "a"),
        ProcessRow(2, "a", 9.0, 0.5, 100, "b"),
        ProcessRow(4, "a", 0.0, 0.5, 50, "idle"),
    ]
    ranked = rank_processes(rows, 1.02, limit=5)
    assert [r.pid for r in ranked.by_cpu] == [2, 1, 3]
    assert [r.pid for r in ranked.by_memory] == [1, 3, 2, 4]
    assert ranked.cpu_window == 1.02 and ranked.note is None
    idle = rank_processes([rows[3]], 1.0)
    assert idle.by_cpu == [] and idle.note == "no process used CPU in the 1.0 s window"


def test_to_dict_is_stable() -> None:
    text = "\n".join([f"{CPU_MARK} 100 10.00 10.00 11.00 11.00", "7 150", CPU_ROWS_MARK,
                      "    7 root 3.0 0.1 2048 spin", MEMORY_MARK,
                      "    8 www  0.5 2.0 9000 big"])
    result = parse_top_processes("h", text)
    assert result.to_dict() == {
        "host": "h",
        "by_cpu": [
            {
                "pid": 7,
                "user": "root",
                "cpu_percent": 150.0,
                "mem_percent": 0.1,
                "rss": 2048 * 1024,
                "command": "spin",
            }
        ],
        "by_memory": [
            {
                "pid": 8,
                "user": "www",
                "cpu_percent": 0.0,
                "mem_percent": 2.0,
                "rss": 9000 * 1024,
                "command": "big",
            }
        ],
        "error": None,
        "cpu_window": 1.0,
        "note": None,
    }


names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
)
commands = st.lists(names, min_size=1, max_size=3).map(" ".join)


@given(
    pid=st.integers(1, 2**22),
    user=names,
    cpu=st.integers(0, 100_000).map(lambda n: n / 10),
    mem=st.integers(0, 1000).map(lambda n: n / 10),
    rss_kib=st.integers(0, 2**40),
    command=commands,
)
def test_any_ps_line_round_trips(
    pid: int, user: str, cpu: float, mem: float, rss_kib: int, command: str
) -> None:
    line = f"{pid:>5} {user:<8} {cpu:4.1f} {mem:4.1f} {rss_kib:5d} {command}"
    row = parse_ps_line(line)
    assert row == ProcessRow(pid, user, cpu, mem, rss_kib * 1024, command)


processes = st.dictionaries(
    st.integers(1, 2**22),
    st.tuples(st.integers(0, 10_000), names, st.integers(0, 2**30), commands),
    max_size=40,
)


@given(
    table=processes,
    hertz=st.sampled_from([100, 250, 1000]),
    start=st.integers(0, 10**9),
    gap=st.integers(1, 500),
)
def test_any_measurement_round_trips(
    table: dict[int, tuple[int, str, int, str]], hertz: int, start: int, gap: int
) -> None:
    """Output shaped as the command prints it reads back as the figures it holds."""
    first, second = start / 100, (start + gap) / 100
    busy = sorted((pid for pid, p in table.items() if p[0] > 0), key=lambda pid: -table[pid][0])
    by_rss = sorted(table, key=lambda pid: -table[pid][2])[:TOP_LIMIT]

    def ps(pid: int) -> str:
        ticks, user, rss, command = table[pid]
        return f"{pid:>7} {user:<32} 1.0 0.0 {rss} {command}"

    text = "\n".join(
        [
            f"{CPU_MARK} {hertz} {first:.2f} {first:.2f} {second:.2f} {second:.2f}",
            *(f"{pid} {table[pid][0]}" for pid in busy),
            CPU_ROWS_MARK,
            "    PID USER %CPU %MEM RSS COMMAND",
            *(ps(pid) for pid in sorted(busy[:NAMED_PIDS])),
            MEMORY_MARK,
            "    PID USER %CPU %MEM RSS COMMAND",
            *(ps(pid) for pid in by_rss),
        ]
    )
    result = parse_top_processes("h", text)
    assert result.error is None and result.skipped_lines == 0
    window = gap / 100
    assert result.cpu_window == pytest.approx(window)
    expected = sorted(busy[:NAMED_PIDS], key=lambda pid: (-table[pid][0], pid))[:TOP_LIMIT]
    assert [row.pid for row in result.by_cpu] == expected
    for row in [*result.by_cpu, *result.by_memory]:
        ticks, user, rss, command = table[row.pid]
        assert (row.user, row.rss, row.command) == (user, rss * 1024, command)
        assert row.cpu_percent == pytest.approx(ticks * 100 / hertz / window)
    assert [row.pid for row in result.by_memory] == by_rss
    assert (result.note is None) == bool(busy)
