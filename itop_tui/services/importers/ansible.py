"""Ansible inventories, INI and YAML, read the way Ansible reads them.

What ``ansible-inventory -i FILE --list`` reports is what this module gives:
the same hosts, the same direct group members and child groups, and for each
host the same merged variables (``_meta.hostvars``). The rules followed:

- INI: a first implicit ``[ungrouped]`` section; ``[g]``, ``[g:children]``,
  ``[g:vars]`` sections; host lines ``name[:port] k=v ...`` split like a shell
  (``shlex``) with values read as Python literals when they are one
  (``y='1'`` is the number 1, as in Ansible); ``k = v`` lines in ``:vars``;
  a group named in ``:children`` or ``:vars`` must be declared somewhere.
- YAML: top-level keys are groups with ``hosts``, ``vars`` and ``children``
  mappings; children nest; a non-mapping group is skipped with a warning.
- Host ranges (``web[01:20]``, ``db-[a:f]``, ``[1:10:2]``) expand as in
  :mod:`itop_tui.domain.host_ranges`; ``name:2222`` sets ``ansible_port``.
- ``group_vars/`` and ``host_vars/`` beside the file: ``NAME``, ``NAME.yml``,
  ``NAME.yaml``, ``NAME.json`` (the first that exists) or a directory
  ``NAME/`` whose files are read in sorted order.
- Variable precedence (Ansible's default ``VARIABLE_PRECEDENCE``), lowest
  first: ``all`` vars from the inventory file; other groups' vars from the
  file; ``group_vars/all``; ``group_vars/<group>``; host vars from the file;
  ``host_vars/<host>``. Groups of one level merge by (depth, then
  ``ansible_group_priority``, then name), so a child group beats its parent
  and, at one depth, ``b`` beats ``a``. Merging is shallow (hash_behaviour
  ``replace``).

Connection settings map to host fields and stay in ``vars`` too:
``ansible_host``/``ansible_ssh_host`` -> address (left empty without one, so
the host is reached by its name and a re-import keeps an address set
elsewhere), ``ansible_port``/
``ansible_ssh_port`` -> port, ``ansible_user``/``ansible_ssh_user`` -> user,
``ansible_private_key_file``/``ansible_ssh_private_key_file`` -> identity_file
(the ``ssh`` variant wins, as in Ansible's ssh plugin), ``ansible_connection:
local`` -> address ``local``, ``-J X`` or ``-o ProxyJump=X`` in
``ansible_ssh_common_args``/``ansible_ssh_extra_args`` -> proxy_jump. The itop
fields ``itop_status``, ``itop_class``, ``itop_criticality``, ``itop_tags``,
``itop_notes`` and ``itop_runs_on`` may be set as variables too.
"""

from __future__ import annotations

import ast
import datetime
import os
import re
import shlex
import warnings
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from itop_tui.domain.host_ranges import HostRangeError, expand_host_pattern
from itop_tui.domain.models import Group, Host, ValidationError
from itop_tui.services.importers import ImportResult, InventoryFileError

VARS_EXTENSIONS = (".yml", ".yaml", ".json")
YAML_SUFFIXES = (".yml", ".yaml", ".json")
BUILTIN_GROUPS = ("all", "ungrouped")

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


# --- the inventory as Ansible builds it -------------------------------------


@dataclass
class _Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    members: set[str] = field(default_factory=set)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1


@dataclass
class _Host:
    name: str
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


