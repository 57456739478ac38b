"""The audit log on real files: the hash chain, tamper detection, constant-time appends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itop_tui.services.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditError,
    AuditLog,
    AuditQueue,
    event_hash,
    read_last_line,
    redact,
)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def filled(path: Path, count: int) -> AuditLog:
    log = AuditLog(path, actor="alice", origin="cli")
    for i in range(count):
        log.append("run", f"host:web{i:02}", {"command": "uptime", "exit": 0})
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_events_are_chained_and_verify(log_path: Path) -> None:
    log = filled(log_path, 4)
    last = log.append("inventory.remove", "host:db1", result="failed")
    assert last.seq == 5 and last.result == "failed" and last.actor == "alice"
    events = list(log.events())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
    for event in events:
        assert event.hash == event_hash(event.to_dict())
        assert event.time.tzinfo is not None
    assert events[-1] == last
    stored = json.loads(lines(log_path)[-1])
    assert stored == last.to_dict()
    result = log.verify()
    assert (result.ok, result.checked, result.broken_line) == (True, 5, None)


def test_a_missing_log_verifies_as_empty(log_path: Path) -> None:
    result = AuditLog(log_path, "alice", "cli").verify()
    assert (result.ok, result.checked, result.broken_line) == (True, 0, None)
    assert list(AuditLog(log_path, "alice", "cli").events()) == []


@pytest.mark.parametrize("k", [1, 3, 6])
def test_editing_one_byte_of_line_k_is_found_at_line_k(log_path: Path, k: int) -> None:
    log = filled(log_path, 6)
    content = lines(log_path)
    line = content[k - 1]
    at = line.index(b"host:web") + len(b"host:web")
    content[k - 1] = line[:at] + b"9" + line[at + 1 :]  # still valid JSON
    log_path.write_bytes(b"".join(content))
    result = log.verify()
    assert (result.ok, result.broken_line, result.checked) == (False, k, k - 1)
    assert f"line {k}" in result.message and "modified" in result.message


def test_a_line_that_is_no_longer_json_is_named(log_path: Path) -> None:
    log = filled(log_path, 4)
    content = lines(log_path)
    content[2] = content[2][:30] + b"\n"
    log_path.write_bytes(b"".join(content))
    result = log.verify()
    assert (result.ok, result.broken_line) == (False, 3)
    assert "not valid JSON" in result.message
    with pytest.raises(AuditError, match="line 3"):
        list(log.events())


def test_a_rehashed_edit_still_breaks_the_next_link(log_path: Path) -> None:
    log = filled(log_path, 4)
    content = lines(log_path)
    event = json.loads(content[1])
    event["target"] = "host:innocent"
    event["hash"] = event_hash(event)
    content[1] = json.dumps(event).encode() + b"\n"
    log_path.write_bytes(b"".join(content))
    result = log.verify()
    assert (result.ok, result.broken_line) == (False, 3)
    assert "chain is broken" in result.message


@pytest.mark.parametrize("deleted", [1, 3])
def test_deleting_a_line_is_detected(log_path: Path, deleted: int) -> None:
    log = filled(log_path, 5)
    content = lines(log_path)
    del content[deleted - 1]
    log_path.write_bytes(b"".join(content))
    result = log.verify()
    assert (result.ok, result.broken_line) == (False, deleted)


def test_reordering_lines_is_detected(log_path: Path) -> None:
    log = filled(log_path, 5)
    content = lines(log_path)
    content[1], content[2] = content[2], content[1]
    log_path.write_bytes(b"".join(content))
    result = log.verify()
    assert (result.ok, result.broken_line) == (False, 2)


def test_detail_secrets_are_redacted(log_path: Path) -> None:
    log = AuditLog(log_path, "alice", "tui")
    event = log.append(
        "backup.run",
        "BKJ-1",
        {
            "Password": "hunter2",
            "env": {"RESTIC_PASSWORD": "s3", "api_key": "k", "path": Path("/srv")},
            "steps": [{"sudo_passphrase": "p", "name": "step1"}],
            "tokens": {"a"},
            "ratio": float("nan"),
        },
    )
    assert event.detail == {
        "Password": "***",
        "env": {"RESTIC_PASSWORD": "***", "api_key": "***", "path": "/srv"},
        "steps": [{"sudo_passphrase": "***", "name": "step1"}],
        "tokens": "***",
        "ratio": "nan",
    }
    assert b"hunter2" not in log_path.read_bytes()
    assert log.verify().ok
    assert redact({"secret_key": 1, "ok": (1, 2)}) == {"secret_key": "***", "ok": [1, 2]}


def test_events_since(log_path: Path) -> None:
    log = filled(log_path, 3)
    events = list(log.events())
    assert list(log.events(since=events[1].time)) == events[1:]
    assert list(log.events(since=datetime.now(UTC) + timedelta(hours=1))) == []
    naive = events[2].time.replace(tzinfo=None)
    assert list(log.events(since=naive)) == events[2:]


def test_an_interrupted_last_line_stops_appends_with_a_clear_message(log_path: Path) -> None:
    log = filled(log_path, 2)
    with log_path.open("ab") as handle:
        handle.write(b'{"seq": 3, "at": "20')
    with pytest.raises(AuditError, match="last line is incomplete"):
        log.append("run", "host:x")
    assert log.verify().broken_line == 3


def test_read_last_line_reads_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    long_line = b"x" * 10_000 + b"\n"
    for content, expected in (
        (b"", None),
        (b"one\n", b"one\n"),
        (b"one", b"one"),
        (b"a\nb\n", b"b\n"),
        (b"a\n" + long_line, long_line),
        (long_line + long_line[:-1], long_line[:-1]),
        (b"\n", b"\n"),
    ):
        path.write_bytes(content)
        with path.open("rb") as handle:
            assert read_last_line(handle) == expected, content[:20]


def bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def write_chain(path: Path, count: int) -> None:
    """A valid log of ``count`` events, built without fsyncs to be quick."""
    previous = GENESIS_HASH
    with path.open("wb") as handle:
        for seq in range(1, count + 1):
            event = {
                "seq": seq,
                "at": "2024-01-01T00:00:00.000000+00:00",
                "actor": "bob",
                "origin": "cli",
                "action": "run",
                "target": f"host:h{seq}",
                "detail": {"command": "uptime", "output": "x" * 200},
                "result": "ok",
                "prev_hash": previous,
            }
            event["hash"] = previous = event_hash(event)
            handle.write(json.dumps(event, sort_keys=True).encode() + b"\n")


@pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes read"
)
def test_append_reads_only_the_tail_whatever_the_log_length(tmp_path: Path) -> None:
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    write_chain(small, 10)
    write_chain(large, 20_000)
    assert large.stat().st_size > 8_000_000
    read_per_append = {}
    for path in (small, large):
        log = AuditLog(path, "alice", "cli")
        log.append("warm-up", "x")
        before = bytes_read_by_this_process()
        log.append("run", "host:h1", {"command": "true"})
        read_per_append[path.name] = bytes_read_by_this_process() - before
    assert read_per_append["large.log"] <= 16_384, read_per_append
    assert read_per_append["large.log"] <= read_per_append["small.log"] + 4096, read_per_append
    result = AuditLog(large, "alice", "cli").verify()
    assert result.ok and result.checked == 20_002


def test_concurrent_appends_from_two_processes_keep_one_valid_chain(log_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys, time
        from itop_tui.services.audit import AuditLog
        log = AuditLog(sys.argv[1], actor=sys.argv[2], origin="cli")
        print("ready", flush=True)
        while not os.path.exists(sys.argv[4]):
            time.sleep(0.002)
        for i in range(int(sys.argv[3])):
            log.append("run", f"host:{sys.argv[2]}-{i}")
        """
    )
    per_process = 150
    go_file = log_path.with_name("go")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(log_path), actor, str(per_process), str(go_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for actor in ("p1", "p2")
    ]
    for proc in procs:  # both running before either appends, so the appends overlap
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    go_file.touch()
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    log = AuditLog(log_path, "checker", "cli")
    result = log.verify()
    assert (result.ok, result.checked) == (True, 2 * per_process), result.message
    events = list(log.events())
    assert [e.seq for e in events] == list(range(1, 2 * per_process + 1))
    assert {e.target for e in events} == {
        f"host:p{n}-{i}" for n in (1, 2) for i in range(per_process)
    }


