"""FleetRunner and FactDiscovery against the real sshd fixture and this machine."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from itop_tui.domain.facts import FACT_KEYS
from itop_tui.domain.models import Host
from itop_tui.ops.discovery import DiscoveryResult, FactDiscovery
from itop_tui.ops.fleet import FleetRunner
from itop_tui.services.context import ReadOnlyError, Services, this_machine
from itop_tui.services.transport import HostKeyChanged, RunResult
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssh_hosts() -> list[Host]:
    """The fixture's ssh config aliases as inventory hosts (the name is the alias)."""
    return [Host(name="testhost"), Host(name="jumped")]


async def open_services(settings: Settings, **kwargs: Any) -> Services:
    services = Services.open(settings, **kwargs)
    services.inventory.upsert_hosts(ssh_hosts())
    return services


@pytest.fixture
async def services(trusted_settings: Settings) -> AsyncIterator[Services]:
    services = await open_services(dataclasses.replace(trusted_settings))
    try:
        yield services
    finally:
        await services.close()


def audit_of(services: Services, action: str) -> list[tuple[str, str, Any]]:
    return [(e.target, e.result, e.detail) for e in services.audit.events() if e.action == action]


async def test_run_on_ssh_jump_and_local_hosts(services: Services) -> None:
    local = this_machine()
    hosts = [*ssh_hosts(), local]
    started: list[str] = []
    finished: list[str] = []
    runner = FleetRunner(services)
    results = await runner.run(
        hosts, "echo $((20+22)); hostname",
        on_start=lambda h: started.append(h.name),
        on_result=lambda r: finished.append(r.host),
    )
    assert [r.host for r in results] == ["testhost", "jumped", local.name]
    expected = f"42\n{socket.gethostname()}\n"
    for result in results:
        assert (result.ok, result.exit_status, result.stdout, result.error) == (True, 0, expected, None)
    assert sorted(started) == sorted(finished) == sorted(h.name for h in hosts)
    events = audit_of(services, "run")
    assert sorted(t for t, _, _ in events) == sorted(h.name for h in hosts)
    for _target, outcome, detail in events:
        assert outcome == "ok"
        assert detail["command"] == "echo $((20+22)); hostname"
        assert detail["exit_status"] == 0 and detail["error"] is None
        assert detail["duration"] >= 0 and detail["truncated"] is False
    stored = services.inventory.load().hosts
    assert all(stored[h.name].last_seen for h in hosts)
    assert services.audit.verify().ok


async def test_forks_bound_the_hosts_running_at_once(services: Services) -> None:
    hosts = [*ssh_hosts(), Host(name="testhost2"), this_machine()]
    services.inventory.upsert_hosts([hosts[2]])
    running = 0
    peak = 0

    def start(_host: Host) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)

    def done(_result: RunResult) -> None:
        nonlocal running
        running -= 1

    results = await FleetRunner(services).run(hosts, "sleep 0.4", forks=2, on_start=start, on_result=done)
    assert all(r.ok for r in results), [r.error for r in results]
    assert peak == 2


async def test_failures_are_per_host(services: Services) -> None:
    down = Host(name="down", address="127.0.0.1", port=closed_port())
    services.inventory.upsert_hosts([down])
    results = await FleetRunner(services).run(
        [down, Host(name="testhost")], "exit 3", timeout=10
    )
    by_host = {r.host: r for r in results}
    assert by_host["down"].exit_status is None and by_host["down"].error
    assert by_host["testhost"].exit_status == 3 and by_host["testhost"].error is None
    assert sorted((t, o) for t, o, _ in audit_of(services, "run")) == [
        ("down", "failed"), ("testhost", "failed"),
    ]
    stored = services.inventory.load().hosts
    assert stored["down"].last_seen is None
    assert stored["testhost"].last_seen is not None  # it answered, with exit 3


async def test_timeout_is_a_failed_result(services: Services) -> None:
    started = time.monotonic()
    (result,) = await FleetRunner(services).run([Host(name="testhost")], "sleep 20", timeout=1)
    assert time.monotonic() - started < 10
    assert not result.ok and result.exit_status is None and result.error


async def test_unknown_key_is_reported_then_trusted(trusted_settings: Settings, tmp_path: Path,
                                                     sshd: Any) -> None:
    settings = dataclasses.replace(trusted_settings, data_dir=tmp_path / "fresh")
    services = await open_services(settings)
    try:
        runner = FleetRunner(services)
        (result,) = await runner.run([Host(name="testhost")], "true")
        assert not result.ok
        assert sshd.host_key_fingerprint() in (result.error or "")
        assert "itop trust testhost" in (result.error or "")
        unknown = runner.unknown_keys["testhost"]
        assert unknown.fingerprint == sshd.host_key_fingerprint()
        key_host = getattr(unknown, "key_host", unknown.host)
        assert services.trust_host_key(key_host, unknown.port, unknown.key_data) is True
        assert audit_of(services, "host.trust")[0][2]["fingerprint"] == sshd.host_key_fingerprint()
        (again,) = await FleetRunner(services).run([Host(name="testhost")], "true")
        assert again.ok, again.error
    finally:
        await services.close()


