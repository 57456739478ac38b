"""The services one itop process works with, opened together from settings.

The CLI and the TUI both build a :class:`Services` and hand it to the use
cases in ``ops/`` and to ``ItopApp``; tests build one over a temp data dir.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from itop_tui.domain.models import Host
from itop_tui.services.audit import AuditLog
from itop_tui.services.inventory_repo import InventoryRepository
from itop_tui.services.store import JsonStore
from itop_tui.services.transport_pool import TransportPool
from itop_tui.settings import Settings

INVENTORY_FILE = "inventory.json"
AUDIT_FILE = "audit.jsonl"
ORIGINS = ("cli", "tui", "scheduler")


class ReadOnlyError(Exception):
    """An action that changes hosts or records was asked of a read-only itop."""


class OperatorRequired(ReadOnlyError):
    """An action only an operator (or above) may do was asked by a viewer or trainee.

    A subclass of :class:`ReadOnlyError` so that every caller refusing a
    read-only itop refuses this too, with the same exit status and notice.
    """


# Roles below operator: what they may do instead, for the refusal message.
_BELOW_OPERATOR = {
    "viewer": "the viewer role reads inventory, procedures, runs and changes, nothing else",
    "trainee": "the trainee role runs procedures (trainee mode) and read-only commands "
               "(itop run --observe), nothing else",
}


def this_machine() -> Host:
    """The host record for this machine, reached through the local transport."""
    name = socket.gethostname().split(".", 1)[0].strip()
    if not name or any(c.isspace() for c in name):
        name = "localhost"
    return Host(
        name=name,
        address="local",
        host_class="server",
        status="development",
        source="embedded",
    )


def current_login() -> str:
    """The OS login of the person running itop (the audit actor)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry and no LOGNAME/USER (minimal containers): use the uid.
        return f"uid{os.getuid()}"


@dataclass
class Services:
    """Settings, inventory, audit log and transports of one itop process.

    ``read_only`` is set by ``--read-only`` or by the ``viewer`` role; use
    cases call :meth:`require_writable` before changing anything, and
    :meth:`require_operator` before what a trainee may not do directly
    (ad-hoc commands, inventory changes, trusting keys, backups...).
    ``recovery_messages`` holds what the store said when it had to recover a
    damaged file, for the CLI and TUI to show.
    """

    settings: Settings
    inventory: InventoryRepository
    audit: AuditLog
    transports: TransportPool
    actor: str
    role: str
    read_only: bool = False
    origin: str = "cli"
    recovery_messages: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings, origin: str = "cli", read_only: bool = False) -> Services:
        """Open the data dir (created 0700 if missing), store, audit log and pool.

        A fresh data dir gets an inventory holding this machine, so that
        ``itop`` with no config at all shows something to work on.
        """
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, got {origin!r}")
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        actor = current_login()
        role = settings.role_for(actor)
        inventory_path = data_dir / INVENTORY_FILE
        fresh = not inventory_path.exists()
        store = JsonStore(inventory_path)
        inventory = InventoryRepository(store)
        audit = AuditLog(data_dir / AUDIT_FILE, actor=actor, origin=origin)
        services = cls(
            settings=settings,
            inventory=inventory,
            audit=audit,
            transports=TransportPool(settings),
            actor=actor,
            role=role,
            read_only=read_only or role == "viewer",
            origin=origin,
        )
        if store.recovery_message:
            services.recovery_messages.append(store.recovery_message)
        if fresh and not inventory.load().hosts:
            services._seed_this_machine()
        return services

    def _seed_this_machine(self) -> None:
        host = this_machine()
        added, _updated = self.inventory.upsert_hosts([host])
        if added:
            self.audit.append("inventory.add", host.name, {"source": host.source, "address": "local"})

    def require_writable(self, what: str) -> None:
        """Raise :class:`ReadOnlyError` if this itop may not ``what`` (e.g. "run commands")."""
        if self.read_only:
            reason = "the viewer role" if self.role == "viewer" else "--read-only"
            raise ReadOnlyError(f"cannot {what}: itop is read-only ({reason})")

    @property
    def may_operate(self) -> bool:
        """True when this itop is writable and its user is an operator or above."""
        return not self.read_only and self.role not in _BELOW_OPERATOR

    def require_operator(self, what: str) -> None:
        """Raise unless an operator (or above) may ``what`` (e.g. "add hosts").

        Read-only first (:class:`ReadOnlyError`), then the viewer and trainee
        roles (:class:`OperatorRequired`): a trainee changes production only
        through procedure runs, whose runner enforces trainee mode.
        """
        self.require_writable(what)
        reason = _BELOW_OPERATOR.get(self.role)
        if reason is not None:
            raise OperatorRequired(f"cannot {what}: {reason}")

    def trust_host_key(self, host: str, port: int | None, key_data: str) -> bool:
        """Trust ``key_data`` for ``host:port`` in itop's known_hosts; audited as ``host.trust``.

        Returns False when the key was trusted already. A key different from
        an already trusted one raises ``HostKeyChanged`` (nothing is stored).
        """
        # known_hosts imports asyncssh: only when a key is trusted, not at start-up.
        from itop_tui.services.known_hosts import fingerprint, parse_key

        self.require_operator("trust host keys")
        added = self.transports.known_hosts.trust(host, port, key_data)
        self.audit.append(
            "host.trust",
            host if port in (None, 22) else f"{host}:{port}",
            {"fingerprint": fingerprint(parse_key(key_data)), "added": added},
        )
        return added

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.transports.close()
