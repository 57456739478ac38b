"""CSV inventories: one host per row under a header row.

Columns (names case-insensitive, in any order): ``name`` (required);
``address`` (or ``host``, ``hostname``); ``port``; ``user``; ``class``;
``status``; ``criticality``; ``groups`` and ``tags`` (several values separated
by ``;`` or ``,``); ``notes``; ``runs_on``; ``proxy_jump``; ``identity_file``;
``ssh_alias``; ``vars`` (a JSON object). Any other column becomes a variable
of that name (empty cells are left out). The delimiter may be ``,``, ``;`` or a
tab; a UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from itop_tui.domain.models import Group, Host, ValidationError
from itop_tui.services.importers import ImportResult, InventoryFileError

COLUMN_ALIASES = {
    "name": "name",
    "address": "address",
    "host": "address",
    "hostname": "address",
    "port": "port",
    "user": "user",
    "class": "class",
    "host_class": "class",
    "status": "status",
    "criticality": "criticality",
    "groups": "groups",
    "tags": "tags",
    "notes": "notes",
    "runs_on": "runs_on",
    "proxy_jump": "proxy_jump",
    "identity_file": "identity_file",
    "ssh_alias": "ssh_alias",
    "vars": "vars",
}
_FIELD_OF_COLUMN = {"class": "host_class"}
_LIST_SEPARATORS = re.compile(r"[;,]")


def split_list(text: str) -> list[str]:
    """``"a; b,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in _LIST_SEPARATORS.split(text) if v.strip()]


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def import_csv(path: str | Path) -> ImportResult:
    """Read hosts from a CSV file with a header row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryFileError(path, None, f"cannot read: {exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InventoryFileError(path, 1, "a header row naming the columns is required (at least 'name')")
    reader = csv.reader(text.splitlines(keepends=True), delimiter=_delimiter(lines[0]))
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise InventoryFileError(path, 1, f"bad CSV: {exc}") from None
    columns = [COLUMN_ALIASES.get(h.lower(), h) for h in header]
    if "name" not in columns:
        raise InventoryFileError(path, 1, f"the header has no 'name' column (found: {', '.join(header)})")
    seen_columns: dict[str, int] = {}
    for index, column in enumerate(columns):
        if column in seen_columns:
            raise InventoryFileError(path, 1, f"column {header[index]!r} appears twice")
        seen_columns[column] = index
    hosts: list[Host] = []
    first_line: dict[str, int] = {}
    groups: dict[str, Group] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(columns):
                raise InventoryFileError(
                    path, line, f"row has {len(row)} cells but the header names {len(columns)} columns"
                )
            cells = {columns[i]: row[i].strip() for i in range(len(row))}
            host = _host_from_row(path, line, cells)
            if host.name in first_line:
                raise InventoryFileError(
                    path, line, f"column 'name': host {host.name!r} is already on line {first_line[host.name]}"
                )
            first_line[host.name] = line
            hosts.append(host)
            for g in host.groups:
                groups.setdefault(g, Group(name=g))
    except csv.Error as exc:
        raise InventoryFileError(path, reader.line_num, f"bad CSV: {exc}") from None
    return ImportResult(hosts=hosts, groups=list(groups.values()), source="csv")


def _host_from_row(path: Path, line: int, cells: dict[str, str]) -> Host:
    name = cells.get("name", "")
    if not name:
        raise InventoryFileError(path, line, "column 'name': a host name is required")
    host = Host(name=name, address=cells.get("address", ""), source="csv")
    if cells.get("port"):
        try:
            host.port = int(cells["port"])
        except ValueError:
            raise InventoryFileError(path, line, f"column 'port': {cells['port']!r} is not a number") from None
    for column in ("user", "runs_on", "proxy_jump", "identity_file", "ssh_alias"):
        if cells.get(column):
            setattr(host, column, cells[column])
    for column in ("class", "status", "criticality"):
        if cells.get(column):
            setattr(host, _FIELD_OF_COLUMN.get(column, column), cells[column].lower())
    host.groups = split_list(cells.get("groups", ""))
    host.tags = split_list(cells.get("tags", ""))
    host.notes = cells.get("notes", "")
    host.vars = _vars(path, line, cells)
    try:
        host.validate()
    except ValidationError as exc:
        raise InventoryFileError(path, line, f"column {exc.field!r}: {exc.message}") from None
    return host


def _vars(path: Path, line: int, cells: dict[str, str]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    if cells.get("vars"):
        try:
            parsed = json.loads(cells["vars"])
        except json.JSONDecodeError as exc:
            raise InventoryFileError(path, line, f"column 'vars': not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict):
            raise InventoryFileError(path, line, "column 'vars': must be a JSON object")
        variables.update(parsed)
    known = set(COLUMN_ALIASES.values())
    for column, value in cells.items():
        if column not in known and value:
            variables[column] = value
    return variables
