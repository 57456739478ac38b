"""Unknown host keys met by a run are offered for trust, with their fingerprint.

Uses the session's real sshd on 127.0.0.1 (``sshd`` fixture in tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import Button, DataTable, Static
from ui_fixtures import fixed_clock, open_services, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.domain.models import Host
from itop_tui.screens.inventory import InventoryScreen
from itop_tui.screens.run_dialog import RunDialog
from itop_tui.screens.trust_dialog import TrustDialog

pytestmark = pytest.mark.integration

SIZE = (160, 48)


def state_of(dialog: RunDialog, host: str) -> str:
    value = dialog.query_one("#run-results", DataTable).get_cell(host, "state")
    return value.plain if isinstance(value, Text) else str(value)


async def run_true(pilot: object, app: ItopApp) -> RunDialog:
    await pilot.press("r", *"true", "enter")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    dialog = app.screen
    assert isinstance(dialog, RunDialog)
    return dialog


async def test_unknown_key_is_shown_and_trusted_on_yes(tmp_path: Path, sshd: object) -> None:
    settings = sshd.itop_settings(tmp_path / "data", config_files=[])  # type: ignore[attr-defined]
    (tmp_path / "data" / "known_hosts").write_text("")  # the key is unknown to itop
    host = Host(
        name="sshtest",
        address=sshd.host,  # type: ignore[attr-defined]
        port=sshd.port,  # type: ignore[attr-defined]
        user=sshd.user,  # type: ignore[attr-defined]
    )
    services = open_services(tmp_path / "data", [host], settings=settings)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        dialog = await run_true(pilot, app)
        assert state_of(dialog, "sshtest") == "error"
        assert "sshtest" in dialog.outcome.unknown_keys
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        assert "1 unknown host keys (t)" in app.screen.status_text()
        await pilot.press("t")
        await pilot.pause()
        trust = app.screen
        assert isinstance(trust, TrustDialog)
        question = render_text(trust.query_one(".dialog-text", Static).content)  # type: ignore[arg-type]
        assert sshd.host_key_fingerprint() in question  # type: ignore[attr-defined]
        assert f"port {sshd.port}" in question  # type: ignore[attr-defined]
        assert app.focused is trust.query_one("#no", Button)
        await pilot.press("y")  # no single-key yes: nothing happens
        assert app.screen is trust
        await pilot.press("tab", "enter")  # to "Trust this key", press it
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        known = (tmp_path / "data" / "known_hosts").read_text()
        assert sshd.host_key_data().split()[1] in known  # type: ignore[attr-defined]
        # The same command now reaches the host.
        dialog = await run_true(pilot, app)
        assert state_of(dialog, "sshtest") == "ok", dialog.results["sshtest"].error
    trusts = [e for e in services.audit.events() if e.action == "host.trust"]
    assert len(trusts) == 1 and trusts[0].origin == "tui"


async def test_unknown_key_refused_stores_nothing(tmp_path: Path, sshd: object) -> None:
    settings = sshd.itop_settings(tmp_path / "data", config_files=[])  # type: ignore[attr-defined]
    (tmp_path / "data" / "known_hosts").write_text("")
    host = Host(name="sshtest", address=sshd.host, port=sshd.port, user=sshd.user)  # type: ignore[attr-defined]
    services = open_services(tmp_path / "data", [host], settings=settings)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await run_true(pilot, app)
        await pilot.press("escape", "t")
        await pilot.pause()
        assert isinstance(app.screen, TrustDialog)
        await pilot.press("enter")  # "No" has the focus
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        assert "unknown host keys" not in app.screen.status_text()
    assert (tmp_path / "data" / "known_hosts").read_text() == ""
    assert not [e for e in services.audit.events() if e.action == "host.trust"]


# -- keys met through a ProxyJump hop (harness aliases: testhost 127.0.0.1,
# testhost2 127.0.0.2, jumped 127.0.0.2 via testhost; one sshd, one key) --


def untrusted_services(tmp_path: Path, sshd: object, names: list[str], known: str = "") -> object:
    """Services whose known_hosts holds ``known`` only, with harness aliases as hosts."""
    settings = sshd.itop_settings(tmp_path / "data")  # type: ignore[attr-defined]
    (tmp_path / "data" / "known_hosts").write_text(known)
    hosts = [Host(name=n, ssh_alias=n) for n in names]
    return open_services(tmp_path / "data", hosts, settings=settings)


async def discover(pilot: object, app: ItopApp, *, all_hosts: bool) -> InventoryScreen:
    await pilot.press("d")  # type: ignore[attr-defined]
    if all_hosts:
        await pilot.pause()  # type: ignore[attr-defined]
        await pilot.press("down", "enter")  # type: ignore[attr-defined]  # "All N shown hosts"
    await settle(pilot)  # type: ignore[arg-type]
    screen = app.screen
    assert isinstance(screen, InventoryScreen)
    return screen


async def next_question(pilot: object, app: ItopApp, previous: object = None) -> tuple[TrustDialog, str]:
    """Wait (with a deadline) for a trust dialog other than ``previous``; its question text."""
    from perf_fixtures import wait_until

    await wait_until(
        pilot,  # type: ignore[arg-type]
        lambda: isinstance(app.screen, TrustDialog) and app.screen is not previous,
        timeout=15, what="the next trust question",
    )
    dialog = app.screen
    assert isinstance(dialog, TrustDialog)
    text = render_text(dialog.query_one(".dialog-text", Static).content)  # type: ignore[arg-type]
    return dialog, " ".join(text.split())


async def say_yes(pilot: object) -> None:
    await pilot.press("tab", "enter")  # type: ignore[attr-defined]


def trusted_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "data" / "known_hosts").read_text().splitlines()


async def test_jump_host_key_is_asked_as_the_hop_then_the_target_key(
    tmp_path: Path, sshd: object
) -> None:
    from perf_fixtures import wait_until

    port = sshd.port  # type: ignore[attr-defined]
    services = untrusted_services(tmp_path, sshd, ["jumped"])
    app = ItopApp(services, clock=fixed_clock)  # type: ignore[arg-type]
    notices: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await discover(pilot, app, all_hosts=False)
        assert "1 unknown host keys (t)" in screen.status_text()
        await pilot.press("t")
        hop, question = await next_question(pilot, app)
        assert question.startswith(
            f"testhost (127.0.0.1 port {port}), the jump host of jumped, presented a host key"
        ), question
        assert sshd.host_key_fingerprint() in question  # type: ignore[attr-defined]
        await say_yes(pilot)
        # Stored for the address and port that presented it: the hop's.
        await wait_until(pilot, lambda: len(trusted_lines(tmp_path)) == 1, what="the hop's key")
        assert trusted_lines(tmp_path)[0].startswith(f"[127.0.0.1]:{port} ")
        notices += [str(n.message) for n in app._notifications]
        # The hop trusted, jumped's own key (127.0.0.2) is read and asked about.
        target, question = await next_question(pilot, app, hop)
        assert question.startswith(f"jumped (127.0.0.2 port {port}) presented a host key"), question
        assert "jump host" not in question
        await say_yes(pilot)
        await wait_until(pilot, lambda: len(trusted_lines(tmp_path)) == 2, what="jumped's key")
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        assert "unknown host keys" not in app.screen.status_text()
        # Now discovery reaches it.
        screen = await discover(pilot, app, all_hosts=False)
        assert not screen.pending_keys
        assert services.inventory.load().hosts["jumped"].facts  # type: ignore[attr-defined]
    assert trusted_lines(tmp_path)[1].startswith(f"[127.0.0.2]:{port} ")
    assert (
        f"Trusted the host key of testhost (127.0.0.1 port {port}), the jump host of jumped."
        in notices
    )
    trusts = [e.target for e in services.audit.events() if e.action == "host.trust"]  # type: ignore[attr-defined]
    assert trusts == [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]


async def test_target_key_already_trusted_is_not_asked_after_the_hop(
    tmp_path: Path, sshd: object
) -> None:
    from perf_fixtures import wait_until

    line = sshd.host_key_line("127.0.0.2") + "\n"  # type: ignore[attr-defined]
    services = untrusted_services(tmp_path, sshd, ["jumped"], known=line)
    app = ItopApp(services, clock=fixed_clock)  # type: ignore[arg-type]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await discover(pilot, app, all_hosts=False)
        await pilot.press("t")
        _hop, question = await next_question(pilot, app)
        assert "the jump host of jumped" in question
        await say_yes(pilot)
        await wait_until(pilot, lambda: len(trusted_lines(tmp_path)) == 2, what="the hop's key")
        await settle(pilot)
        assert app.screen is screen  # jumped's own key was known: no second question
        assert not screen.pending_keys
        assert "unknown host keys" not in screen.status_text()


async def test_one_question_per_distinct_key_across_hosts(tmp_path: Path, sshd: object) -> None:
    from perf_fixtures import wait_until

    port = sshd.port  # type: ignore[attr-defined]
    services = untrusted_services(tmp_path, sshd, ["testhost", "testhost2", "jumped"])
    app = ItopApp(services, clock=fixed_clock)  # type: ignore[arg-type]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await discover(pilot, app, all_hosts=True)
        assert set(screen.pending_keys) == {"testhost", "testhost2", "jumped"}
        # testhost and jumped's hop met one key at 127.0.0.1; testhost2 met it at 127.0.0.2.
        assert "2 unknown host keys (t)" in screen.status_text()
        await pilot.press("t")
        hop, question = await next_question(pilot, app)
        assert question.startswith(f"testhost (127.0.0.1 port {port}), the jump host of jumped,")
        await say_yes(pilot)
        second, question = await next_question(pilot, app, hop)
        assert f"(127.0.0.2 port {port}) presented" in question, question
        assert "1 unknown host keys (t)" in screen.status_text()
        await say_yes(pilot)
        await wait_until(pilot, lambda: len(trusted_lines(tmp_path)) == 2, what="both keys")
        await settle(pilot)
        assert app.screen is screen  # testhost (127.0.0.1) was not asked again
        assert not screen.pending_keys
    assert sorted(line.split()[0] for line in trusted_lines(tmp_path)) == [
        f"[127.0.0.1]:{port}", f"[127.0.0.2]:{port}",
    ]
    assert len([e for e in services.audit.events() if e.action == "host.trust"]) == 2  # type: ignore[attr-defined]
