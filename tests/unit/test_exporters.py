"""Exports: Ansible YAML read back by the real ansible-inventory, CSV and JSON
read back by itop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible_inventory import ansible_list

from itop_tui.domain.models import Group, Host, Inventory
from itop_tui.services.exporters import ExportError, ansible_host_vars, export_inventory
from itop_tui.services.importers.ansible import import_ansible
from itop_tui.services.importers.csv_file import import_csv

DATA = Path(__file__).resolve().parent.parent / "data" / "inventories"


def as_inventory(hosts: list[Host], groups: list[Group]) -> Inventory:
    return Inventory({h.name: h for h in hosts}, {g.name: g for g in groups})


def direct_members(listed: dict[str, Any]) -> dict[str, set[str]]:
    """Group name -> direct member hosts, from ansible-inventory output."""
    return {n: set(b.get("hosts", [])) for n, b in listed.items() if n not in ("_meta", "all", "ungrouped")}


def hand_built() -> Inventory:
    hosts = [
        Host("app1", address="192.0.2.5", port=2200, user="deploy", host_class="vm", status="production",
             criticality="high", groups=["app", "eu"], tags=["pci", "blue"],
             vars={"x": 1, "nested": {"a": [1, 2]}, "tier": "own"}, notes="note, with comma",
             runs_on="hv1", proxy_jump="jump@bastion:2222", identity_file="/keys/app"),
        Host("local1", address="local", groups=["infra"]),
        Host("bare"),
        # fields edited after an import: they must win over the stale vars
        Host("web1", address="10.1.1.1", port=2222, groups=["web"],
             vars={"ansible_ssh_host": "10.9.9.9", "ansible_port": 22, "tier": "web"}),
        Host("db1", groups=["db", "eu"], vars={"tier": "db"}, facts={"os": "Debian"}),
    ]
    groups = [
        Group("all", vars={"ntp": "pool"}),
        Group("eu", children=["app"], vars={"region": "eu", "ansible_group_priority": 3}),
        Group("app", vars={"tier": "app"}),
        Group("web", vars={"tier": "web"}),
    ]
    return as_inventory(hosts, groups)


@pytest.mark.parametrize("source", ["ini_tricky/hosts.ini", "yaml_tricky/hosts.yml"])
def test_ansible_export_reads_back_the_same(tmp_path: Path, source: str) -> None:
    original = import_ansible(DATA / source)
    inventory = as_inventory(original.hosts, original.groups)
    out = tmp_path / "export.yml"
    out.write_text(export_inventory(inventory, "ansible"))
    listed = ansible_list(out, tmp_path)
    assert set(listed["_meta"]["hostvars"]) | {h for m in direct_members(listed).values() for h in m} | set(
        listed.get("ungrouped", {}).get("hosts", [])
    ) == set(inventory.hosts)
    for name, host in inventory.hosts.items():
        assert listed["_meta"]["hostvars"].get(name, {}) == host.vars, name
    for group, members in direct_members(listed).items():
        assert members == {h.name for h in original.hosts if group in h.groups}, group
    for group in original.groups:
        if group.name != "all":
            assert listed.get(group.name, {}).get("children", []) == group.children
    again = {h.name: h for h in import_ansible(out).hosts}
    for host in original.hosts:
        copy = again[host.name]
        assert (copy.address, copy.port, copy.user, copy.proxy_jump, copy.status, copy.tags) == (
            host.address, host.port, host.user, host.proxy_jump, host.status, host.tags
        )


def test_ansible_export_of_edited_hosts(tmp_path: Path) -> None:
    inventory = hand_built()
    out = tmp_path / "export.yml"
    out.write_text(export_inventory(inventory, "ansible"))
    listed = ansible_list(out, tmp_path)
    hostvars = listed["_meta"]["hostvars"]
    assert direct_members(listed)["eu"] == {"app1", "db1"}
    assert listed["eu"]["children"] == ["app"]
    assert set(listed["ungrouped"]["hosts"]) == {"bare"}
    again = {h.name: h for h in import_ansible(out).hosts}
    for name, host in inventory.hosts.items():
        copy = again[name]
        for field in ("port", "user", "host_class", "status", "criticality", "tags", "notes", "runs_on",
                      "identity_file", "proxy_jump", "connect_address"):
            assert getattr(copy, field) == getattr(host, field), f"{name}.{field}"
        assert sorted(copy.groups) == sorted(host.groups)
        assert copy.vars == hostvars[name]
        for key, value in host.vars.items():
            if key != "ansible_ssh_host":
                assert copy.vars[key] == (host.port if key == "ansible_port" else value), f"{name}.{key}"
    assert hostvars["app1"]["tier"] == "own" and hostvars["db1"]["region"] == "eu"
    assert hostvars["local1"]["ansible_connection"] == "local" and hostvars["local1"]["ntp"] == "pool"
    assert "ansible_ssh_host" not in hostvars["web1"] and hostvars["web1"]["ansible_host"] == "10.1.1.1"


def test_ansible_host_vars_leave_consistent_vars_alone() -> None:
    host = import_ansible(DATA / "ini_tricky" / "hosts.ini").hosts[0]
    assert ansible_host_vars(host) == host.vars
    edited = Host("h", address="h", status="retired", tags=["x"], vars={"itop_status": "production"})
    assert ansible_host_vars(edited) == {"itop_status": "retired", "itop_tags": ["x"]}


def test_csv_round_trip(tmp_path: Path) -> None:
    inventory = hand_built()
    out = tmp_path / "export.csv"
    out.write_text(export_inventory(inventory, "csv"))
    again = import_csv(out)
    assert [h.name for h in again.hosts] == list(inventory.hosts)
    for copy in again.hosts:
        expected = inventory.hosts[copy.name].to_dict()
        got = copy.to_dict()
        for key in ("facts", "facts_at", "last_seen", "source"):
            expected.pop(key)
            got.pop(key)
        assert got == expected


def test_csv_round_trip_of_an_import(tmp_path: Path) -> None:
    original = import_csv(DATA / "hosts.csv")
    out = tmp_path / "export.csv"
    out.write_text(export_inventory(as_inventory(original.hosts, original.groups), "csv"))
    assert [h.to_dict() for h in import_csv(out).hosts] == [h.to_dict() for h in original.hosts]


def test_json_export() -> None:
    inventory = hand_built()
    data = json.loads(export_inventory(inventory, "json"))
    assert data["hosts"] == [h.to_dict() for h in inventory.hosts.values()]
    for entry in data["hosts"]:
        for key in ("name", "address", "port", "user", "groups", "tags", "status", "criticality", "vars", "facts"):
            assert key in entry
    groups = {g["name"]: g for g in data["groups"]}
    assert groups["eu"]["children"] == ["app"] and groups["eu"]["hosts"] == ["app1", "db1"]
    assert groups["db"] == {"name": "db", "children": [], "vars": {}, "hosts": ["db1"]}
    assert data["hosts"][4]["facts"] == {"os": "Debian"}


def test_unknown_format() -> None:
    with pytest.raises(ExportError, match="unknown export format 'xml'; use ansible, csv or json"):
        export_inventory(hand_built(), "xml")
