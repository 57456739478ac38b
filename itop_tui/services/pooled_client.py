"""The asyncssh side of a pooled connection: host key checks and lost connections.

Kept apart from :mod:`itop_tui.services.transport_pool` so that asyncssh is
imported when the first connection is made, not when a pool is created
(``itop`` and most commands never connect).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import TYPE_CHECKING

import asyncssh

from itop_tui.services.known_hosts import fingerprint, key_line
from itop_tui.services.transport import ConnectFailed, TransportError

if TYPE_CHECKING:
    from itop_tui.services.transport_pool import ConnectSpec, PooledConnection, TransportPool

log = logging.getLogger("itop_tui.services.transport_pool")


class PooledClient(asyncssh.SSHClient):
    """Checks host keys against itop's known hosts and reports a lost connection."""

    def __init__(self, pool: TransportPool, spec: ConnectSpec) -> None:
        self._pool = pool
        self._spec = spec
        self.verdict: TransportError | None = None
        self.closed = False
        self.lost: Exception | None = None
        self.pooled: PooledConnection | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        # Called by asyncssh only for keys not already trusted for this host.
        from itop_tui.services.transport_pool import HostKeyChangedAt, HostKeyUnknownAt

        known_hosts = self._pool.known_hosts
        try:
            status = known_hosts.check(host, port, key)
            if status == "known":
                return True
            offered = fingerprint(key)
            if status == "unknown":
                if self._pool.settings.ssh.host_key_policy == "accept-new":
                    known_hosts.trust(host, port, key)
                    log.info("accepted new host key %s for %s:%s", offered, host, port)
                    return True
                self.verdict = HostKeyUnknownAt(self._spec.label, port, offered, key_line(key), host)
                return False
            self.verdict = HostKeyChangedAt(self._spec.label, port, status[1], offered, host)
            return False
        except (OSError, TransportError) as exc:
            self.verdict = ConnectFailed(f"{self._spec.label}: cannot check the host key: {exc}")
            return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        if self.pooled is not None:
            self._pool._forget(self.pooled)


def classify_connect_error(exc: BaseException, timeout: float) -> tuple[bool, str]:
    """(transient?, reason) for a failed connect attempt."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return True, f"timed out after {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return True, "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncssh.ConnectionLost):
        return True, f"connection reset ({exc})"
    if isinstance(exc, asyncssh.ChannelOpenError):
        # The jump host could not reach the target.
        return True, f"the jump host could not open a tunnel: {exc.reason}"
    if isinstance(exc, socket.gaierror):
        return False, f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, asyncssh.DisconnectError):
        return False, f"the server closed the connection: {exc.reason}"
    if isinstance(exc, OSError):
        transient = exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNABORTED)
        return transient, exc.strerror or str(exc)
    if isinstance(exc, ValueError):
        return False, str(exc)
    return False, f"{type(exc).__name__}: {exc}"
