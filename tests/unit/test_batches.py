"""Serial batches and max_fail_percentage, checked against Ansible's documented behaviour."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itop_tui.domain.batches import (
    batch_should_stop,
    batch_size,
    exceeds_max_fail_percentage,
    serial_batches,
)


def hosts(count: int) -> list[str]:
    return [f"h{i:02d}" for i in range(1, count + 1)]


def sizes(batches: list[list[str]]) -> list[int]:
    return [len(batch) for batch in batches]


@pytest.mark.parametrize(
    ("count", "serial", "expected"),
    [
        # Ansible docs: serial 3 with 6 hosts runs 3, then the next 3.
        (6, 3, [3, 3]),
        # 30% of 10 hosts is 3 per batch; the final batch holds the remainder.
        (10, "30%", [3, 3, 3, 1]),
        # Ansible docs: [1, 5, 10]: one host, then 5, then 10 at a time.
        (20, [1, 5, 10], [1, 5, 10, 4]),
        (10, [1, 5, "50%"], [1, 5, 4]),
        (20, [1, 5, "50%"], [1, 5, 10, 4]),
        # Ansible docs: ["10%", "20%", "100%"].
        (10, ["10%", "20%", "100%"], [1, 2, 7]),
        # Percentages round down but never below one host.
        (10, "1%", [1] * 10),
        (3, "50%", [1, 1, 1]),
        (7, "100%", [7]),
        # No serial: one batch of everything.
        (5, [], [5]),
        (5, 10, [5]),
    ],
)
def test_batches_match_ansible_examples(count: int, serial: int | str | list[int | str], expected: list[int]) -> None:
    batches = serial_batches(hosts(count), serial)
    assert sizes(batches) == expected
    # Every host once, in order.
    assert [h for batch in batches for h in batch] == hosts(count)


def test_no_targets_give_no_batches() -> None:
    assert serial_batches([], "30%") == []
    assert serial_batches([], []) == []


def test_batch_size_of_percentages_and_numbers() -> None:
    assert batch_size("30%", 10) == 3
    assert batch_size("25%", 7) == 1
    assert batch_size("0%", 7) == 1
    assert batch_size(4, 100) == 4
    with pytest.raises(ValueError, match="percentage"):
        batch_size("abc", 10)
    with pytest.raises(ValueError, match="whole number"):
        batch_size("12.5%", 10)
    with pytest.raises(ValueError):
        batch_size(True, 10)


def test_max_fail_percentage_must_be_exceeded_not_equalled() -> None:
    # Ansible docs: max_fail_percentage 30 with 10 hosts: more than 3 failures abort.
    assert not exceeds_max_fail_percentage(3, 10, 30)
    assert exceeds_max_fail_percentage(4, 10, 30)
    # Ansible docs: serial 4, to abort when 2 fail, set 49 rather than 50.
    assert exceeds_max_fail_percentage(2, 4, 49)
    assert not exceeds_max_fail_percentage(2, 4, 50)
    # 0 means any failure stops.
    assert exceeds_max_fail_percentage(1, 10, 0)
    assert not exceeds_max_fail_percentage(0, 10, 0)
    assert not exceeds_max_fail_percentage(0, 0, 0)


def test_a_batch_where_every_host_failed_stops_the_run() -> None:
    assert batch_should_stop(4, 4, None)
    assert batch_should_stop(4, 4, 100)
    assert not batch_should_stop(3, 4, None)
    assert not batch_should_stop(3, 4, 100)
    assert batch_should_stop(3, 4, 50)
    assert not batch_should_stop(0, 0, None)


try:
    from ansible.executor import playbook_executor as ansible_executor
except ImportError:  # pragma: no cover - ansible-core is a test extra
    ansible_executor = None


class _HostList:
    """Hands Ansible's batching code a host list, as its inventory would."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def get_hosts(self, pattern: str, order: str | None = None) -> list[str]:
        return list(self.names)


def ansible_batches(names: list[str], serial: list[int | str]) -> list[list[str]]:
    executor = ansible_executor.PlaybookExecutor.__new__(ansible_executor.PlaybookExecutor)
    executor._inventory = _HostList(names)
    play = SimpleNamespace(hosts="all", order=None, serial=serial)
    batches: list[list[str]] = executor._get_serialized_batches(play)
    return batches


serial_item = st.one_of(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=100).map(lambda n: f"{n}%"),
)


@pytest.mark.skipif(
    ansible_executor is None,
    reason="ansible-core is a test extra: pip install -e '.[test]' to compare with Ansible itself",
)
@settings(max_examples=300, deadline=None)
@given(count=st.integers(min_value=0, max_value=60), serial=st.lists(serial_item, max_size=4))
def test_batches_equal_ansibles_own_computation(count: int, serial: list[int | str]) -> None:
    names = hosts(count)
    assert serial_batches(names, serial) == ansible_batches(names, serial)
