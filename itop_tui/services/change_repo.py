"""Change records in ``changes.json`` in the data dir, references ``CHG-N``.

Every change of a record is one :meth:`JsonStore.write` transaction: the
record is read, changed by a pure function (usually
:func:`itop_tui.domain.change.apply`) and written back under the store's
exclusive lock, so an approval given from a second itop process at the same
moment as a note from the first is never lost. Numbers come from a counter
that is never reused, even after a change is deleted by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tinydb import Query

from itop_tui.domain.change import REF_PREFIX, Change, log_entry, normalize_ref
from itop_tui.services.store import JsonStore, StoreError

CHANGES_FILE = "changes.json"
CHANGES_TABLE = "changes"
SEQUENCE_TABLE = "sequence"


class ChangeNotFound(KeyError):
    """No change has this reference."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such change"


class ChangeRepository:
    """The change records of one data dir."""

    def __init__(self, store: JsonStore) -> None:
        self.store = store

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> ChangeRepository:
        """The changes of the data dir ``data_dir``."""
        return cls(JsonStore(Path(data_dir) / CHANGES_FILE))

    def create(self, change: Change) -> Change:
        """Store a new change with the next ``CHG-N`` reference; returns it with the reference."""
        with self.store.write() as db:
            sequence = db.table(SEQUENCE_TABLE)
            counter = sequence.get(doc_id=1)
            number = 1
            if counter is not None and not isinstance(counter, list):
                number = int(counter["changes"]) + 1
                sequence.update({"changes": number}, doc_ids=[1])
            else:
                sequence.insert({"changes": number})
            stored = replace(change, ref=f"{REF_PREFIX}{number}")
            db.table(CHANGES_TABLE).insert(stored.to_dict())
        return stored

    def get(self, ref: str) -> Change | None:
        """The change ``ref`` (``CHG-7``, ``chg-7`` or ``7``), or None."""
        try:
            ref = normalize_ref(ref)
        except ValueError:
            return None
        with self.store.read() as db:
            doc = db.table(CHANGES_TABLE).get(Query().ref == ref)
        if doc is None or isinstance(doc, list):
            return None
        return self._from_doc(doc)

    def require(self, ref: str) -> Change:
        """The change ``ref``; :class:`ChangeNotFound`, or ValueError for a malformed reference."""
        normalized = normalize_ref(ref)
        change = self.get(normalized)
        if change is None:
            raise ChangeNotFound(f"no change {normalized} (see `itop change list`)")
        return change

    def all(self) -> list[Change]:
        """Every change, oldest first."""
        with self.store.read() as db:
            docs = list(db.table(CHANGES_TABLE))
        return sorted((self._from_doc(doc) for doc in docs), key=lambda c: c.number)

    def update(self, ref: str, change: Callable[[Change], Change]) -> Change:
        """Replace the change ``ref`` by ``change(current)`` in one transaction.

        ``change`` may raise to leave the record as it was (the exception
        propagates). Returns the stored result.
        """
        ref = normalize_ref(ref)
        with self.store.write() as db:
            table = db.table(CHANGES_TABLE)
            doc = table.get(Query().ref == ref)
            if doc is None or isinstance(doc, list):
                raise ChangeNotFound(f"no change {ref} (see `itop change list`)")
            updated = change(self._from_doc(doc))
            if updated.ref != ref:
                raise ValueError(f"a change cannot change its reference ({ref} -> {updated.ref})")
            table.update(updated.to_dict(), doc_ids=[doc.doc_id])
        return updated

    def append_log(
        self, ref: str, *, actor: str, now: datetime, kind: str, text: str,
        detail: dict[str, Any] | None = None,
    ) -> Change:
        """Add a work log entry (a run recorded against the change, say) without a transition."""
        return self.update(
            ref,
            lambda current: log_entry(
                current, actor=actor, now=now, kind=kind, text=text, detail=detail
            ),
        )

    def _from_doc(self, doc: Any) -> Change:
        try:
            return Change.from_dict(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(
                f"{self.store.path}: change {doc.get('ref')!r} is damaged "
                f"({type(exc).__name__}: {exc})"
            ) from None
