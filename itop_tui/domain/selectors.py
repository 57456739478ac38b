"""Host selectors: which hosts a command, a job or a filter applies to.

The syntax is Ansible's host patterns, plus a few itop qualifiers:

- ``web01``: a host name; ``web`` a group (with its child groups);
  ``all`` or ``*`` every host; ``ungrouped`` the hosts in no group;
- ``web*``, ``db[0-9]``, ``?pp``: shell globs over group and host names;
- ``~re``: a regular expression matched at the start of group and host names;
- ``tag:X``, ``status:production``, ``class:vm``, ``criticality:high``,
  ``group:X``, ``source:ansible*`` (the value may be a glob or ``~re``);
- ``web:db`` or ``web,db``: union; ``web:&prod``: intersection;
  ``all:!web03``: exclusion;
- ``web[0]``, ``web[0:2]``, ``web[-1]``: a slice of what a term selects.

As in Ansible, unions are applied first, then intersections, then exclusions,
whatever their order in the text (``a:&b:!c`` equals ``!c:a:&b``); a selector of
only intersections and exclusions starts from ``all``. When the text holds a
comma, terms are separated by commas (so a regular expression may hold ``:``).
Matching of names is case-sensitive, as in Ansible. Results keep inventory
order (so a slice counts hosts in inventory order).

Two departures from Ansible: ``[x-y]`` is a glob character class here (Ansible
reads it as a subscript it has deprecated), and ``web:2`` is always the union
of ``web`` and ``2`` (Ansible would take it for one host with a port).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from itop_tui.domain.models import CRITICALITIES, HOST_CLASSES, HOST_STATUSES, Host, Inventory

QUALIFIERS = ("tag", "status", "class", "criticality", "group", "source")
_CHOICES = {"status": HOST_STATUSES, "class": HOST_CLASSES, "criticality": CRITICALITIES}
_GLOB_CHARS = frozenset("*?[")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+):([0-9]*))\]$")
_CHUNKS = re.compile(r"\[[^\]]*\]|[^\[\]]+|[\[\]]")
_TEXT_FACT_KEYS = (
    "os",
    "os_name",
    "os_version",
    "os_pretty",
    "os_id",
    "distribution",
    "distribution_version",
    "kernel",
    "hostname",
)


class SelectorError(ValueError):
    """A selector's text cannot be understood; the message says why."""


@dataclass(frozen=True)
class Term:
    """One part of a selector.

    ``op`` is ``""`` (union), ``"&"`` (intersection) or ``"!"`` (exclusion);
    ``kind`` is ``"name"`` (a host or group name, glob or regex) or one of
    :data:`QUALIFIERS`; ``subscript`` is ``(start, end)`` for ``[start:end]``
    (``end`` ``None`` for a single index, ``-1`` for an open end).
    """

    op: str
    kind: str
    value: str
    subscript: tuple[int, int | None] | None = None


@dataclass(frozen=True)
class Selector:
    """A parsed selector: its text and its terms in evaluation order."""

    text: str
    terms: tuple[Term, ...]


def parse_selector(text: str) -> Selector:
    """Parse ``text`` into a :class:`Selector`.

    Raises :class:`SelectorError` naming the faulty part.
    """
    parts = _split(text)
    if not parts:
        raise SelectorError("empty selector: give a host, a group, a pattern or 'all'")
    terms = [_parse_term(p) for p in parts]
    unions = [t for t in terms if t.op == ""]
    intersections = [t for t in terms if t.op == "&"]
    exclusions = [t for t in terms if t.op == "!"]
    if not unions:
        unions = [Term("", "name", "all")]
    return Selector(text.strip(), tuple(unions + intersections + exclusions))


def _split(text: str) -> list[str]:
    """Split on commas when there is one, else on colons outside brackets.

    ``tag:X`` style qualifiers keep their colon.
    """
    text = text.strip()
    if "," in text:
        return [p.strip() for p in text.split(",") if p.strip()]
    if _is_ipv6(text):
        return [text]
    pieces: list[str] = []
    current = ""
    for chunk in _CHUNKS.findall(text):
        if chunk.startswith("[") or chunk == "]":
            # a bracketed glob class or subscript never separates terms
            current += chunk
            continue
        bits = chunk.split(":")
        current += bits[0]
        for bit in bits[1:]:
            pieces.append(current)
            current = bit
    pieces.append(current)
    merged: list[str] = []
    for piece in (p.strip() for p in pieces):
        if merged and merged[-1].lstrip("&!").lower() in QUALIFIERS:
            merged[-1] = f"{merged[-1]}:{piece}"
        elif piece:
            merged.append(piece)
    return merged


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _parse_term(part: str) -> Term:
    op = ""
    if part[0] in "&!":
        op, part = part[0], part[1:].strip()
    if not part:
        raise SelectorError(f"'{op}' must be followed by a host, group or pattern")
    if part[0] in "&!":
        raise SelectorError(f"'{op}{part}': use one of '&' or '!' per term")
    kind, value = "name", part
    key, sep, rest = part.partition(":")
    if sep and key.lower() in QUALIFIERS:
        kind, value = key.lower(), rest.strip()
        if not value:
            raise SelectorError(f"'{part}': give a value after '{key}:'")
        if kind in _CHOICES:
            value = value.lower()
            choices = _CHOICES[kind]
            if not _is_pattern(value) and value not in choices:
                raise SelectorError(
                    f"'{part}': unknown {kind} {value!r}; expected one of {', '.join(choices)}"
                )
    subscript: tuple[int, int | None] | None = None
    if kind == "name" and not value.startswith("~"):
        m = _SUBSCRIPT.match(value)
        if m:
            value = m.group(1)
            if m.group(2) is not None:
                subscript = (int(m.group(2)), None)
            else:
                subscript = (int(m.group(3)), int(m.group(4)) if m.group(4) else -1)
    _compile(value, part)
    return Term(op, kind, value, subscript)


