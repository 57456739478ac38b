"""The transport interface: how itop runs commands on a host.

Two implementations exist: :mod:`itop_tui.services.local_transport` (asyncio
subprocesses on this machine) and :mod:`itop_tui.services.ssh_transport`
(asyncssh, one pooled connection per host).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from itop_tui.domain.output import DEFAULT_OUTPUT_LIMIT


@dataclass
class RunResult:
    """What one command did on one host.

    ``exit_status`` is None when the command never finished (timeout,
    connection lost) or never started (connect failure); ``error`` then says why.
    ``stdout``/``stderr`` are bounded and stripped of control sequences.
    """

    host: str
    command: str
    exit_status: int | None
    stdout: str
    stderr: str
    duration: float
    truncated: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""
        return self.error is None and self.exit_status == 0

    def to_dict(self) -> dict[str, object]:
        """The stable ``--json`` form."""
        return {
            "host": self.host,
            "command": self.command,
            "exit_status": self.exit_status,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration": round(self.duration, 3),
            "truncated": self.truncated,
            "error": self.error,
            "ok": self.ok,
        }


class TransportError(Exception):
    """A host could not be reached or used. ``str()`` is a user-facing message."""


class ConnectFailed(TransportError):
    """TCP connect or SSH handshake failed (refused, timed out, unreachable)."""


class AuthFailed(TransportError):
    """The host refused every credential offered. Never retried."""


class HostKeyUnknown(TransportError):
    """The host presented a key that is not known yet.

    ``fingerprint`` is the SHA256 fingerprint, ``key_data`` the OpenSSH public
    key line, so the UI can ask and :meth:`KnownHosts.trust` can store it.
    ``key_host`` and ``port`` are where the key was presented (the known_hosts
    name: HostName or HostKeyAlias after ssh config). ``jump_for`` is set when
    ``host`` is a ProxyJump hop on the way to that inventory host: the key is
    the hop's, not the target's.
    """

    def __init__(
        self,
        host: str,
        port: int,
        fingerprint: str,
        key_data: str,
        *,
        key_host: str | None = None,
        jump_for: str | None = None,
    ) -> None:
        if jump_for is None:
            message = (
                f"{host}: host key is not known (SHA256 fingerprint {fingerprint}). "
                f"Check it, then run `itop trust {host}` to trust it."
            )
        else:
            message = (
                f"{jump_for}: the host key of its jump host {host} is not known "
                f"(SHA256 fingerprint {fingerprint}). "
                f"Check it, then run `itop trust {jump_for}` to trust it."
            )
        super().__init__(message)
        self.host = host
        self.port = port
        self.fingerprint = fingerprint
        self.key_data = key_data
        self.key_host = key_host or host
        self.jump_for = jump_for


class HostKeyChanged(TransportError):
    """The host presented a key different from the one trusted. Always refused."""

    def __init__(self, host: str, port: int, known: str, offered: str) -> None:
        super().__init__(
            f"{host}: HOST KEY CHANGED, connection refused. Known fingerprint {known}, "
            f"offered {offered}. If the host was really reinstalled, remove the old key "
            f"from itop's known_hosts and trust the new one with `itop trust {host}`."
        )
        self.host = host
        self.port = port
        self.known = known
        self.offered = offered


class Transport(Protocol):
    """Runs commands on one host."""

    host: str

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        limit: int = DEFAULT_OUTPUT_LIMIT,
        stdin: bytes | None = None,
    ) -> RunResult:
        """Run ``command`` through the host's shell and collect bounded output.

        Failures to connect or time-outs are reported in the result's
        ``error``, not raised, except :class:`HostKeyUnknown` and
        :class:`HostKeyChanged`, which callers must handle explicitly.
        """
        ...

    def stream(self, command: str, *, line_limit: int = 4096) -> AsyncIterator[str]:
        """Run a long-lived command and yield its stdout line by line.

        Lines are stripped of control sequences and cut at ``line_limit``.
        Closing the iterator ends the command on the host.
        """
        ...

    def stream_chunks(self, command: str, *, line_limit: int = 4096) -> AsyncIterator[str]:
        """Run a long-lived command and yield its stdout in blocks of whole lines.

        One block per chunk received, decoded and stripped of control
        sequences in one pass, newlines kept; a line still unfinished after
        ``line_limit`` bytes is cut. Closing the iterator ends the command.
        """
        ...
