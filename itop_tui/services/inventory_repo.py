"""Hosts and groups kept in a :class:`JsonStore` (tables ``hosts`` and ``groups``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from tinydb import Query
from tinydb.table import Document, Table

from itop_tui.domain.models import Group, Host, Inventory, ValidationError
from itop_tui.services.store import JsonStore, StoreError


def utc_now() -> str:
    """Now as UTC ISO 8601, to the second, as stored in ``last_seen``/``facts_at``."""
    return datetime.now(UTC).isoformat(timespec="seconds")

HOSTS_TABLE = "hosts"
GROUPS_TABLE = "groups"

_HOST_DEFAULTS: dict[str, Any] = Host(name="x").to_dict()
_GROUP_DEFAULTS: dict[str, Any] = Group(name="x").to_dict()
_HOST_OPTIONAL_FIELDS = {f.name for f in fields(Host) if f.default is None}
_HOST_FIELD_TYPES: dict[str, type] = {
    name: list if isinstance(value, list) else dict if isinstance(value, dict) else str
    for name, value in Host(name="x").__dict__.items()
}


class InventoryRepository:
    """The fleet as stored: load it, import into it, edit single hosts.

    Every method is one store block, so a bulk import of 10,000 hosts is one
    file rewrite. Imports merge: a field the incoming record leaves at its
    default (empty facts, tags, notes, vars or groups, no address, default
    status...) keeps the stored value, so hand-made edits and discovered facts
    survive a re-import; fields the incoming record does set replace the
    stored ones. Importing the same data again changes nothing.
    """

    def __init__(self, store: JsonStore) -> None:
        self.store = store

    def load(self) -> Inventory:
        """All hosts and groups, in the order they were first stored."""
        inventory = Inventory()
        with self.store.read() as db:
            for doc in db.table(HOSTS_TABLE):
                host = self._host_from_doc(doc)
                inventory.hosts[host.name] = host
            for doc in db.table(GROUPS_TABLE):
                group = self._group_from_doc(doc)
                inventory.groups[group.name] = group
        return inventory

    def get_host(self, name: str) -> Host | None:
        """The stored host called ``name``, or None."""
        with self.store.read() as db:
            doc = _find(db.table(HOSTS_TABLE), name)
            return None if doc is None else self._host_from_doc(doc)

    def upsert_hosts(self, hosts: list[Host]) -> tuple[int, int]:
        """Add new hosts and merge known ones in one write; return (added, updated).

        ``updated`` counts only hosts whose stored record actually changed.
        Every host is validated before anything is written.
        """
        for host in hosts:
            host.validate()
        incoming = [host_record(h) for h in hosts]
        with self.store.write() as db:
            return _merge_into(db.table(HOSTS_TABLE), incoming, _HOST_DEFAULTS)

    def upsert_groups(self, groups: list[Group]) -> tuple[int, int]:
        """Add new groups and merge known ones in one write; return (added, updated)."""
        for group in groups:
            if not group.name or any(c.isspace() for c in group.name):
                raise ValidationError("group", f"must be a non-empty word, got {group.name!r}")
        incoming = [g.to_dict() for g in groups]
        with self.store.write() as db:
            return _merge_into(db.table(GROUPS_TABLE), incoming, _GROUP_DEFAULTS)

    def remove_host(self, name: str) -> bool:
        """Delete the host called ``name``; False if there was none."""
        with self.store.write() as db:
            return bool(db.table(HOSTS_TABLE).remove(Query().name == name))

    def update_host(self, name: str, /, **changes: Any) -> Host:
        """Set fields of one host (``class`` or ``host_class`` alike) and return it.

        Raises ``KeyError`` for an unknown host and ``ValidationError`` naming
        the field for an unknown field or a bad value; nothing is written then.
        """
        if "class" in changes:
            changes["host_class"] = changes.pop("class")
        for key, value in changes.items():
            _check_field(key, value)
        if "name" in changes and changes["name"] != name:
            raise ValidationError(
                "name", "cannot be changed; add the host under the new name instead"
            )
        if isinstance(changes.get("port"), str):
            changes["port"] = int(changes["port"]) if changes["port"] else None
        with self.store.write() as db:
            table = db.table(HOSTS_TABLE)
            doc = _find(table, name)
            if doc is None:
                raise KeyError(name)
            host = replace(self._host_from_doc(doc), **changes)
            host.validate()
            table.update(host_record(host), doc_ids=[doc.doc_id])
            return host

    def set_facts(self, name: str, facts: dict[str, Any], at: str) -> None:
        """Store discovered facts gathered at ``at`` (UTC ISO 8601); the host was seen then."""
        self.set_facts_many({name: (facts, at)})

    def set_facts_many(self, facts_by_host: Mapping[str, tuple[dict[str, Any], str]]) -> None:
        """Store facts for many hosts in one write: ``{name: (facts, at)}``.

        Raises ``KeyError`` naming the first unknown host; nothing is written then.
        """
        changes = {
            name: {"facts": facts, "facts_at": at, "last_seen": at}
            for name, (facts, at) in facts_by_host.items()
        }
        self._update_many(changes)

    def mark_seen(self, name: str, at: str) -> None:
        """Record that the host answered at ``at`` (UTC ISO 8601)."""
        self.mark_seen_many([name], at)

    def mark_seen_many(self, names: Iterable[str], at: str, *, missing_ok: bool = False) -> None:
        """Record that these hosts answered at ``at``, in one write.

        A name not stored raises ``KeyError`` (nothing written), unless
        ``missing_ok``: a host removed while it was being worked on is skipped.
        """
        self._update_many({name: {"last_seen": at} for name in names}, missing_ok=missing_ok)

    def _update_many(
        self, changes: Mapping[str, dict[str, Any]], *, missing_ok: bool = False
    ) -> None:
        if not changes:
            return
        with self.store.write() as db:
            table = db.table(HOSTS_TABLE)
            ids = {doc["name"]: doc.doc_id for doc in table}
            for name in changes:
                if name not in ids and not missing_ok:
                    raise KeyError(name)
            documents = []
            for doc in table:
                change = changes.get(doc["name"])
                documents.append(Document({**doc, **change} if change else dict(doc), doc.doc_id))
            _rewrite(table, documents)

    def _host_from_doc(self, doc: Mapping[str, Any]) -> Host:
        try:
            return Host.from_dict(dict(doc))
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.store.path}: host record {doc.get('name', '?')!r} is invalid: {exc}"
            ) from exc

    def _group_from_doc(self, doc: Mapping[str, Any]) -> Group:
        try:
            return Group.from_dict(dict(doc))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"{self.store.path}: group record {doc.get('name', '?')!r} is invalid: {exc}"
            ) from exc


def host_record(host: Host) -> dict[str, Any]:
    """The stored form of ``host``, equal to ``host.to_dict()``.

    ``Host.to_dict`` goes through ``dataclasses.asdict``, whose deep copies
    dominate a 10,000-host import; the record only lives until the block's
    commit serializes it, so a shallow copy is enough.
    """
    data = dict(host.__dict__)
    data["class"] = data.pop("host_class")
    data["id"] = host.id
    return data


def _check_field(key: str, value: Any) -> None:
    """Refuse unknown host fields and values of the wrong JSON type."""
    if key not in _HOST_FIELD_TYPES:
        raise ValidationError(key, "is not a host field")
    if key == "port":
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            return
        if isinstance(value, str) and (value == "" or value.isdigit()):
            return
        raise ValidationError("port", f"must be a number, got {value!r}")
    expected = _HOST_FIELD_TYPES[key]
    if value is None and key in _HOST_OPTIONAL_FIELDS:
        return
    if not isinstance(value, expected):
        raise ValidationError(key, f"must be a {expected.__name__}, got {value!r}")
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        raise ValidationError(key, f"must be a list of words, got {value!r}")


def _find(table: Table, name: str) -> Document | None:
    matches = table.search(Query().name == name)
    return matches[0] if matches else None


def _merge(stored: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``stored`` updated with every field ``new`` sets to a non-default value."""
    merged = dict(stored)
    for key, value in new.items():
        if key not in merged or value != defaults.get(key):
            merged[key] = value
    return merged


