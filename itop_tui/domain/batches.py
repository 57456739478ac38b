"""Serial batches and the failure limit, computed the way Ansible computes them.

``serial`` is a list of batch sizes, each a number of hosts or a percentage
of all targets (``"30%"``). The first batch takes the first size, the second
the second, and every later batch repeats the last size; the final batch
holds what is left. A percentage is rounded down, with a minimum of one
host; a size of zero or less takes all remaining hosts. This follows
``PlaybookExecutor._get_serialized_batches`` and ``pct_to_int`` in
ansible-core.

After each step, the runner asks :func:`batch_should_stop`: Ansible ends the
play when the failed share of the batch is strictly greater than
``max_fail_percentage``, and also when every host of the batch failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def batch_size(value: int | str, total: int) -> int:
    """The number of hosts a serial value stands for among ``total`` hosts.

    ``"N%"`` is ``int(N / 100 * total)``, at least 1; an int is itself.
    Raises ValueError for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"serial value must be a number or a percentage, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        raise ValueError(f"serial value must be a number or a percentage, got {value!r}")
    try:
        percent = int(text[:-1])
    except ValueError:
        raise ValueError(f"serial percentage must be a whole number, got {value!r}") from None
    return int((percent / 100.0) * total) or 1


def serial_batches(targets: Sequence[T], serial: int | str | Sequence[int | str] = ()) -> list[list[T]]:
    """Split ``targets`` (in order) into batches as Ansible's ``serial`` does.

    ``serial`` is one value or a list of them; empty means one batch of all
    targets. No targets give no batches.
    """
    if isinstance(serial, int | str):
        sizes: list[int | str] = [serial]
    else:
        sizes = list(serial) or [-1]
    remaining = list(targets)
    total = len(remaining)
    batches: list[list[T]] = []
    index = 0
    while remaining:
        size = batch_size(sizes[index], total)
        if size <= 0:
            batches.append(remaining)
            break
        batches.append(remaining[:size])
        remaining = remaining[size:]
        index = min(index + 1, len(sizes) - 1)
    return batches


def exceeds_max_fail_percentage(failed: int, batch_len: int, max_fail_percentage: float) -> bool:
    """True when ``failed`` of ``batch_len`` hosts is strictly more than the limit.

    With ``max_fail_percentage: 30`` and 10 hosts, 3 failures continue and 4
    stop; the limit must be exceeded, not equalled.
    """
    if batch_len <= 0:
        return False
    return failed / batch_len > max_fail_percentage / 100.0


def batch_should_stop(failed: int, batch_len: int, max_fail_percentage: float | None) -> bool:
    """True when the run must stop: every host of the batch failed, or the limit was exceeded.

    Without ``max_fail_percentage`` only a batch where every host failed
    stops the run; the other batches go on with their healthy hosts.
    """
    if batch_len > 0 and failed >= batch_len:
        return True
    if max_fail_percentage is None:
        return False
    return exceeds_max_fail_percentage(failed, batch_len, max_fail_percentage)
