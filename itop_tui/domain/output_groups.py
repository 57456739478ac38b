"""Group hosts whose command results are identical, as ``clush -b`` does.

Hundreds of hosts usually print a handful of distinct outputs; showing each
distinct output once, under a compact list of the hosts that printed it
(``web[01-03],db1``), makes the odd host stand out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

HEADER_RULE = "-" * 16
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


class ResultLike(Protocol):
    """The fields of a run result that grouping looks at."""

    host: str
    exit_status: int | None
    stdout: str
    stderr: str
    truncated: bool
    error: str | None


@dataclass
class OutputGroup:
    """Hosts that ended the same way and printed exactly the same."""

    hosts: list[str]
    exit_status: int | None
    error: str | None
    stdout: str
    stderr: str
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when these hosts ran the command and it exited 0."""
        return self.error is None and self.exit_status == 0

    @property
    def status_label(self) -> str:
        """``exit N`` or ``error``."""
        if self.error is not None:
            return "error" if self.exit_status is None else f"exit {self.exit_status}, error"
        return f"exit {self.exit_status}"

    def header(self) -> str:
        """``---------------- web[01-03],db1 (exit 0)``."""
        return f"{HEADER_RULE} {fold_hosts(self.hosts)} ({self.status_label})"

    def body(self) -> str:
        """The shared output: stdout, then stderr, then the error, each only if present."""
        parts = [text.rstrip("\n") for text in (self.stdout, self.stderr) if text]
        if self.truncated:
            parts.append("[output truncated]")
        if self.error:
            parts.append(self.error)
        return "\n".join(parts)


def group_results(results: Iterable[ResultLike]) -> list[OutputGroup]:
    """Group results by (exit status, error, stdout, stderr, truncated).

    Groups that succeeded come first, then the failures; within each, in the
    order of their first host.
    """
    groups: dict[tuple[object, ...], OutputGroup] = {}
    for result in results:
        key = (result.exit_status, result.error, result.stdout, result.stderr, result.truncated)
        group = groups.get(key)
        if group is None:
            group = groups[key] = OutputGroup(
                hosts=[],
                exit_status=result.exit_status,
                error=result.error,
                stdout=result.stdout,
                stderr=result.stderr,
                truncated=result.truncated,
            )
        group.hosts.append(result.host)
    ordered = list(groups.values())
    ordered.sort(key=lambda g: not g.ok)
    return ordered


def format_groups(groups: Iterable[OutputGroup]) -> str:
    """The text ``itop run`` prints: each header followed by its output."""
    blocks = []
    for group in groups:
        body = group.body()
        blocks.append(group.header() + ("\n" + body if body else ""))
    return "\n".join(blocks) + ("\n" if blocks else "")


def fold_hosts(names: Iterable[str]) -> str:
    """Write host names compactly: ``web01,web02,web03,db1`` -> ``web[01-03],db1``.

    Names sharing a prefix and suffix around their last number are folded
    into ranges; zero padding is kept (``web[08-10]``), names without a number
    stay as they are. The result is sorted and has no duplicates.
    """
    plain: set[str] = set()
    numbered: dict[tuple[str, str], set[str]] = {}
    for name in names:
        match = _NUMBERED.match(name)
        if match is None:
            plain.add(name)
        else:
            prefix, digits, suffix = match.groups()
            numbered.setdefault((prefix, suffix), set()).add(digits)
    pieces: list[tuple[str, str]] = [(name, name) for name in plain]
    for (prefix, suffix), digit_set in numbered.items():
        pieces.extend(_fold_family(prefix, suffix, digit_set))
    pieces.sort(key=lambda piece: (_natural_key(piece[0]), piece[0]))
    return ",".join(text for _, text in pieces)


def _fold_family(prefix: str, suffix: str, digit_set: set[str]) -> list[tuple[str, str]]:
    """Fold the numbers of one prefix/suffix family; returns (sort key, text) pairs."""
    padded_widths = {len(d) for d in digit_set if len(d) > 1 and d.startswith("0")}
    by_width: dict[int, list[int]] = {}
    for digits in digit_set:
        # An unpadded number as long as a padded one ("10" beside "09") joins its range.
        width = len(digits) if len(digits) in padded_widths else 0
        by_width.setdefault(width, []).append(int(digits))
    pieces = []
    for width, numbers in by_width.items():
        numbers.sort()
        texts = [str(n).zfill(width) for n in numbers]
        first_name = f"{prefix}{texts[0]}{suffix}"
        if len(numbers) == 1:
            pieces.append((first_name, first_name))
            continue
        spans: list[list[int]] = []
        for number in numbers:
            if spans and number == spans[-1][1] + 1:
                spans[-1][1] = number
            else:
                spans.append([number, number])
        ranges = [
            str(low).zfill(width) if low == high
            else f"{str(low).zfill(width)}-{str(high).zfill(width)}"
            for low, high in spans
        ]
        pieces.append((first_name, f"{prefix}[{','.join(ranges)}]{suffix}"))
    return pieces


def _natural_key(text: str) -> list[object]:
    """Sort key that orders ``web2`` before ``web10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", text) if part]
