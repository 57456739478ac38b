"""Notice that a store file was changed, by this process or another one.

Every write of :class:`~itop_tui.services.store.JsonStore` replaces the
file (a new inode, a new mtime), so comparing ``stat`` results is enough to
know that a pane shows an old copy: no read, no lock, a few microseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

FileSignature = tuple[int, int, int]
"""Inode, modification time (ns) and size of a file."""


def file_signature(path: Path) -> FileSignature | None:
    """What tells one version of ``path`` from the next; None while it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class StoreWatch:
    """The versions of some store files that a reader last saw.

    A pane calls :meth:`mark` when it starts reading, and :meth:`poll` from a
    timer: when ``poll`` says True, its copy is old and it reads again.
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        """Watch ``paths``, taking their current versions as seen."""
        self.paths = tuple(Path(p) for p in paths)
        self._seen = self._signatures()

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str], *names: str) -> StoreWatch:
        """Watch the store files ``names`` of ``data_dir``."""
        return cls(Path(data_dir) / name for name in names)

    def _signatures(self) -> tuple[FileSignature | None, ...]:
        return tuple(file_signature(p) for p in self.paths)

    def mark(self) -> None:
        """The files are being read now: their current versions are seen."""
        self._seen = self._signatures()

    def poll(self) -> bool:
        """Whether a file changed since the last :meth:`mark` or ``poll``."""
        current = self._signatures()
        if current == self._seen:
            return False
        self._seen = current
        return True
