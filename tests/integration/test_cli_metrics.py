"""`itop metrics`, `collect`, `report performance` and `problems` as subprocesses,
against the real sshd fixture, this machine through psutil, real SQLite and
JSON stores."""

from __future__ import annotations

import getpass
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from itop_tui.services.problem_repo import ProblemRepository
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

INTERVAL = "0.5"


class Itop:
    """Runs `python -m itop_tui` on the trusted data dir, with a config naming its ssh files."""

    def __init__(self, tmp_path: Path, settings: Settings) -> None:
        self.data_dir = settings.data_dir
        self.config = tmp_path / "itop.yaml"
        ssh = settings.ssh
        self.config.write_text(
            "ssh:\n"
            f"  config_files: {json.dumps([str(p) for p in ssh.config_files])}\n"
            "  known_hosts_files: []\n"
            f"  identity_files: {json.dumps([str(p) for p in ssh.identity_files])}\n"
            "  use_agent: false\n"
            "  connect_timeout: 5\n"
            "  connect_retries: 0\n"
            "metrics:\n"
            f"  interval: {INTERVAL}\n"
        )

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "itop_tui", "--data-dir", str(self.data_dir), *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ITOP_")}
        env["ITOP_CONFIG"] = str(self.config)
        return env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args), env=self.env(), capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def itop(tmp_path: Path, trusted_settings: Settings) -> Itop:
    """itop with two hosts: `testhost` (the sshd, by its ssh config alias) and `here` (local)."""
    runner = Itop(tmp_path, trusted_settings)
    runner.ok("inventory", "add", "testhost")
    runner.ok("inventory", "add", "here", "--address", "local")
    return runner


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def near(value: float, low: float, high: float, tolerance: float) -> bool:
    """``value`` lies within ``tolerance`` of the range read before and after it."""
    return min(low, high) - tolerance <= value <= max(low, high) + tolerance


def test_metrics_once_over_ssh_and_locally_agree_with_psutil(itop: Itop) -> None:
    load_before = os.getloadavg()[0]
    mem_before = psutil.virtual_memory().percent
    done = itop("metrics", "testhost:here", "--once", "--json", "--interval", INTERVAL)
    load_after = os.getloadavg()[0]
    mem_after = psutil.virtual_memory().percent
    assert done.returncode == 0, done.stderr
    samples = {line["host"]: line for line in json_lines(done.stdout)}
    assert set(samples) == {"testhost", "here"}
    load_tolerance = 0.3 + 0.15 * max(load_before, load_after)
    for host, sample in samples.items():
        assert "state" not in sample, host
        # Exactly what psutil sees on this same machine.
        assert sample["cpu_count"] == psutil.cpu_count(), host
        assert len(sample["cpu_per_core"]) == psutil.cpu_count(), host
        assert sample["mem_total"] == psutil.virtual_memory().total, host
        # Gauges that move: within a small tolerance of the readings around the run.
        assert near(sample["load1"], load_before, load_after, load_tolerance), (host, sample["load1"])
        assert near(sample["mem_percent"], mem_before, mem_after, 3.0), (host, sample["mem_percent"])
        # Two readings were taken, so rates exist and are sane.
        assert sample["cpu_percent"] is not None and 0 <= sample["cpu_percent"] <= 100, host
        assert all(c is not None and 0 <= c <= 100 for c in sample["cpu_per_core"]), host
        assert sample["net_rx_bps"] is not None and sample["net_rx_bps"] >= 0, host
        assert abs(sample["uptime"] - (time.time() - psutil.boot_time())) < 30, host
        assert sample["procs"] > 0, host
        assert abs(sample["epoch"] - time.time()) < 60, host


def test_metrics_once_reports_a_dead_host_and_exits_1(itop: Itop) -> None:
    itop.ok("inventory", "add", "deadhost", "--address", "127.0.0.1", "--port", str(closed_port()))
    done = itop("metrics", "here:deadhost", "--once", "--json", "--interval", INTERVAL)
    assert done.returncode == 1, done.stderr
    lines = {line["host"]: line for line in json_lines(done.stdout)}
    assert lines["deadhost"]["state"] == "unreachable"
    assert lines["deadhost"]["error"]
    assert set(lines["deadhost"]) == {"host", "time", "state", "error"}
    assert lines["here"]["cpu_count"] == psutil.cpu_count()
    assert "deadhost: unreachable" in done.stderr
    assert "1 of 2 hosts failed" in done.stderr

    table = itop("metrics", "here:deadhost", "--once", "--interval", INTERVAL)
    assert table.returncode == 1
    rows = table.stdout.splitlines()
    assert rows[0].split()[:4] == ["HOST", "STATE", "CPU%", "MEM%"]
    assert [row.split()[:2] for row in rows[1:]] == [["here", "up"], ["deadhost", "unreachable"]]


