"""Host selectors: itop's own terms, and Ansible patterns checked against Ansible."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from itop_tui.domain.models import Group, Host, Inventory
from itop_tui.domain.selectors import (
    SelectorError,
    filter_hosts,
    forget_index,
    host_index,
    matches_text,
    parse_selector,
    select_hosts,
)
from itop_tui.services.importers.ansible import import_ansible


def make_inventory() -> Inventory:
    hosts = [
        Host("web01", address="10.0.0.1", groups=["web"], tags=["frontend"], status="production",
             criticality="high", facts={"os": "Debian GNU/Linux 12"}),
        Host("web02", address="10.0.0.2", groups=["web"], tags=["frontend", "canary"], status="production"),
        Host("web03", address="10.0.0.3", groups=["web"], status="staging", host_class="vm"),
        Host("db1", address="db1.example.com", groups=["db", "backup"], tags=["pci"], status="production",
             criticality="high", source="csv"),
        Host("db2", groups=["db"], status="staging", host_class="container", facts={"os_name": "Alpine Linux"}),
        Host("lonely", address="local", status="development"),
    ]
    groups = [
        Group("web"),
        Group("db"),
        Group("prod", children=["web", "db"]),
        Group("backup"),
        Group("empty"),
    ]
    return Inventory({h.name: h for h in hosts}, {g.name: g for g in groups})


def names(selector: str, inventory: Inventory | None = None) -> list[str]:
    return [h.name for h in select_hosts(inventory or make_inventory(), selector)]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("web01", ["web01"]),
        ("web", ["web01", "web02", "web03"]),
        ("prod", ["web01", "web02", "web03", "db1", "db2"]),
        ("all", ["web01", "web02", "web03", "db1", "db2", "lonely"]),
        ("*", ["web01", "web02", "web03", "db1", "db2", "lonely"]),
        ("ungrouped", ["lonely"]),
        ("web0*", ["web01", "web02", "web03"]),
        ("db[0-9]", ["db1", "db2"]),
        ("?eb02", ["web02"]),
        ("tag:frontend", ["web01", "web02"]),
        ("tag:c*", ["web02"]),
        ("status:production", ["web01", "web02", "db1"]),
        ("status:Staging", ["web03", "db2"]),
        ("class:vm", ["web03"]),
        ("class:server", ["web01", "web02", "db1", "lonely"]),
        ("criticality:high", ["web01", "db1"]),
        ("group:prod", ["web01", "web02", "web03", "db1", "db2"]),
        ("group:web01", []),
        ("source:csv", ["db1"]),
        ("web:db", ["web01", "web02", "web03", "db1", "db2"]),
        ("db,web", ["web01", "web02", "web03", "db1", "db2"]),
        ("web:&status:production", ["web01", "web02"]),
        ("prod:&tag:pci", ["db1"]),
        ("all:!web03", ["web01", "web02", "db1", "db2", "lonely"]),
        ("!web03", ["web01", "web02", "db1", "db2", "lonely"]),
        ("&web", ["web01", "web02", "web03"]),
        ("prod:!db:&status:production", ["web01", "web02"]),
        ("!db:&status:production:prod", ["web01", "web02"]),
        ("~web0[12]", ["web01", "web02"]),
        ("~^d", ["db1", "db2"]),
        ("web[0]", ["web01"]),
        ("web[-1]", ["web03"]),
        ("web[1:]", ["web02", "web03"]),
        ("prod[0:1]", ["web01", "web02"]),
        ("empty", []),
        ("nosuch", []),
        ("web02:web01", ["web01", "web02"]),
        ("status:production,tag:canary", ["web01", "web02", "db1"]),
    ],
)
def test_selectors(selector: str, expected: list[str]) -> None:
    assert names(selector) == expected


@pytest.mark.parametrize(
    ("selector", "words"),
    [
        ("", "empty selector"),
        ("   ", "empty selector"),
        ("web:&", "'&' must be followed"),
        ("!", "'!' must be followed"),
        ("&!web", "one of '&' or '!'"),
        ("status:prod", "unknown status 'prod'; expected one of production"),
        ("class:box", "unknown class"),
        ("criticality:urgent", "unknown criticality"),
        ("tag:", "give a value after 'tag:'"),
        ("~web(", "bad regular expression"),
    ],
)
def test_bad_selectors(selector: str, words: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(selector)
    assert words in str(caught.value)
    with pytest.raises(SelectorError):
        select_hosts(make_inventory(), selector)


def test_parse_orders_unions_then_intersections_then_exclusions() -> None:
    terms = parse_selector("!c:&b:a").terms
    assert [(t.op, t.value) for t in terms] == [("", "a"), ("&", "b"), ("!", "c")]
    assert [t.value for t in parse_selector("!x").terms] == ["all", "x"]


def test_a_parsed_selector_can_be_reused() -> None:
    inventory = make_inventory()
    selector = parse_selector("web:!web02")
    assert [h.name for h in select_hosts(inventory, selector)] == ["web01", "web03"]


def test_results_keep_inventory_order_and_objects() -> None:
    inventory = make_inventory()
    chosen = select_hosts(inventory, "db2:web01:lonely")
    assert [h.name for h in chosen] == ["web01", "db2", "lonely"]
    assert chosen[0] is inventory.hosts["web01"]


def test_matches_text() -> None:
    inventory = make_inventory()
    assert matches_text(inventory.hosts["web01"], "debian")
    assert matches_text(inventory.hosts["web01"], "WEB 10.0.0")
    assert matches_text(inventory.hosts["db2"], "alpine db")
    assert matches_text(inventory.hosts["db1"], "pci backup")
    assert not matches_text(inventory.hosts["web01"], "alpine")
    assert not matches_text(inventory.hosts["web02"], "web02 debian")


def test_filter_hosts_falls_back_to_text() -> None:
    inventory = make_inventory()
    assert [h.name for h in filter_hosts(inventory, "")] == list(inventory.hosts)
    assert [h.name for h in filter_hosts(inventory, "web")] == ["web01", "web02", "web03"]
    # no host or group "eb0": free text instead
    assert [h.name for h in filter_hosts(inventory, "eb0")] == ["web01", "web02", "web03"]
    # not a valid selector: free text instead
    assert [h.name for h in filter_hosts(inventory, "alpine (")] == []
    assert [h.name for h in filter_hosts(inventory, "status:production:&tag:pci")] == ["db1"]
    assert [h.name for h in filter_hosts(inventory, "Debian")] == ["web01"]


INI = """\
lonely
alpha.example.com
[web]
web01
web02
web03
[db]
db1
db2
web01
[staging]
db2
stage-web
[prod:children]
web
db
[edge]
[prod:vars]
x=1
"""

ANSIBLE_PATTERNS = [
    "all",
    "*",
    "web",
    "prod",
    "web:db",
    "web,db",
    "web:&db",
    "prod:!web01",
    "!web01",
    "&db",
    "web*",
    "*web*",
    "db?",
    "~w.*0[12]",
    "~(db|lonely)",
    "ungrouped",
    "prod:&staging",
    "web:&prod:!web02:db",
    "!web02:db:&prod:web",
    "stage-web:lonely",
    "*.example.com",
    "web[0]",
    "web[1:]",
    "prod[3]",
    "prod[-1]",
    "nosuch",
    "staging,lonely",
    "p*",
    "e*",
    "db1:db1",
    "a*:!alpha*",
    "*:&~.*[0-9]$",
]

_ANSIBLE_SCRIPT = """
import json, sys
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
inventory = InventoryManager(loader=DataLoader(), sources=[sys.argv[1]])
out = {}
for pattern in json.loads(sys.argv[2]):
    out[pattern] = sorted(h.name for h in inventory.get_hosts(pattern))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ansible_answers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The hosts Ansible's InventoryManager picks for each pattern, computed in
    a subprocess whose Ansible files go to a temp dir rather than $HOME."""
    if importlib.util.find_spec("ansible") is None:
        pytest.skip("ansible is not importable: install ansible-core (the test command does this)")
    work = tmp_path_factory.mktemp("ansible-patterns")
    path = work / "hosts.ini"
    path.write_text(INI)
    env = dict(
        os.environ,
        ANSIBLE_HOME=str(work / "home"),
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_CONFIG=str(work / "none.cfg"),
    )
    done = subprocess.run(
        [sys.executable, "-c", _ANSIBLE_SCRIPT, str(path), json.dumps(ANSIBLE_PATTERNS)],
        capture_output=True, text=True, env=env, cwd=work, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return path, json.loads(done.stdout)


@pytest.mark.parametrize("pattern", ANSIBLE_PATTERNS)
def test_same_hosts_as_ansible(pattern: str, ansible_answers: tuple[Path, dict[str, Any]]) -> None:
    path, answers = ansible_answers
    result = import_ansible(path)
    inventory = Inventory({h.name: h for h in result.hosts}, {g.name: g for g in result.groups})
    assert sorted(names(pattern, inventory)) == answers[pattern]


def big_inventory(count: int = 10_000) -> Inventory:
    hosts = {}
    for i in range(count):
        name = f"host{i:05d}.dc{i % 4}.example.com"
        hosts[name] = Host(
            name,
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            groups=[f"rack{i % 50}", "web" if i % 3 else "db"],
            tags=["pci"] if i % 7 == 0 else [],
            status="production" if i % 2 else "staging",
            facts={"os": "Debian 12" if i % 5 else "Rocky 9"},
        )
    groups = {f"rack{r}": Group(f"rack{r}") for r in range(50)}
    groups["dc"] = Group("dc", children=[f"rack{r}" for r in range(50)])
    return Inventory(hosts, groups)


@pytest.mark.parametrize("selector", ["host0012*", "web", "status:production", "dc:&tag:pci:!rack3"])
def test_ten_thousand_hosts_stay_fast(selector: str) -> None:
    """A regression guard, not a benchmark: a budget far above the few
    milliseconds these take, so only a real slowdown trips it."""
    inventory = big_inventory()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        chosen = select_hosts(inventory, selector)
        best = min(best, time.perf_counter() - start)
    assert chosen
    assert best < 0.05, f"{selector}: {best * 1000:.1f} ms"


def test_index_answers_as_a_scan_of_every_host() -> None:
    """The index against the inventory's own scan (``group_members``) and plain
    comprehensions, for every group, tag and status and words naming nothing."""
    inventory = big_inventory(2_000)
    inventory.hosts["loose"] = Host("loose")
    hosts = inventory.hosts
    for group in sorted(inventory.all_group_names() | {"all", "ungrouped", "nosuch", "host0"}):
        members = inventory.group_members(group)
        expected = [n for n in hosts if n in members]
        assert names(f"group:{group}", inventory) == expected
        assert names(group, inventory) == expected
    assert names("ungrouped", inventory) == ["loose"]
    for tag in ("pci", "p*", "~p", "nosuch"):
        test = (lambda t: t.startswith("p")) if tag in ("p*", "~p") else tag.__eq__
        expected = [n for n, h in hosts.items() if any(test(t) for t in h.tags)]
        assert names(f"tag:{tag}", inventory) == expected
    for status in ("production", "staging", "*ing"):
        test = (lambda v: v.endswith("ing")) if status == "*ing" else status.__eq__
        assert names(f"status:{status}", inventory) == [n for n, h in hosts.items() if test(h.status)]
    assert names("rack7[2:4]", inventory) == [n for n, h in hosts.items() if "rack7" in h.groups][2:5]


def test_index_is_built_once_per_inventory() -> None:
    inventory = make_inventory()
    first = host_index(inventory)
    assert names("web", inventory) == ["web01", "web02", "web03"]
    assert host_index(inventory) is first
    assert host_index(make_inventory()) is not first


def test_index_follows_hosts_added_removed_and_replaced() -> None:
    inventory = make_inventory()
    assert names("db", inventory) == ["db1", "db2"]
    inventory.hosts["db3"] = Host("db3", groups=["db"])
    assert names("db", inventory) == ["db1", "db2", "db3"]
    assert names("prod[-1]", inventory) == ["db3"]
    del inventory.hosts["db1"]
    assert names("db", inventory) == ["db2", "db3"]
    # same names, same count: one host object replaced by another
    inventory.hosts["db2"] = Host("db2", groups=["web"], tags=["new"])
    assert names("db", inventory) == ["db3"]
    assert names("tag:new", inventory) == ["db2"]
    # one removed and another added: the count stays the same
    del inventory.hosts["db3"]
    inventory.hosts["cache1"] = Host("cache1", groups=["cache"])
    assert names("db", inventory) == []
    assert names("cache", inventory) == ["cache1"]
    inventory.hosts = {"solo": Host("solo", groups=["db"])}
    assert names("db:web", inventory) == ["solo"]


def test_index_follows_groups_added() -> None:
    inventory = make_inventory()
    assert names("edge", inventory) == []
    inventory.groups["edge"] = Group("edge", children=["web"])
    assert names("edge", inventory) == ["web01", "web02", "web03"]
    # children are read at each selection, not kept in the index
    inventory.groups["edge"].children.append("db")
    assert names("edge", inventory) == ["web01", "web02", "web03", "db1", "db2"]


def test_forget_index_after_editing_a_host_in_place() -> None:
    inventory = make_inventory()
    assert names("backup", inventory) == ["db1"]
    inventory.hosts["web01"].groups.append("backup")
    inventory.hosts["web01"].status = "retired"
    forget_index(inventory)
    assert names("backup", inventory) == ["web01", "db1"]
    assert names("status:retired", inventory) == ["web01"]


def test_index_does_not_keep_an_inventory_alive() -> None:
    inventory = make_inventory()
    names("web", inventory)
    ref = weakref.ref(inventory)
    del inventory
    gc.collect()
    assert ref() is None
