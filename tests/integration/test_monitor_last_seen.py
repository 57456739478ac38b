"""The monitor records which hosts answered: the Inventory's "last seen" follows
live monitoring, over the real test sshd, and a read-only itop writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from itop_tui.domain.models import Host
from itop_tui.domain.thresholds import DEFAULT_THRESHOLDS
from itop_tui.ops.fleet_monitor import FleetMonitor, MonitorConfig, SampleUpdate, StateUpdate
from itop_tui.services.context import Services

pytestmark = pytest.mark.integration

NO_THRESHOLDS: dict[str, object] = dict.fromkeys(DEFAULT_THRESHOLDS)
HOSTS = [Host(name="testhost"), Host(name="dead", address="127.0.0.1", port=1)]


@pytest.fixture
def services(trusted_settings: Any) -> Iterator[Services]:
    services = Services.open(trusted_settings)
    services.inventory.upsert_hosts(HOSTS)
    yield services


async def watch_until_sampled(monitor: FleetMonitor, host: str, dead: str) -> None:
    """Run ``monitor`` until ``host`` sent a sample and ``dead`` was found unreachable."""
    updates = monitor.subscribe()
    sampled = failed = False
    async with asyncio.timeout(60):
        while not (sampled and failed):
            update = await updates.get()
            sampled |= isinstance(update, SampleUpdate) and update.host == host
            failed |= (isinstance(update, StateUpdate) and update.host == dead
                       and update.status.state == "unreachable")


async def stop(monitor: FleetMonitor, services: Services) -> None:
    """Stop ``monitor`` (which records who answered) and close the connections."""
    try:
        await monitor.stop()
    finally:
        await services.transports.close()


async def test_hosts_that_answered_are_recorded_seen_and_others_are_not(
    services: Services,
) -> None:
    assert services.inventory.get_host("testhost").last_seen is None  # type: ignore[union-attr]
    before = datetime.now().astimezone()
    config = MonitorConfig(interval=0.5, thresholds=NO_THRESHOLDS)
    monitor = FleetMonitor.for_services(services, services.inventory.load().hosts.values(),
                                        config)
    await monitor.start()
    try:
        await watch_until_sampled(monitor, "testhost", "dead")
    finally:
        await stop(monitor, services)  # records who answered, as every SEEN_RECORD_SECONDS
    hosts = services.inventory.load().hosts
    seen = hosts["testhost"].last_seen
    assert seen is not None and datetime.fromisoformat(seen) >= before.replace(microsecond=0)
    assert hosts["dead"].last_seen is None
    actions = [e.action for e in services.audit.events()]
    assert "metrics.watch" in actions and "metrics.unwatch" in actions


async def test_a_host_removed_while_watched_is_skipped(services: Services) -> None:
    config = MonitorConfig(interval=0.5, thresholds=NO_THRESHOLDS)
    monitor = FleetMonitor.for_services(services, HOSTS, config)
    notices: list[str] = []
    monitor.add_listener(lambda update: notices.append(repr(update)))
    await monitor.start()
    try:
        await watch_until_sampled(monitor, "testhost", "dead")
        services.inventory.remove_host("testhost")  # another itop removed it meanwhile
    finally:
        await stop(monitor, services)
    assert "testhost" not in services.inventory.load().hosts
    assert not [n for n in notices if "last seen" in n]


async def test_a_read_only_itop_records_nothing(services: Services) -> None:
    viewer = replace(services, read_only=True)
    config = MonitorConfig(interval=0.5, thresholds=NO_THRESHOLDS)
    monitor = FleetMonitor.for_services(viewer, HOSTS, config)
    await monitor.start()
    try:
        await watch_until_sampled(monitor, "testhost", "dead")
    finally:
        await stop(monitor, services)
    assert services.inventory.load().hosts["testhost"].last_seen is None
