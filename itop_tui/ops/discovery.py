"""Gather facts of hosts and store them with their time.

SSH hosts run one bounded POSIX sh command (:func:`discovery_command`) whose
output the pure parser in :mod:`itop_tui.domain.facts` reads; local hosts
are read through psutil and platform. Fact keys are listed in
:data:`itop_tui.domain.facts.FACT_KEYS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itop_tui.domain.facts import FactsParseError, discovery_command, parse_discovery_output
from itop_tui.domain.models import Host
from itop_tui.ops.fleet import CANCELLED, fan_out, unique_hosts
from itop_tui.services.context import Services
from itop_tui.services.inventory_repo import utc_now
from itop_tui.services.local_facts import local_facts
from itop_tui.services.store import StoreError
from itop_tui.services.transport import HostKeyChanged, HostKeyUnknown, TransportError

# Discovery reads a few files: it never needs long, even on a slow host.
DISCOVERY_TIMEOUT = 30.0
DISCOVERY_OUTPUT_LIMIT = 64 * 1024


@dataclass
class DiscoveryResult:
    """The facts gathered from one host, or why there are none."""

    host: str
    facts: dict[str, Any] | None
    error: str | None = None
    duration: float = 0.0
    at: str | None = None

    @property
    def ok(self) -> bool:
        """True when facts were gathered."""
        return self.error is None and self.facts is not None

    def to_dict(self) -> dict[str, Any]:
        """The stable ``--json`` form."""
        return {
            "host": self.host,
            "ok": self.ok,
            "facts": self.facts,
            "facts_at": self.at,
            "error": self.error,
            "duration": round(self.duration, 3),
        }


class FactDiscovery:
    """Discovers facts of hosts concurrently (bounded by ``run.forks``).

    Every host is audited (action ``discover``); an unreachable host gives a
    result with ``error`` and never stops the others. Facts of the hosts that
    answered are stored in one write at the end (also when cancelled).
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.unknown_keys: dict[str, HostKeyUnknown] = {}
        self.changed_keys: dict[str, HostKeyChanged] = {}
        self.warnings: list[str] = []

    async def discover(
        self,
        hosts: list[Host],
        *,
        on_result: Callable[[DiscoveryResult], None] | None = None,
        on_start: Callable[[Host], None] | None = None,
        forks: int | None = None,
    ) -> list[DiscoveryResult]:
        """Discover every host; results in the order of ``hosts``."""
        self.services.require_writable("discover facts")
        hosts = unique_hosts(hosts)

        async def work(host: Host) -> DiscoveryResult:
            if on_start is not None:
                on_start(host)
            result = await self._discover_one(host)
            self._audit(result, "ok" if result.ok else "failed")
            if on_result is not None:
                on_result(result)
            return result

        def cancelled(host: Host, elapsed: float) -> None:
            self._audit(DiscoveryResult(host.name, None, CANCELLED, elapsed), CANCELLED)

        results: dict[str, DiscoveryResult] = {}
        try:
            results = await fan_out(
                hosts,
                work,
                limit=forks if forks is not None else self.services.settings.forks,
                on_cancelled=cancelled,
            )
        finally:
            self._store([r for r in results.values() if r.ok])
        return [results[host.name] for host in hosts]

    async def _discover_one(self, host: Host) -> DiscoveryResult:
        started = time.monotonic()

        def failed(message: str) -> DiscoveryResult:
            # The result names the host: its error need not (transport errors start with it).
            message = message.removeprefix(f"{host.name}: ")
            return DiscoveryResult(host.name, None, message, time.monotonic() - started)

        if host.is_local:
            try:
                # A hung network mount can block statvfs: never wait forever.
                facts = await asyncio.wait_for(asyncio.to_thread(local_facts), DISCOVERY_TIMEOUT)
            except TimeoutError:
                return failed(f"reading this machine's facts took over {DISCOVERY_TIMEOUT:g}s")
            except OSError as exc:
                return failed(f"cannot read this machine's facts: {exc}")
            return DiscoveryResult(host.name, facts, None, time.monotonic() - started, utc_now())
        try:
            transport = self.services.transports.for_host(host)
            result = await transport.run(
                discovery_command(),
                timeout=min(DISCOVERY_TIMEOUT, self.services.settings.command_timeout),
                limit=DISCOVERY_OUTPUT_LIMIT,
            )
        except HostKeyUnknown as exc:
            self.unknown_keys[host.name] = exc
            return failed(str(exc))
        except HostKeyChanged as exc:
            self.changed_keys[host.name] = exc
            return failed(str(exc))
        except (TransportError, OSError) as exc:
            return failed(str(exc) or type(exc).__name__)
        if result.error is not None:
            return failed(result.error)
        if result.exit_status != 0:
            detail = result.stderr.strip().splitlines()[-1:] or ["no message"]
            return failed(f"discovery command exited {result.exit_status}: {detail[0]}")
        try:
            facts = parse_discovery_output(result.stdout)
        except FactsParseError as exc:
            return failed(str(exc))
        return DiscoveryResult(host.name, facts, None, time.monotonic() - started, utc_now())

    def _audit(self, result: DiscoveryResult, outcome: str) -> None:
        self.services.audit.append(
            "discover",
            result.host,
            {"duration": round(result.duration, 3), "error": result.error},
            result=outcome,
        )

    def _store(self, found: list[DiscoveryResult]) -> None:
        facts = {r.host: (r.facts or {}, r.at or utc_now()) for r in found}
        if not facts:
            return
        try:
            try:
                self.services.inventory.set_facts_many(facts)
            except KeyError:
                known = self.services.inventory.load().hosts
                self.services.inventory.set_facts_many(
                    {name: value for name, value in facts.items() if name in known}
                )
        except StoreError as exc:
            self.warnings.append(f"could not store the facts: {exc}")