def test_metrics_prints_a_table_per_round_and_reports_a_silent_host(itop: Itop) -> None:
    itop.ok("inventory", "add", "deadhost", "--address", "127.0.0.1", "--port", str(closed_port()))
    done = itop("metrics", "here:deadhost", "--duration", "2.5")
    # A host that never answered makes the run fail, after the others were shown.
    assert done.returncode == 1, done.stderr
    tables = [block.splitlines() for block in done.stdout.strip().split("\n\n")]
    assert len(tables) >= 2
    for rows in tables:
        assert rows[0].split()[:2] == ["HOST", "STATE"]
        assert [row.split()[0] for row in rows[1:]] == ["here", "deadhost"]
    last = {row.split()[0]: row.split() for row in tables[-1][1:]}
    assert last["here"][1] == "up"
    assert float(last["here"][3]) == pytest.approx(psutil.virtual_memory().percent, abs=3)
    assert last["deadhost"][1] == "unreachable"
    assert "itop: deadhost: unreachable: " in done.stderr
    assert "no sample from deadhost" in done.stderr


def test_metrics_streams_json_lines_for_a_duration(itop: Itop) -> None:
    done = itop("metrics", "testhost", "--json", "--duration", "3")
    assert done.returncode == 0, done.stderr
    samples = json_lines(done.stdout)
    # At 0.5 s, three seconds give several samples even on a busy machine.
    assert len(samples) >= 3
    assert {s["host"] for s in samples} == {"testhost"}
    epochs = [s["epoch"] for s in samples]
    assert epochs == sorted(epochs)
    # Only the first sample lacks rates: they need a previous reading.
    assert all(s["cpu_percent"] is not None for s in samples[1:])


def test_collect_then_report_from_a_new_process(itop: Itop) -> None:
    started = time.time()
    collected = itop("collect", "testhost:here", "--duration", "4")
    assert collected.returncode == 0, collected.stderr
    log = collected.stderr.splitlines()
    assert "collecting 2 hosts (testhost:here) every 0.5s" in log[0]
    assert any(line.endswith("testhost state up") for line in log), log
    assert any(line.endswith("here state up") for line in log), log
    assert log[-1].endswith(" stopped")

    # The host leaves the inventory; its history stays in the report.
    itop.ok("inventory", "remove", "here")
    report = json.loads(itop.ok("report", "performance", "--since", "1h", "--format", "json").stdout)
    assert report["hosts"] is None
    stats = {(row["host"], row["metric"]): row for row in report["metrics"]}
    mem = psutil.virtual_memory().percent
    for host in ("testhost", "here"):
        cpu = stats[(host, "cpu_percent")]
        assert 0 <= cpu["min"] <= cpu["avg"] <= cpu["max"] <= 100, cpu
        assert cpu["min"] <= cpu["p95"] <= cpu["max"], cpu
        # About eight samples at 0.5 s in four seconds (the first has no CPU rate).
        assert 1 <= cpu["samples"] <= 10, cpu
        assert abs(stats[(host, "mem_percent")]["avg"] - mem) < 5
        assert stats[(host, "load1")]["max"] >= 0
        assert stats[(host, "procs")]["min"] > 0
    assert report["until"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))

    csv_text = itop.ok("report", "performance", "testhost", "--since", "1h",
                       "--format", "csv").stdout
    csv_lines = csv_text.splitlines()
    assert csv_lines[0].startswith("record,host,metric,min,avg,p95,max,samples")
    assert {line.split(",")[1] for line in csv_lines[1:] if line.startswith("summary,")} == {
        "testhost"}
    markdown = itop.ok("report", "performance", "--since", "1h").stdout
    assert "| testhost | cpu_percent |" in markdown
    assert "| here | cpu_percent |" in markdown

    bad = itop("report", "performance", "--since", "yesterday-ish")
    assert bad.returncode == 2
    assert "yesterday-ish" in bad.stderr


def test_report_without_history_exits_1(tmp_path: Path) -> None:
    runner = Itop(tmp_path, Settings(data_dir=tmp_path / "empty"))
    done = runner("report", "performance")
    assert done.returncode == 1
    assert "no metrics history" in done.stderr


