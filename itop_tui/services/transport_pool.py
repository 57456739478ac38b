"""One pooled SSH connection per host, and the transport for every host.

:class:`TransportPool` owns everything SSH needs once per process: the ssh
config resolution (cached per host), client keys (loaded once per file),
itop's known hosts (loaded once), a semaphore bounding concurrent
handshakes, and the open connections. A connection is opened lazily by the
first caller; concurrent callers wait for that same handshake. A connection
that drops is removed, so the next call reconnects.

Host keys are checked by itop itself (:class:`~itop_tui.services.pooled_client.PooledClient`)
so that an unknown key and a changed key are told apart, on every hop of a
ProxyJump chain: asyncssh's own handling of a ProxyJump string would open
the hops with the default known_hosts, so hops are opened here, through the
pool.

The ssh config files are read once per pool
(:class:`~itop_tui.services.ssh_client_config.SSHConfigFiles`) and evaluated
per host from what was read. asyncssh and the known hosts are imported on
first use: creating a pool costs nothing for a command that never connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itop_tui.domain.models import Host
from itop_tui.services.local_transport import LocalTransport
from itop_tui.services.transport import (
    AuthFailed,
    ConnectFailed,
    HostKeyChanged,
    HostKeyUnknown,
    Transport,
    TransportError,
)
from itop_tui.settings import Settings

if TYPE_CHECKING:
    import asyncssh

    from itop_tui.services.known_hosts import KnownHosts
    from itop_tui.services.pooled_client import PooledClient
    from itop_tui.services.ssh_client_config import SSHConfigFiles

log = logging.getLogger(__name__)

# OpenSSH's default MaxSessions: more concurrent channels on one connection
# would be refused by a stock sshd, so callers queue for a slot instead.
MAX_CHANNELS_PER_CONNECTION = 10
DEFAULT_SSH_PORT = 22
MAX_JUMP_DEPTH = 8
BACKOFF_BASE = 0.25
BACKOFF_MAX = 4.0
CLOSE_TIMEOUT = 2.0


class HostKeyUnknownAt(HostKeyUnknown):
    """:class:`HostKeyUnknown` that also says where the key belongs.

    ``key_host`` and ``port`` are what the key is stored under in known_hosts
    (the HostName or HostKeyAlias after ssh config, which differs from
    ``host`` for aliases and ProxyJump hops).
    """

    def __init__(self, host: str, port: int, fingerprint: str, key_data: str, key_host: str):
        super().__init__(host, port, fingerprint, key_data)
        self.key_host = key_host


class HostKeyChangedAt(HostKeyChanged):
    """:class:`HostKeyChanged` that also says which known_hosts entry it contradicts."""

    def __init__(self, host: str, port: int, known: str, offered: str, key_host: str):
        super().__init__(host, port, known, offered)
        self.key_host = key_host


@dataclass(frozen=True)
class ConnectSpec:
    """What to connect to, before the ssh config is applied.

    ``target`` is what ``ssh`` would be given: an alias or an address.
    ``proxy_jump`` None means "as the ssh config says"; ``"none"`` means no
    jump. ``owner`` is the inventory host's name (None for a ProxyJump hop),
    so each inventory host gets its own connection while every host behind
    one jump host shares the hop. ``label`` names the connection in messages.
    """

    target: str
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None
    owner: str | None = None
    label: str = field(default="", compare=False)

    @classmethod
    def for_host(cls, host: Host) -> ConnectSpec:
        """The spec of an inventory host: its alias when it has one, else its address."""
        return cls(
            target=host.ssh_alias or host.connect_address,
            port=host.port,
            user=host.user,
            identity_file=host.identity_file,
            proxy_jump=host.proxy_jump,
            owner=host.name,
            label=host.name,
        )

    @classmethod
    def for_jump(cls, jumps: str) -> ConnectSpec:
        """The last hop of a ProxyJump value ``[user@]host[:port][,...]``.

        Earlier hops become that hop's own ``proxy_jump``.
        """
        hops = [h.strip() for h in jumps.split(",") if h.strip()]
        if not hops:
            raise ConnectFailed(f"empty ProxyJump value {jumps!r}")
        last = hops[-1]
        earlier = ",".join(hops[:-1]) or None
        if last.startswith("ssh://"):
            last = last[len("ssh://") :].rstrip("/")
        user: str | None = None
        if "@" in last:
            user, last = last.rsplit("@", 1)
        port: int | None = None
        host = last
        if last.startswith("["):
            host, _, rest = last[1:].partition("]")
            if rest.startswith(":"):
                port = _parse_port(rest[1:], jumps)
        elif last.count(":") == 1:
            host, port_text = last.split(":")
            port = _parse_port(port_text, jumps)
        return cls(target=host, port=port, user=user, proxy_jump=earlier, label=hops[-1])


def _parse_port(text: str, value: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConnectFailed(f"bad port {text!r} in ProxyJump value {value!r}")
    return int(text)


@dataclass(frozen=True)
class Endpoint:
    """A :class:`ConnectSpec` with the ssh config applied."""

    host: str
    port: int
    user: str
    key_host: str
    jump: ConnectSpec | None
    identity_files: tuple[Path, ...]
    identities_only: bool


@dataclass(frozen=True)
class ServerHostKey:
    """A key a server offered: unpacks as ``(fingerprint, key_data)``.

    ``host`` and ``port`` are the known_hosts name and port it belongs to.
    """

    fingerprint: str
    key_data: str
    host: str
    port: int

    def __iter__(self) -> Iterator[str]:
        return iter((self.fingerprint, self.key_data))


@dataclass
class PoolStats:
    """Counters for tests and benchmarks."""

    attempts: int = 0
    connects: int = 0
    handshakes_in_flight: int = 0
    max_handshakes_in_flight: int = 0


class PooledConnection:
    """An open connection and the channel slots it offers."""

    def __init__(self, spec: ConnectSpec, endpoint: Endpoint, conn: asyncssh.SSHClientConnection,
                 client: PooledClient) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.conn = conn
        self.client = client
        self.slots = asyncio.Semaphore(MAX_CHANNELS_PER_CONNECTION)

    @property
    def is_open(self) -> bool:
        """False once the connection was closed or lost."""
        return not self.client.closed

    @property
    def lost_reason(self) -> str:
        """Why the connection ended, for messages."""
        exc = self.client.lost
        return str(exc) if exc is not None else "connection closed"


class TransportPool:
    """Transports for inventory hosts, sharing one SSH connection per host."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ssh = settings.ssh
        self.config_paths = [p.expanduser() for p in ssh.config_files if p.expanduser().is_file()]
        self._known_hosts: KnownHosts | None = None
        self._config: SSHConfigFiles | None = None
        self.stats = PoolStats()
        self.problems: list[str] = []
        self._handshakes = asyncio.Semaphore(max(1, ssh.max_concurrent_handshakes))
        self._connections: dict[ConnectSpec, PooledConnection] = {}
        self._pending: dict[ConnectSpec, asyncio.Task[PooledConnection]] = {}
        self._endpoints: dict[ConnectSpec, tuple[Endpoint, asyncssh.SSHClientConnectionOptions]] = {}
        self._keys: dict[Path, list[asyncssh.SSHKeyPair]] = {}
        self._default_keys: list[asyncssh.SSHKeyPair] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API ------------------------------------------------------

    @property
    def known_hosts(self) -> KnownHosts:
        """itop's known hosts and the user's, read on first use."""
        if self._known_hosts is None:
            from itop_tui.services.known_hosts import KnownHosts

            ssh = self.settings.ssh
            self._known_hosts = KnownHosts(self.settings.known_hosts_path, ssh.known_hosts_files)
        return self._known_hosts

    def for_host(self, host: Host) -> Transport:
        """The transport for ``host``: local for ``address: local``, else SSH."""
        if host.is_local:
            return LocalTransport(host.name)
        from itop_tui.services.ssh_transport import SSHTransport

        return SSHTransport(self, host)

    def spec_for(self, host: Host) -> ConnectSpec:
        """What the pool connects to for ``host`` (its pool key)."""
        return ConnectSpec.for_host(host)

    @property
    def open_connections(self) -> int:
        """How many connections are open right now (jump hops included)."""
        return sum(1 for c in self._connections.values() if c.is_open)

    async def connection(self, spec: ConnectSpec) -> PooledConnection:
        """The open connection for ``spec``, opening it if needed.

        Raises :class:`TransportError` subclasses; never an asyncssh error.
        """
        return await self._connection(spec, 0)

    async def fetch_host_key(self, host: Host) -> ServerHostKey:
        """Connect far enough to read the host's key (for ``itop trust``).

        Unpacks as ``(fingerprint, key_data)``; ``.host`` and ``.port`` say
        where the key belongs in known_hosts. Nothing is trusted or stored.
        ProxyJump hops are opened through the pool, so their keys are
        checked strictly (an unknown hop key raises :class:`HostKeyUnknown`).
        """
        import asyncssh

        from itop_tui.services.known_hosts import fingerprint, key_line

        self._follow_loop()
        spec = ConnectSpec.for_host(host)
        endpoint = self._endpoint(spec)
        tunnel = await self._tunnel(spec, endpoint, 0)
        known = self.known_hosts.host_keys(endpoint.key_host, endpoint.port)
        # Ask for the key type a real connection would negotiate.
        algs: list[str] = [a.decode() for k in known for a in k.sig_algorithms]
        key: asyncssh.SSHKey | None = None

        async def attempt() -> None:
            nonlocal key
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(
                    spec.target,
                    port=spec.port if spec.port else (),
                    tunnel=tunnel,
                    config=[],
                    server_host_key_algs=algs or (),
                    options=self._base_options(spec),
                ),
                self.settings.ssh.connect_timeout,
            )

        await self._with_retries(spec, endpoint, attempt)
        if key is None:
            raise ConnectFailed(f"{spec.label}: the server sent no host key")
        return ServerHostKey(fingerprint(key), key_line(key), endpoint.key_host, endpoint.port)

    async def trust_host_key(self, host: Host, key_data: str) -> bool:
        """Store ``key_data`` as the key of ``host`` in itop's known_hosts.

        Returns False when it was already trusted; raises
        :class:`HostKeyChanged` when a different key is trusted for the host.
        """
        endpoint = self._endpoint(ConnectSpec.for_host(host))
        try:
            return self.known_hosts.trust(endpoint.key_host, endpoint.port, key_data)
        except HostKeyChanged as exc:
            raise HostKeyChangedAt(host.name, endpoint.port, exc.known, exc.offered,
                                   endpoint.key_host) from None

    def trust_unknown(self, error: HostKeyUnknown) -> bool:
        """Trust the key an :class:`HostKeyUnknown` reported, where it belongs.

        Use this after the user said yes: for a ProxyJump hop the key belongs
        to the hop, not to the host that was asked for.
        """
        key_host = getattr(error, "key_host", error.host)
        return self.known_hosts.trust(key_host, error.port, error.key_data)

    def endpoint(self, host: Host) -> Endpoint:
        """Where ``host`` really is once the ssh config is applied."""
        return self._endpoint(ConnectSpec.for_host(host))

    async def close(self) -> None:
        """Close every connection; the pool can be used again afterwards."""
        for task in list(self._pending.values()):
            task.cancel()
        pooled = list(self._connections.values())
        self._connections.clear()
        # Close targets before the hops they are tunnelled through.
        for conn in sorted(pooled, key=lambda c: c.endpoint.jump is None):
            conn.conn.close()
        for conn in pooled:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.conn.wait_closed(), CLOSE_TIMEOUT)

    def discard(self, pooled: PooledConnection) -> None:
        """Drop a connection that failed under a caller, so the next call reconnects."""
        self._forget(pooled)
        pooled.conn.close()

    # -- connections -----------------------------------------------------

    def _forget(self, pooled: PooledConnection) -> None:
        if self._connections.get(pooled.spec) is pooled:
            del self._connections[pooled.spec]

    def _follow_loop(self) -> None:
        """Start afresh when used from a new event loop (a CLI may call asyncio.run twice).

        Connections and semaphores belong to the loop they were made in.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                self._connections.clear()
                self._pending.clear()
                self._handshakes = asyncio.Semaphore(
                    max(1, self.settings.ssh.max_concurrent_handshakes)
                )
            self._loop = loop

    async def _connection(self, spec: ConnectSpec, depth: int) -> PooledConnection:
        self._follow_loop()
        pooled = self._connections.get(spec)
        if pooled is not None and pooled.is_open:
            return pooled
        task = self._pending.get(spec)
        if task is None:
            task = asyncio.ensure_future(self._open(spec, depth))
            self._pending[spec] = task
            task.add_done_callback(lambda t: self._settled(spec, t))
        # Shielded: one caller giving up must not cancel the handshake the
        # other callers are waiting for.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or current.cancelling() == 0):
                # close() cancelled the handshake, not our caller.
                raise ConnectFailed(f"{spec.label}: the connection pool was closed") from None
            raise

    def _settled(self, spec: ConnectSpec, task: asyncio.Task[PooledConnection]) -> None:
        if self._pending.get(spec) is task:
            del self._pending[spec]
        if not task.cancelled():
            task.exception()  # marks it retrieved even when every waiter left

    async def _tunnel(
        self, spec: ConnectSpec, endpoint: Endpoint, depth: int
    ) -> asyncssh.SSHClientConnection | None:
        if endpoint.jump is None:
            return None
        if depth >= MAX_JUMP_DEPTH:
            raise ConnectFailed(f"{spec.label}: more than {MAX_JUMP_DEPTH} ProxyJump hops (a loop?)")
        try:
            hop = await self._connection(endpoint.jump, depth + 1)
        except (HostKeyUnknown, HostKeyChanged, AuthFailed):
            raise
        except TransportError as exc:
            raise ConnectFailed(f"{spec.label}: via {endpoint.jump.label}: {exc}") from None
        return hop.conn

    async def _open(self, spec: ConnectSpec, depth: int) -> PooledConnection:
        import asyncssh

        from itop_tui.services.pooled_client import PooledClient

        endpoint = self._endpoint(spec)
        tunnel = await self._tunnel(spec, endpoint, depth)
        keys = self._client_keys(endpoint)
        ssh = self.settings.ssh
        options: dict[str, Any] = {
            "port": spec.port if spec.port else (),
            "username": spec.user if spec.user else (),
            # The host's ssh config was parsed once, into the base options;
            # asyncssh builds on it instead of reading the files again.
            "options": self._base_options(spec),
            "config": [],
            "tunnel": tunnel,
            "known_hosts": self._trusted_keys,
            "client_keys": keys,
            "agent_path": () if ssh.use_agent else None,
            "agent_identities": [k.public_data for k in keys] if endpoint.identities_only else None,
            "connect_timeout": ssh.connect_timeout,
            "keepalive_interval": ssh.keepalive_interval,
            "keepalive_count_max": ssh.keepalive_count_max,
        }
        result: list[tuple[asyncssh.SSHClientConnection, PooledClient]] = []

        async def attempt() -> None:
            client = PooledClient(self, spec)
            try:
                conn = await asyncssh.connect(spec.target, client_factory=lambda: client, **options)
            except asyncssh.HostKeyNotVerifiable as exc:
                if client.verdict is not None:
                    raise client.verdict from None
                raise ConnectFailed(f"{spec.label}: host key refused: {exc.reason}") from None
            result.append((conn, client))

        await self._with_retries(spec, endpoint, attempt)
        conn, client = result[0]
        pooled = PooledConnection(spec, endpoint, conn, client)
        client.pooled = pooled
        if client.closed:
            conn.close()
            raise ConnectFailed(f"{spec.label}: connection closed right after it opened")
        self._connections[spec] = pooled
        self.stats.connects += 1
        return pooled

    async def _with_retries(
        self, spec: ConnectSpec, endpoint: Endpoint, attempt: Callable[[], Awaitable[None]]
    ) -> None:
        """Run one connect ``attempt`` under the handshake bound, retrying transient failures."""
        import asyncssh

        from itop_tui.services.pooled_client import classify_connect_error

        retries = max(0, self.settings.ssh.connect_retries)
        where = f"{endpoint.user}@{endpoint.host}:{endpoint.port}"
        for number in range(retries + 1):
            try:
                async with self._handshakes:
                    stats = self.stats
                    stats.attempts += 1
                    stats.handshakes_in_flight += 1
                    stats.max_handshakes_in_flight = max(
                        stats.max_handshakes_in_flight, stats.handshakes_in_flight
                    )
                    try:
                        await attempt()
                    finally:
                        stats.handshakes_in_flight -= 1
                return
            except TransportError:
                raise
            except asyncssh.PermissionDenied:
                raise AuthFailed(
                    f"{spec.label}: authentication refused for {where}"
                    f" (keys offered: {self._describe_keys(endpoint)})"
                ) from None
            except Exception as exc:  # asyncssh and OS errors, classified below
                transient, reason = classify_connect_error(exc, self.settings.ssh.connect_timeout)
                if not transient or number >= retries:
                    tries = f" (after {number + 1} attempts)" if number else ""
                    raise ConnectFailed(f"{spec.label}: cannot connect to {where}: {reason}{tries}") from None
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2**number) * random.uniform(0.5, 1.0)
            await asyncio.sleep(delay)

    def _trusted_keys(
        self, host: str, addr: str, port: int | None
    ) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        # asyncssh restricts the negotiated key types to the ones returned
        # here, as OpenSSH does, so a host with a known key cannot switch to
        # another key type unnoticed.
        return self.known_hosts.match(host, port or DEFAULT_SSH_PORT)

    # -- ssh config and keys ---------------------------------------------

    def _endpoint(self, spec: ConnectSpec) -> Endpoint:
        return self._resolve(spec)[0]

    def _base_options(self, spec: ConnectSpec) -> asyncssh.SSHClientConnectionOptions:
        return self._resolve(spec)[1]

    def _resolve(
        self, spec: ConnectSpec
    ) -> tuple[Endpoint, asyncssh.SSHClientConnectionOptions]:
        """Apply the ssh config files to ``spec``, once per spec and pool.

        The files themselves are read once per pool. The base options hold
        the evaluated config; everything that would read other files (keys,
        agent, known hosts) is off here and supplied, from the pool's caches,
        at connect time.
        """
        cached = self._endpoints.get(spec)
        if cached is not None:
            return cached
        import asyncssh

        if self._config is None:
            from itop_tui.services.ssh_client_config import SSHConfigFiles

            self._config = SSHConfigFiles(self.config_paths)
        try:
            base = self._config.options(
                spec.target,
                spec.port,
                spec.user,
                client_keys=None,
                agent_path=None,
                agent_identities=None,
                known_hosts=None,
                x509_trusted_certs=None,
                x509_trusted_cert_paths=[],
            )
        except (asyncssh.ConfigParseError, OSError, ValueError) as exc:
            raise ConnectFailed(f"{spec.label}: cannot use the ssh config: {exc}") from None
        config = base.config
        jump_value = spec.proxy_jump if spec.proxy_jump is not None else config.get("ProxyJump")
        jump = None
        if isinstance(jump_value, str) and jump_value.strip().lower() not in ("", "none"):
            jump = ConnectSpec.for_jump(jump_value)
        files: list[Path] = []
        if spec.identity_file:
            files.append(Path(spec.identity_file).expanduser())
        config_files = config.get("IdentityFile", [])
        if isinstance(config_files, list):
            files += [Path(str(f)).expanduser() for f in config_files]
        files += [Path(p).expanduser() for p in self.settings.ssh.identity_files]
        endpoint = Endpoint(
            host=base.host,
            port=base.port,
            user=base.username,
            key_host=base.host_key_alias or base.host,
            jump=jump,
            identity_files=tuple(dict.fromkeys(files)),
            identities_only=bool(config.get("IdentitiesOnly", False)),
        )
        self._endpoints[spec] = (endpoint, base)
        return endpoint, base

    def _client_keys(self, endpoint: Endpoint) -> list[asyncssh.SSHKeyPair]:
        if not endpoint.identity_files:
            if self._default_keys is None:
                from asyncssh.public_key import load_default_keypairs

                self._default_keys = list(load_default_keypairs())
            return self._default_keys
        keys: list[asyncssh.SSHKeyPair] = []
        for path in endpoint.identity_files:
            if path not in self._keys:
                self._keys[path] = self._load_key(path)
            keys += self._keys[path]
        return keys

    def _load_key(self, path: Path) -> list[asyncssh.SSHKeyPair]:
        import asyncssh

        if not path.exists():
            # OpenSSH skips a missing IdentityFile too.
            self.problems.append(f"identity file {path} does not exist")
            return []
        try:
            return list(asyncssh.load_keypairs([str(path)]))
        except asyncssh.KeyEncryptionError:
            self.problems.append(f"identity file {path} is encrypted: load it into ssh-agent")
        except (asyncssh.KeyImportError, OSError, ValueError) as exc:
            self.problems.append(f"identity file {path} cannot be used: {exc}")
        return []

    def _describe_keys(self, endpoint: Endpoint) -> str:
        names = [str(p) for p in endpoint.identity_files if self._keys.get(p)]
        if self.settings.ssh.use_agent:
            names.append("ssh-agent")
        return ", ".join(names) or "none"

