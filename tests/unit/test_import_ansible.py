"""The Ansible importer against the real ``ansible-inventory --list``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from ansible_inventory import ansible_list

from itop_tui.services.importers import InventoryFileError, import_file
from itop_tui.services.importers.ansible import import_ansible

DATA = Path(__file__).resolve().parent.parent / "data" / "inventories"
INI = DATA / "ini_tricky" / "hosts.ini"
YAML = DATA / "yaml_tricky" / "hosts.yml"


def assert_same_as_ansible(path: Path, tmp_path: Path) -> None:
    """itop's import of ``path`` lists what Ansible lists: hosts, direct group
    members, child groups and merged host variables."""
    listed = ansible_list(path, tmp_path)
    result = import_ansible(path)
    hosts = {h.name: h for h in result.hosts}
    groups = {g.name: g for g in result.groups}
    hostvars = listed["_meta"]["hostvars"]
    ansible_hosts = set(hostvars)
    for name, body in listed.items():
        if name != "_meta":
            ansible_hosts.update(body.get("hosts", []))
    assert set(hosts) == ansible_hosts
    assert len(result.hosts) == len(hosts), "a host was listed twice"
    for name, host in hosts.items():
        assert host.vars == hostvars.get(name, {}), f"vars of {name}"
    for name, body in listed.items():
        if name in ("_meta", "all"):
            continue
        members = {h.name for h in result.hosts if (name in h.groups) or (name == "ungrouped" and not h.groups)}
        assert members == set(body.get("hosts", [])), f"members of {name}"
        if name != "ungrouped":
            assert groups[name].children == body.get("children", []), f"children of {name}"
    # --list leaves out empty groups but still names them as children
    ansible_groups = {n for n in listed if n != "_meta"}
    for body in listed.values():
        ansible_groups.update(body.get("children", []))
    ansible_groups -= {"_meta", "all", "ungrouped"}
    assert {g for g in groups if g not in ("all", "ungrouped")} == ansible_groups


def test_tricky_ini_matches_ansible(tmp_path: Path) -> None:
    assert_same_as_ansible(INI, tmp_path)


def test_tricky_yaml_matches_ansible(tmp_path: Path) -> None:
    assert_same_as_ansible(YAML, tmp_path)


def test_example_inventory_matches_ansible(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "inventory.example.yml"
    assert_same_as_ansible(example, tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        # extension-less files: Ansible tries YAML first, then INI
        "[web]\nweb1 a=1\n[db]\ndb1\n[all:children]\nweb\n",
        "all:\n  hosts:\n    h1:\n      x: [1, 2]\n  children:\n    g:\n      hosts:\n        h2:\n",
        "h1\nh2 k=v\n",
        # ungrouped hosts that later join a group leave ungrouped
        "h1\n[g]\nh1\n[ungrouped]\nh2\n",
        # :vars before the group is declared, and children declared after use
        "[late:vars]\nv=1\n[parent:children]\nlate\n[late]\nh1\n",
        # a diamond: c under a and b, and a deeper chain
        "[a:children]\nc\n[b:children]\nc\n[c:children]\nd\n[d]\nh\n[a:vars]\nx=a\n[b:vars]\nx=b\n[d:vars]\ny=d\n",
        # the same host on two lines: later inline vars win, first port stays
        "[g1]\nh:2201 x=1\n[g2]\nh:2202 x=2\n",
    ],
)
def test_small_inventories_match_ansible(tmp_path: Path, text: str) -> None:
    path = tmp_path / "inventory"
    path.write_text(text)
    assert_same_as_ansible(path, tmp_path)


def test_fields_come_from_connection_vars() -> None:
    hosts = {h.name: h for h in import_ansible(INI).hosts}
    db = hosts["db-08"]
    # ansible_ssh_host comes after ansible_host in the ssh plugin, so it wins
    assert (db.address, db.vars["ansible_host"]) == ("10.0.0.6", "10.0.0.5")
    assert db.proxy_jump == "bastion.example.com"
    assert hosts["loose2"].port == 2200 and hosts["loose2"].vars["ansible_port"] == 2200
    assert hosts["shared.example.com"].port == 6432  # host_vars/ beats the inline var
    assert hosts["web01.example.com"].user == "admin"
    assert hosts["web02.example.com"].user == "deploy"
    # no ansible_host: no address, the host is reached by its name
    assert hosts["web02.example.com"].address == ""
    assert hosts["web02.example.com"].connect_address == "web02.example.com"
    mon = hosts["mon1"]
    assert (mon.address, mon.is_local, mon.status, mon.tags) == ("local", True, "production", ["infra", "monitoring"])
    assert hosts["loose1"].groups == [] and hosts["loose1"].address == "192.0.2.10"


def test_groups_are_direct_and_children_kept() -> None:
    result = import_ansible(INI)
    hosts = {h.name: h for h in result.hosts}
    assert hosts["shared.example.com"].groups == ["web", "db", "a_group", "b_group", "c_group"]
    assert hosts["web-a"].groups == ["web"]
    groups = {g.name: g for g in result.groups}
    assert groups["prod"].children == ["app", "edge"]
    assert groups["app"].children == ["web", "db"]
    assert groups["a_group"].vars == {"samelevel": "a", "ansible_group_priority": 5}
    assert "ungrouped" not in groups
    assert result.source == f"ansible:{INI.resolve()}"
    assert all(h.source == result.source for h in result.hosts)


def test_ranges_expand_in_order() -> None:
    names = [h.name for h in import_ansible(INI).hosts]
    assert [n for n in names if n.startswith("edge")] == ["edgex", "edgey", "edgez", "edgeA", "edgeB"]
    assert [n for n in names if n.startswith("db-")] == ["db-08", "db-10", "db-12"]
    assert [n for n in names if n.startswith("web0")] == [f"web0{i}.example.com" for i in range(1, 5)]


def test_import_file_guesses_ansible(tmp_path: Path) -> None:
    assert import_file(INI).source.startswith("ansible:")
    assert import_file(YAML).source.startswith("ansible:")
    plain = tmp_path / "hosts"
    plain.write_text("# inventory\n[web]\nweb1\n")
    assert [h.name for h in import_file(plain).hosts] == ["web1"]
    yaml_plain = tmp_path / "inventory"
    yaml_plain.write_text("---\nweb:\n  hosts:\n    web1:\n")
    assert [h.groups for h in import_file(yaml_plain).hosts] == [["web"]]


def test_skipped_yaml_parts_are_warned(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("web:\n  hosts:\n    w1:\n  colour: blue\n  tags: [1]\nnotagroup: 3\n")
    result = import_ansible(path)
    assert [h.name for h in result.hosts] == ["w1"]
    assert any("'colour'" in w and f"{path}:4" in w for w in result.warnings)
    assert any("'tags'" in w for w in result.warnings)
    assert any("'notagroup'" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("name", "text", "line", "words"),
    [
        ("bad.ini", "[web]\nweb[01:3]\n", 2, "same width"),
        ("bad.ini", "[web]\nweb[1:]\n", 2, "end value"),
        ("bad.ini", "[web]\nweb[a:5]\n", 2, "two numbers or two letters"),
        ("bad.ini", "[web]\nweb[1:4:0]\n", 2, "step"),
        ("bad.ini", "[web:hosts2]\nx\n", 1, "unknown type"),
        ("bad.ini", "[web]\nh1\n[web:vars]\nnovalue\n", 4, "expected key=value"),
        ("bad.ini", "[web]\nh1 foo\n", 2, "key=value"),
        ("bad.ini", "[web]\nh1 x='unterminated\n", 2, "cannot parse host line"),
        ("bad.ini", "[web:children]\nnever_declared\n", 2, "undefined group 'never_declared'"),
        ("bad.ini", "[ghost:vars]\nx=1\n", 1, "never declared"),
        ("bad.ini", "[a:children]\nb\n[b:children]\na\n", 4, "loop"),
        ("bad.ini", "[web group]\n", 1, "invalid section"),
        ("bad.ini", "[web]\nh1:\n", 2, "ends in ':'"),
        ("bad.yml", "web:\n  hosts:\n    - a\n", 2, "must be a mapping"),
        ("bad.yml", "web:\n  hosts:\n    h1: 3\n", 3, "must be a mapping"),
        ("bad.yml", "web:\n  hosts:\n    12:\n", 3, "must be a string"),
        ("bad.yml", "web:\n  hosts:\n    h[1:\n", None, "range"),
        ("bad.yml", "web:\n  hosts:\n   h1:\n  - x\n", 4, "bad YAML"),
        ("bad.yml", "- a\n- b\n", 1, "mapping of groups"),
        ("bad.yml", "plugin: aws_ec2\n", 1, "plugin"),
        ("bad.yml", "", None, "empty"),
        ("bad.yml", "$ANSIBLE_VAULT;1.1;AES256\n3333\n", 1, "vault"),
    ],
)
def test_bad_files_name_file_and_line(
    tmp_path: Path, name: str, text: str, line: int | None, words: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InventoryFileError) as caught:
        import_ansible(path)
    err = caught.value
    assert err.path == str(path)
    if line is not None:
        assert err.line == line
        assert str(err).startswith(f"{path}:{line}: ")
    assert words in err.message


def test_bad_vars_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    bad = tmp_path / "group_vars" / "web.yml"
    bad.write_text("a: 1\nb: [unclosed\n")
    inv = tmp_path / "hosts.ini"
    inv.write_text("[web]\nw1\n")
    with pytest.raises(InventoryFileError) as caught:
        import_ansible(inv)
    assert caught.value.path == str(bad)
    assert caught.value.line is not None and caught.value.line >= 2


def test_bad_itop_field_is_reported(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[web]\nw1 itop_status=prod\n")
    with pytest.raises(InventoryFileError, match="host 'w1': status: must be one of"):
        import_ansible(inv)


def test_vars_are_json_ready(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("g:\n  hosts:\n    h:\n      when: 2024-05-01\n      blob: !!binary aGVsbG8=\n      1: one\n")
    host = import_ansible(inv).hosts[0]
    assert host.vars == {"when": "2024-05-01", "blob": "hello", "1": "one"}
    json.dumps(host.vars)


def mutations(text: str, count: int, seed: int) -> list[str]:
    """``count`` damaged copies of ``text``: characters deleted, inserted, cut."""
    rng = random.Random(seed)
    alphabet = "[]:=\"'#;,{}-\n \t!*?%~\\&<>@$019abXYZ"
    out = []
    for _ in range(count):
        chars = list(text)
        for _ in range(rng.randrange(1, 8)):
            pos = rng.randrange(len(chars) + 1)
            op = rng.randrange(3)
            if op == 0 and chars:
                del chars[min(pos, len(chars) - 1)]
            elif op == 1:
                chars.insert(pos, rng.choice(alphabet))
            else:
                del chars[pos : pos + rng.randrange(1, 30)]
        out.append("".join(chars))
    return out


@pytest.mark.parametrize("source", [INI, YAML])
def test_damaged_files_give_clear_errors(tmp_path: Path, source: Path) -> None:
    """Whatever the damage, the importer returns hosts or raises InventoryFileError."""
    for i, text in enumerate(mutations(source.read_text(), 250, seed=len(source.name))):
        path = tmp_path / f"damaged{i}{source.suffix}"
        path.write_text(text)
        try:
            import_ansible(path)
        except InventoryFileError as exc:
            assert str(exc).startswith(str(path))