class _Tree:
    """Groups and hosts with the operations Ansible's parsers call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _Host] = {}
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped", None)

    def fail(self, line: int | None, message: str) -> InventoryFileError:
        return InventoryFileError(self.path, line, message)

    def add_group(self, name: str) -> None:
        if name not in self.groups:
            self.groups[name] = _Group(name)

    def add_host(self, name: str, group: str, port: int | None, line: int | None) -> None:
        if not name:
            raise self.fail(line, "empty host name")
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = _Host(name)
            if port:
                host.vars["ansible_port"] = port
        target = self.groups[group]
        if name not in target.members:
            target.members.add(name)
            target.hosts.append(name)
            host.groups.append(group)

    def ancestors(self, group: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.groups[group].parents)
        while stack:
            g = stack.pop()
            if g not in seen:
                seen.add(g)
                stack.extend(self.groups[g].parents)
        return seen

    def add_child(self, parent: str, child: str, line: int | None) -> None:
        if child not in self.groups:
            raise self.fail(line, f"{child!r} is not a known group")
        if child == parent or child in self.ancestors(parent):
            raise self.fail(
                line, f"adding group {child!r} as child to {parent!r} creates a dependency loop"
            )
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)

    def set_group_var(self, group: str, key: Any, value: Any, line: int | None) -> None:
        if key == "ansible_group_priority":
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError):
                raise self.fail(line, f"ansible_group_priority must be a number, got {value!r}") from None
        else:
            self.groups[group].vars[key] = value

    def reconcile(self) -> None:
        """Hang parentless groups under ``all``; put group-less hosts in
        ``ungrouped`` and take hosts with a real group out of it."""
        for name, group in self.groups.items():
            if name != "all" and not group.parents:
                self.add_child("all", name, None)
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts.values():
            real = [g for g in host.groups if g not in BUILTIN_GROUPS]
            if real and "ungrouped" in host.groups:
                host.groups.remove("ungrouped")
                ungrouped.members.discard(host.name)
            elif not real and "ungrouped" not in host.groups:
                host.groups.append("ungrouped")
                ungrouped.members.add(host.name)
        ungrouped.hosts = [h for h in self.hosts if h in ungrouped.members]

    def depths(self) -> dict[str, int]:
        """Longest distance of each group from ``all``."""
        depth: dict[str, int] = {}

        def visit(name: str, trail: tuple[str, ...]) -> int:
            if name in depth:
                return depth[name]
            if name in trail:
                raise self.fail(None, f"group {name!r} has a recursive dependency loop")
            parents = self.groups[name].parents
            value = 0 if not parents else 1 + max(visit(p, (*trail, name)) for p in parents)
            depth[name] = value
            return value

        for name in self.groups:
            visit(name, ())
        return depth


# --- YAML with line numbers ---------------------------------------------------


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key."""

    line: int | None = None
    key_lines: dict[Any, int]


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """PyYAML's safe loader plus line numbers and Ansible's ``!unsafe``/``!vault`` tags."""


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_text(loader: Any, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node)) if isinstance(node, yaml.ScalarNode) else ""


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("!unsafe", _construct_text)
_Loader.add_constructor("!vault", _construct_text)


def load_yaml(path: Path) -> Any:
    """Parse a YAML (or JSON) file; errors become :class:`InventoryFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryFileError(path, None, f"cannot read: {exc}") from None
    if text.startswith("$ANSIBLE_VAULT"):
        raise InventoryFileError(path, 1, "vault-encrypted files are not supported; decrypt it first")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise InventoryFileError(path, line, f"bad YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise InventoryFileError(path, None, f"bad YAML: {exc}") from None


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: plain dicts with string keys, lists,
    ISO dates, text instead of bytes."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _key_text(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(plain(key))


def _line_of(mapping: Any, key: Any) -> int | None:
    if isinstance(mapping, _Mapping):
        return mapping.key_lines.get(key, mapping.line)
    return None


# --- INI ------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """An INI value: a Python literal when it reads as one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


