"""Discovery errors name the host once: the result carries the host's name."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from itop_tui.domain.models import Host
from itop_tui.ops.discovery import FactDiscovery
from itop_tui.services.context import Services
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_host_error_does_not_repeat_its_name(
    trusted_settings: Settings, tmp_path: Path
) -> None:
    services = Services.open(trusted_settings)
    try:
        down = Host(name="deadhost", address="127.0.0.1", port=closed_port())
        services.inventory.upsert_hosts([down])
        [result] = await FactDiscovery(services).discover([down])
    finally:
        await services.close()
    assert not result.ok and result.error
    assert not result.error.startswith("deadhost:"), result.error
    # What `itop inventory discover` prints: the name once, then why.
    assert f"{result.host}: {result.error}".count("deadhost") == 1
