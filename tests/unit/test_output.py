"""Bounding and sanitizing host output: control sequences, and chunked line streams."""

from __future__ import annotations

import random

import pytest

from itop_tui.domain.output import (
    LineChunker,
    shorten,
    shorten_path,
    strip_control,
    strip_control_lines,
)
from itop_tui.services.local_transport import LineSplitter

SAMPLES = [
    b"cpu  4705 150 1120 16250 520 0 30 0 0 0\n",
    b"\x1b[31mred\x1b[0m and \x1b]0;title\x07plain\r\n",
    b"an unterminated OSC \x1b]0;eats the line\n",
    b"an unterminated DCS \x1bPq#0;2;0;0;0\n",
    "caf\u00e9 \u2603 \U0001f600 multibyte\n".encode(),
    b"invalid \xff\xfe bytes \xc3\n",
    b"\n",
    b"tab\tkept, bell \x07 and NUL \x00 dropped\n",
    b"\x9b31m C1 CSI \x85 NEL\n",
]


def stream_bytes(rng: random.Random, lines: int) -> bytes:
    return b"".join(rng.choice(SAMPLES) for _ in range(lines))


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    """``data`` in random pieces, some one byte long, some cutting multibyte characters."""
    pieces, start = [], 0
    while start < len(data):
        size = rng.choice([1, 2, 3, 7, 40, 300, 5000])
        pieces.append(data[start : start + size])
        start += size
    return pieces


@pytest.mark.parametrize("seed", range(30))
def test_chunked_blocks_hold_the_same_lines_as_the_line_splitter(seed: int) -> None:
    rng = random.Random(seed)
    data = stream_bytes(rng, 200) + (b"last line without newline" if seed % 2 else b"")
    splitter, chunker = LineSplitter(4096), LineChunker(4096)
    lines: list[str] = []
    text = ""
    for piece in cut(data, rng):
        lines += splitter.feed(piece)
        block = chunker.feed(piece)
        assert block == "" or block.endswith("\n")
        text += block
    last = splitter.flush()
    if last is not None:
        lines.append(last)
    text += chunker.flush()
    expected = "\n".join(lines) + ("\n" if data.endswith(b"\n") else "")
    assert text == expected
    assert "\x1b" not in text and "\r" not in text and "\x00" not in text


def test_strip_control_lines_is_strip_control_per_line() -> None:
    text = b"".join(SAMPLES).decode("utf-8", errors="replace")
    assert strip_control_lines(text) == "\n".join(strip_control(line) for line in text.split("\n"))
    # Over a block, plain strip_control would let an unterminated OSC eat later lines.
    assert "plain" not in strip_control("\x1b]0;x\nplain\n")
    assert strip_control_lines("\x1b]0;x\nplain\n") == "\nplain\n"


def test_an_unfinished_line_is_cut_at_the_limit_and_the_rest_dropped() -> None:
    chunker = LineChunker(line_limit=10)
    assert chunker.feed(b"first\n0123456") == "first\n"
    assert chunker.feed(b"789abcdef") == ""
    assert chunker.feed(b"ghij" * 1000) == ""  # nothing grows while the line goes on
    assert chunker.feed(b"xyz\nnext\nhalf") == "0123456789\nnext\n"
    assert chunker.flush() == "half"
    assert chunker.flush() == ""


def test_a_line_complete_in_one_chunk_is_left_to_the_consumer_to_bound() -> None:
    chunker = LineChunker(line_limit=10)
    assert chunker.feed(b"a" * 50 + b"\n") == "a" * 50 + "\n"


def test_shorten_ends_with_an_ellipsis_only_when_cut() -> None:
    assert shorten("eth0", 16) == "eth0"
    assert shorten("veth1234567890abcdef", 16) == "veth1234567890a…"
    assert len(shorten("x" * 40, 16)) == 16


def test_shorten_path_keeps_both_ends() -> None:
    path = "/var/lib/docker/overlay2/0123456789abcdef/merged"
    short = shorten_path(path, 24)
    assert len(short) == 24 and "…" in short
    assert short.startswith("/var/lib/doc…") and short.endswith("cdef/merged")
    assert shorten_path("/home", 24) == "/home"
    assert shorten_path(path, 2) == "/v"
