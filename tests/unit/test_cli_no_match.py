"""`itop inventory list SELECTOR` when the selector matches no host: exit 2, one message.

docs/cli.md promises exit 2 for "a selector that matches no host", as `itop
run` and `itop inventory discover` do; listing a whole empty inventory is
not an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import ItopCli

from itop_tui.services.context import this_machine


@pytest.fixture
def itop(tmp_path: Path) -> ItopCli:
    config = tmp_path / "itop.yaml"
    config.write_text("ssh:\n  config_files: []\n  known_hosts_files: []\n  use_agent: false\n")
    cli = ItopCli(config, tmp_path / "data", timeout=60)
    cli.ok("inventory", "add", "web1", "--address", "local", "--status", "production",
           "--tag", "nginx")
    return cli


@pytest.mark.parametrize("selector", ["nosuchhost", "tag:nginx&status:production",
                                      "tag:nginx:&status:staging", "web9*"])
def test_a_selector_matching_nothing_exits_2(itop: ItopCli, selector: str) -> None:
    for extra in ((), ("--json",)):
        done = itop("inventory", "list", selector, *extra)
        assert done.returncode == 2, (selector, extra, done.stdout, done.stderr)
        assert done.stdout == ""
        assert done.stderr == (f"itop: selector {selector!r} matches no host "
                               "(see `itop inventory list`)\n")


def test_a_matching_selector_and_an_empty_inventory_exit_0(itop: ItopCli) -> None:
    listed = itop.ok("inventory", "list", "tag:nginx:&status:production")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["NAME", "web1"]
    itop.ok("inventory", "remove", "web1")
    itop.ok("inventory", "remove", this_machine().name)  # the seeded host
    empty = itop.ok("inventory", "list")
    assert empty.stdout == "no hosts\n"
    assert itop.json("inventory", "list") == []
