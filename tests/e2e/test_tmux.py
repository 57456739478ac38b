"""itop in a real terminal: started in tmux, driven by keys, read from the screen.

The hosts have loopback addresses and nothing is run on them: the test only
filters, opens the help and quits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from itop_tui.app import PANES
from itop_tui.domain.models import Host
from itop_tui.services.context import Services
from itop_tui.settings import load_settings

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 160, 48
TIMEOUT = 30.0


class Tmux:
    """One detached tmux session on a private server (its own socket)."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.socket = f"itop-e2e-{uuid.uuid4().hex[:8]}"
        self.env = env
        self._tmux("new-session", "-d", "-s", "itop", "-x", str(WIDTH), "-y", str(HEIGHT),
                   *command)
        # Without this tmux holds an Escape for 500 ms to see whether a key follows.
        self._tmux("set-option", "-s", "escape-time", "0")

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            check=check, capture_output=True, text=True, env=self.env, timeout=10,
        )

    def keys(self, *keys: str) -> None:
        """Send keys (tmux key names such as Enter, or literal text with ``-l``)."""
        self._tmux("send-keys", "-t", "itop", *keys)

    def text(self, literal: str) -> None:
        """Type ``literal`` as text."""
        self._tmux("send-keys", "-t", "itop", "-l", literal)

    def screen(self) -> str:
        """The visible screen as plain text."""
        return self._tmux("capture-pane", "-p", "-t", "itop").stdout

    def alive(self) -> bool:
        """True while the session (and so itop) runs."""
        return self._tmux("has-session", "-t", "itop", check=False).returncode == 0

    def wait_for(self, test: Callable[[str], bool], what: str) -> str:
        """Poll the screen until ``test`` holds; fail with the last screen otherwise."""
        deadline = time.monotonic() + TIMEOUT
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen() if self.alive() else ""
            if test(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen was:\n{screen}")

    def close(self) -> None:
        """Stop the private tmux server."""
        self._tmux("kill-server", check=False)


def rows(screen: str) -> set[str]:
    """Host names shown in the table (the first word after the tree's border)."""
    names = set()
    for line in screen.splitlines():
        _tree, bar, rest = line.partition("▕")
        words = rest.split()
        if bar and words and words[0][:2] in ("we", "db", "ca") and words[0][-2:].isdigit():
            names.add(words[0])
    return names


@pytest.fixture
def itop_session(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("install tmux (the test command does this)")
    data_dir = tmp_path / "data"
    config = tmp_path / "itop.yaml"
    config.write_text("ui:\n  theme: textual-dark\nrun:\n  forks: 10\n")
    services = Services.open(load_settings(config, data_dir), origin="cli")
    for name in list(services.inventory.load().hosts):
        services.inventory.remove_host(name)
    hosts = [Host(name=f"web{i:02d}", address=f"127.0.1.{i}", groups=["web"]) for i in range(1, 7)]
    hosts += [Host(name=f"db{i:02d}", address=f"127.0.2.{i}", groups=["db"], status="production")
              for i in range(1, 4)]
    hosts.append(Host(name="cache01", address="127.0.3.1", groups=["cache"]))
    services.inventory.upsert_hosts(hosts)
    itop = shutil.which("itop")
    command = [itop] if itop else [sys.executable, "-m", "itop_tui"]
    command += ["--data-dir", str(data_dir), "--config", str(config)]
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    session = Tmux(command, env)
    try:
        yield session
    finally:
        session.close()


def test_filter_help_and_quit_in_a_real_terminal(itop_session: Tmux) -> None:
    tmux = itop_session
    screen = tmux.wait_for(lambda s: {"web01", "db03", "cache01"} <= rows(s), "the host table")
    assert rows(screen) == {f"web{i:02d}" for i in range(1, 7)} | {"db01", "db02", "db03", "cache01"}
    assert "10 of 10 hosts" in screen

    tmux.keys("/")
    tmux.text("db")
    screen = tmux.wait_for(lambda s: "3 of 10 hosts" in s, "the filtered table")
    assert rows(screen) == {"db01", "db02", "db03"}
    assert "production" in screen

    tmux.keys("Enter", "?")
    screen = tmux.wait_for(lambda s: "Esc, ? or F1 closes this help." in s, "the help screen")
    for binding in ("Filter", "Discover", "Run", "Add", "Edit", "Import", "Mark", "Sort"):
        assert binding in screen, binding

    tmux.keys("Escape")
    tmux.wait_for(lambda s: "closes this help" not in s and "3 of 10 hosts" in s, "the pane again")
    tmux.keys("q")
    deadline = time.monotonic() + TIMEOUT
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.alive(), "itop did not quit on q"


# The header's title of each pane, in the order of their keys.
PANE_TITLES = ("Inventory", "Performance", "Procedures", "Changes", "Backups", "Problems / Audit")
TAB_STRIP = "   ".join(f"{pane.key} {pane.title}" for pane in PANES)


def test_every_pane_shows_the_tabs_and_its_whole_footer(itop_session: Tmux) -> None:
    """At 160 columns each pane (keys 1-6) shows the strip of panes under the header
    and a footer whose keys all fit: a gap remains before the palette key at the right."""
    tmux = itop_session
    tmux.wait_for(lambda s: "10 of 10 hosts" in s, "the Inventory pane")

    def shown(screen: str, title: str) -> bool:
        # The pane's title, strip and whole footer, all painted (a switch
        # repaints them in more than one frame on a slow machine).
        lines = screen.splitlines()
        if len(lines) < HEIGHT or f"itop · {title} " not in lines[0]:
            return False
        footer = lines[HEIGHT - 1].rstrip()
        return (lines[1].strip() == TAB_STRIP and footer.endswith("▏^p palette")
                and footer[: -len("▏^p palette")].endswith("  ") and "? Help" in footer)

    for key, title in zip((pane.key for pane in PANES), PANE_TITLES, strict=True):
        tmux.keys(key)
        try:
            screen = tmux.wait_for(lambda s, t=title: shown(s, t), f"the {title} pane")
        except AssertionError:
            screen = tmux.screen()  # the checks below say what is wrong with it
        lines = screen.splitlines()
        assert f"itop · {title} " in lines[0], screen
        assert lines[1].strip() == TAB_STRIP, lines[1]
        footer = lines[HEIGHT - 1]
        assert footer.rstrip().endswith("▏^p palette"), footer
        assert footer.rstrip()[: -len("▏^p palette")].endswith("  "), f"cut footer: {footer!r}"
        assert "? Help" in footer and "1 Inventory" not in footer, footer
