"""Risk of a change: hosts' criticality, number of hosts, outage; raised, never lowered."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from itop_tui.domain.change import (
    RISKS,
    ChangeRefused,
    approvals_needed,
    assess_risk,
    new_change,
    raise_risk,
    risk_rank,
    with_risk,
)
from itop_tui.domain.models import Host

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def hosts(*criticalities: str) -> list[Host]:
    return [Host(name=f"h{i}", criticality=c) for i, c in enumerate(criticalities)]


@pytest.mark.parametrize(("crit", "count", "outage", "level", "score"), [
    ("low", 1, False, "low", 1),
    ("medium", 1, False, "low", 2),
    ("high", 1, False, "moderate", 3),
    ("low", 1, True, "moderate", 3),
    ("medium", 1, True, "moderate", 4),
    ("high", 1, True, "high", 5),
    ("low", 2, False, "low", 1),
    ("low", 3, False, "low", 2),
    ("medium", 3, False, "moderate", 3),
    ("low", 10, False, "moderate", 3),
    ("medium", 10, False, "moderate", 4),
    ("high", 10, False, "high", 5),
    ("low", 10, True, "high", 5),
])
def test_levels(crit: str, count: int, outage: bool, level: str, score: int) -> None:
    result = assess_risk(hosts(*[crit] * count), outage)
    assert (result.level, result.score) == (level, score)
    assert result.reasons[-1].startswith(f"score {score}: {level}")


def test_reasons_name_the_critical_hosts_the_count_and_the_outage() -> None:
    result = assess_risk(hosts("low", "high", "medium", "high"), True)
    assert result.reasons == (
        "highest host criticality high (h1, h3): +3",
        "4 hosts (3 or more): +1",
        "outage expected: +2",
        "score 6: high (moderate from 3, high from 5)",
    )


def test_an_outage_not_stated_counts_as_one() -> None:
    unknown = assess_risk(hosts("low"), None)
    assert unknown.score == assess_risk(hosts("low"), True).score == 3
    assert "outage not stated, counted as yes: +2" in unknown.reasons


def test_hosts_missing_from_the_inventory_count_as_high() -> None:
    result = assess_risk(hosts("low"), False, unknown=["gone01"])
    assert result.level == "moderate" and result.score == 3
    assert "highest host criticality high (gone01): +3" in result.reasons
    assert "gone01 not in the inventory: counted as criticality high" in result.reasons
    assert "2 hosts: +0" in result.reasons


def test_no_hosts_is_said() -> None:
    result = assess_risk([], False)
    assert result.level == "low" and "no hosts given" in result.reasons


@given(
    st.lists(st.sampled_from(["low", "medium", "high"]), min_size=1, max_size=15),
    st.sampled_from(["low", "medium", "high"]),
    st.booleans(),
)
def test_more_hosts_or_an_outage_never_lower_the_risk(
    crits: list[str], extra: str, outage: bool
) -> None:
    base = assess_risk(hosts(*crits), outage)
    assert assess_risk(hosts(*crits, extra), outage).score >= base.score
    assert assess_risk(hosts(*crits), True).score >= assess_risk(hosts(*crits), False).score
    assert base.level in RISKS


def test_requester_may_raise_but_not_lower() -> None:
    change = new_change(requester="alice", now=NOW, ref="CHG-1")
    change = with_risk(change, assess_risk(hosts("high"), False))
    assert (change.risk, change.risk_computed) == ("moderate", "moderate")
    raised = raise_risk(change, "high")
    assert (raised.risk, raised.risk_requested) == ("high", "high")
    with pytest.raises(ChangeRefused) as refused:
        raise_risk(change, "low")
    assert refused.value.missing_field == "risk"
    assert "computed risk is moderate" in refused.value.reason
    with pytest.raises(ChangeRefused):
        raise_risk(change, "extreme")


def test_a_raised_risk_survives_recomputation_and_a_higher_computed_wins() -> None:
    change = raise_risk(with_risk(new_change(requester="a", now=NOW, ref="CHG-1"),
                                  assess_risk(hosts("low"), False)), "moderate")
    assert with_risk(change, assess_risk(hosts("low"), False)).risk == "moderate"
    assert with_risk(change, assess_risk(hosts("high"), True)).risk == "high"


def test_approvals_needed_follow_type_and_risk() -> None:
    change = new_change(requester="a", now=NOW, ref="CHG-1")
    assert approvals_needed(replace(change, risk="low")) == 1
    assert approvals_needed(replace(change, risk="moderate")) == 1
    assert approvals_needed(replace(change, risk="high")) == 2
    assert approvals_needed(replace(change, type="emergency", risk="high")) == 1
    assert approvals_needed(replace(change, type="standard", risk="high")) == 0
    assert [risk_rank(r) for r in RISKS] == [0, 1, 2] and risk_rank(None) == -1
