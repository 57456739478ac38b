"""JsonStore on real files: atomic commits, schema versions, backups and recovery."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tinydb import Query

from itop_tui.services.store import JsonStore, StoreError


def raw(path: Path) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def names(store: JsonStore, table: str = "items") -> list[str]:
    with store.read() as db:
        return [doc["name"] for doc in db.table(table)]


def add(store: JsonStore, *items: str, table: str = "items") -> None:
    with store.write() as db:
        db.table(table).insert_multiple({"name": n} for n in items)


def test_missing_file_is_an_empty_store_and_reading_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.json"
    store = JsonStore(path)
    assert names(store) == []
    assert not path.exists()
    assert store.recovery_message is None


def test_writes_commit_atomically_and_leave_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    for i in range(5):
        add(store, f"item{i}")
    assert names(store) == [f"item{i}" for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "store.json",
        "store.json.bak",
        "store.json.lock",
    ]
    assert [d["name"] for d in raw(path)["items"].values()] == names(store)


def test_a_write_block_is_one_commit_and_an_error_discards_it(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    add(store, "a")
    before = os.stat(path).st_ino
    with store.write() as db:
        db.table("items").insert({"name": "b"})
        db.table("items").insert({"name": "c"})
        db.table("items").remove(Query().name == "a")
    after = os.stat(path).st_ino
    # one replace: the .bak is the file from before the block, not an intermediate one
    assert os.stat(f"{path}.bak").st_ino == before != after
    assert names(store) == ["b", "c"]

    with pytest.raises(RuntimeError), store.write() as db:
        db.table("items").insert({"name": "lost"})
        raise RuntimeError("caller failed half-way")
    assert names(store) == ["b", "c"]
    assert os.stat(path).st_ino == after  # nothing written at all


def test_a_block_without_changes_does_not_rewrite_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    add(store, "a")
    inode = os.stat(path).st_ino
    with store.write() as db:
        assert db.table("items").get(Query().name == "a") is not None
    assert os.stat(path).st_ino == inode


def test_read_blocks_are_read_only_and_blocks_nest(tmp_path: Path) -> None:
    store = JsonStore(tmp_path / "store.json")
    with pytest.raises(StoreError, match="read\\(\\) block"), store.read() as db:
        db.table("items").insert({"name": "x"})
    with pytest.raises(StoreError, match="inside a read"), store.read(), store.write():
        pass
    with store.write() as outer:
        outer.table("items").insert({"name": "outer"})
        with store.write() as inner:
            assert inner is outer
            inner.table("items").insert({"name": "inner"})
        with store.read() as nested_read:
            assert [d["name"] for d in nested_read.table("items")] == ["outer", "inner"]
    assert names(store) == ["outer", "inner"]


def test_schema_version_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    add(JsonStore(path), "a")
    assert raw(path)["_meta"] == {"1": {"schema": 1}}
    path3 = tmp_path / "v3.json"
    add(JsonStore(path3, schema_version=3), "a")
    assert raw(path3)["_meta"] == {"1": {"schema": 3}}


def test_migration_from_v1_to_v2_runs_once_in_one_write(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    v1 = JsonStore(path)
    with v1.write() as db:
        db.table("items").insert_multiple([{"title": "a"}, {"title": "b"}])
    v1_inode = os.stat(path).st_ino
    calls: list[int] = []

    def rename_title(tables: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        assert "_meta" not in tables
        for doc in tables["items"].values():
            doc["name"] = doc.pop("title")
        return tables

    v2 = JsonStore(path, schema_version=2, migrations={1: rename_title})
    assert calls == [1]
    assert raw(path)["_meta"] == {"1": {"schema": 2}}
    assert names(v2) == ["a", "b"]
    assert os.stat(f"{path}.bak").st_ino == v1_inode  # the v1 file is the backup
    add(v2, "c")
    JsonStore(path, schema_version=2, migrations={1: rename_title})
    assert calls == [1]
    assert names(v2) == ["a", "b", "c"]


def test_a_plain_tinydb_file_without_meta_counts_as_schema_1(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text('{"items": {"1": {"title": "a"}}}')
    seen: list[dict[str, Any]] = []

    def step(tables: dict[str, Any]) -> dict[str, Any]:
        seen.append(json.loads(json.dumps(tables)))
        return tables

    JsonStore(path, schema_version=2, migrations={1: step})
    assert seen == [{"items": {"1": {"title": "a"}}}]


def test_missing_migration_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    add(JsonStore(path), "a")
    with pytest.raises(StoreError, match="schema version 1 and there is no migration to version 2"):
        JsonStore(path, schema_version=3, migrations={2: lambda t: t})
    assert raw(path)["_meta"] == {"1": {"schema": 1}}


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    add(JsonStore(path, schema_version=3), "a")
    content = path.read_bytes()
    with pytest.raises(StoreError) as info:
        JsonStore(path, schema_version=2)
    message = str(info.value)
    assert str(path) in message
    assert "schema version 3, newer than version 2" in message
    assert "upgrade itop" in message
    assert path.read_bytes() == content


def test_corrupt_file_recovers_from_backup_and_keeps_the_corrupt_copy(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    add(store, "good")
    add(store, "newer")
    damaged = path.read_bytes()[:-20]
    path.write_bytes(damaged)

    recovered = JsonStore(path)
    assert names(recovered) == ["good"]  # the last good copy: the file before the last write
    corrupt = sorted(tmp_path.glob("store.json.corrupt-*"))
    assert len(corrupt) == 1
    assert corrupt[0].read_bytes() == damaged
    message = recovered.recovery_message
    assert message is not None
    assert str(path) in message and str(corrupt[0]) in message and f"{path}.bak" in message
    assert "line 1, column" in message
    # the store works again, and keeps a fresh backup
    add(recovered, "after")
    assert names(JsonStore(path)) == ["good", "after"]


def test_corruption_found_by_a_later_block_is_recovered_too(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    add(store, "a")
    add(store, "b")
    path.write_text("not json at all")
    assert names(store) == ["a"]
    assert store.recovery_message is not None
    add(store, "c")
    assert names(store) == ["a", "c"]


def test_truncated_to_zero_bytes_with_a_backup_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    add(store, "a")
    add(store, "b")
    path.write_bytes(b"")
    recovered = JsonStore(path)
    assert names(recovered) == ["a"]
    assert recovered.recovery_message is not None and "empty" in recovered.recovery_message


def test_corrupt_file_without_backup_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text('{"items": {\n  "1": {"name": "a"},\n  "2": {"name": \n')
    with pytest.raises(StoreError) as info:
        JsonStore(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid JSON" in message and "line 4" in message
    assert "no backup" in message
    assert path.read_text().startswith('{"items"')  # left as it was
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_corrupt_file_and_corrupt_backup_is_an_error_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    add(store, "a")
    add(store, "b")
    path.write_text("[1, 2")
    Path(f"{path}.bak").write_text("{")
    with pytest.raises(StoreError) as info:
        JsonStore(path)
    assert str(path) in str(info.value) and f"{path}.bak" in str(info.value)


def test_valid_json_of_the_wrong_shape_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    path.write_text("[]")
    with pytest.raises(StoreError, match="expected a JSON object of tables"):
        JsonStore(path)


def test_stale_temp_files_of_a_killed_writer_are_removed_by_the_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    stale = tmp_path / ".store.json.k3j4h5.tmp"
    stale.write_text('{"half": ')
    other = tmp_path / ".other.json.x.tmp"
    other.write_text("not ours")
    add(store, "a")
    assert not stale.exists()
    assert other.exists()


def test_values_json_cannot_hold_are_refused_before_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = JsonStore(path)
    add(store, "a")
    content = path.read_bytes()
    with pytest.raises(StoreError, match="cannot be stored as JSON"), store.write() as db:
        db.table("items").insert({"name": "bad", "value": float("nan")})
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.json", "store.json.lock"]
