"""Helpers for the UI tests: real services on a temp data dir, fixed data, a fixed clock."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from textual.pilot import Pilot

from itop_tui.domain.models import Group, Host
from itop_tui.services.context import Services
from itop_tui.settings import Settings

FIXED_NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CONFIG_LABEL = Path("/etc/itop/itop.yaml")


def fixed_clock() -> datetime:
    """The tests' "now"."""
    return FIXED_NOW


def ago(**delta: float) -> str:
    """An ISO time ``delta`` before :data:`FIXED_NOW`."""
    return (FIXED_NOW - timedelta(**delta)).isoformat(timespec="seconds")


def debian_facts(cpus: int, gib: int) -> dict[str, object]:
    """Facts as discovery stores them for a Debian host."""
    return {
        "hostname": "x",
        "os_name": "Debian GNU/Linux",
        "os_version": "12",
        "kernel": "6.1.0-18-amd64",
        "arch": "x86_64",
        "cpu_count": cpus,
        "cpu_model": "Intel(R) Xeon(R) Gold 6230",
        "mem_total": gib * 1024**3,
        "filesystems": [{"mount": "/", "fstype": "ext4", "size": 40 * 1024**3,
                         "used": 10 * 1024**3, "avail": 30 * 1024**3}],
        "ip_addresses": ["127.0.1.1"],
        "uptime_seconds": 3 * 86400 + 4 * 3600,
        "virtualization": "kvm",
        "init": "systemd",
    }


def fleet() -> list[Host]:
    """A fixed fleet: 6 web hosts (3 production), 3 db hosts (production), 1 staging cache."""
    hosts = []
    for i in range(1, 7):
        hosts.append(
            Host(
                name=f"web{i:02d}",
                address=f"127.0.1.{i}",
                groups=["web", "prod" if i <= 3 else "stage"],
                tags=["nginx"],
                status="production" if i <= 3 else "staging",
                facts=debian_facts(4, 8),
                facts_at=ago(hours=i),
                last_seen=ago(minutes=5 * i),
            )
        )
    for i in range(1, 4):
        hosts.append(
            Host(
                name=f"db{i:02d}",
                address=f"127.0.2.{i}",
                port=2222,
                user="postgres",
                groups=["db", "prod"],
                tags=["postgres"],
                status="production",
                criticality="high",
                facts={**debian_facts(16, 64), "os_name": "Rocky Linux", "os_version": "9.3"},
                facts_at=ago(days=2),
                last_seen=ago(days=2),
                notes="primary in rack 4",
            )
        )
    hosts.append(Host(name="cache01", address="127.0.3.1", groups=["stage"], status="staging"))
    return hosts


def fleet_groups() -> list[Group]:
    """Groups of :func:`fleet`, with ``prod`` and ``stage`` children of ``envs``."""
    return [Group("web"), Group("db"), Group("prod"), Group("stage"), Group("envs", ["prod", "stage"])]


def open_services(
    data_dir: Path,
    hosts: Iterable[Host],
    groups: Iterable[Group] = (),
    *,
    read_only: bool = False,
    settings: Settings | None = None,
) -> Services:
    """Real services on ``data_dir`` holding exactly ``hosts`` and ``groups``.

    ``Services.open`` seeds a fresh data dir with this machine; that record is
    removed so the data (and the snapshots) do not depend on the machine.
    """
    settings = settings or Settings(data_dir=data_dir, config_path=CONFIG_LABEL)
    services = Services.open(settings, origin="tui", read_only=read_only)
    for name in list(services.inventory.load().hosts):
        services.inventory.remove_host(name)
    groups = list(groups)
    if groups:
        services.inventory.upsert_groups(groups)
    services.inventory.upsert_hosts(list(hosts))
    services.actor = "alice"
    return services


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until every worker is done and the screen has processed its messages."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def render_text(renderable: RenderableType, width: int = 160) -> str:
    """Plain text of a Rich renderable, as a terminal of ``width`` would show it."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()
