"""Helpers for tests that run ``itop`` as a real subprocess (``python -m itop_tui``).

:class:`ItopCli` runs it over one config file and data dir; the test
environment's ``ITOP_*`` variables are dropped so that only these count. A
test playing several people runs it as another OS login: ``getpass.getuser()``
honours ``LOGNAME``/``USER``. :func:`ssh_config` is the ``ssh:`` section of a
config reaching the session sshd, :func:`trust_sshd` makes itop's own
known_hosts trust it, :func:`approved_change` walks a normal change to
approved, and :func:`isolate_config_lookup` hides the user's config and data
directories from the settings lookup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from sshd_harness import LISTEN_ADDRESSES

MARK_PROCEDURE = """
    id: mark
    title: Look, then write a mark
    version: "1"
    variables:
      - name: dir
        required: true
    steps:
      - id: look
        title: Look at the directory
        kind: check
        command: ls {{ dir }}
      - id: write
        title: Write the mark
        kind: command
        command: |
          d={{ dir }}; h={{ host }}; echo marked > "$d/mark-$h"
"""
"""A procedure (to dedent) whose read-only check lists ``dir`` and whose
mutating step writes ``dir/mark-HOST``."""


class ItopCli:
    """`python -m itop_tui` over one config file and data dir.

    ``user`` is the OS login it runs as unless a call names another (None:
    the test's own login). ``timeout`` bounds every call, in seconds.
    """

    def __init__(self, config: Path, data_dir: Path, *, timeout: float = 120,
                 user: str | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.timeout = timeout
        self.user = user

    def env(self, user: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a call: no ``ITOP_*`` but the config, the login, then ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ITOP_")}
        env["ITOP_CONFIG"] = str(self.config)
        login = user or self.user
        if login is not None:
            env["LOGNAME"] = env["USER"] = login
        env.update(extra or {})
        return env

    def argv(self, *args: str) -> list[str]:
        """The command line of ``itop ARGS`` over this data dir."""
        return [sys.executable, "-m", "itop_tui", "--data-dir", str(self.data_dir), *args]

    def __call__(self, *args: str, user: str | None = None, env: dict[str, str] | None = None,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``itop ARGS`` to its end (stdin empty unless ``input``); never a traceback."""
        done = subprocess.run(
            self.argv(*args), env=self.env(user, env), capture_output=True, text=True,
            timeout=self.timeout, input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def popen(self, *args: str, user: str | None = None) -> subprocess.Popen[str]:
        """Start ``itop ARGS`` without waiting, stdout and stderr piped."""
        return subprocess.Popen(self.argv(*args), env=self.env(user), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)

    def ok(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``itop ARGS``, which must succeed."""
        done = self(*args, user=user)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def json(self, *args: str, status: int = 0, user: str | None = None) -> Any:
        """Run ``itop ARGS --json`` (before a ``--``), exiting ``status``; its parsed output."""
        words = list(args)
        split = words.index("--") if "--" in words else len(words)
        done = self(*words[:split], "--json", *words[split:], user=user)
        assert done.returncode == status, (done.stdout, done.stderr)
        return json.loads(done.stdout)

    def audit(self) -> list[dict[str, Any]]:
        """The audit events as written in the data dir's ``audit.jsonl``."""
        text = (self.data_dir / "audit.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    def show(self, ref: str) -> dict[str, Any]:
        """The change ``ref`` as ``itop change show REF --json`` prints it."""
        data: dict[str, Any] = json.loads(self.ok("change", "show", ref, "--json").stdout)
        return data


def ssh_config(sshd: Any) -> str:
    """The ``ssh:`` section of a config reaching ``sshd`` with its client key, no agent,
    itop's own known_hosts only, and no retries."""
    return (
        "ssh:\n"
        f"  config_files: [{json.dumps(str(sshd.ssh_config))}]\n"
        "  known_hosts_files: []\n"
        f"  identity_files: [{json.dumps(str(sshd.client_key))}]\n"
        "  use_agent: false\n"
        "  connect_timeout: 5\n"
        "  connect_retries: 0\n"
    )


def trust_sshd(data_dir: Path, sshd: Any, addresses: Iterable[str] = LISTEN_ADDRESSES) -> None:
    """Make ``data_dir`` (created if needed) trust ``sshd``'s key on ``addresses``,
    as ``itop trust --yes`` would."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "known_hosts").write_text("".join(sshd.host_key_line(a) + "\n" for a in addresses))


def approved_change(itop: ItopCli, hosts: str, title: str = "Touch marks") -> str:
    """A normal change on ``hosts`` written by alice, assessed and approved by bob; its ref."""
    done = itop.ok("change", "new", "--title", title, "--description", "touch files",
                   "--justification", "test the gate", "--hosts", hosts, "--impact", "none",
                   "--outage", "no", "--backout-plan", "remove the marks", "--json", user="alice")
    ref = str(json.loads(done.stdout)["ref"])
    itop.ok("change", "submit", ref, user="alice")
    itop.ok("change", "assess", ref, "--comment", "harmless", user="bob")
    itop.ok("change", "approve", ref, "--comment", "go", user="bob")
    return ref


def isolate_config_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ITOP_* variables, empty user config and data dirs, and an empty cwd (returned)."""
    monkeypatch.delenv("ITOP_CONFIG", raising=False)
    monkeypatch.delenv("ITOP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work
