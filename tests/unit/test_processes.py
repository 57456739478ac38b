"""The parser of the top-processes ``ps`` output, on real and broken output."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from itop_tui.domain.processes import (
    MEMORY_MARK,
    TOP_LIMIT,
    TOP_PROCESSES_COMMAND,
    ProcessRow,
    parse_ps,
    parse_ps_line,
    parse_top_processes,
    rank_processes,
)

# Captured on the development VM (procps-ng ps) by running TOP_PROCESSES_COMMAND.
CAPTURE = """\
  PID USER     %CPU %MEM   RSS COMMAND
10543 root     89.2  0.1 44792 python
 9110 root      5.8  0.2 69744 itop
 9865 root      5.7  0.2 68744 python
    1 root      0.5  0.0 13728 process_api
   77 root      0.3  0.0     0 kdamond.0
 9106 root      0.1  0.0  3940 tmux: server
   15 root      0.0  0.0     0 rcu_preempt
   54 root      0.0  0.0     0 kworker/1:1H-kblockd
   14 root      0.0  0.0     0 ksoftirqd/0
   22 root      0.0  0.0     0 ksoftirqd/1
 2298 root      0.0  0.0  4008 bash
 2297 root      0.0  0.0  1072 memfd:sealed-91
   41 root      0.0  0.0     0 kworker/1:1-events
 5210 root      0.0  0.0  4316 bash
 5199 root      0.0  0.0  1096 memfd:sealed-91
@@itop-by-memory
  PID USER     %CPU %MEM   RSS COMMAND
 9110 root      5.8  0.2 69744 itop
 9865 root      5.7  0.2 68744 python
10543 root     83.3  0.1 44792 python
    1 root      0.5  0.0 13728 process_api
10607 root      0.0  0.0  4492 ps
 5210 root      0.0  0.0  4316 bash
 1084 root      0.0  0.0  4104 bash
14300 root      0.0  0.0  4060 bash
 2298 root      0.0  0.0  4008 bash
 9106 root      0.1  0.0  3940 tmux: server
 9107 root      0.0  0.0  3172 bash
 9861 root      0.0  0.0  2908 bash
10548 root      0.0  0.0  2816 bash
 9862 root      0.0  0.0  2136 bash
10549 root      0.0  0.0  2028 bash
"""


def data_lines(section: str) -> list[str]:
    return [line for line in section.splitlines() if line.strip() and "PID" not in line]


def test_real_capture_gives_both_lists_in_ps_order() -> None:
    cpu_part, memory_part = CAPTURE.split(MEMORY_MARK)
    result = parse_top_processes("web01", CAPTURE)
    assert result.error is None and result.skipped_lines == 0
    assert result.host == "web01"
    # Every data line of each section is a row, in the order ps printed it.
    assert [r.pid for r in result.by_cpu] == [int(x.split()[0]) for x in data_lines(cpu_part)]
    assert [r.pid for r in result.by_memory] == [
        int(x.split()[0]) for x in data_lines(memory_part)
    ]
    first = result.by_cpu[0]
    assert first == ProcessRow(10543, "root", 89.2, 0.1, 44792 * 1024, "python")
    rss = [r.rss for r in result.by_memory]
    assert rss == sorted(rss, reverse=True)


def test_command_names_keep_their_spaces() -> None:
    result = parse_top_processes("h", CAPTURE)
    tmux = [r for r in result.by_cpu if r.pid == 9106]
    assert tmux and tmux[0].command == "tmux: server"


def test_the_command_asks_ps_for_both_orders() -> None:
    assert "--sort=-pcpu" in TOP_PROCESSES_COMMAND and "--sort=-rss" in TOP_PROCESSES_COMMAND
    assert f"head -n {TOP_LIMIT + 1}" in TOP_PROCESSES_COMMAND
    assert MEMORY_MARK in TOP_PROCESSES_COMMAND


def test_control_sequences_in_process_names_are_stripped() -> None:
    row = parse_ps_line("  42 mallory  1.0  0.5  2048 \x1b]0;pwned\x07evil\x1b[2Jname")
    assert row is not None
    assert row.command == "evilname"
    assert "\x1b" not in row.command


def test_broken_lines_are_skipped_and_counted() -> None:
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


def test_output_without_the_memory_section_gives_the_cpu_list_only() -> None:
    cpu_part = CAPTURE.split(MEMORY_MARK)[0]
    result = parse_top_processes("h", cpu_part)
    assert len(result.by_cpu) == len(data_lines(cpu_part))
    assert result.by_memory == [] and result.error is None


def test_empty_or_foreign_output_says_why() -> None:
    assert parse_top_processes("h", "").error is not None
    busybox = "ps: unrecognized option: e\nBusyBox v1.36.1 multi-call binary.\n"
    result = parse_top_processes("h", busybox)
    assert result.by_cpu == [] and result.error is not None
    assert result.skipped_lines > 0


def test_limit_cuts_each_list() -> None:
    result = parse_top_processes("h", CAPTURE, limit=3)
    assert len(result.by_cpu) == 3 and len(result.by_memory) == 3


def test_rank_processes_sorts_like_ps_with_ties_by_pid() -> None:
    rows = [
        ProcessRow(3, "a", 5.0, 1.0, 300, "c"),
        ProcessRow(1, "a", 5.0, 2.0, 900, "a"),
        ProcessRow(2, "a", 9.0, 0.5, 100, "b"),
    ]
    ranked = rank_processes(rows, limit=2)
    assert [r.pid for r in ranked.by_cpu] == [2, 1]
    assert [r.pid for r in ranked.by_memory] == [1, 3]


def test_to_dict_is_stable() -> None:
    result = parse_top_processes("h", CAPTURE, limit=1)
    assert result.to_dict() == {
        "host": "h",
        "by_cpu": [
            {
                "pid": 10543,
                "user": "root",
                "cpu_percent": 89.2,
                "mem_percent": 0.1,
                "rss": 44792 * 1024,
                "command": "python",
            }
        ],
        "by_memory": [
            {
                "pid": 9110,
                "user": "root",
                "cpu_percent": 5.8,
                "mem_percent": 0.2,
                "rss": 69744 * 1024,
                "command": "itop",
            }
        ],
        "error": None,
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
