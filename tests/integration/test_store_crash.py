"""The store against SIGKILL mid-write and against a concurrent writer process.

Writers are real processes (``store_writer.py``) on a real file; a writer
prints a line only after the write it names has been committed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from itop_tui.domain.models import Host
from itop_tui.services.inventory_repo import InventoryRepository
from itop_tui.services.store import JsonStore

WRITER = Path(__file__).with_name("store_writer.py")
KILL_ITERATIONS = 30
SEED_HOSTS = 2000  # makes every commit a ~0.5 MB rewrite, a wide window to be killed in


def start_writer(
    store: Path, prefix: str, count: int, go_file: Path | None = None
) -> subprocess.Popen[str]:
    args = [sys.executable, str(WRITER), str(store), prefix, str(count)]
    if go_file is not None:
        args.append(str(go_file))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"writer did not start: {line!r} {err}")


def committed(output: str) -> tuple[set[str], int]:
    """Hosts and the last counter value the writer reported as committed."""
    hosts: set[str] = set()
    counter = -1
    for line in output.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # cut off by the kill: not reported
        kind, _, value = line.strip().partition(" ")
        if kind == "host":
            hosts.add(value)
        elif kind == "counter":
            counter = int(value)
    return hosts, counter


def seed(store: Path) -> None:
    repo = InventoryRepository(JsonStore(store))
    repo.upsert_hosts(
        [
            Host(name=f"seed-{i}", address=f"127.0.{i // 250}.{i % 250 + 1}")
            for i in range(SEED_HOSTS)
        ]
    )


def test_sigkill_at_random_moments_never_loses_a_committed_write(tmp_path: Path) -> None:
    store_path = tmp_path / "inventory.json"
    seed(store_path)
    rng = random.Random()
    expected: set[str] = {f"seed-{i}" for i in range(SEED_HOSTS)}
    kills_after_commits = 0
    for iteration in range(KILL_ITERATIONS):
        prefix = f"w{iteration}"
        proc = start_writer(store_path, prefix, 10_000)
        wait_ready(proc)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"writer ended on its own: {err}"
        hosts, counter = committed(out)
        kills_after_commits += bool(hosts)
        expected |= hosts

        store = JsonStore(store_path)  # raises StoreError if the file does not load
        assert store.recovery_message is None, store.recovery_message
        inventory = InventoryRepository(store).load()
        missing = expected - set(inventory.hosts)
        assert not missing, f"iteration {iteration}: committed hosts lost: {sorted(missing)[:5]}"
        assert inventory.hosts[f"{prefix}-counter"].vars["n"] >= counter

    # The kills must have landed while writes were going on, or the test proved nothing.
    assert kills_after_commits >= KILL_ITERATIONS // 2

    # A commit clears the temp files that killed writers left behind.
    InventoryRepository(JsonStore(store_path)).mark_seen("seed-0", "2024-01-01T00:00:00+00:00")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert leftovers == []


def test_two_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    store_path = tmp_path / "inventory.json"
    seed(store_path)
    go_file = tmp_path / "go"
    per_writer = 60
    writers = [start_writer(store_path, prefix, per_writer, go_file) for prefix in ("a", "b")]
    for proc in writers:
        wait_ready(proc)
    go_file.touch()
    for proc in writers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.rstrip().endswith("done")

    inventory = InventoryRepository(JsonStore(store_path)).load()
    for prefix in ("a", "b"):
        names = {f"{prefix}-{i}" for i in range(per_writer)}
        assert names <= set(inventory.hosts), sorted(names - set(inventory.hosts))[:5]
        assert inventory.hosts[f"{prefix}-counter"].vars["n"] == per_writer - 1
    assert len(inventory.hosts) == SEED_HOSTS + 2 * (per_writer + 1)
    assert os.path.exists(f"{store_path}.bak")
