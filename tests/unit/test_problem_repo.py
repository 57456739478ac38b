"""ProblemRepository on a real problems.json (JsonStore) in a temp dir."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from itop_tui.services.problem_repo import (
    NOTE_LIMIT,
    PROBLEMS_FILE,
    ProblemError,
    ProblemRepository,
    epoch_of,
    iso_time,
    parse_problem_id,
)

T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z


@pytest.fixture
def repo(tmp_path: Path) -> ProblemRepository:
    return ProblemRepository.in_data_dir(tmp_path)


def test_open_gives_sequential_ids_and_stores_the_record(
    repo: ProblemRepository, tmp_path: Path
) -> None:
    first, created = repo.open("web01", "cpu_percent", "warning", T0, value=91.25, limit=85)
    second, created2 = repo.open("web02", "mem_percent", "critical", T0 + 5)
    assert created and created2
    assert (first.id, second.id) == ("PRB-1", "PRB-2")
    assert first.opened == "2024-05-01T00:00:00.000Z" and first.opened_epoch == T0
    assert (first.value, first.limit, first.is_open, first.is_acknowledged) == (
        91.25,
        85,
        True,
        False,
    )
    # A fresh repository on the same file sees the same records.
    again = ProblemRepository.in_data_dir(tmp_path)
    assert [p.to_dict() for p in again.open_problems()] == [first.to_dict(), second.to_dict()]
    stored = json.loads((tmp_path / PROBLEMS_FILE).read_text())
    assert stored["problems"]["1"]["host"] == "web01"


def test_open_twice_returns_the_open_problem(repo: ProblemRepository) -> None:
    first, _ = repo.open("web01", "cpu_percent", "warning", T0)
    same, created = repo.open("web01", "cpu_percent", "warning", T0 + 60)
    assert not created and same.id == first.id and same.opened == first.opened
    raised, created = repo.open("web01", "cpu_percent", "critical", T0 + 90, value=99)
    assert not created and raised.id == first.id and raised.severity == "critical"
    assert raised.changed == iso_time(T0 + 90)
    assert len(repo.problems()) == 1


def test_escalate_and_deescalate_change_the_open_problem_only(repo: ProblemRepository) -> None:
    assert repo.set_severity("web01", "cpu_percent", "critical", T0)[0] is None
    problem, _ = repo.open("web01", "cpu_percent", "warning", T0, value=86, limit=85)
    up = repo.set_severity("web01", "cpu_percent", "critical", T0 + 30, value=97, limit=95)[0]
    assert up is not None and (up.id, up.severity, up.value, up.limit) == (
        problem.id,
        "critical",
        97,
        95,
    )
    down = repo.set_severity("web01", "cpu_percent", "warning", T0 + 60, value=90, limit=85)[0]
    assert down is not None and down.severity == "warning"
    stored = repo.get(problem.id)
    assert stored is not None and stored.severity == "warning" and stored.opened_epoch == T0


def test_resolve_closes_it_and_a_new_breach_gets_a_new_id(repo: ProblemRepository) -> None:
    problem, _ = repo.open("web01", "cpu_percent", "warning", T0)
    resolved = repo.resolve("web01", "cpu_percent", T0 + 120)
    assert resolved is not None and resolved.id == problem.id
    assert resolved.resolved == iso_time(T0 + 120) and not resolved.is_open
    assert repo.resolve("web01", "cpu_percent", T0 + 130) is None
    assert repo.open_problems() == []
    again, created = repo.open("web01", "cpu_percent", "warning", T0 + 200)
    assert created and again.id == "PRB-2"
    assert [p.id for p in repo.problems()] == ["PRB-1", "PRB-2"]
    assert [p.id for p in repo.problems(include_resolved=False)] == ["PRB-2"]


def test_resolve_never_goes_before_the_opening(repo: ProblemRepository) -> None:
    repo.open("web01", "cpu_percent", "warning", T0)
    resolved = repo.resolve("web01", "cpu_percent", T0 - 10)  # clock stepped back
    assert resolved is not None and resolved.resolved == iso_time(T0)


def test_open_problems_by_host(repo: ProblemRepository) -> None:
    repo.open("web01", "cpu_percent", "warning", T0)
    repo.open("web02", "cpu_percent", "warning", T0)
    repo.open("web01", "fs_max_percent", "critical", T0)
    assert [(p.host, p.metric) for p in repo.open_problems("web01")] == [
        ("web01", "cpu_percent"),
        ("web01", "fs_max_percent"),
    ]
    found = repo.find_open("web02", "cpu_percent")
    assert found is not None and found.id == "PRB-2"
    assert repo.find_open("web02", "mem_percent") is None


def test_acknowledge_records_actor_time_and_a_clean_note(repo: ProblemRepository) -> None:
    problem, _ = repo.open("web01", "cpu_percent", "warning", T0)
    acked = repo.acknowledge(
        problem.id.lower(), "alice", "  looking \x1b[31minto\x1b[0m it\x07 ", at=T0 + 10
    )
    assert (acked.acknowledged_by, acked.acknowledged_at, acked.note) == (
        "alice",
        iso_time(T0 + 10),
        "looking into it",
    )
    stored = repo.get("1")
    assert stored is not None and stored.is_acknowledged and stored.note == "looking into it"
    # Acknowledging again replaces who, when and the note.
    repo.acknowledge("PRB-1", "bob", "x" * (NOTE_LIMIT + 50), at=T0 + 20)
    stored = repo.get("PRB-1")
    assert stored is not None and stored.acknowledged_by == "bob"
    assert len(stored.note) == NOTE_LIMIT


def test_acknowledge_refuses_unknown_resolved_and_malformed(repo: ProblemRepository) -> None:
    repo.open("web01", "cpu_percent", "warning", T0)
    with pytest.raises(ProblemError, match="no problem PRB-7"):
        repo.acknowledge("PRB-7", "alice", "")
    repo.resolve("web01", "cpu_percent", T0 + 5)
    with pytest.raises(ProblemError, match="PRB-1 was resolved"):
        repo.acknowledge("PRB-1", "alice", "late")
    with pytest.raises(ProblemError, match="not a problem id"):
        repo.acknowledge("CHG-1", "alice", "")
    repo.open("web01", "mem_percent", "warning", T0)
    with pytest.raises(ValueError, match="actor"):
        repo.acknowledge("PRB-2", "  ", "")


def test_bad_severity_and_empty_names_are_refused(repo: ProblemRepository) -> None:
    with pytest.raises(ValueError, match="severity"):
        repo.open("web01", "cpu_percent", "ok", T0)
    with pytest.raises(ValueError, match="host"):
        repo.open("", "cpu_percent", "warning", T0)
    assert repo.problems() == []


def test_ids_are_not_reused_after_records_are_removed(
    repo: ProblemRepository, tmp_path: Path
) -> None:
    repo.open("web01", "cpu_percent", "warning", T0)
    repo.open("web02", "cpu_percent", "warning", T0)
    with repo.store.write() as db:
        db.table("problems").truncate()
    problem, _ = repo.open("web03", "cpu_percent", "warning", T0)
    assert problem.id == "PRB-3"


def test_parse_problem_id() -> None:
    assert [parse_problem_id(t) for t in ("PRB-12", "prb-12", " 12 ", "PRB-012")] == ["PRB-12"] * 4
    for bad in ("", "PRB-", "PRB-0", "PRB-x", "12a", "-3"):
        with pytest.raises(ProblemError):
            parse_problem_id(bad)


def test_time_round_trip() -> None:
    assert epoch_of(iso_time(T0 + 0.25)) == T0 + 0.25
    assert epoch_of("2024-05-01T00:00:00") == T0


def _open_many(data_dir: str, host: str, count: int) -> None:
    repo = ProblemRepository.in_data_dir(Path(data_dir))
    for index in range(count):
        repo.open(host, f"metric{index}", "warning", T0)


def test_two_processes_opening_at_once_get_distinct_ids(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_open_many, args=(str(tmp_path), f"h{n}", 10)) for n in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    problems = ProblemRepository.in_data_dir(tmp_path).problems()
    assert len(problems) == 20
    assert sorted(p.number for p in problems) == list(range(1, 21))


def test_set_severity_already_set_changes_nothing(repo: ProblemRepository) -> None:
    # A second itop watching the host reports the same escalation later.
    opened, _ = repo.open("web1", "cpu_percent", "warning", 1000.0, 91.0, 90.0)
    raised, changed = repo.set_severity("web1", "cpu_percent", "critical", 1010.0, 97.0, 95.0)
    assert changed and raised is not None and raised.severity == "critical"
    again, changed = repo.set_severity("web1", "cpu_percent", "critical", 1011.0, 98.0, 95.0)
    assert not changed and again is not None
    assert (again.changed, again.value) == (raised.changed, 97.0)
    assert repo.set_severity("web2", "cpu_percent", "critical", 1011.0) == (None, False)
