"""Write an inventory out as an Ansible YAML inventory, CSV or JSON.

- ``ansible``: a YAML inventory that ``ansible-inventory`` reads back to the
  same hosts, groups, child groups and host variables. Every group is a
  top-level key (so no group gains ``all`` as an extra parent); a host's
  variables are written where its groups would not already give it the same
  value. A host field that its variables do not already say (as the Ansible
  importer reads them) is written as a variable: ``ansible_host``,
  ``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file``,
  ``ansible_connection: local``, ``-o ProxyJump=`` in
  ``ansible_ssh_common_args``, and ``itop_status``, ``itop_class``,
  ``itop_criticality``, ``itop_tags``, ``itop_notes``, ``itop_runs_on``.
- ``csv``: the columns the CSV importer reads, variables as a JSON object in
  the ``vars`` column.
- ``json``: ``{"hosts": [...], "groups": [...]}`` with every host field,
  including facts.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from typing import Any

import yaml

from itop_tui.domain.models import Group, Host, Inventory
from itop_tui.services.importers.ansible import apply_connection_vars

EXPORT_FORMATS = ("ansible", "csv", "json")
PRIORITY_VAR = "ansible_group_priority"
CSV_COLUMNS = (
    "name",
    "address",
    "port",
    "user",
    "class",
    "status",
    "criticality",
    "groups",
    "tags",
    "runs_on",
    "proxy_jump",
    "identity_file",
    "ssh_alias",
    "notes",
    "vars",
)


class ExportError(ValueError):
    """The inventory cannot be written in the asked format."""


def export_inventory(inventory: Inventory, fmt: str) -> str:
    """``inventory`` as text in ``fmt`` (``ansible``, ``csv`` or ``json``)."""
    if fmt == "ansible":
        return _to_ansible(inventory)
    if fmt == "csv":
        return _to_csv(inventory)
    if fmt == "json":
        return _to_json(inventory)
    raise ExportError(f"unknown export format {fmt!r}; use ansible, csv or json")


# --- JSON ------------------------------------------------------------------------


def _to_json(inventory: Inventory) -> str:
    data = {
        "hosts": [h.to_dict() for h in inventory.hosts.values()],
        "groups": [_group_dict(inventory, name) for name in _group_order(inventory)],
    }
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def _group_dict(inventory: Inventory, name: str) -> dict[str, Any]:
    group = inventory.groups.get(name) or Group(name=name)
    data = group.to_dict()
    data["hosts"] = [h.name for h in inventory.hosts.values() if name in h.groups]
    return data


def _group_order(inventory: Inventory) -> list[str]:
    names = list(inventory.groups)
    for host in inventory.hosts.values():
        names.extend(g for g in host.groups if g not in inventory.groups)
    return list(dict.fromkeys(names))


# --- CSV --------------------------------------------------------------------------


def _to_csv(inventory: Inventory) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for host in inventory.hosts.values():
        writer.writerow(
            [
                host.name,
                host.address,
                "" if host.port is None else str(host.port),
                host.user or "",
                host.host_class,
                host.status,
                host.criticality,
                ";".join(host.groups),
                ";".join(host.tags),
                host.runs_on or "",
                host.proxy_jump or "",
                host.identity_file or "",
                host.ssh_alias or "",
                host.notes,
                json.dumps(host.vars, sort_keys=True, default=str) if host.vars else "",
            ]
        )
    return out.getvalue()


# --- Ansible YAML -----------------------------------------------------------------


def ansible_host_vars(host: Host) -> dict[str, Any]:
    """The variables that describe ``host`` to Ansible: its ``vars``, changed
    only where the Ansible importer would read a field differently from what
    the host holds now."""
    result = dict(host.vars)
    probe = Host(name=host.name)
    apply_connection_vars(probe, result)
    if probe.connect_address != host.connect_address:
        if host.is_local:
            result["ansible_connection"] = "local"
        else:
            if result.get("ansible_connection") == "local":
                del result["ansible_connection"]
            result.pop("ansible_ssh_host", None)
            result["ansible_host"] = host.connect_address
    for field, name, alias in (
        ("port", "ansible_port", "ansible_ssh_port"),
        ("user", "ansible_user", "ansible_ssh_user"),
        ("identity_file", "ansible_ssh_private_key_file", "ansible_private_key_file"),
    ):
        value = getattr(host, field)
        if value != getattr(probe, field):
            result.pop(alias, None)
            if value is None:
                result.pop(name, None)
            else:
                result[name] = value
    if host.proxy_jump and host.proxy_jump != probe.proxy_jump:
        jump = f"-o ProxyJump={shlex.quote(host.proxy_jump)}"
        existing = result.get("ansible_ssh_common_args")
        # ssh takes the first -o for an option, so the new one goes in front
        result["ansible_ssh_common_args"] = f"{jump} {existing}" if existing else jump
    for field, name in (
        ("status", "itop_status"),
        ("host_class", "itop_class"),
        ("criticality", "itop_criticality"),
        ("notes", "itop_notes"),
        ("runs_on", "itop_runs_on"),
        ("tags", "itop_tags"),
    ):
        value = getattr(host, field)
        if value != getattr(probe, field):
            result[name] = list(value) if isinstance(value, list) else value
    return result


def _depths(inventory: Inventory) -> dict[str, int]:
    parents: dict[str, list[str]] = {}
    for group in inventory.groups.values():
        for child in group.children:
            parents.setdefault(child, []).append(group.name)
    depth: dict[str, int] = {}

    def visit(name: str, trail: frozenset[str]) -> int:
        if name not in depth:
            above = [p for p in parents.get(name, []) if p not in trail and p != "all"]
            depth[name] = 1 + max((visit(p, trail | {name}) for p in above), default=0)
        return depth[name]

    for name in _group_order(inventory):
        visit(name, frozenset())
    return depth


def _inherited(inventory: Inventory, host: Host, depth: dict[str, int]) -> dict[str, Any]:
    """What the host's groups give it, merged as Ansible merges group vars."""
    member_of: set[str] = set()
    for g in host.groups:
        member_of |= _ancestors(inventory, g)
    if not host.groups:
        member_of.add("ungrouped")
    member_of.discard("all")
    merged: dict[str, Any] = dict(inventory.groups["all"].vars) if "all" in inventory.groups else {}
    for name in sorted(member_of, key=lambda n: (depth.get(n, 1), _priority(inventory, n), n)):
        if name in inventory.groups:
            merged.update(inventory.groups[name].vars)
    merged.pop(PRIORITY_VAR, None)
    return merged


