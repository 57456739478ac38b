"""Command palette providers: find a host by name, address or group and jump to it."""

from __future__ import annotations

import asyncio
import heapq
import re
from functools import partial
from typing import Protocol, runtime_checkable

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from itop_tui.domain.models import Host, Inventory

MAX_HITS = 40
_YIELD_EVERY = 500


@runtime_checkable
class HostJumping(Protocol):
    """What the provider needs from the app: a snapshot and a way to jump."""

    inventory: Inventory | None

    def jump_to_host(self, name: str) -> None:
        """Show host ``name`` in the Inventory pane."""
        ...


def host_search_text(host: Host) -> str:
    """``name address group,group``: what a palette query is matched against."""
    return f"{host.name} {host.connect_address} {','.join(host.groups)}".strip()


def subsequence_pattern(query: str) -> re.Pattern[str]:
    """A pattern that finds the query's characters in order, case-insensitively.

    Fuzzy scoring is costly; with 10,000 hosts only candidates that contain
    the query as a subsequence are scored at all.
    """
    chars = [re.escape(c) for c in query if not c.isspace()]
    return re.compile(".*?".join(chars), re.IGNORECASE)


class HostCommands(Provider):
    """Hosts as palette hits: choosing one opens the Inventory pane on it."""

    async def search(self, query: str) -> Hits:
        """Hits for hosts whose name, address or groups fuzzily match ``query``."""
        app = self.app
        if not isinstance(app, HostJumping) or app.inventory is None or not query.strip():
            return
        matcher = self.matcher(query)
        pattern = subsequence_pattern(query)
        # (score, -position, name, text): on equal scores the earlier host wins.
        best: list[tuple[float, int, str, str]] = []
        for index, host in enumerate(list(app.inventory.hosts.values())):
            if index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # keep the palette responsive on big fleets
            text = host_search_text(host)
            if pattern.search(text) is None:
                continue
            score = matcher.match(text)
            if score <= 0:
                continue
            item = (score, -index, host.name, text)
            if len(best) < MAX_HITS:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
        for score, _position, name, text in sorted(best, reverse=True):
            yield Hit(
                score,
                matcher.highlight(text),
                partial(app.jump_to_host, name),
                text=name,
                help=f"Show {name} in the inventory",
            )

    async def discover(self) -> Hits:
        """With an empty query, offer the first hosts so the palette is not blank."""
        app = self.app
        if not isinstance(app, HostJumping) or app.inventory is None:
            return
        for host in list(app.inventory.hosts.values())[:MAX_HITS]:
            yield DiscoveryHit(
                Content(host_search_text(host)),
                partial(app.jump_to_host, host.name),
                text=host.name,
                help=f"Show {host.name} in the inventory",
            )
