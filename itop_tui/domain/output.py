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


def strip_control(text: str) -> str:
    """Remove terminal control sequences, keeping tabs and newlines.

    Carriage returns are dropped too, so ``\\r\\n`` becomes ``\\n`` and a
    progress line that rewrites itself cannot hide earlier text.
    """
    return _CONTROL_RE.sub("", text)


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