def _merge_into(
    table: Table, incoming: list[dict[str, Any]], defaults: dict[str, Any]
) -> tuple[int, int]:
    """Merge records keyed by ``name`` into ``table`` with at most one table rewrite.

    TinyDB's per-document update rebuilds the whole table each time, which is
    quadratic for a bulk import; the merged table is built here and written
    back once instead, keeping every document's id.
    """
    docs: dict[str, Document] = {}
    order: list[str] = []
    for doc in table:
        docs[doc["name"]] = doc
        order.append(doc["name"])
    next_id = max((doc.doc_id for doc in docs.values()), default=0) + 1
    added_names: set[str] = set()
    changed_names: set[str] = set()
    for record in incoming:
        name = record["name"]
        current = docs.get(name)
        if current is None:
            docs[name] = Document(dict(record), next_id)
            order.append(name)
            added_names.add(name)
            next_id += 1
            continue
        merged = _merge(dict(current), record, defaults)
        if merged != current:
            docs[name] = Document(merged, current.doc_id)
            if name not in added_names:
                changed_names.add(name)
    if added_names or changed_names:
        _rewrite(table, [docs[name] for name in order])
    return len(added_names), len(changed_names)


def _rewrite(table: Table, documents: list[Document]) -> None:
    """Replace the table's content with ``documents`` (ids kept) in two in-memory steps."""
    table.truncate()
    table.insert_multiple(documents)
