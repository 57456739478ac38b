"""InventoryRepository on a real JsonStore file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from itop_tui.domain.models import Group, Host, ValidationError
from itop_tui.services.inventory_repo import InventoryRepository, host_record
from itop_tui.services.store import JsonStore, StoreError

AT = "2024-05-01T10:00:00+00:00"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "inventory.json"


@pytest.fixture
def repo(store_path: Path) -> InventoryRepository:
    return InventoryRepository(JsonStore(store_path))


def web(n: int, **fields: Any) -> Host:
    return Host(
        name=f"web{n:02}", address=f"127.0.0.{n}", port=22, user="deploy", groups=["web"], **fields
    )


def test_host_record_is_the_same_as_to_dict() -> None:
    host = web(1, tags=["a"], vars={"x": [1, 2]}, facts={"os": "debian"}, host_class="vm")
    assert host_record(host) == host.to_dict()


def test_upsert_is_idempotent(repo: InventoryRepository, store_path: Path) -> None:
    hosts = [web(n) for n in range(1, 6)]
    assert repo.upsert_hosts(hosts) == (5, 0)
    inode = os.stat(store_path).st_ino
    assert repo.upsert_hosts([web(n) for n in range(1, 6)]) == (0, 0)
    assert os.stat(store_path).st_ino == inode  # nothing changed, nothing rewritten
    inventory = repo.load()
    assert list(inventory.hosts) == [f"web{n:02}" for n in range(1, 6)]
    assert inventory.hosts["web03"] == web(3)
    stored = json.loads(store_path.read_text())["hosts"]
    assert len(stored) == 5


def test_import_updates_connection_fields_but_keeps_facts_notes_tags_and_seen(
    repo: InventoryRepository,
) -> None:
    repo.upsert_hosts([web(1)])
    repo.set_facts("web01", {"os": "debian", "cpus": 4}, AT)
    repo.update_host("web01", notes="rack 4", tags=["pci"], status="production")
    again = Host(
        name="web01",
        address="127.0.0.9",
        port=2222,
        user="ops",
        groups=["web", "eu"],
        vars={"a": 1},
    )
    assert repo.upsert_hosts([again]) == (0, 1)
    host = repo.get_host("web01")
    assert host is not None
    assert (host.address, host.port, host.user, host.groups, host.vars) == (
        "127.0.0.9",
        2222,
        "ops",
        ["web", "eu"],
        {"a": 1},
    )
    assert host.facts == {"os": "debian", "cpus": 4}
    assert host.facts_at == AT and host.last_seen == AT
    assert host.notes == "rack 4" and host.tags == ["pci"]
    assert host.status == "production"  # the import left status at its default


def test_fields_the_import_sets_replace_hand_edits(repo: InventoryRepository) -> None:
    repo.upsert_hosts([web(1)])
    repo.update_host("web01", tags=["old"], status="staging")
    assert repo.upsert_hosts([web(1, tags=["new"], status="production")]) == (0, 1)
    host = repo.get_host("web01")
    assert host is not None
    assert host.tags == ["new"] and host.status == "production"


def test_duplicates_in_one_import_become_one_host(repo: InventoryRepository) -> None:
    assert repo.upsert_hosts([web(1), Host(name="web01", notes="second")]) == (1, 0)
    host = repo.get_host("web01")
    assert host is not None and host.notes == "second" and host.address == "127.0.0.1"
    assert len(repo.load().hosts) == 1


def test_invalid_host_in_an_import_writes_nothing(
    repo: InventoryRepository, store_path: Path
) -> None:
    with pytest.raises(ValidationError) as info:
        repo.upsert_hosts([web(1), Host(name="bad", status="on fire")])
    assert info.value.field == "status"
    assert not store_path.exists()


def test_ten_thousand_hosts_are_one_write(repo: InventoryRepository, store_path: Path) -> None:
    repo.upsert_hosts([Host(name="first")])
    before = os.stat(store_path).st_ino
    hosts = [
        Host(
            name=f"h{i:05}",
            address=f"127.0.{i // 250}.{i % 250 + 1}",
            groups=["bulk"],
            vars={"i": i},
        )
        for i in range(10_000)
    ]
    assert repo.upsert_hosts(hosts) == (10_000, 0)
    # exactly one rewrite: the backup is the very file that existed before the import
    assert os.stat(f"{store_path}.bak").st_ino == before

    started = time.perf_counter()
    inventory = repo.load()
    elapsed = time.perf_counter() - started
    assert len(inventory.hosts) == 10_001
    assert inventory.hosts["h09999"].vars == {"i": 9999}
    # Generous bound: catches per-host re-reads or quadratic loading, not a benchmark.
    assert elapsed < 3.0

    before = os.stat(store_path).st_ino
    repo.set_facts_many({h.name: ({"cpus": 2}, AT) for h in hosts})
    assert os.stat(f"{store_path}.bak").st_ino == before
    assert repo.load().hosts["h00042"].facts == {"cpus": 2}


def test_remove_host(repo: InventoryRepository) -> None:
    repo.upsert_hosts([web(1), web(2)])
    assert repo.remove_host("web01") is True
    assert repo.remove_host("web01") is False
    assert list(repo.load().hosts) == ["web02"]
    assert repo.get_host("web01") is None


def test_update_host_validates_and_reports_unknown_hosts(
    repo: InventoryRepository, store_path: Path
) -> None:
    repo.upsert_hosts([web(1)])
    updated = repo.update_host("web01", port="2200", **{"class": "vm"}, criticality="high")
    assert (updated.port, updated.host_class, updated.criticality) == (2200, "vm", "high")
    assert repo.get_host("web01") == updated

    content = store_path.read_bytes()
    for changes, field in (
        ({"status": "broken"}, "status"),
        ({"port": 70000}, "port"),
        ({"port": "ssh"}, "port"),
        ({"colour": "blue"}, "colour"),
        ({"groups": "web"}, "groups"),
        ({"vars": ["a"]}, "vars"),
        ({"name": "web99"}, "name"),
    ):
        with pytest.raises(ValidationError) as info:
            repo.update_host("web01", **changes)
        assert info.value.field == field
    assert store_path.read_bytes() == content

    with pytest.raises(KeyError):
        repo.update_host("nope", status="production")


def test_facts_and_seen_need_a_known_host(repo: InventoryRepository) -> None:
    repo.upsert_hosts([web(1), web(2)])
    repo.mark_seen("web02", AT)
    host = repo.get_host("web02")
    assert host is not None and host.last_seen == AT and host.facts == {}
    with pytest.raises(KeyError):
        repo.set_facts("ghost", {"os": "x"}, AT)
    with pytest.raises(KeyError):
        repo.mark_seen("ghost", AT)
    with pytest.raises(KeyError):
        repo.mark_seen_many(["web01", "ghost"], AT)
    host = repo.get_host("web01")
    assert host is not None and host.last_seen is None  # all or nothing


def test_groups_upsert_and_merge(repo: InventoryRepository) -> None:
    assert repo.upsert_groups(
        [Group("web", vars={"port": 80}), Group("prod", children=["web"])]
    ) == (2, 0)
    assert repo.upsert_groups([Group("web", vars={"port": 8080}), Group("prod")]) == (0, 1)
    groups = repo.load().groups
    assert groups["web"].vars == {"port": 8080}
    assert groups["prod"].children == ["web"]
    with pytest.raises(ValidationError):
        repo.upsert_groups([Group("two words")])


def test_a_bad_record_in_the_file_is_named(store_path: Path) -> None:
    store_path.write_text(json.dumps({"hosts": {"1": {"name": "web01", "port": "ssh"}}}))
    repo = InventoryRepository(JsonStore(store_path))
    with pytest.raises(StoreError) as info:
        repo.load()
    assert str(store_path) in str(info.value) and "web01" in str(info.value)
