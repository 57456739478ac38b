"""Bounding and sanitizing output that comes from hosts."""

from __future__ import annotations

import re

DEFAULT_OUTPUT_LIMIT = 64 * 1024

# CSI, OSC (terminated by BEL or ST), other two-byte escapes, and C0/C1
# controls except tab and newline: anything a terminal would act on.
_CONTROL_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x1b"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


# Every sequence above starts with one of these: text without any (nearly
# all host output) is returned after one fast scan.
_ANY_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# The same, with no sequence running past a newline: stripping a block of
# lines with it equals stripping each line on its own (an unterminated OSC or
# DCS ends at the end of its line instead of eating the lines after it).
_LINE_CONTROL_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x1b"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def strip_control(text: str) -> str:
    """Remove terminal control sequences, keeping tabs and newlines.

    Carriage returns are dropped too, so ``\\r\\n`` becomes ``\\n`` and a
    progress line that rewrites itself cannot hide earlier text.
    """
    if _ANY_CONTROL_RE.search(text) is None:
        return text
    return _CONTROL_RE.sub("", text)


def strip_control_lines(text: str) -> str:
    """:func:`strip_control` applied to each line of ``text`` on its own, in one pass."""
    if _ANY_CONTROL_RE.search(text) is None:
        return text
    return _LINE_CONTROL_RE.sub("", text)


def decode_output(data: bytes) -> str:
    """Decode host output as UTF-8, replacing undecodable bytes."""
    return data.decode("utf-8", errors="replace")


class BoundedBuffer:
    """Collects bytes up to ``limit``, remembering whether more arrived.

    Keeps the head of the output: the first lines usually say what went
    wrong, and a runaway command cannot exhaust memory.
    """

    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False
        self.total = 0

    def feed(self, data: bytes) -> None:
        """Add a chunk, keeping only what fits under the limit."""
        self.total += len(data)
        room = self.limit - self._size
        if room <= 0:
            if data:
                self.truncated = True
            return
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        self._parts.append(data)
        self._size += len(data)

    def getvalue(self) -> bytes:
        """The kept bytes."""
        return b"".join(self._parts)

    def text(self) -> str:
        """The kept bytes decoded and stripped of control sequences."""
        return strip_control(decode_output(self.getvalue()))


class LineChunker:
    """Turns a byte stream into blocks of whole text lines, one block per chunk.

    Each block is decoded as UTF-8 (an undecodable byte becomes U+FFFD) and
    stripped of control sequences line by line (:func:`strip_control_lines`),
    in one pass per chunk instead of one per line. The bytes after a chunk's
    last newline wait for the next chunk. A line still unfinished after
    ``line_limit`` bytes is cut there (delivered once its newline comes) and
    the rest of it dropped, so a stream without newlines never grows a
    buffer. Lines that complete within one chunk are not cut: a chunk is
    bounded already (an SSH packet, a pipe read) and the consumer bounds
    its lines.
    """

    def __init__(self, line_limit: int = 4096) -> None:
        self.line_limit = max(1, line_limit)
        self._partial = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> str:
        """Add bytes; return the whole lines they complete (``""`` when none), newlines kept."""
        end = data.rfind(b"\n")
        if end < 0:
            self._keep(data)
            return ""
        if self._skipping:
            # This chunk's first newline ends the over-long line: what was
            # kept of it is its line, the rest of it is dropped.
            head = bytes(self._partial) + b"\n"
            body = data[data.find(b"\n") + 1 : end + 1]
            self._skipping = False
        else:
            head = bytes(self._partial)
            body = data[: end + 1]
        self._partial.clear()
        self._keep(data[end + 1 :])
        return strip_control_lines(decode_output(head + body if head else body))

    def flush(self) -> str:
        """The last unterminated line (``""`` if none), once the stream ended."""
        text = decode_output(bytes(self._partial))
        self._partial.clear()
        self._skipping = False
        return strip_control_lines(text)

    def _keep(self, tail: bytes) -> None:
        if self._skipping or not tail:
            return
        room = self.line_limit - len(self._partial)
        self._partial += tail[:room]
        if len(tail) > room:
            self._skipping = True


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in "…" when it was cut."""
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def shorten_path(path: str, width: int) -> str:
    """``path`` cut in the middle to ``width`` characters, keeping both ends:
    ``/var/lib/docker/overlay2/…/merged`` tells mounts apart where a cut end would not."""
    if len(path) <= width:
        return path
    if width < 3:
        return path[:width]
    tail = (width - 1) // 2
    head = width - 1 - tail
    return path[:head] + "…" + path[len(path) - tail:]