def _is_pattern(value: str) -> bool:
    return value.startswith("~") or bool(_GLOB_CHARS.intersection(value))


def _compile(value: str, part: str) -> Callable[[str], bool]:
    """A predicate for one name: exact, glob or (``~``) regular expression."""
    if value.startswith("~"):
        try:
            regex = re.compile(value[1:])
        except re.error as exc:
            raise SelectorError(f"'{part}': bad regular expression: {exc}") from None
        return lambda s: regex.match(s) is not None
    if _GLOB_CHARS.intersection(value):
        glob = re.compile(fnmatch.translate(value))
        return lambda s: glob.match(s) is not None
    return value.__eq__


def select_hosts(inventory: Inventory, selector: str | Selector) -> list[Host]:
    """The hosts of ``inventory`` that ``selector`` picks, in inventory order.

    Raises :class:`SelectorError` for text that does not parse.
    """
    parsed = parse_selector(selector) if isinstance(selector, str) else selector
    chosen: set[str] = set()
    for term in parsed.terms:
        names = _term_hosts(inventory, term)
        if term.op == "&":
            chosen &= names
        elif term.op == "!":
            chosen -= names
        else:
            chosen |= names
    if len(chosen) == len(inventory.hosts):
        return list(inventory.hosts.values())
    return [h for n, h in inventory.hosts.items() if n in chosen]


def _term_hosts(inventory: Inventory, term: Term) -> set[str]:
    hosts = inventory.hosts
    value = term.value
    found: set[str]
    if term.kind == "name":
        if value in hosts and term.subscript is None:
            return {value}
        found = set(hosts) if value in ("all", "*") else _name_matches(inventory, value)
    elif term.kind == "group":
        if _is_pattern(value):
            test = _compile(value, value)
            found = _members(inventory, [g for g in _group_names(inventory) if test(g)])
        else:
            found = _members(inventory, [value])
    elif term.kind == "tag":
        if _is_pattern(value):
            test = _compile(value, value)
            found = {n for n, h in hosts.items() if any(test(t) for t in h.tags)}
        else:
            found = {n for n, h in hosts.items() if value in h.tags}
    else:
        attr = _ATTRIBUTES[term.kind]
        if _is_pattern(value):
            test = _compile(value, value)
            found = {n for n, h in hosts.items() if test(getattr(h, attr))}
        else:
            found = {n for n, h in hosts.items() if getattr(h, attr) == value}
    if term.subscript is not None:
        found = _apply_subscript(inventory, found, term.subscript)
    return found


def _name_matches(inventory: Inventory, value: str) -> set[str]:
    if not _is_pattern(value):
        if value in inventory.hosts:
            return {value}
        return _members(inventory, [value])
    test = _compile(value, value)
    groups = [g for g in _group_names(inventory) if test(g)]
    found = _members(inventory, groups)
    found.update(n for n in inventory.hosts if test(n))
    return found


def _group_names(inventory: Inventory) -> Iterable[str]:
    names = inventory.all_group_names()
    names.update(("all", "ungrouped"))
    return names


def _members(inventory: Inventory, groups: list[str]) -> set[str]:
    if not groups:
        return set()
    if "all" in groups:
        return set(inventory.hosts)
    wanted: set[str] = set()
    for g in groups:
        wanted |= inventory.descendant_groups(g)
    found = {n for n, h in inventory.hosts.items() if not wanted.isdisjoint(h.groups)}
    if "ungrouped" in wanted:
        found.update(n for n, h in inventory.hosts.items() if not h.groups)
    return found


def _apply_subscript(
    inventory: Inventory, found: set[str], subscript: tuple[int, int | None]
) -> set[str]:
    ordered = [n for n in inventory.hosts if n in found]
    if not ordered:
        return set()
    start, end = subscript
    if end is None:
        try:
            return {ordered[start]}
        except IndexError:
            return set()
    if end == -1:
        end = len(ordered) - 1
    return set(ordered[start : end + 1])


_ATTRIBUTES = {"status": "status", "class": "host_class", "criticality": "criticality", "source": "source"}


def host_text(host: Host) -> str:
    """The lower-case text free-text filtering searches in a host."""
    parts = [host.name, host.address, host.status, *host.groups, *host.tags]
    facts = host.facts
    if facts:
        for key in _TEXT_FACT_KEYS:
            value = facts.get(key)
            if isinstance(value, str):
                parts.append(value)
    return "\n".join(parts).lower()


def matches_text(host: Host, text: str) -> bool:
    """True when every word of ``text`` occurs (case-insensitively) in the host's
    name, address, status, groups, tags or OS facts."""
    haystack = host_text(host)
    return all(word in haystack for word in text.lower().split())


def filter_hosts(inventory: Inventory, text: str) -> list[Host]:
    """What a filter box shows for ``text``: all hosts when it is blank; the
    selector's hosts when ``text`` is a selector that picks some; otherwise the
    hosts that :func:`matches_text` the text."""
    if not text.strip():
        return list(inventory.hosts.values())
    try:
        hosts = select_hosts(inventory, text)
    except SelectorError:
        hosts = []
    if hosts:
        return hosts
    words = text.lower().split()
    chosen = []
    for host in inventory.hosts.values():
        haystack = host_text(host)
        if all(w in haystack for w in words):
            chosen.append(host)
    return chosen
