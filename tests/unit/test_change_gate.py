"""The change gate's rule for procedure steps (``ChangeGate.check_step``).

Real stores in a temp data dir and the real audit log; the gate's clock is
fixed so that windows open and close where the test says. ``prod`` is in
production, ``dev`` in development.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from itop_tui.domain.change import Change, iso, link_run, new_change
from itop_tui.domain.models import Host
from itop_tui.ops.change_gate import ChangeGate, opens_linked_run
from itop_tui.services.change_repo import ChangeRepository
from itop_tui.services.context import Services
from itop_tui.settings import Settings

START = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
INSIDE = START + timedelta(minutes=5)
AFTER = START + timedelta(hours=2)
PROD = Host(name="prod", address="local", status="production")
DEV = Host(name="dev", address="local", status="development")


@pytest.fixture
def services(tmp_path: Path) -> Services:
    opened = Services.open(Settings(data_dir=tmp_path / "data"))
    opened.inventory.upsert_hosts([PROD, DEV])
    return opened


def stored(services: Services, state: str, *runs: tuple[str, str]) -> Change:
    """A change on ``prod`` in ``state``, window START + 1 h, with ``runs`` (id, purpose) linked."""
    change = replace(new_change(requester="alice", now=START, hosts=("prod",)), state=state,
                     window_start=iso(START), window_end=iso(START + timedelta(hours=1)))
    for run_id, purpose in runs:
        change = link_run(change, run_id, purpose, "running", START)
    return ChangeRepository.in_data_dir(services.settings.data_dir).create(change)


def gate_at(services: Services, now: datetime) -> ChangeGate:
    return ChangeGate(services, clock=lambda: now)


def gate_events(services: Services) -> list[tuple[str, str]]:
    return [(e.target, e.result) for e in services.audit.events() if e.action == "change.gate"]


def run_log(services: Services, ref: str) -> list[str]:
    change = ChangeRepository.in_data_dir(services.settings.data_dir).require(ref)
    return [e.text for e in change.work_log if e.kind == "run"]


def test_the_implementation_run_of_an_open_change_passes_without_a_second_record(
        services: Services) -> None:
    ref = stored(services, "implement", ("RUN-1", "implementation")).ref
    decision = gate_at(services, INSIDE).check_step(
        [PROD], run_id="RUN-1", change_ref=ref, what="procedure p step s (RUN-1)")
    assert decision.allowed and decision.change_ref == ref
    assert "implementation run of " + ref in decision.reason
    # The workflow records its own runs: the gate writes nothing more.
    assert gate_events(services) == []
    assert run_log(services, ref) == []


def test_a_failed_change_stays_open_to_its_backout_run_inside_the_window(
        services: Services) -> None:
    ref = stored(services, "failed", ("RUN-1", "implementation"), ("RUN-2", "backout")).ref
    gate = gate_at(services, INSIDE)
    assert gate.check_step([PROD], run_id="RUN-2", change_ref=ref, what="backout").allowed
    # ... but not to its implementation run, nor to anything else under it.
    again = gate.check_step([PROD], run_id="RUN-1", change_ref=ref, what="implementation again")
    assert not again.allowed and "in state failed" in again.reason
    other = gate.check_step([PROD], run_id="RUN-9", change_ref=ref, what="another run")
    assert not other.allowed
    assert gate_events(services) == [(ref, "refused"), (ref, "refused")]


def test_the_backout_run_is_refused_once_the_window_closed(services: Services) -> None:
    ref = stored(services, "failed", ("RUN-2", "backout")).ref
    decision = gate_at(services, AFTER).check_step(
        [PROD], run_id="RUN-2", change_ref=ref, what="backout")
    assert not decision.allowed and "in state failed" in decision.reason
    assert gate_events(services) == [(ref, "refused")]


def test_other_runs_are_decided_and_recorded_by_the_gate(services: Services) -> None:
    ref = stored(services, "scheduled").ref
    gate = gate_at(services, INSIDE)
    decision = gate.check_step([PROD, DEV], run_id="RUN-3", change_ref=ref,
                               what="procedure p step s (RUN-3)")
    assert decision.allowed and decision.change_ref == ref
    assert run_log(services, ref) == ["procedure p step s (RUN-3) on prod, dev"]
    # Without a change: the single active change covering the host is used.
    found = gate.check_step([PROD], run_id="RUN-4", change_ref=None, what="procedure p (RUN-4)")
    assert found.allowed and found.change_ref == ref
    # After the window nothing covers the production host.
    late = gate_at(services, AFTER).check_step([PROD], run_id="RUN-5", change_ref=None,
                                               what="procedure p (RUN-5)")
    assert not late.allowed and "none is active" in late.reason
    assert gate_events(services) == [(ref, "ok"), (ref, "ok"), ("prod", "refused")]


def test_opens_linked_run_needs_the_link_the_state_and_the_hosts() -> None:
    change = replace(new_change(requester="alice", now=START, hosts=("prod",)), state="implement",
                     window_start=iso(START), window_end=iso(START + timedelta(hours=1)))
    linked = link_run(change, "RUN-1", "implementation", "running", START)
    assert opens_linked_run(linked, "RUN-1", ["prod"], INSIDE)
    assert not opens_linked_run(change, "RUN-1", ["prod"], INSIDE)  # not linked
    assert not opens_linked_run(linked, "RUN-1", ["prod", "other"], INSIDE)  # not covered
    assert not opens_linked_run(linked, "RUN-1", ["prod"], AFTER)  # window closed
    assert not opens_linked_run(replace(linked, state="review"), "RUN-1", ["prod"], INSIDE)
    backout = link_run(replace(change, state="failed"), "RUN-2", "backout", "running", START)
    assert opens_linked_run(backout, "RUN-2", ["prod"], INSIDE)
    assert not opens_linked_run(replace(backout, state="backed_out"), "RUN-2", ["prod"], INSIDE)