def test_append_many_chains_a_batch_after_earlier_events(log_path: Path) -> None:
    log = filled(log_path, 2)
    written = log.append_many(
        [
            AuditEntry("run", "web1", {"command": "uptime", "password": "hunter2"}),
            AuditEntry("run", "web2", {"command": "uptime"}, result="failed"),
            AuditEntry("run", "web3"),
        ]
    )
    assert [e.seq for e in written] == [3, 4, 5]
    assert written[0].detail == {"command": "uptime", "password": "***"}
    assert [e.result for e in written] == ["ok", "failed", "ok"]
    assert written[1].prev_hash == written[0].hash and written[2].prev_hash == written[1].hash
    stored = list(log.events())
    assert stored[2:] == written
    assert written[0].prev_hash == stored[1].hash
    assert b"hunter2" not in log_path.read_bytes()
    result = log.verify()
    assert (result.ok, result.checked) == (True, 5), result.message
    # The next single append continues the chain after the batch.
    assert log.append("run", "web4").seq == 6
    assert log.append_many([]) == []
    assert log.verify().checked == 6


def test_append_many_from_threads_and_another_process_keeps_one_chain(log_path: Path) -> None:
    """Batches from worker threads (as a fan-out writes them) and a process's appends interleave."""
    script = textwrap.dedent(
        """
        import sys
        from itop_tui.services.audit import AuditLog
        log = AuditLog(sys.argv[1], actor="other", origin="cli")
        for i in range(int(sys.argv[2])):
            log.append("run", f"other-{i}")
        """
    )
    other = subprocess.Popen([sys.executable, "-c", script, str(log_path), "60"])
    log = AuditLog(log_path, actor="alice", origin="cli")

    def batches(thread: int) -> list[list[int]]:
        seqs = []
        for batch in range(15):
            events = log.append_many(
                [AuditEntry("run", f"t{thread}-{batch}-{i}") for i in range(4)]
            )
            seqs.append([e.seq for e in events])
        return seqs

    with ThreadPoolExecutor(max_workers=3) as pool:
        per_thread = list(pool.map(batches, range(3)))
    assert other.wait(timeout=60) == 0
    result = log.verify()
    assert (result.ok, result.checked) == (True, 3 * 15 * 4 + 60), result.message
    for seqs in (s for thread in per_thread for s in thread):
        # A batch is never split by another writer's event.
        assert seqs == list(range(seqs[0], seqs[0] + 4))


