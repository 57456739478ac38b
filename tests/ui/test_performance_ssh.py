"""The Performance pane on a real fleet: hosts over the test sshd (one through a
ProxyJump), this machine, and a host that is down.

Every live host comes up with a CPU figure (its second sample), the dead one
shows as unreachable without holding the others up, and the drill-down of an
SSH host fetches its top processes with ``ps`` over SSH, audited.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from perf_fixtures import wait_until
from ui_fixtures import settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.screens.host_drilldown import HostDrilldown
from itop_tui.screens.performance import PerformanceScreen
from itop_tui.services.context import Services
from itop_tui.settings import MetricsSettings, Settings

pytestmark = pytest.mark.integration

SIZE = (160, 48)
SSH_TIMEOUT = 90.0
LIVE = ("testhost", "testhost2", "jumped", "here")


async def test_a_fleet_comes_up_live_and_drills_down_over_ssh(trusted_settings: Settings) -> None:
    settings = replace(trusted_settings, metrics=MetricsSettings(interval=1.0))
    services = Services.open(settings, origin="tui")
    services.inventory.upsert_hosts([
        Host(name="testhost", ssh_alias="testhost"),
        Host(name="testhost2", ssh_alias="testhost2"),
        Host(name="jumped", ssh_alias="jumped"),
        Host(name="here", address="local"),
        Host(name="dead", address="127.0.0.1", port=1),
    ])
    app = ItopApp(services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, PerformanceScreen), what="pane")
        screen = app.screen
        assert isinstance(screen, PerformanceScreen)
        table = screen.table

        def live(name: str) -> bool:
            cells = table.cell_texts(name)
            return cells["state"] == "up" and cells["cpu"].isdigit()

        await wait_until(pilot, lambda: all(live(name) for name in LIVE)
                         and table.cell_texts("dead")["state"] == "unreachable",
                         what="every host live, the dead one unreachable", timeout=SSH_TIMEOUT)
        for name in LIVE:
            assert 0 <= float(table.cell_texts(name)["cpu"]) <= 100, name

        assert table.move_to("testhost")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HostDrilldown), what="drill-down")
        drill = app.screen
        assert isinstance(drill, HostDrilldown) and drill.host.name == "testhost"
        await pilot.press("p")
        await wait_until(pilot, lambda: drill.processes is not None, what="processes",
                         timeout=SSH_TIMEOUT)
        result = drill.processes
        assert result is not None and result.error is None and result.by_cpu
    reads = [(e.action, e.target, e.result) for e in services.audit.events()
             if e.action in ("processes.top", "metrics.watch", "metrics.unwatch")]
    assert ("processes.top", "testhost", "ok") in reads
    assert [a for a, _t, _r in reads if a.startswith("metrics.")] == [
        "metrics.watch", "metrics.unwatch"]
    await services.close()

