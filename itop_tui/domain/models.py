"""Inventory records: hosts and groups, as stored and as shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

HOST_CLASSES = ("server", "vm", "container", "network")
HOST_STATUSES = ("production", "staging", "development", "retired")
CRITICALITIES = ("high", "medium", "low")
LOCAL_ADDRESSES = ("local", "localhost-local")


class ValidationError(ValueError):
    """A record field holds a value the data model does not allow.

    ``field`` names the offending field so messages can point at it.
    """

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass
class Host:
    """One managed machine.

    ``address`` is what the transport connects to; the special address
    ``local`` means this machine through the local transport (no SSH).
    ``ssh_alias`` names a ``~/.ssh/config`` Host entry whose settings the SSH
    transport honours when it is set.
    """

    name: str
    address: str = ""
    port: int | None = None
    user: str | None = None
    host_class: str = "server"
    status: str = "development"
    criticality: str = "medium"
    groups: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    runs_on: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    facts_at: str | None = None
    last_seen: str | None = None
    notes: str = ""
    source: str = "manual"
    proxy_jump: str | None = None
    identity_file: str | None = None
    ssh_alias: str | None = None

    @property
    def id(self) -> str:
        """The stable record id, ``host:NAME``."""
        return f"host:{self.name}"

    @property
    def connect_address(self) -> str:
        """The address to connect to: the explicit address, else the name."""
        return self.address or self.name

    @property
    def is_local(self) -> bool:
        """True when this host is reached through the local transport."""
        return self.address == "local"

    def validate(self) -> None:
        """Raise :class:`ValidationError` naming the first bad field."""
        if not self.name or any(c.isspace() for c in self.name):
            raise ValidationError("name", f"must be a non-empty word, got {self.name!r}")
        if self.port is not None and not (0 < int(self.port) < 65536):
            raise ValidationError("port", f"must be 1-65535, got {self.port!r}")
        if self.host_class not in HOST_CLASSES:
            raise ValidationError("class", f"must be one of {', '.join(HOST_CLASSES)}, got {self.host_class!r}")
        if self.status not in HOST_STATUSES:
            raise ValidationError("status", f"must be one of {', '.join(HOST_STATUSES)}, got {self.status!r}")
        if self.criticality not in CRITICALITIES:
            raise ValidationError(
                "criticality", f"must be one of {', '.join(CRITICALITIES)}, got {self.criticality!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The stored and ``--json`` form (``class`` rather than ``host_class``)."""
        # Shallow copies, not dataclasses.asdict: asdict deep-copies facts and
        # takes over a second for a 10,000-host inventory.
        data: dict[str, Any] = {f: getattr(self, f) for f in self.__dataclass_fields__}
        for key in ("groups", "tags"):
            data[key] = list(data[key])
        for key in ("vars", "facts"):
            data[key] = dict(data[key])
        data["class"] = data.pop("host_class")
        data["id"] = self.id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Host:
        """Build a host from its stored form, ignoring unknown keys."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if "class" in data:
            values["host_class"] = data["class"]
        port = values.get("port")
        if port is not None and port != "":
            values["port"] = int(port)
        else:
            values["port"] = None
        return cls(**values)


def host_change_detail(before: Host, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The audit detail of an edit of ``before``: each changed field's new value, and
    under ``previous`` the values it replaced (``class`` named as stored)."""
    old = before.to_dict()
    names = {key: "class" if key == "host_class" else key for key in changes}
    detail: dict[str, Any] = {names[key]: value for key, value in changes.items()}
    detail["previous"] = {names[key]: old.get(names[key]) for key in changes}
    return detail


@dataclass
class Group:
    """A named set of hosts, possibly with child groups and variables."""

    name: str
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Group:
        """Build a group from its stored form."""
        return cls(
            name=data["name"],
            children=list(data.get("children", [])),
            vars=dict(data.get("vars", {})),
        )


@dataclass
class Inventory:
    """A snapshot of the fleet: hosts by name and groups by name."""

    hosts: dict[str, Host] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)

    def group_members(self, group: str) -> set[str]:
        """Names of hosts in ``group`` or any of its descendant groups.

        ``all`` holds every host; ``ungrouped`` the hosts in no group.
        """
        if group == "all":
            return set(self.hosts)
        if group == "ungrouped":
            return {n for n, h in self.hosts.items() if not h.groups}
        wanted = self.descendant_groups(group)
        return {n for n, h in self.hosts.items() if wanted.intersection(h.groups)}

    def descendant_groups(self, group: str) -> set[str]:
        """``group`` and all groups below it, robust against cycles."""
        seen: set[str] = set()
        stack = [group]
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            seen.add(g)
            if g in self.groups:
                stack.extend(self.groups[g].children)
        return seen

    def all_group_names(self) -> set[str]:
        """Every group named by a group record or by a host."""
        names = set(self.groups)
        for h in self.hosts.values():
            names.update(h.groups)
        return names
