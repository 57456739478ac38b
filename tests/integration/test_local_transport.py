"""LocalTransport with real subprocesses on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest

from itop_tui.services.local_transport import LineSplitter, LocalTransport


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def wait_file(path: Path, within: float = 5.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} was not written within {within}s")


async def test_run_reports_status_output_and_duration() -> None:
    result = await LocalTransport("me").run("echo out; echo err >&2; sleep 0.2; exit 7")
    assert result.host == "me"
    assert (result.exit_status, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert result.error is None and not result.ok and not result.truncated
    assert 0.2 <= result.duration < 5


async def test_stdin_is_passed_and_closed() -> None:
    result = await LocalTransport("me").run("tr a-z A-Z", stdin=b"hello\n")
    assert result.ok and result.stdout == "HELLO\n"


async def test_output_over_the_bound_is_cut_and_flagged() -> None:
    result = await LocalTransport("me").run(
        "head -c 3000000 /dev/zero | tr '\\0' x; echo tail >&2", limit=1000
    )
    assert result.ok
    assert result.stdout == "x" * 1000
    assert result.truncated
    assert result.stderr == "tail\n"


async def test_control_sequences_are_stripped() -> None:
    result = await LocalTransport("me").run(r"printf '\033[2J\033]0;title\007ok\r\n\033[31mred\033[0m'")
    assert result.stdout == "ok\nred"


async def test_death_by_signal_is_128_plus_signal() -> None:
    result = await LocalTransport("me").run("kill -KILL $$")
    assert result.exit_status == 137 and result.error is None


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    started = time.monotonic()
    result = await LocalTransport("me").run(
        f"sleep 30 & echo $! > {pidfile}; wait", timeout=0.5
    )
    assert time.monotonic() - started < 3
    assert result.exit_status is None
    assert result.error == "timed out after 0.5s"
    assert await wait_gone(int(pidfile.read_text()))


async def test_background_child_holding_the_pipes_does_not_block(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    result = await LocalTransport("me").run(f"sleep 30 & echo $! > {pidfile}; echo done")
    try:
        assert result.ok and result.stdout == "done\n"
        assert result.duration < 3
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pidfile.read_text()), 9)


async def test_cancelled_run_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.ensure_future(LocalTransport("me").run(f"echo $$ > {pidfile}; exec sleep 30"))
    pid = int(await wait_file(pidfile))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(pid)


async def test_stream_yields_lines_and_closing_ends_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    stream = LocalTransport("me").stream(
        f"echo $$ > {pidfile}; i=0; while :; do echo line$i; i=$((i+1)); sleep 0.02; done"
    )
    lines = []
    async for line in stream:
        lines.append(line)
        if len(lines) == 5:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert lines == [f"line{i}" for i in range(5)]
    assert await wait_gone(int(pidfile.read_text()))


async def test_stream_ends_with_the_command_and_keeps_the_last_line() -> None:
    lines = [line async for line in LocalTransport("me").stream(r"printf 'a\nb\n\nc'")]
    assert lines == ["a", "b", "", "c"]


async def test_stream_cuts_long_lines() -> None:
    stream = LocalTransport("me").stream(
        "head -c 100000 /dev/zero | tr '\\0' y; echo; echo short", line_limit=10
    )
    assert [line async for line in stream] == ["y" * 10, "short"]


async def test_stream_chunks_yields_clean_blocks_and_closing_ends_the_command(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "pid"
    stream = LocalTransport("me").stream_chunks(
        f"echo $$ > {pidfile}; i=0; while :; do printf 'li\\033[1mne%d\\r\\n' $i; "
        f"i=$((i+1)); sleep 0.02; done"
    )
    text = ""
    async for block in stream:
        assert block.endswith("\n")
        text += block
        if text.count("\n") >= 5:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert text.splitlines()[:5] == [f"line{i}" for i in range(5)]
    assert await wait_gone(int(pidfile.read_text()))


async def test_stream_chunks_cut_an_endless_line_and_keep_the_last_one() -> None:
    stream = LocalTransport("me").stream_chunks(
        "head -c 100000 /dev/zero | tr '\\0' y; echo; printf 'short\\nlast'", line_limit=10
    )
    assert "".join([block async for block in stream]) == "y" * 10 + "\nshort\nlast"


def test_line_splitter_across_chunks() -> None:
    splitter = LineSplitter(line_limit=4)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\nde") == ["abc"]
    assert splitter.feed(b"fghij") == ["defg"]  # cut; the rest of the line is dropped
    assert splitter.feed(b"klm\nxy\r\n") == ["xy"]
    assert splitter.flush() is None
    # The bound applies to the raw bytes, before control sequences go.
    escaped = LineSplitter(line_limit=10)
    assert escaped.feed(b"\x1b[1mz") == []
    assert escaped.flush() == "z"
    assert escaped.flush() is None


def test_line_splitter_decodes_bad_utf8_without_failing() -> None:
    assert LineSplitter(100).feed(b"caf\xc3\xa9 \xff\n") == ["café \ufffd"]