def _parse_ini(tree: _Tree, text: str) -> None:
    pending: dict[str, dict[str, Any]] = {}
    group, state = "ungrouped", "hosts"

    def add_pending_children(name: str) -> None:
        for parent in pending[name]["parents"]:
            tree.add_child(parent, name, pending[name]["line"])
            if parent in pending and pending[parent]["state"] == "children":
                add_pending_children(parent)
        del pending[name]

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise tree.fail(lineno, f"section [{group}:{state}] has unknown type {state!r}")
            if group not in tree.groups:
                if state == "vars" and group not in pending:
                    pending[group] = {"line": lineno, "state": state, "parents": []}
                tree.add_group(group)
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    add_pending_children(group)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise tree.fail(
                lineno, f"invalid section {line!r}: no spaces or other characters allowed inside"
            )
        if state == "hosts":
            _parse_host_line(tree, group, line, lineno)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise tree.fail(lineno, f"expected key=value, got {line!r}")
            tree.set_group_var(group, key.strip(), _parse_value(value.strip()), lineno)
        else:
            cm = _GROUP_NAME.match(line)
            if not cm:
                raise tree.fail(lineno, f"expected a group name, got {line!r}")
            child = cm.group(1)
            if child in tree.groups:
                tree.add_child(group, child, lineno)
            elif child in pending:
                pending[child]["parents"].append(group)
            else:
                pending[child] = {"line": lineno, "state": "children", "parents": [group]}
    for name, decl in pending.items():
        if decl["state"] == "vars":
            raise tree.fail(decl["line"], f"section [{name}:vars] names a group that is never declared")
        raise tree.fail(
            decl["line"], f"section [{decl['parents'][-1]}:children] names undefined group {name!r}"
        )


def _parse_host_line(tree: _Tree, group: str, line: str, lineno: int) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise tree.fail(lineno, f"cannot parse host line {line!r}: {exc}") from None
    if not tokens:
        raise tree.fail(lineno, f"cannot parse host line {line!r}")
    names, port = _expand(tree, tokens[0], lineno)
    if tokens[0].strip().endswith(":") and port is None:
        raise tree.fail(lineno, f"host {tokens[0]!r} ends in ':', which must be followed by a port")
    if any(n.strip() == "---" for n in names):
        raise tree.fail(lineno, "'---' is not a host name (is this a YAML file?)")
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise tree.fail(lineno, f"expected key=value after the host name, got {token!r}")
        variables[key] = _parse_value(value)
    for name in names:
        tree.add_host(name, group, port, lineno)
        tree.hosts[name].vars.update(variables)


def _expand(tree: _Tree, pattern: str, line: int | None) -> tuple[list[str], int | None]:
    try:
        return expand_host_pattern(pattern)
    except HostRangeError as exc:
        raise tree.fail(line, str(exc)) from None


# --- YAML -------------------------------------------------------------------------


def _parse_yaml(tree: _Tree, data: Any, warn: Callable[[str], None]) -> None:
    if not data:
        raise tree.fail(None, "empty YAML inventory")
    if not isinstance(data, Mapping):
        raise tree.fail(
            getattr(data, "line", 1), f"a YAML inventory must be a mapping of groups, got {type(data).__name__}"
        )
    if data.get("plugin"):
        raise tree.fail(_line_of(data, "plugin"), "this is an inventory plugin configuration, not an inventory")
    for name, body in data.items():
        _parse_yaml_group(tree, name, body, _line_of(data, name), warn)


def _parse_yaml_group(
    tree: _Tree, name: Any, body: Any, line: int | None, warn: Callable[[str], None]
) -> Any:
    where = f"{tree.path}:{line}" if line else str(tree.path)
    if not isinstance(body, (Mapping, type(None))):
        warn(f"{where}: skipping {name!r}: a group must be a mapping, got {type(body).__name__}")
        return name
    if not isinstance(name, str) or not name:
        raise tree.fail(line, f"group name must be a non-empty string, got {name!r}")
    tree.add_group(name)
    if body is None:
        return name
    sections = dict(body)
    for section in ("vars", "children", "hosts"):
        value = sections.get(section)
        if isinstance(value, str):
            sections[section] = {value: None}
        elif section in sections and not isinstance(value, (Mapping, type(None))):
            raise tree.fail(
                _line_of(body, section),
                f"{section!r} of group {name!r} must be a mapping, got {type(value).__name__}",
            )
    for key, value in sections.items():
        key_line = _line_of(body, key)
        if not isinstance(value, (Mapping, type(None))):
            warn(f"{tree.path}:{key_line}: skipping {key!r} in group {name!r}: not a mapping")
            continue
        if value is None:
            continue
        if key == "vars":
            for var, var_value in value.items():
                tree.set_group_var(name, var, var_value, _line_of(value, var))
        elif key == "children":
            for child, child_body in value.items():
                child_line = _line_of(value, child)
                child = _parse_yaml_group(tree, child, child_body, child_line, warn)
                tree.add_child(name, child, child_line)
        elif key == "hosts":
            for pattern, host_vars in value.items():
                host_line = _line_of(value, pattern)
                if not isinstance(pattern, str):
                    raise tree.fail(
                        host_line, f"host {pattern!r} must be a string; quote numbers"
                    )
                names, port = _expand(tree, pattern, host_line)
                host_vars = host_vars or {}
                if not isinstance(host_vars, Mapping):
                    raise tree.fail(
                        host_line,
                        f"vars of host {pattern!r} must be a mapping, got {type(host_vars).__name__}",
                    )
                for host in names:
                    tree.add_host(host, name, port, host_line)
                    tree.hosts[host].vars.update(host_vars)
        else:
            warn(
                f"{tree.path}:{key_line}: skipping {key!r} in group {name!r}: "
                "only 'vars', 'children' and 'hosts' are valid"
            )
    return name


