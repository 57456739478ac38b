"""Reading the discovered facts of a host for display.

Facts are stored as discovery wrote them (keys in
:data:`itop_tui.domain.facts.FACT_KEYS`); these helpers pick the values the
table and the detail panel show, and turn nested values into short text.
"""

from __future__ import annotations

from typing import Any

from itop_tui.domain.models import Host

_MEMORY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    return None


def host_os(host: Host) -> str:
    """Operating system name and version, e.g. ``Debian GNU/Linux 12``; empty when unknown."""
    name = host.facts.get("os_name")
    version = host.facts.get("os_version")
    if not name:
        return ""
    name = str(name)
    if not version or str(version) in name:
        return name
    return f"{name} {version}"


def host_cpus(host: Host) -> int | None:
    """Number of online CPUs, when discovered."""
    return _as_int(host.facts.get("cpu_count"))


def host_memory(host: Host) -> int | None:
    """Total memory in bytes, when discovered."""
    return _as_int(host.facts.get("mem_total"))


def format_memory(size: int) -> str:
    """``size`` bytes as a short binary size: ``7.6GiB``, ``512MiB``."""
    value = float(size)
    for unit in _MEMORY_UNITS:
        if value < 1024 or unit == _MEMORY_UNITS[-1]:
            if unit == "B" or value >= 100:
                return f"{value:.0f}{unit}"
            return f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"  # pragma: no cover - the loop always returns


def fact_text(value: Any, limit: int = 200) -> str:
    """A fact value as one line of text, cut at ``limit`` characters."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={fact_text(v, limit)}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        text = ", ".join(fact_text(v, limit) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_duration(seconds: float) -> str:
    """``seconds`` as ``3d 4h``, ``2h 5m`` or ``42s``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _filesystem_text(fs: Any) -> str:
    if not isinstance(fs, dict):
        return fact_text(fs)
    size = _as_int(fs.get("size"))
    used = _as_int(fs.get("used"))
    avail = _as_int(fs.get("avail"))
    parts = [str(fs.get("mount", "?"))]
    if fs.get("fstype"):
        parts.append(str(fs["fstype"]))
    if size:
        parts.append(format_memory(size))
        # As df and the drill-down count it: of the room users have (used + avail),
        # not of the size, which includes the blocks reserved for root.
        room = used + avail if used is not None and avail is not None else size
        if used is not None and room > 0:
            parts.append(f"{used * 100 / room:.0f}% used")
    return " ".join(parts)


def format_fact(key: str, value: Any) -> str:
    """A fact as shown in the detail panel: sizes and durations made readable."""
    if value is None or value == [] or value == "":
        return "-"
    if key == "mem_total" and (size := _as_int(value)) is not None:
        return format_memory(size)
    if key == "uptime_seconds" and isinstance(value, int | float):
        return format_duration(value)
    if key == "filesystems" and isinstance(value, list):
        return ", ".join(_filesystem_text(fs) for fs in value)
    return fact_text(value)
