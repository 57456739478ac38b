"""Ansible host patterns: ``web[01:20].example.com``, ``db-[a:f]``, ``host:2222``.

Pure functions that behave like Ansible's inventory parsers do for a host
entry: an optional ``:PORT`` suffix is split off, then every ``[begin:end]`` or
``[begin:end:step]`` range is expanded, leftmost range outermost.

Rules followed (they are Ansible's):

- numeric ranges are inclusive; a begin with a leading zero (``01``) pads every
  number to its width, and then the end must have the same width;
- an empty begin means ``0``; an empty end is an error;
- letter ranges run over ``a..z`` then ``A..Z`` (so ``[x:B]`` is x, y, z, A, B);
- a numeric range whose begin is above its end expands to nothing.
"""

from __future__ import annotations

import ipaddress
import re
import string

_RANGE = r"\[(?:[a-zA-Z]:[a-zA-Z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.UNICODE)
_BRACKETED_HOST_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")


class HostRangeError(ValueError):
    """A host pattern holds a range that cannot be expanded."""


def split_port(pattern: str) -> tuple[str, int | None]:
    """Split ``host:port`` (or ``[v6addr]:port``) into host and port.

    A pattern whose host part is not a recognisable host name or address is
    returned whole with no port, as Ansible does.
    """
    host, port = pattern, None
    for regex in (_BRACKETED_HOST_PORT, _HOST_PORT):
        m = regex.match(host)
        if m:
            host, port = m.group(1), int(m.group(2))
    if not _is_address(host):
        return pattern, None
    return host, port


def _is_address(host: str) -> bool:
    if _HOSTNAME.match(host):
        return True
    if "[" in host:
        # an IPv6 address with numeric ranges: try the first value of each range
        host = re.sub(r"\[([0-9a-fA-F]+):[0-9a-fA-F]+(?::[0-9]+)?\]", r"\1", host)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def expand_ranges(text: str) -> list[str]:
    """Every name ``text`` stands for; ``text`` itself when it holds no ``[``.

    Raises :class:`HostRangeError` for a malformed range.
    """
    start = text.find("[")
    if start < 0:
        return [text]
    end = text.find("]", start)
    if end < 0:
        raise HostRangeError(f"unterminated range in {text!r}: missing ']'")
    head, body, tail = text[:start], text[start + 1 : end], text[end + 1 :]
    names: list[str] = []
    for item in _range_items(body, text):
        names.extend(expand_ranges(f"{head}{item}{tail}"))
    return names


def _range_items(body: str, text: str) -> list[str]:
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise HostRangeError(f"range [{body}] in {text!r} must be begin:end or begin:end:step")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise HostRangeError(f"range [{body}] in {text!r} must give an end value")
    step_text = bounds[2] if len(bounds) == 3 else "1"
    try:
        step = int(step_text)
    except ValueError:
        raise HostRangeError(f"range [{body}] in {text!r}: step {step_text!r} is not a number") from None
    if step < 1:
        raise HostRangeError(f"range [{body}] in {text!r}: step must be at least 1")
    width = 0
    if begin[0] == "0" and len(begin) > 1:
        width = len(begin)
        if len(end) != width:
            raise HostRangeError(
                f"range [{body}] in {text!r}: begin and end must have the same width "
                "when begin has a leading zero"
            )
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise HostRangeError(f"range [{body}] in {text!r}: begin must not come after end")
        return [c.zfill(width) for c in letters[first : last + 1 : step]]
    try:
        low, high = int(begin), int(end)
    except ValueError:
        raise HostRangeError(
            f"range [{body}] in {text!r}: bounds must be two numbers or two letters"
        ) from None
    return [str(n).zfill(width) for n in range(low, high + 1, step)]


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """Host names and port for one inventory host entry.

    ``web[01:02].example.com:2222`` gives
    ``(["web01.example.com", "web02.example.com"], 2222)``.
    """
    host, port = split_port(pattern)
    return expand_ranges(host), port
