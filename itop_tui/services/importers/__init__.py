"""Read hosts and groups from inventory files: Ansible, ssh_config, CSV.

:func:`import_file` picks the format (or takes it from the caller) and returns
an :class:`ImportResult`; every problem with a file raises
:class:`InventoryFileError`, whose text is ``PATH:LINE: message``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from itop_tui.domain.models import Group, Host

FORMATS = ("ansible", "ssh-config", "csv")


class InventoryFileError(ValueError):
    """An inventory file cannot be read; ``line`` is 1-based or ``None``."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


@dataclass
class ImportResult:
    """What one file holds: its hosts and groups, where they came from, and
    warnings about parts that were skipped (the way Ansible skips them)."""

    hosts: list[Host]
    groups: list[Group]
    source: str
    warnings: list[str] = field(default_factory=list)


def import_file(path: str | Path, fmt: str | None = None) -> ImportResult:
    """Read ``path`` as ``fmt`` (``ansible``, ``ssh-config`` or ``csv``), or as
    the format :func:`detect_format` finds when ``fmt`` is ``None``."""
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise InventoryFileError(path, None, f"unknown format {fmt!r}; use --format ansible|ssh-config|csv")
    if not path.is_file():
        raise InventoryFileError(path, None, "no such file" if not path.exists() else "not a file")
    if fmt == "csv":
        from itop_tui.services.importers.csv_file import import_csv

        return import_csv(path)
    if fmt == "ssh-config":
        from itop_tui.services.importers.ssh_config import import_ssh_config

        return import_ssh_config(path)
    from itop_tui.services.importers.ansible import import_ansible

    return import_ansible(path)


_INI_SECTION = re.compile(r"^\s*\[[^\]\s]+\]\s*(?:[#;].*)?$")
_SSH_HOST = re.compile(r"^\s*(?:Host|Match)\s*[=\s]\s*\S", re.IGNORECASE)
_YAML_GROUP = re.compile(r"^[^\s#][^:]*:\s*(?:#.*)?$")


def detect_format(path: Path) -> str:
    """Guess a file's format from its name, then from its first lines."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".ini", ".yml", ".yaml", ".json"):
        return "ansible"
    if path.name in ("config", "ssh_config") or suffix == ".conf":
        return "ssh-config"
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = [fh.readline() for _ in range(200)]
    except OSError as exc:
        raise InventoryFileError(path, None, exc.strerror or str(exc)) from None
    lines = [ln for ln in head if ln.strip() and not ln.lstrip().startswith(("#", ";"))]
    if any(_INI_SECTION.match(ln) for ln in lines):
        return "ansible"
    if any(_SSH_HOST.match(ln) for ln in lines):
        return "ssh-config"
    if lines and (lines[0].strip() == "---" or _YAML_GROUP.match(lines[0])):
        return "ansible"
    if lines and "," in lines[0] and "name" in lines[0].lower().replace(" ", "").split(","):
        return "csv"
    raise InventoryFileError(path, None, "cannot tell the format; use --format ansible|ssh-config|csv")