def _priority(inventory: Inventory, name: str) -> int:
    group = inventory.groups.get(name)
    try:
        return int(group.vars.get(PRIORITY_VAR, 1)) if group else 1
    except (TypeError, ValueError):
        return 1


def _ancestors(inventory: Inventory, group: str) -> set[str]:
    found = {group}
    changed = True
    while changed:
        changed = False
        for g in inventory.groups.values():
            if g.name not in found and found.intersection(g.children):
                found.add(g.name)
                changed = True
    return found


def _to_ansible(inventory: Inventory) -> str:
    depth = _depths(inventory)
    doc: dict[str, Any] = {}
    all_group = inventory.groups.get("all")
    if all_group and all_group.vars:
        doc["all"] = {"vars": dict(all_group.vars)}
    written: set[str] = set()
    bodies: dict[str, dict[str, Any]] = {}
    for name in _group_order(inventory):
        if name in ("all", "ungrouped"):
            continue
        group = inventory.groups.get(name)
        body: dict[str, Any] = {}
        if group and group.vars:
            body["vars"] = dict(group.vars)
        if group and group.children:
            body["children"] = {c: None for c in group.children}
        bodies[name] = body
    ungrouped: dict[str, Any] = {}
    for host in inventory.hosts.values():
        inherited = _inherited(inventory, host, depth)
        own = {
            k: v
            for k, v in ansible_host_vars(host).items()
            if k not in inherited or inherited[k] != v
        }
        targets = [g for g in host.groups if g not in ("all", "ungrouped")] or ["ungrouped"]
        for g in targets:
            target = bodies.setdefault(g, {}) if g != "ungrouped" else ungrouped
            hosts = target.setdefault("hosts", {}) if g != "ungrouped" else target
            hosts[host.name] = own if host.name not in written and own else None
            written.add(host.name)
    ungrouped_group = inventory.groups.get("ungrouped")
    if ungrouped or (ungrouped_group and ungrouped_group.vars):
        doc["ungrouped"] = {"hosts": ungrouped} if ungrouped else {}
        if ungrouped_group and ungrouped_group.vars:
            doc["ungrouped"]["vars"] = dict(ungrouped_group.vars)
    for name, body in bodies.items():
        doc[name] = body or None
    header = "# itop inventory export: read it with ansible-inventory -i FILE --list\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
