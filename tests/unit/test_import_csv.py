"""The CSV importer: columns, separators, and errors that name line and column."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from itop_tui.services.importers import InventoryFileError, detect_format, import_file
from itop_tui.services.importers.csv_file import import_csv

CSV = Path(__file__).resolve().parent.parent / "data" / "inventories" / "hosts.csv"


def test_reads_every_column() -> None:
    result = import_csv(CSV)
    assert result.source == "csv"
    hosts = {h.name: h for h in result.hosts}
    assert list(hosts) == ["web01", "web02", "db1", "lab1"]
    web01 = hosts["web01"]
    assert (web01.address, web01.port, web01.user) == ("10.0.0.1", 22, "deploy")
    assert (web01.host_class, web01.status, web01.criticality) == ("vm", "production", "high")
    assert web01.groups == ["web", "prod"] and web01.tags == ["frontend", "canary"]
    assert web01.notes == 'first web, "blue"'
    assert web01.vars == {"rack": "r1", "owner": "team-a"}
    web02 = hosts["web02"]
    assert (web02.port, web02.user, web02.status, web02.groups) == (None, None, "production", ["web", "prod"])
    assert web02.vars == {"rack": "r1"}
    lab1 = hosts["lab1"]
    assert (lab1.address, lab1.groups, lab1.notes) == ("", [], "multi\nline note")
    assert all(h.source == "csv" for h in result.hosts)
    assert [g.name for g in result.groups] == ["web", "prod", "db"]


def test_semicolon_delimiter_bom_and_json_vars(tmp_path: Path) -> None:
    path = tmp_path / "hosts.csv"
    path.write_text('\ufeffname;host;vars;site\nh1;192.0.2.1;"{""a"": [1, 2]}";lon\n', encoding="utf-8")
    host = import_csv(path).hosts[0]
    assert (host.name, host.address) == ("h1", "192.0.2.1")
    assert host.vars == {"a": [1, 2], "site": "lon"}


def test_import_file_guesses_csv(tmp_path: Path) -> None:
    assert [h.name for h in import_file(CSV).hosts] == ["web01", "web02", "db1", "lab1"]
    plain = tmp_path / "export"
    plain.write_text("name,address\nh1,192.0.2.1\n")
    assert detect_format(plain) == "csv"


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some words\nnothing like an inventory\n")
    with pytest.raises(InventoryFileError) as caught:
        import_file(path)
    assert str(caught.value) == f"{path}: cannot tell the format; use --format ansible|ssh-config|csv"
    with pytest.raises(InventoryFileError, match="unknown format 'xml'"):
        import_file(path, fmt="xml")
    with pytest.raises(InventoryFileError, match="no such file"):
        import_file(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "header row"),
        ("address,port\n1.2.3.4,22\n", 1, "no 'name' column"),
        ("name,Name\nh,h\n", 1, "appears twice"),
        ("name,port\nh1,22\nh2,twenty\n", 3, "column 'port': 'twenty' is not a number"),
        ("name,port\nh1,99999\n", 2, "column 'port': must be 1-65535"),
        ("name,status\nh1,prod\n", 2, "column 'status': must be one of"),
        ("name,class\nh1,box\n", 2, "column 'class': must be one of"),
        ("name,criticality\nh1,urgent\n", 2, "column 'criticality'"),
        ("name,address\n,1.2.3.4\n", 2, "column 'name': a host name is required"),
        ("name,address\nmy host,1.2.3.4\n", 2, "column 'name': must be a non-empty word"),
        ("name\nh1\n\nh1\n", 4, "already on line 2"),
        ("name,vars\nh1,{bad json}\n", 2, "column 'vars': not valid JSON"),
        ("name,vars\nh1,[1]\n", 2, "column 'vars': must be a JSON object"),
        ("name,address\nh1,a,b\n", 2, "3 cells but the header names 2 columns"),
    ],
)
def test_bad_rows_name_line_and_column(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "hosts.csv"
    path.write_text(text)
    with pytest.raises(InventoryFileError) as caught:
        import_csv(path)
    assert (caught.value.path, caught.value.line) == (str(path), line)
    assert words in caught.value.message
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_damaged_files_give_clear_errors(tmp_path: Path) -> None:
    """Whatever the damage, the importer returns hosts or raises InventoryFileError."""
    rng = random.Random(3)
    original = CSV.read_text()
    path = tmp_path / "damaged.csv"
    for _ in range(250):
        chars = list(original)
        for _ in range(rng.randrange(1, 8)):
            pos = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5:
                chars.insert(pos, rng.choice("\",;\n\t{}[]x 9"))
            else:
                del chars[pos : pos + rng.randrange(1, 20)]
        path.write_text("".join(chars))
        try:
            import_csv(path)
        except InventoryFileError as exc:
            assert str(exc).startswith(str(path))
