"""Ansible host range expansion, checked by hand and against Ansible's own code."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from itop_tui.domain.host_ranges import (
    HostRangeError,
    expand_host_pattern,
    expand_ranges,
    split_port,
)


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("web", ["web"]),
        ("web[1:3]", ["web1", "web2", "web3"]),
        ("web[01:03].example.com", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("n[x:B]", ["nx", "ny", "nz", "nA", "nB"]),
        ("s[1:10:4]", ["s1", "s5", "s9"]),
        ("s[01:10:3]", ["s01", "s04", "s07", "s10"]),
        ("[:2]x", ["0x", "1x", "2x"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
        ("r[3:1]", []),
        ("l[a:e:2]", ["la", "lc", "le"]),
        ("10.0.0.[1:3]", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ],
)
def test_expand(pattern: str, names: list[str]) -> None:
    assert expand_ranges(pattern) == names


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("w[01:3]", "same width"),
        ("w[1:]", "end value"),
        ("w[1:2:3:4]", "begin:end"),
        ("w[1:4:0]", "at least 1"),
        ("w[1:4:x]", "not a number"),
        ("w[a:5]", "two numbers or two letters"),
        ("w[e:a]", "must not come after"),
        ("w[1:4", "missing ']'"),
    ],
)
def test_bad_ranges(pattern: str, words: str) -> None:
    with pytest.raises(HostRangeError, match=words.replace("[", r"\[")):
        expand_ranges(pattern)


@pytest.mark.parametrize(
    ("pattern", "host", "port"),
    [
        ("web1", "web1", None),
        ("web1:2222", "web1", 2222),
        ("web[01:03].example.com:22", "web[01:03].example.com", 22),
        ("192.0.2.1:2200", "192.0.2.1", 2200),
        ("[2001:db8::1]:2200", "2001:db8::1", 2200),
        ("2001:db8::1", "2001:db8::1", None),
        ("bad_:22", "bad_:22", None),  # not a host name: Ansible keeps it whole
    ],
)
def test_split_port(pattern: str, host: str, port: int | None) -> None:
    assert split_port(pattern) == (host, port)


PATTERNS = [
    "web",
    "web[1:3]",
    "web[01:12:5].example.com",
    "db-[a:f]",
    "n[x:C]",
    "n[A:b]",
    "q[:3]",
    "r[1:2]-[a:b]-[08:10]",
    "r[5:1]",
    "h:2222",
    "web[1:3]:2201",
    "10.1.[1:2].[7:8]:22",
    "[2001:db8::1]:22",
    "fe80::1",
    "w[01:3]",
    "w[1:]",
    "w[a:5]",
    "x[1:4:2]:99",
]


_ANSIBLE_SCRIPT = """
import json, sys
from ansible.plugins.inventory import BaseFileInventoryPlugin
plugin = BaseFileInventoryPlugin()
out = {}
for pattern in json.loads(sys.argv[1]):
    try:
        names, port = plugin._expand_hostpattern(pattern)
        out[pattern] = [list(names), port]
    except Exception:
        out[pattern] = None
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ansible_expansions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Ansible's own expansion of PATTERNS, run in a subprocess whose Ansible
    files go to a temp dir rather than $HOME."""
    if importlib.util.find_spec("ansible") is None:
        pytest.skip("ansible is not importable: install ansible-core (the test command does this)")
    work = tmp_path_factory.mktemp("ansible")
    env = dict(os.environ, ANSIBLE_HOME=str(work / "home"), ANSIBLE_LOCAL_TEMP=str(work / "tmp"))
    done = subprocess.run(
        [sys.executable, "-c", _ANSIBLE_SCRIPT, json.dumps(PATTERNS)],
        capture_output=True, text=True, env=env, cwd=work, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("pattern", PATTERNS)
def test_same_as_ansible(pattern: str, ansible_expansions: dict[str, Any]) -> None:
    """Ansible's own expansion gives the same names and port, and fails where we fail."""
    expected = ansible_expansions[pattern]
    if expected is None:
        with pytest.raises(HostRangeError):
            expand_host_pattern(pattern)
    else:
        assert expand_host_pattern(pattern) == (expected[0], expected[1])