# --- group_vars/ and host_vars/ ---------------------------------------------------


def _vars_files(base: Path, name: str) -> list[Path]:
    """The files Ansible reads for ``name`` under ``base`` (group_vars/ or host_vars/)."""
    if name.startswith(os.sep) or not base.is_dir():
        return []
    for ext in ("", *VARS_EXTENSIONS):
        candidate = base / f"{name}{ext}"
        if candidate.exists():
            return _dir_vars_files(candidate) if candidate.is_dir() else [candidate]
    return []


def _dir_vars_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path = directory / entry
        ext = os.path.splitext(entry)[1]
        if path.is_dir() and not ext:
            found.extend(_dir_vars_files(path))
        elif path.is_file() and (not ext or ext in VARS_EXTENSIONS):
            found.append(path)
    return found


def _load_vars(base: Path, name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in _vars_files(base, name):
        data = load_yaml(path)
        if not data:
            continue
        if not isinstance(data, Mapping):
            raise InventoryFileError(path, 1, f"vars file must hold a mapping, got {type(data).__name__}")
        merged.update(data)
    return merged


# --- from the tree to hosts and groups ----------------------------------------------


def import_ansible(path: str | Path) -> ImportResult:
    """Read an Ansible INI or YAML inventory with the vars files beside it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryFileError(path, None, f"cannot read: {exc}") from None
    tree = _Tree(path)
    found_warnings: list[str] = []
    if _is_yaml_inventory(path, text):
        _parse_yaml(tree, load_yaml(path), found_warnings.append)
    else:
        _parse_ini(tree, text)
    tree.reconcile()
    source = f"ansible:{path.resolve()}"
    hosts = _build_hosts(tree, source)
    groups = _build_groups(tree)
    return ImportResult(hosts, groups, source, found_warnings)


def _is_yaml_inventory(path: Path, text: str) -> bool:
    """Ansible tries its YAML parser first for ``.yml``/``.yaml``/``.json`` and
    extension-less files, and falls back to INI when the text is not a YAML
    mapping."""
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return True
    if suffix:
        return False
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError:
        return False
    return isinstance(data, Mapping) and bool(data)


def _build_groups(tree: _Tree) -> list[Group]:
    base = tree.path.resolve().parent / "group_vars"
    groups: list[Group] = []
    for name, group in tree.groups.items():
        group_vars = plain({**group.vars, **_load_vars(base, name)})
        if group.priority != 1:
            # as ``ansible-inventory --export`` shows it, so an export keeps it
            group_vars["ansible_group_priority"] = group.priority
        if name in BUILTIN_GROUPS and not group_vars:
            continue
        children = [c for c in group.children if not (name == "all" or c == "ungrouped")]
        groups.append(Group(name=name, children=children, vars=group_vars))
    return groups


def _build_hosts(tree: _Tree, source: str) -> list[Host]:
    base = tree.path.resolve().parent
    depth = tree.depths()
    file_vars = {name: _load_vars(base / "group_vars", name) for name in tree.groups}
    has_host_vars = (base / "host_vars").is_dir()
    ancestry: dict[str, list[str]] = {}
    hosts: list[Host] = []
    for host in tree.hosts.values():
        member_of: set[str] = set()
        for g in host.groups:
            if g not in ancestry:
                ancestry[g] = [g, *tree.ancestors(g)]
            member_of.update(ancestry[g])
        ordered = sorted(
            (tree.groups[g] for g in member_of if g != "all"),
            key=lambda g: (depth[g.name], g.priority, g.name),
        )
        merged: dict[str, Any] = dict(tree.groups["all"].vars)
        for group in ordered:
            merged.update(group.vars)
        merged.update(file_vars["all"])
        for group in ordered:
            merged.update(file_vars[group.name])
        merged.update(host.vars)
        if has_host_vars:
            merged.update(_load_vars(base / "host_vars", host.name))
        hosts.append(_to_host(tree, host, plain(merged), source))
    return hosts


def _to_host(tree: _Tree, host: _Host, hostvars: dict[str, Any], source: str) -> Host:
    result = Host(
        name=host.name,
        groups=[g for g in host.groups if g not in BUILTIN_GROUPS],
        vars=hostvars,
        source=source,
    )
    apply_connection_vars(result, hostvars)
    try:
        result.validate()
    except ValidationError as exc:
        raise tree.fail(None, f"host {host.name!r}: {exc}") from None
    return result


def _last_set(hostvars: Mapping[str, Any], *names: str) -> Any:
    """The value of the last of ``names`` present (Ansible's rule for aliases)."""
    value = None
    for name in names:
        if hostvars.get(name) is not None:
            value = hostvars[name]
    return value


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def apply_connection_vars(host: Host, hostvars: Mapping[str, Any]) -> None:
    """Set ``host``'s address, port, user, key, proxy and itop fields from its
    Ansible variables. Templated values (``{{ ... }}``) are left alone."""
    address = _last_set(hostvars, "ansible_host", "ansible_ssh_host")
    if address is not None and not _templated(address):
        host.address = str(address)
    if hostvars.get("ansible_connection") == "local":
        host.address = "local"
    port = _last_set(hostvars, "ansible_port", "ansible_ssh_port")
    if isinstance(port, int) and not isinstance(port, bool) or isinstance(port, str) and port.isdigit():
        host.port = int(port)
    user = _last_set(hostvars, "ansible_user", "ansible_ssh_user")
    if user is not None and not _templated(user):
        host.user = str(user)
    key = _last_set(hostvars, "ansible_private_key_file", "ansible_ssh_private_key_file")
    if key is not None and not _templated(key):
        host.identity_file = os.path.expanduser(str(key))
    for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        jump = _proxy_jump(hostvars.get(name))
        if jump:
            host.proxy_jump = jump
            break
    for name, attr in (("itop_status", "status"), ("itop_class", "host_class"), ("itop_criticality", "criticality")):
        if isinstance(hostvars.get(name), str):
            setattr(host, attr, hostvars[name].strip().lower())
    tags = hostvars.get("itop_tags")
    if isinstance(tags, str):
        host.tags = [t.strip() for t in re.split(r"[;,]", tags) if t.strip()]
    elif isinstance(tags, list):
        host.tags = [str(t) for t in tags]
    if isinstance(hostvars.get("itop_notes"), str):
        host.notes = hostvars["itop_notes"]
    if isinstance(hostvars.get("itop_runs_on"), str):
        host.runs_on = hostvars["itop_runs_on"]


def _proxy_jump(args: Any) -> str | None:
    if not isinstance(args, str) or _templated(args):
        return None
    try:
        words = shlex.split(args)
    except ValueError:
        return None
    for i, word in enumerate(words):
        option = None
        if word in ("-J", "-o") and i + 1 < len(words):
            option = ("ProxyJump=" if word == "-J" else "") + words[i + 1]
        elif word.startswith("-J"):
            option = "ProxyJump=" + word[2:]
        elif word.startswith("-o"):
            option = word[2:]
        if option:
            key, _, value = option.replace("=", " ", 1).partition(" ")
            if key.lower() == "proxyjump" and value.strip() and value.strip() != "none":
                return value.strip()
    return None
