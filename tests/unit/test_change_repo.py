"""Change records in changes.json: references, round trips, transactions, concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itop_tui.domain.change import (
    ActionContext,
    ActionInput,
    ChangeRefused,
    apply,
    new_change,
    normalize_ref,
)
from itop_tui.domain.roles import Role
from itop_tui.services.change_repo import CHANGES_FILE, ChangeNotFound, ChangeRepository
from itop_tui.services.store import StoreError

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def repo(tmp_path: Path) -> ChangeRepository:
    return ChangeRepository.in_data_dir(tmp_path)


def draft(title: str = "t"):
    return new_change(requester="alice", now=NOW, title=title, hosts=("web01",))


def test_references_count_up_and_are_never_reused(tmp_path: Path) -> None:
    changes = repo(tmp_path)
    refs = [changes.create(draft(f"c{i}")).ref for i in range(3)]
    assert refs == ["CHG-1", "CHG-2", "CHG-3"]
    # A record removed by hand does not give its number back.
    with changes.store.write() as db:
        db.table("changes").remove(doc_ids=[3])
    assert changes.create(draft("c4")).ref == "CHG-4"
    assert [c.ref for c in changes.all()] == ["CHG-1", "CHG-2", "CHG-4"]


def test_references_are_read_in_any_spelling(tmp_path: Path) -> None:
    changes = repo(tmp_path)
    changes.create(draft())
    for text in ("CHG-1", "chg-1", "chg1", " 1 ", "CHG-0001"):
        found = changes.get(text)
        assert found is not None and found.ref == "CHG-1", text
    assert changes.get("CHG-9") is None
    assert changes.get("RUN-1") is None
    with pytest.raises(ChangeNotFound, match="no change CHG-9"):
        changes.require("9")
    with pytest.raises(ValueError, match="not a change reference"):
        normalize_ref("change seven")


def test_records_round_trip_through_the_file(tmp_path: Path) -> None:
    changes = repo(tmp_path)
    stored = changes.create(draft())
    ctx = ActionContext(actor="alice", role=Role.OPERATOR, now=NOW + timedelta(minutes=5))
    updated = changes.update(stored.ref, lambda c: apply(c, "note", ctx, ActionInput(text="hello")))
    again = ChangeRepository.in_data_dir(tmp_path).require("CHG-1")
    assert again == updated
    entry = again.work_log[-1]
    assert (entry.actor, entry.at, entry.kind, entry.text) == (
        "alice", "2025-06-01T12:05:00Z", "note", "hello")
    raw = json.loads((tmp_path / CHANGES_FILE).read_text())
    assert raw["changes"]["1"]["ref"] == "CHG-1"
    assert raw["changes"]["1"]["work_log"][0]["text"] == "created as a normal change"


def test_a_refused_update_leaves_the_record_untouched(tmp_path: Path) -> None:
    changes = repo(tmp_path)
    stored = changes.create(draft())
    before = (tmp_path / CHANGES_FILE).read_bytes()
    ctx = ActionContext(actor="alice", role=Role.OPERATOR, now=NOW)
    with pytest.raises(ChangeRefused):
        changes.update(stored.ref, lambda c: apply(c, "approve", ctx))
    assert (tmp_path / CHANGES_FILE).read_bytes() == before
    with pytest.raises(ValueError, match="cannot change its reference"):
        changes.update(stored.ref, lambda c: replace(c, ref="CHG-2"))


def test_append_log_records_runs_against_the_change(tmp_path: Path) -> None:
    changes = repo(tmp_path)
    stored = changes.create(draft())
    changed = changes.append_log(stored.ref, actor="bob", now=NOW, kind="run",
                                 text="run: uptime on web01", detail={"hosts": ["web01"]})
    entry = changed.work_log[-1]
    assert (entry.kind, entry.actor, entry.detail) == ("run", "bob", {"hosts": ["web01"]})
    assert entry.from_state == entry.to_state == "draft"


def test_a_damaged_record_is_reported_with_the_file(tmp_path: Path) -> None:
    changes = repo(tmp_path)
    changes.create(draft())
    with changes.store.write() as db:
        db.table("changes").update({"approvals": [{"by": "x"}]}, doc_ids=[1])
    with pytest.raises(StoreError, match=r"changes.json: change 'CHG-1' is damaged"):
        changes.all()


WRITER = textwrap.dedent("""
    import sys
    from datetime import datetime, UTC
    from itop_tui.domain.change import ActionContext, ActionInput, apply
    from itop_tui.domain.roles import Role
    from itop_tui.services.change_repo import ChangeRepository

    changes = ChangeRepository.in_data_dir(sys.argv[1])
    who = sys.argv[2]
    for i in range(int(sys.argv[3])):
        ctx = ActionContext(actor=who, role=Role.OPERATOR, now=datetime.now(UTC))
        changes.update("CHG-1", lambda c: apply(c, "note", ctx, ActionInput(text=f"{who} {i}")))
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    changes = repo(tmp_path)
    changes.create(draft())
    count = 25
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who, str(count)])
        for who in ("alice", "bob")
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    notes = [e.text for e in changes.require("CHG-1").work_log if e.kind == "note"]
    assert len(notes) == 2 * count
    for who in ("alice", "bob"):
        assert [n for n in notes if n.startswith(who)] == [f"{who} {i}" for i in range(count)]
