"""Run one command on many hosts at once, every run audited.

:class:`FleetRunner` is what ``itop run`` and the TUI's run dialog use.
:func:`fan_out` is the bounded, cancellable per-host concurrency that
discovery shares.

An ad-hoc command counts as mutating: before anything runs,
:class:`~itop_tui.ops.change_gate.ChangeGate` must allow it on the targets
(production hosts need an approved change in its window). A command run
with ``mutating=False`` must pass :func:`~itop_tui.ops.change_gate.observe_command`
(one read-only program, no shell syntax) and is never blocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from itop_tui.domain.models import Host
from itop_tui.ops.change_gate import ChangeGate, GateDecision, observe_command
from itop_tui.services.audit import AuditEvent, AuditQueue
from itop_tui.services.context import Services
from itop_tui.services.inventory_repo import utc_now
from itop_tui.services.store import StoreError
from itop_tui.services.transport import (
    HostKeyChanged,
    HostKeyUnknown,
    RunResult,
    TransportError,
)

T = TypeVar("T")

CANCELLED = "cancelled"


def unique_hosts(hosts: list[Host]) -> list[Host]:
    """``hosts`` without repeated names, first occurrence kept."""
    seen: set[str] = set()
    result = []
    for host in hosts:
        if host.name not in seen:
            seen.add(host.name)
            result.append(host)
    return result


async def fan_out(
    hosts: list[Host],
    work: Callable[[Host], Awaitable[T]],
    *,
    limit: int,
    on_cancelled: Callable[[Host, float], None],
) -> dict[str, T]:
    """Await ``work(host)`` for every host, at most ``limit`` at once.

    Returns results by host name. When the calling task is cancelled, hosts
    not started yet are never started, running ones are cancelled and
    reported to ``on_cancelled(host, seconds_running)``, and the
    ``CancelledError`` propagates. If one ``work`` raises, the others are
    cancelled the same way and the exception propagates.
    """
    semaphore = asyncio.Semaphore(max(1, limit))
    started: dict[str, float] = {}
    results: dict[str, T] = {}

    async def one(host: Host) -> None:
        async with semaphore:
            started[host.name] = time.monotonic()
            results[host.name] = await work(host)

    tasks = [asyncio.create_task(one(host), name=f"itop:{host.name}") for host in hosts]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        now = time.monotonic()
        for host in hosts:
            if host.name in started and host.name not in results:
                on_cancelled(host, now - started[host.name])
        raise
    return results


class FleetRunner:
    """Runs a command on a list of hosts concurrently, bounded by ``forks``.

    Each host's run is written to the audit log (action ``run``), hosts that
    answered get ``last_seen`` updated in one store write at the end, and
    unknown or changed host keys are kept in :attr:`unknown_keys` /
    :attr:`changed_keys` so the caller can offer to trust them.
    :attr:`decision` is the change gate's decision of the last run (the
    change it was recorded against, if any).
    """

    def __init__(self, services: Services, gate: ChangeGate | None = None) -> None:
        self.services = services
        self.gate = gate
        self.unknown_keys: dict[str, HostKeyUnknown] = {}
        self.changed_keys: dict[str, HostKeyChanged] = {}
        self.warnings: list[str] = []
        self.decision: GateDecision | None = None

    async def run(
        self,
        hosts: list[Host],
        command: str,
        *,
        forks: int | None = None,
        timeout: float | None = None,
        on_result: Callable[[RunResult], None] | None = None,
        on_start: Callable[[Host], None] | None = None,
        mutating: bool = True,
        change_ref: str | None = None,
    ) -> list[RunResult]:
        """Run ``command`` on every host; results in the order of ``hosts``.

        Raises :class:`~itop_tui.services.context.ReadOnlyError` when itop is
        read-only, or (its subclass ``OperatorRequired``) when a trainee asks a
        mutating command (``mutating=False`` is the read-only allowlist a
        trainee may use), :class:`~itop_tui.ops.change_gate.ChangeRequired` when the
        change gate refuses (``change_ref`` names the change to run under;
        None lets the gate find the single active one), and
        :class:`~itop_tui.ops.change_gate.ObserveRefused` when
        ``mutating=False`` is asked of a command that is not read-only.
        Nothing runs in those cases. A host that cannot be reached gives a
        result with ``error`` set; it never stops the others.

        Each host's audit event is on disk before ``on_result`` sees its
        result; events are written in batches from a worker thread
        (:class:`~itop_tui.services.audit.AuditQueue`), so the handshakes in
        flight never wait for an fsync.
        """
        if mutating:
            self.services.require_operator("run commands")
        else:
            self.services.require_writable("run commands")
        settings = self.services.settings
        hosts = unique_hosts(hosts)
        if not mutating:
            command = observe_command(command)
        gate = self.gate or ChangeGate(self.services)
        self.decision = gate.require(
            hosts, mutating=mutating, change_ref=change_ref,
            what=f"run: {command}" if mutating else None,
        )
        limit = forks if forks is not None else settings.forks
        run_timeout = timeout if timeout is not None else settings.command_timeout

        audit = AuditQueue(self.services.audit)
        # Hosts whose result is queued for the audit log: if the run is
        # cancelled while the event is being written, the result stands.
        audited: set[str] = set()

        async def work(host: Host) -> RunResult:
            if on_start is not None:
                on_start(host)
            result = await self._run_one(host, command, run_timeout)
            committed = self._audit(audit, result, "ok" if result.ok else "failed")
            audited.add(host.name)
            await committed
            if on_result is not None:
                on_result(result)
            return result

        def cancelled(host: Host, elapsed: float) -> None:
            if host.name in audited:
                return
            result = RunResult(host.name, command, None, "", "", elapsed, error=CANCELLED)
            self._audit(audit, result, CANCELLED)

        results: dict[str, RunResult] = {}
        try:
            results = await fan_out(hosts, work, limit=limit, on_cancelled=cancelled)
        finally:
            await audit.drain()
            # Hosts that answered before a cancellation were still seen.
            self._mark_seen([r for r in results.values() if r.error is None])
        return [results[host.name] for host in hosts]

    async def _run_one(self, host: Host, command: str, timeout: float) -> RunResult:
        started = time.monotonic()
        try:
            transport = self.services.transports.for_host(host)
            result = await transport.run(
                command, timeout=timeout, limit=self.services.settings.output_limit
            )
        except HostKeyUnknown as exc:
            self.unknown_keys[host.name] = exc
            return self._failed(host, command, started, str(exc))
        except HostKeyChanged as exc:
            self.changed_keys[host.name] = exc
            return self._failed(host, command, started, str(exc))
        except (TransportError, OSError) as exc:
            return self._failed(host, command, started, str(exc) or type(exc).__name__)
        return result if result.host == host.name else replace(result, host=host.name)

    @staticmethod
    def _failed(host: Host, command: str, started: float, error: str) -> RunResult:
        return RunResult(host.name, command, None, "", "", time.monotonic() - started, error=error)

    def _audit(
        self, audit: AuditQueue, result: RunResult, outcome: str
    ) -> asyncio.Future[AuditEvent]:
        return audit.add(
            "run",
            result.host,
            {
                "command": result.command,
                "exit_status": result.exit_status,
                "duration": round(result.duration, 3),
                "truncated": result.truncated,
                "error": result.error,
                **self._gate_detail(),
            },
            result=outcome,
        )

    def _gate_detail(self) -> dict[str, object]:
        """What the audit event of a run says about the change gate."""
        decision = self.decision
        if decision is None:
            return {}
        if not decision.mutating:
            return {"observe": True}
        return {"change": decision.change_ref} if decision.change_ref else {}

    def _mark_seen(self, answered: list[RunResult]) -> None:
        # Only hosts that answered (exit status known) were seen, whatever the status.
        names = [r.host for r in answered if r.exit_status is not None]
        if not names:
            return
        at = utc_now()
        try:
            # Some hosts may not be stored (removed meanwhile, or ad hoc): skipped.
            self.services.inventory.mark_seen_many(names, at, missing_ok=True)
        except StoreError as exc:
            self.warnings.append(f"could not record when hosts were last seen: {exc}")
