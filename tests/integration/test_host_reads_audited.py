"""Reading a host is an action on it: collection and ``ps`` are audited.

Against the real test sshd: the monitor audits the start and the end of
collection once for all its hosts, and fetching top processes over SSH
audits the command's outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from itop_tui.domain.models import Host
from itop_tui.ops.fleet_monitor import collect_once
from itop_tui.ops.top_processes import top_processes
from itop_tui.services.audit import AuditLog
from itop_tui.services.transport_pool import TransportPool
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

TESTHOST = Host(name="testhost", ssh_alias="testhost")
LOCAL = Host(name="here", address="local")


@pytest.fixture
async def pool(trusted_settings: Settings) -> AsyncIterator[TransportPool]:
    transport_pool = TransportPool(trusted_settings)
    yield transport_pool
    await transport_pool.close()


async def test_collection_is_audited_once_per_monitor(pool: TransportPool, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", actor="alice", origin="cli")
    results = await collect_once([TESTHOST, LOCAL], pool, interval=0.5, timeout=60, audit=audit)
    assert results["testhost"][1] is not None
    events = list(audit.events())
    assert [e.action for e in events] == ["metrics.watch", "metrics.unwatch"]
    assert events[0].detail["hosts"] == ["here", "testhost"]
    assert events[0].detail["count"] == 2
    assert audit.verify().ok


async def test_top_processes_over_ssh_is_audited(pool: TransportPool, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", actor="alice", origin="tui")
    result = await top_processes(TESTHOST, pool.for_host(TESTHOST), timeout=60, audit=audit)
    assert result.error is None and (result.by_cpu or result.note) and result.by_memory
    [event] = list(audit.events())
    assert (event.action, event.target, event.result) == ("processes.top", "testhost", "ok")
    assert event.detail["exit_status"] == 0

    dead = Host(name="dead", address="127.0.0.1", port=1)
    failed = await top_processes(dead, pool.for_host(dead), timeout=30, audit=audit)
    assert failed.error is not None
    last = list(audit.events())[-1]
    assert (last.action, last.target, last.result) == ("processes.top", "dead", "failed")
    assert last.detail["error"] == failed.error