async def test_audit_queue_writes_what_was_queued_meanwhile_as_one_batch(log_path: Path) -> None:
    log = filled(log_path, 1)
    queue = AuditQueue(log)
    # Queued in one step of the loop: the writer starts after, and takes them all.
    futures = [queue.add("run", f"web{i}", {"i": i}) for i in range(40)]
    events = await asyncio.gather(*futures)
    assert [e.seq for e in events] == list(range(2, 42))
    assert [e.target for e in events] == [f"web{i}" for i in range(40)]
    assert queue.batches == 1
    # Each resolved future's event is on disk already.
    assert list(log.events())[1:] == events
    later = await queue.add("run", "web40")
    assert (later.seq, queue.batches) == (42, 2)
    await queue.drain()
    result = log.verify()
    assert (result.ok, result.checked) == (True, 42), result.message


async def test_audit_queue_reports_a_failed_write_to_each_waiter(log_path: Path) -> None:
    log = filled(log_path, 1)
    with log_path.open("ab") as handle:
        handle.write(b'{"seq": 2')  # an interrupted write: appends must refuse
    queue = AuditQueue(log)
    futures = [queue.add("run", "web1"), queue.add("run", "web2")]
    for future in futures:
        with pytest.raises(AuditError, match="incomplete"):
            await future
    await queue.drain()


async def test_audit_queue_drain_writes_the_rest_when_cancelled(log_path: Path) -> None:
    log = AuditLog(log_path, actor="alice", origin="cli")
    queue = AuditQueue(log)
    queued = asyncio.Event()

    async def run() -> None:
        queue.add("run", "web1")
        queued.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            queue.add("run", "web2")  # e.g. a host reported cancelled
            await queue.drain()

    task = asyncio.create_task(run())
    await queued.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.target for e in log.events()] == ["web1", "web2"]
    assert log.verify().ok