def test_collect_stops_cleanly_on_sigterm(itop: Itop) -> None:
    process = subprocess.Popen(
        itop.argv("collect", "here"), env=itop.env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while not any(line.endswith("here state up") for line in seen):
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([process.stderr], [], [], 1)
            if ready:
                line = process.stderr.readline()
                assert line, f"collect ended early: {seen}"
                seen.append(line.rstrip("\n"))
        time.sleep(1.5)  # a few samples at 0.5 s
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    assert "Traceback" not in rest
    assert rest.splitlines()[-1].endswith("stopped (SIGTERM)")
    # The partial minute was written as the collector stopped.
    report = json.loads(itop.ok("report", "performance", "here", "--format", "json").stdout)
    assert report["hosts"] == ["here"]
    assert any(row["metric"] == "mem_percent" and row["samples"] >= 1 for row in report["metrics"])


def test_problems_list_and_acknowledge(itop: Itop) -> None:
    repo = ProblemRepository.in_data_dir(itop.data_dir)
    opened = time.time() - 120
    problem, created = repo.open("testhost", "cpu_percent", "critical", opened, 97.5, 95)
    assert created
    other, _ = repo.open("here", "mem_percent", "warning", opened, 88, 85)

    listed = json.loads(itop.ok("problems", "list", "--json").stdout)
    assert [(p["id"], p["host"], p["metric"], p["severity"], p["acknowledged_by"])
            for p in listed] == [
        (problem.id, "testhost", "cpu_percent", "critical", None),
        (other.id, "here", "mem_percent", "warning", None)]
    text = itop.ok("problems", "list").stdout.splitlines()
    assert text[0].split()[:4] == ["ID", "HOST", "METRIC", "SEVERITY"]
    assert text[1].split()[:4] == [problem.id, "testhost", "cpu_percent", "critical"]

    acked = itop.ok("problems", "ack", problem.id, "--note", "restarting the batch job")
    assert f"acknowledged {problem.id}" in acked.stdout
    stored = repo.get(problem.id)
    assert stored is not None
    assert stored.acknowledged_by == getpass.getuser()
    assert stored.note == "restarting the batch job"
    listed = json.loads(itop.ok("problems", "list", "--json").stdout)
    assert listed[0]["acknowledged_by"] == getpass.getuser()
    assert listed[0]["note"] == "restarting the batch job"
    events = json.loads(itop.ok("audit", "list", "--action", "problem.acknowledge",
                                "--json").stdout)
    assert [(e["target"], e["detail"]["note"], e["origin"]) for e in events] == [
        (problem.id, "restarting the batch job", "cli")]

    # By number alone, with JSON output.
    number = str(other.number)
    assert json.loads(itop.ok("problems", "ack", number, "--note", "looking", "--json").stdout)[
        "id"] == other.id

    missing = itop("problems", "ack", "PRB-999", "--note", "x")
    assert missing.returncode == 2
    assert "no problem PRB-999" in missing.stderr
    assert itop("problems", "ack", "banana", "--note", "x").returncode == 2
    assert itop("--read-only", "problems", "ack", problem.id, "--note", "x").returncode == 1

    repo.resolve("testhost", "cpu_percent", time.time())
    open_ids = [p["id"] for p in json.loads(itop.ok("problems", "list", "--json").stdout)]
    assert open_ids == [other.id]
    every = json.loads(itop.ok("problems", "list", "--all", "--json").stdout)
    assert [p["resolved"] is not None for p in every] == [True, False]
    resolved = itop("problems", "ack", problem.id, "--note", "x")
    assert resolved.returncode == 2
    assert "resolved" in resolved.stderr


def test_problems_alone_lists_and_ack_needs_a_note(tmp_path: Path) -> None:
    runner = Itop(tmp_path, Settings(data_dir=tmp_path / "data"))
    repo = ProblemRepository.in_data_dir(runner.data_dir)
    problem, _ = repo.open("web1", "cpu_percent", "critical", time.time() - 60, 97.5, 95)
    listed = runner("problems")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == [problem.id, "web1"]
    for note in ([], ["--note", ""], ["--note", " \t"]):
        done = runner("problems", "ack", problem.id, *note)
        assert done.returncode == 2, (note, done.stderr)
        assert "--note" in done.stderr
    stored = repo.get(problem.id)
    assert stored is not None and stored.acknowledged_by is None
    assert runner("problems", "ack", problem.id, "--note", "on it").returncode == 0


@pytest.mark.parametrize("interval", ["inf", "1e400", "nan", "5000", "0.01", "0"])
def test_metrics_interval_out_of_range_is_a_usage_error(tmp_path: Path, interval: str) -> None:
    runner = Itop(tmp_path, Settings(data_dir=tmp_path / "data"))
    done = runner("metrics", "--once", "--interval", interval)
    assert done.returncode == 2
    assert f"--interval: must be from 0.05 to 3600 seconds, got {interval}" in done.stderr
    assert str(runner.config) not in done.stderr
