"""Parsers of /proc text, the frame assembler, and the remote collection loop."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itop_tui.domain.metrics import SampleBuilder, compute_sample
from itop_tui.domain.procfs import (
    COLLECT_LOOP,
    PROC_SECTIONS,
    CpuTimes,
    Frame,
    FrameAssembler,
    collect_command,
    is_whole_disk,
    parse_cpu,
    parse_df,
    parse_diskstats,
    parse_frame,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    parse_procs,
    parse_uptime,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "proc"
CAPTURES = ("vm-2cpu", "vm-2cpu-t2", "old-kernel", "server-nvme")
FILES = ("stat", "meminfo", "loadavg", "diskstats", "net_dev", "uptime", "procs", "df")


def lines(capture: str, name: str) -> list[str]:
    """A capture file as the assembler would hand it over (decoded with replacement)."""
    return (DATA / capture / name).read_bytes().decode("utf-8", errors="replace").splitlines()


def sections(capture: str) -> dict[str, list[str]]:
    return {name: lines(capture, name) for name in FILES}


# --------------------------------------------------------------------------
# Real captures from this machine


def test_real_capture_cpu_has_every_core_and_ten_fields() -> None:
    stat = parse_cpu(lines("vm-2cpu", "stat"))
    raw_total = lines("vm-2cpu", "stat")[0].split()
    assert stat.total is not None
    assert stat.total.values() == tuple(float(v) for v in raw_total[1:11])
    core_lines = [
        line for line in lines("vm-2cpu", "stat") if line[:3] == "cpu" and line[3].isdigit()
    ]
    assert sorted(stat.cores) == [int(line.split()[0][3:]) for line in core_lines]
    # The aggregate is the sum of the cores, give or take a tick per core
    # (the kernel converts each core's nanoseconds to ticks separately).
    for index in range(len(CpuTimes().values())):
        total = sum(core.values()[index] for core in stat.cores.values())
        assert abs(stat.total.values()[index] - total) <= len(stat.cores)


def test_real_capture_meminfo_in_bytes() -> None:
    text = {line.split(":")[0]: int(line.split()[1]) for line in lines("vm-2cpu", "meminfo")}
    info = parse_meminfo(lines("vm-2cpu", "meminfo"))
    assert info.total == text["MemTotal"] * 1024
    assert info.available == text["MemAvailable"] * 1024
    assert info.swap_total == text["SwapTotal"] * 1024
    assert info.swap_free == text["SwapFree"] * 1024
    assert not info.available_estimated


def test_real_capture_loadavg_and_uptime() -> None:
    fields = lines("vm-2cpu", "loadavg")[0].split()
    load = parse_loadavg(lines("vm-2cpu", "loadavg"))
    assert (load.load1, load.load5, load.load15) == tuple(float(v) for v in fields[:3])
    running, total = fields[3].split("/")
    assert (load.running, load.total) == (int(running), int(total))
    assert parse_uptime(lines("vm-2cpu", "uptime")) == float(
        lines("vm-2cpu", "uptime")[0].split()[0]
    )


def test_real_capture_diskstats_keeps_whole_disks_only() -> None:
    disks = parse_diskstats(lines("vm-2cpu", "diskstats"))
    assert set(disks) == {"vda"}  # loop0-7 and zram0 are not disks
    fields = next(
        line.split() for line in lines("vm-2cpu", "diskstats") if line.split()[2] == "vda"
    )
    assert disks["vda"].read_bytes == int(fields[5]) * 512
    assert disks["vda"].write_bytes == int(fields[9]) * 512
    assert disks["vda"].io_ms == int(fields[12])


def test_real_capture_net_dev_excludes_loopback() -> None:
    net = parse_net_dev(lines("vm-2cpu", "net_dev"))
    assert "lo" not in net
    assert set(net) == {"eth0", "ifb0", "ifb1"}
    eth0 = next(line for line in lines("vm-2cpu", "net_dev") if line.strip().startswith("eth0:"))
    values = eth0.split(":")[1].split()
    assert (net["eth0"].rx_bytes, net["eth0"].tx_bytes) == (int(values[0]), int(values[8]))


def test_real_capture_df() -> None:
    rows = parse_df(lines("vm-2cpu", "df"))
    assert len(rows) == len(lines("vm-2cpu", "df")) - 1
    root = next(row for row in rows if row.mount == "/")
    fields = next(line.split() for line in lines("vm-2cpu", "df") if line.split()[-1] == "/")
    assert (root.size, root.used, root.avail) == tuple(int(v) * 1024 for v in fields[1:4])
    assert root.percent is not None
    assert math.ceil(root.percent) == int(fields[4].rstrip("%"))


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_capture_parses_into_a_full_raw_sample(capture: str) -> None:
    raw = parse_frame(sections(capture), host="h", time=1.0)
    assert raw.cpu.total is not None and raw.cpu.cores
    assert raw.memory.total and raw.memory.available
    assert raw.load.load1 is not None and raw.load.total is not None
    assert raw.disks and raw.net
    assert raw.uptime is not None and raw.procs == int(lines(capture, "procs")[0])
    assert raw.filesystems


# --------------------------------------------------------------------------
# Other kernels and shapes


def test_old_kernel_without_memavailable_falls_back_to_free_buffers_cached() -> None:
    values = {
        line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines("old-kernel", "meminfo")
    }
    info = parse_meminfo(lines("old-kernel", "meminfo"))
    assert "MemAvailable" not in values
    assert info.available == values["MemFree"] + values["Buffers"] + values["Cached"]
    assert info.available_estimated


def test_old_kernel_cpu_lines_with_eight_fields() -> None:
    stat = parse_cpu(lines("old-kernel", "stat"))
    assert stat.total is not None and len(stat.cores) == 2
    assert stat.total.guest == 0 and stat.total.guest_nice == 0
    assert stat.total.steal == 0 and stat.total.softirq == 456


def test_old_kernel_short_partition_lines_and_net_without_space() -> None:
    assert set(parse_diskstats(lines("old-kernel", "diskstats"))) == {"hda"}
    net = parse_net_dev(lines("old-kernel", "net_dev"))
    assert set(net) == {"eth0"}
    assert net["eth0"].rx_bytes == 4294967000


def test_server_disks_skip_partitions_virtual_and_stacked() -> None:
    disks = parse_diskstats(lines("server-nvme", "diskstats"))
    # nbd10 is a disk of its own (a partition of nbd1 would be nbd1p1).
    assert set(disks) == {"nvme0n1", "sda", "nbd1", "nbd10", "sr0"}
    stacked = parse_diskstats(lines("server-nvme", "diskstats"), include_stacked=True)
    assert set(stacked) == set(disks) | {"dm-0", "md0"}


@pytest.mark.parametrize(
    ("name", "names", "whole"),
    [
        ("sda", {"sda", "sda1"}, True),
        ("sda1", {"sda", "sda1"}, False),
        ("sda1", {"sda1"}, False),  # parent line missing: recognised by its name
        ("nvme0n1p3", {"nvme0n1p3"}, False),
        ("mmcblk0", {"mmcblk0", "mmcblk0p1"}, True),
        ("mmcblk0p1", {"mmcblk0", "mmcblk0p1"}, False),
        ("nbd10", {"nbd1", "nbd10"}, True),
        ("xvda", {"xvda"}, True),
        ("loop3", {"loop3"}, False),
        ("zram0", {"zram0"}, False),
        ("dm-2", {"dm-2"}, False),
        ("md127", {"md127"}, False),
    ],
)
def test_is_whole_disk(name: str, names: set[str], whole: bool) -> None:
    assert is_whole_disk(name, names) is whole


def test_df_with_spaces_and_pseudo_filesystems() -> None:
    rows = parse_df(lines("server-nvme", "df"))
    by_mount = {row.mount: row for row in rows}
    assert by_mount["/mnt/team share"].filesystem == "//nas/share with space"
    assert by_mount["/mnt/team share"].percent == pytest.approx(95.0)
    assert by_mount["/proc/fs"].size == 0 and by_mount["/proc/fs"].percent is None


def test_server_guest_time_is_parsed() -> None:
    stat = parse_cpu(lines("server-nvme", "stat"))
    assert stat.total is not None
    assert stat.total.guest == 40000 and stat.total.guest_nice == 1000
    assert stat.total.total == sum(stat.total.values()) - 41000


# --------------------------------------------------------------------------
# Broken input


def test_truncated_stat_keeps_complete_lines_only() -> None:
    stat = parse_cpu(lines("broken", "stat-truncated"))
    assert stat.total is not None
    assert sorted(stat.cores) == [0]  # cpu1 was cut after three fields


def test_core_line_shorter_than_the_aggregate_is_dropped() -> None:
    stat = parse_cpu(["cpu  1 2 3 4 5 6 7 8 0 0", "cpu0 1 2 3 4 5 6 7 8 0 0", "cpu1 1 2 3 4 5"])
    assert sorted(stat.cores) == [0]


def test_non_utf8_meminfo_keeps_what_it_can() -> None:
    info = parse_meminfo(lines("broken", "meminfo-non-utf8"))
    assert info.total == 24684084 * 1024
    assert info.free is None and info.available is None
    assert info.swap_total is None


def test_non_utf8_stat() -> None:
    stat = parse_cpu(lines("broken", "stat-non-utf8"))
    assert stat.total is None
    assert stat.cores[0] == CpuTimes(1, 2, 3, 4, 5)


@pytest.mark.parametrize("data", [[], [""], ["   "], ["garbage"], ["\ufffd\ufffd"]])
def test_empty_and_garbage_input(data: list[str]) -> None:
    assert parse_cpu(data).total is None and parse_cpu(data).cores == {}
    assert parse_meminfo(data).total is None
    assert parse_loadavg(data).load1 is None
    assert parse_diskstats(data) == {}
    assert parse_net_dev(data) == {}
    assert parse_uptime(data) is None
    assert parse_procs(data) is None
    assert parse_df(data) == []


def test_loadavg_missing_fields() -> None:
    load = parse_loadavg(["0.50 abc"])
    assert load.load1 == 0.5 and load.load5 is None and load.load15 is None and load.total is None


def test_empty_frame_gives_empty_raw_sample_and_sample() -> None:
    raw = parse_frame({}, host="h", time=5.0)
    assert raw.cpu.total is None and raw.filesystems is None
    sample = compute_sample(raw, raw)
    assert sample.cpu_percent is None and sample.mem_percent is None and sample.cpu_per_core == []


def test_host_controlled_names_lose_terminal_controls() -> None:
    rows = parse_df(["/dev/x 10 5 5 50% /mnt/\x1b[2Jevil"])
    assert rows[0].mount == "/mnt/evil"
    net = parse_net_dev(["e\x1b]0;x\x07th9: 1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0"])
    assert set(net) == {"eth9"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=12))
def test_parsers_never_raise_on_any_text(data: list[str]) -> None:
    parse_cpu(data)
    parse_meminfo(data)
    parse_loadavg(data)
    parse_diskstats(data)
    parse_net_dev(data)
    parse_uptime(data)
    parse_procs(data)
    parse_df(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_parse_frame_never_raises_on_bytes(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace").splitlines()
    raw = parse_frame({name: text for name in FILES}, host="h", time=0.0)
    compute_sample(raw, raw)


# --------------------------------------------------------------------------
# Frame assembly


def frame_text(seq: int, capture: str = "vm-2cpu", with_df: bool = True) -> list[str]:
    """A frame as the loop prints it, built from a capture."""
    out = [f"@@itop-begin {seq}"]
    for index, (path, name) in enumerate(PROC_SECTIONS.items()):
        if index:
            out.append("")
        out.append(f"==> {path} <==")
        out.extend(lines(capture, name))
    out += ["@@itop-section procs", *lines(capture, "procs")]
    if with_df:
        out += ["@@itop-section df", *lines(capture, "df")]
    out.append(f"@@itop-end {seq}")
    return out


def test_assembler_rebuilds_the_sections() -> None:
    frames = list(FrameAssembler().feed_lines(frame_text(3)))
    assert len(frames) == 1
    assert frames[0].seq == 3
    for name in FILES:
        assert frames[0].sections[name] == [line for line in lines("vm-2cpu", name) if line.strip()]


def test_assembler_with_garbage_and_truncated_frames() -> None:
    assembler = FrameAssembler()
    stream = [
        "Last login: yesterday",  # garbage before anything
        *frame_text(0)[:7],  # frame 0 cut short
        *frame_text(1),
        "motd line",  # garbage between frames
        *frame_text(2, with_df=False)[:-1],
        "@@itop-end 99",  # end of another frame: frame 2 is dropped
        "\ufffd\ufffd binary noise",
        *frame_text(3),
        "@@itop-end 3",  # a stray end marker
        *frame_text(4)[:12],  # the stream stops in the middle of frame 4
    ]
    frames = list(assembler.feed_lines(stream))
    assert [frame.seq for frame in frames] == [1, 3]
    assert assembler.dropped_frames == 2
    assert assembler.garbage_lines == 4
    assert assembler.in_frame
    for frame in frames:
        raw = parse_frame(frame, "h", 0.0)
        assert raw.memory.total is not None and len(raw.cpu.cores) == 2


def test_assembler_ignores_lines_before_a_section_and_unknown_sections() -> None:
    assembler = FrameAssembler()
    frames = list(
        assembler.feed_lines(
            [
                "@@itop-begin 1",
                "stray",
                "==> /etc/passwd <==",
                "root:x:0:0",
                "@@itop-section bogus",
                "x",
                "@@itop-end 1",
            ]
        )
    )
    assert frames == [Frame(seq=1, sections={})]
    assert assembler.garbage_lines == 3  # stray, and one line in each unknown section


def test_assembler_bounds_frame_and_line_size() -> None:
    assembler = FrameAssembler(max_lines=5, max_line_length=10)
    huge = ["@@itop-begin 1", "==> /proc/stat <==", *["cpu 1 2 3 4"] * 6, "@@itop-end 1"]
    assert list(assembler.feed_lines(huge)) == []
    assert assembler.dropped_frames == 1
    frames = list(
        assembler.feed_lines(["@@itop-begin 2", "==> /proc/uptime <==", "1" * 50, "@@itop-end 2"])
    )
    assert frames[0].sections["uptime"] == ["1" * 10]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), max_size=30))
def test_feed_text_in_any_chunking_gives_the_same_frames(cuts: list[int]) -> None:
    text = "\n".join(["noise", *frame_text(1), *frame_text(2, "server-nvme")]) + "\n"
    assembler = FrameAssembler()
    frames: list[Frame] = []
    position = 0
    for cut in cuts:
        frames += assembler.feed_text(text[position : position + cut])
        position += cut
    frames += assembler.feed_text(text[position:])
    expected = list(FrameAssembler().feed_lines(text.splitlines()))
    assert frames == expected and len(frames) == 2


def test_feed_text_bounds_a_line_without_newline() -> None:
    assembler = FrameAssembler(max_line_length=8)
    assembler.feed_text("@@itop-begin 1\n==> /proc/uptime <==\n")
    for _ in range(1000):
        assembler.feed_text("9" * 100)
    frames = assembler.feed_text("\n@@itop-end 1\n")
    assert frames[0].sections["uptime"] == ["9" * 8]


# --------------------------------------------------------------------------
# The collection loop


@pytest.mark.parametrize("bad", [0.0, -1.0, 0.01, math.nan, math.inf])
def test_collect_command_rejects_bad_intervals(bad: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        collect_command(bad)
    with pytest.raises(ValueError, match="df_every"):
        collect_command(1.0, df_every=0)


def test_loop_template_has_only_its_placeholders() -> None:
    assert COLLECT_LOOP.count("{") == COLLECT_LOOP.count("}") == 3
    assert "exec /bin/sh -c" in collect_command(0.5)


needs_proc = pytest.mark.skipif(
    not Path("/proc/stat").exists() or shutil.which("head") is None,
    reason="the collection loop reads Linux /proc; run on Linux with coreutils",
)


def read_frames(process: subprocess.Popen[bytes], count: int, timeout: float = 10.0) -> list[Frame]:
    assert process.stdout is not None
    assembler = FrameAssembler()
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        assert time.monotonic() < deadline, "no frame from the loop in time"
        line = process.stdout.readline()
        assert line, "the loop ended before printing its frames"
        frame = assembler.feed(line.decode("utf-8", errors="replace"))
        if frame is not None:
            frames.append(frame)
    return frames


@needs_proc
def test_loop_runs_under_sh_and_agrees_with_psutil() -> None:
    process = subprocess.Popen(
        ["sh", "-c", collect_command(0.2, df_every=2)], stdout=subprocess.PIPE
    )
    try:
        started = time.monotonic()
        first, second = read_frames(process, 2)
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
    assert (first.seq, second.seq) == (0, 1)
    assert "df" in first.sections and "df" not in second.sections  # every 2nd frame
    assert elapsed >= 0.2
    raw1 = parse_frame(first, "local", 0.0)
    raw2 = parse_frame(second, "local", 0.2)
    assert len(raw2.cpu.cores) == psutil.cpu_count()
    assert raw2.memory.total == psutil.virtual_memory().total
    builder = SampleBuilder()
    builder.add(raw1)
    sample = builder.add(raw2)  # df came in the first frame only, and carries over
    assert sample.cpu_count == psutil.cpu_count()
    assert sample.mem_percent == pytest.approx(psutil.virtual_memory().percent, abs=2.0)
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0
    assert sample.procs is not None and sample.procs == pytest.approx(len(psutil.pids()), rel=0.2)
    assert any(fs.mount == "/" for fs in sample.filesystems)


def _ignore_sigpipe() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


@needs_proc
@pytest.mark.parametrize("sigpipe", ["default", "ignored"])
def test_loop_exits_when_the_reader_goes_away(sigpipe: str) -> None:
    # The loop is the session leader's child here as under sshd: closing the
    # read end is what the host sees when the client disconnects.
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        ["sh", "-c", collect_command(0.2, df_every=1)],
        stdout=write_fd,
        preexec_fn=_ignore_sigpipe if sigpipe == "ignored" else None,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as reader:
            assembler = FrameAssembler()
            frames = 0
            while frames < 1:
                chunk = reader.read1(65536)
                assert chunk, "the loop ended before its first frame"
                frames += len(assembler.feed_text(chunk.decode("utf-8", errors="replace")))
        # The read end is closed now; the loop must notice on its next write.
        process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            pytest.fail("the loop kept running after its reader went away")
    assert process.returncode != 0


@needs_proc
def test_loop_replaces_the_shell_and_leaves_nothing_behind() -> None:
    process = subprocess.Popen(["sh", "-c", collect_command(0.2)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    read_frames(process, 1)
    loop = psutil.Process(process.pid)
    # exec: the shell that was started is the loop itself, no idle parent shell.
    assert "@@itop-begin" in " ".join(loop.cmdline())
    children = loop.children(recursive=True)
    assert all(child.name() in ("sleep", "head", "df", "timeout") for child in children)
    process.stdout.close()
    process.wait(timeout=5)
    # A sleep started before the pipe closed ends within one interval.
    _, alive = psutil.wait_procs([c for c in children if c.is_running()], timeout=2)
    assert alive == []