async def test_changed_key_is_refused(trusted_settings: Settings, tmp_path: Path, sshd: Any) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519")
    other_line = other.export_public_key("openssh").decode().split()
    data_dir = tmp_path / "changed"
    data_dir.mkdir()
    (data_dir / "known_hosts").write_text(
        f"[127.0.0.1]:{sshd.port} {other_line[0]} {other_line[1]}\n"
    )
    settings = dataclasses.replace(trusted_settings, data_dir=data_dir)
    services = await open_services(settings)
    try:
        runner = FleetRunner(services)
        (result,) = await runner.run([Host(name="testhost")], "true")
        assert not result.ok
        changed = runner.changed_keys["testhost"]
        assert changed.offered == sshd.host_key_fingerprint()
        assert changed.known == other.get_fingerprint("sha256")
        assert changed.known in (result.error or "") and changed.offered in (result.error or "")
        with pytest.raises(HostKeyChanged):
            services.trust_host_key("127.0.0.1", sshd.port, sshd.host_key_data())
    finally:
        await services.close()


# A command that writes: it ends when its channel closes. (A silent one would
# need sshd to honour the TERM signal request, which it refuses for root
# sessions without post-auth privilege separation, as in this test setup.)
LOOP = "while :; do echo itop-cancel-test; sleep 0.1; done"


async def test_cancelling_stops_launching_and_audits_running_hosts(services: Services) -> None:
    runner = FleetRunner(services)
    started = asyncio.Event()
    task = asyncio.create_task(runner.run(
        [Host(name="testhost"), this_machine()], LOOP,
        forks=1, on_start=lambda _h: started.set(),
    ))
    await asyncio.wait_for(started.wait(), 20)
    await asyncio.sleep(0.5)  # the remote command is running now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = audit_of(services, "run")
    # Only the running host is audited; the local host was never started.
    assert [(target, outcome) for target, outcome, _ in events] == [("testhost", "cancelled")]
    assert events[0][2]["error"] == "cancelled" and events[0][2]["exit_status"] is None
    # Neither the cancelled remote command nor the never-started local one runs.
    deadline = time.monotonic() + 10
    while marked_processes() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert marked_processes() == []


def marked_processes() -> list[int]:
    """Pids of processes running the cancel test's command."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "itop-cancel-test" in cmdline and "python" not in cmdline:
            found.append(proc.pid)
    return found


async def test_read_only_refuses_runs_and_discovery(trusted_settings: Settings) -> None:
    services = await open_services(trusted_settings)
    services.read_only = True
    try:
        with pytest.raises(ReadOnlyError, match="read-only"):
            await FleetRunner(services).run([Host(name="testhost")], "true")
        with pytest.raises(ReadOnlyError, match="read-only"):
            await FactDiscovery(services).discover([Host(name="testhost")])
        assert audit_of(services, "run") == []
    finally:
        await services.close()


async def test_discovery_stores_facts_and_reports_unreachable_hosts(services: Services) -> None:
    local = this_machine()
    down = Host(name="down", address="127.0.0.1", port=closed_port())
    services.inventory.upsert_hosts([down])
    seen: list[DiscoveryResult] = []
    results = await FactDiscovery(services).discover(
        [*ssh_hosts(), local, down], on_result=seen.append
    )
    assert len(seen) == 4
    by_host = {r.host: r for r in results}
    assert not by_host["down"].ok and by_host["down"].error and by_host["down"].facts is None
    stored = services.inventory.load().hosts
    for name in ("testhost", "jumped", local.name):
        result = by_host[name]
        assert result.ok, result.error
        facts = result.facts
        assert facts is not None and list(facts) == list(FACT_KEYS)
        # Same machine behind every alias: the same numbers psutil gives.
        assert facts["cpu_count"] == psutil.cpu_count()
        assert facts["mem_total"] == psutil.virtual_memory().total
        assert facts["hostname"] == socket.gethostname()
        assert any(fs["mount"] == "/" for fs in facts["filesystems"])
        assert stored[name].facts == facts
        assert stored[name].facts_at == result.at
    assert stored["down"].facts == {}
    assert sorted((t, o) for t, o, _ in audit_of(services, "discover")) == sorted(
        [("testhost", "ok"), ("jumped", "ok"), (local.name, "ok"), ("down", "failed")]
    )


async def test_each_result_is_audited_on_disk_before_it_is_reported(services: Services) -> None:
    hosts = [dataclasses.replace(this_machine(), name=f"local{i}") for i in range(12)]
    hosts.append(Host(name="testhost"))
    on_disk_when_reported: dict[str, bool] = {}

    def reported(result: RunResult) -> None:
        # A fresh reader of the file: only what was written and fsynced counts.
        stored = {e.target for e in services.audit.events() if e.action == "run"}
        on_disk_when_reported[result.host] = result.host in stored

    results = await FleetRunner(services).run(
        hosts, "echo audited", forks=13, on_result=reported
    )
    assert all(r.ok for r in results), [r.error for r in results]
    assert on_disk_when_reported == {h.name: True for h in hosts}
    events = audit_of(services, "run")
    assert sorted(t for t, _, _ in events) == sorted(h.name for h in hosts)
    assert services.audit.verify().ok
