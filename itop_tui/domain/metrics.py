"""The sample shape shown and stored, and rates computed from raw counters.

A :class:`Sample` is what one collection round says about one host: gauges
(memory, load) taken from the latest raw sample, and rates (CPU %, bytes per
second) from the difference between the latest and the previous one. A rate
that cannot be trusted is ``None``, never negative or absurd: a counter that
went backwards (reboot, 32-bit wrap, a disk replaced), an interval of zero
or less, or no previous sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from itop_tui.domain.procfs import (
    MIN_INTERVAL,
    CpuTimes,
    DiskCounters,
    Filesystem,
    NetCounters,
    RawSample,
)

# Flat metrics of a sample, in the order history, rollups and thresholds use.
METRIC_NAMES = (
    "cpu_percent",
    "mem_percent",
    "swap_percent",
    "load1",
    "load5",
    "load15",
    "load_per_core",
    "procs",
    "disk_read_bps",
    "disk_write_bps",
    "disk_busiest_util",
    "net_rx_bps",
    "net_tx_bps",
    "fs_max_percent",
)


def cpu_percent(prev: CpuTimes, cur: CpuTimes) -> float | None:
    """Busy share of CPU time between two readings, as psutil computes it.

    busy = total - idle - iowait, with guest and guest_nice left out of the
    total because the kernel already counts them in user and nice. Single
    fields may step back a little (iowait does on some kernels) and are
    clamped at zero like psutil does; a total that went back means the
    counters were reset, and gives ``None``. So does an interval with no
    ticks at all, where psutil would say 0.0.
    """
    if cur.total < prev.total:
        return None
    deltas = CpuTimes(*(max(0.0, c - p) for c, p in zip(cur.values(), prev.values(), strict=True)))
    all_delta = deltas.total
    if all_delta <= 0:
        return None
    busy = all_delta - deltas.idle - deltas.iowait
    return max(0.0, min(100.0, busy / all_delta * 100.0))


def counter_rate(prev: int, cur: int, seconds: float) -> float | None:
    """Per-second rate of a cumulative counter; ``None`` if it went back."""
    if cur < prev or seconds < MIN_INTERVAL or not math.isfinite(seconds):
        return None
    return (cur - prev) / seconds


def _percent(part: int | None, whole: int | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return max(0.0, min(100.0, part / whole * 100.0))


@dataclass(frozen=True, slots=True)
class DiskRate:
    """Read and write bytes per second and utilisation (% of time busy) of one disk."""

    read_bps: float
    write_bps: float
    util_percent: float


@dataclass(frozen=True, slots=True)
class NetRate:
    """Receive and transmit bytes per second of one interface."""

    rx_bps: float
    tx_bps: float


def disk_rate(prev: DiskCounters, cur: DiskCounters, seconds: float) -> DiskRate | None:
    """Rates of one disk, or ``None`` if any of its counters went back."""
    read = counter_rate(prev.read_bytes, cur.read_bytes, seconds)
    write = counter_rate(prev.write_bytes, cur.write_bytes, seconds)
    busy_ms = counter_rate(prev.io_ms, cur.io_ms, seconds)
    if read is None or write is None or busy_ms is None:
        return None
    # io_ticks is sampled per jiffy and may overshoot the wall interval a bit.
    return DiskRate(read, write, min(100.0, busy_ms / 10.0))


def net_rate(prev: NetCounters, cur: NetCounters, seconds: float) -> NetRate | None:
    """Rates of one interface, or ``None`` if a counter went back (or wrapped)."""
    rx = counter_rate(prev.rx_bytes, cur.rx_bytes, seconds)
    tx = counter_rate(prev.tx_bytes, cur.tx_bytes, seconds)
    if rx is None or tx is None:
        return None
    return NetRate(rx, tx)


def interval_seconds(prev: RawSample, cur: RawSample) -> float | None:
    """Seconds between two raw samples of a host, or ``None`` if unusable.

    The host's own uptime is preferred to the client's receive times: it is
    not skewed by network delay or by frames arriving in a burst. A falling
    uptime means a reboot.
    """
    if prev.uptime is not None and cur.uptime is not None:
        seconds = cur.uptime - prev.uptime
    else:
        seconds = cur.time - prev.time
    if not math.isfinite(seconds) or seconds < MIN_INTERVAL:
        return None
    return seconds


@dataclass
class Sample:
    """What one collection round says about one host.

    Sizes are bytes, rates bytes per second, shares percent (0-100). ``None``
    means unknown: not reported by the host, or no trustworthy rate yet.
    ``time`` is seconds since the Unix epoch.
    """

    host: str
    time: float
    cpu_percent: float | None = None
    cpu_per_core: list[float | None] = field(default_factory=list)
    mem_total: int | None = None
    mem_available: int | None = None
    mem_percent: float | None = None
    swap_total: int | None = None
    swap_used: int | None = None
    swap_percent: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    procs: int | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    disk_busiest_util: float | None = None
    disks: dict[str, DiskRate] = field(default_factory=dict)
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None
    interfaces: dict[str, NetRate] = field(default_factory=dict)
    filesystems: list[Filesystem] = field(default_factory=list)
    uptime: float | None = None

    @property
    def cpu_count(self) -> int:
        """Number of cores the host reported."""
        return len(self.cpu_per_core)

    @property
    def load_per_core(self) -> float | None:
        """1-minute load divided by the number of cores."""
        if self.load1 is None or not self.cpu_per_core:
            return None
        return self.load1 / len(self.cpu_per_core)

    @property
    def fs_max_percent(self) -> float | None:
        """Usage of the fullest writable filesystem.

        Read-only mounts are left out: they cannot fill any further, and
        some are always 100 % used (a snap's squashfs, a mounted ISO), which
        would hold a "fullest filesystem" problem open for ever.
        """
        shares = [
            fs.percent for fs in self.filesystems if fs.percent is not None and not fs.read_only
        ]
        return max(shares) if shares else None

    def values(self) -> dict[str, float | None]:
        """The flat metrics named in :data:`METRIC_NAMES`."""
        values: dict[str, float | None] = {}
        for name in METRIC_NAMES:
            value = getattr(self, name)
            values[name] = None if value is None else float(value)
        return values

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a stable key order and rounded numbers.

        ``time`` is UTC ISO 8601 and ``epoch`` the same instant in seconds;
        percents and rates carry one decimal, loads two.
        """
        return {
            "host": self.host,
            "time": _iso(self.time),
            "epoch": round(self.time, 3),
            "cpu_percent": _round(self.cpu_percent, 1),
            "cpu_count": self.cpu_count,
            "cpu_per_core": [_round(value, 1) for value in self.cpu_per_core],
            "mem_total": self.mem_total,
            "mem_available": self.mem_available,
            "mem_percent": _round(self.mem_percent, 1),
            "swap_total": self.swap_total,
            "swap_used": self.swap_used,
            "swap_percent": _round(self.swap_percent, 1),
            "load1": _round(self.load1, 2),
            "load5": _round(self.load5, 2),
            "load15": _round(self.load15, 2),
            "procs": self.procs,
            "disk_read_bps": _round(self.disk_read_bps, 1),
            "disk_write_bps": _round(self.disk_write_bps, 1),
            "disk_busiest_util": _round(self.disk_busiest_util, 1),
            "disks": {
                name: {
                    "read_bps": _round(rate.read_bps, 1),
                    "write_bps": _round(rate.write_bps, 1),
                    "util_percent": _round(rate.util_percent, 1),
                }
                for name, rate in sorted(self.disks.items())
            },
            "net_rx_bps": _round(self.net_rx_bps, 1),
            "net_tx_bps": _round(self.net_tx_bps, 1),
            "interfaces": {
                name: {"rx_bps": _round(rate.rx_bps, 1), "tx_bps": _round(rate.tx_bps, 1)}
                for name, rate in sorted(self.interfaces.items())
            },
            "filesystems": [
                {
                    "filesystem": fs.filesystem,
                    "mount": fs.mount,
                    "size": fs.size,
                    "used": fs.used,
                    "avail": fs.avail,
                    "percent": _round(fs.percent, 1),
                    "fstype": fs.fstype,
                    "read_only": fs.read_only,
                }
                for fs in self.filesystems
            ],
            "uptime": _round(self.uptime, 2),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        """Rebuild a sample from :meth:`to_dict` output (rounded values stay rounded)."""
        return cls(
            host=str(data["host"]),
            time=float(data["epoch"]),
            cpu_percent=data.get("cpu_percent"),
            cpu_per_core=list(data.get("cpu_per_core", [])),
            mem_total=data.get("mem_total"),
            mem_available=data.get("mem_available"),
            mem_percent=data.get("mem_percent"),
            swap_total=data.get("swap_total"),
            swap_used=data.get("swap_used"),
            swap_percent=data.get("swap_percent"),
            load1=data.get("load1"),
            load5=data.get("load5"),
            load15=data.get("load15"),
            procs=data.get("procs"),
            disk_read_bps=data.get("disk_read_bps"),
            disk_write_bps=data.get("disk_write_bps"),
            disk_busiest_util=data.get("disk_busiest_util"),
            disks={
                name: DiskRate(d["read_bps"], d["write_bps"], d["util_percent"])
                for name, d in data.get("disks", {}).items()
            },
            net_rx_bps=data.get("net_rx_bps"),
            net_tx_bps=data.get("net_tx_bps"),
            interfaces={
                name: NetRate(i["rx_bps"], i["tx_bps"])
                for name, i in data.get("interfaces", {}).items()
            },
            filesystems=[
                # Samples written before mount types were read have neither key.
                Filesystem(
                    f["filesystem"],
                    f["mount"],
                    f["size"],
                    f["used"],
                    f["avail"],
                    fstype=str(f.get("fstype") or ""),
                    read_only=bool(f.get("read_only", False)),
                )
                for f in data.get("filesystems", [])
            ],
            uptime=data.get("uptime"),
        )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _iso(epoch: float) -> str:
    try:
        moment = datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compute_sample(
    prev: RawSample | None,
    cur: RawSample,
    filesystems: list[Filesystem] | None = None,
) -> Sample:
    """The sample for ``cur``, with rates against ``prev`` when they can be trusted.

    ``filesystems`` stands in when ``cur`` has no df section (df runs only
    every few frames); filesystems of size 0 (pseudo filesystems) are left out.
    """
    memory = cur.memory
    swap_used = None
    if memory.swap_total is not None and memory.swap_free is not None:
        swap_used = max(0, memory.swap_total - memory.swap_free)
    mem_used = None
    if memory.total is not None and memory.available is not None:
        mem_used = memory.total - memory.available
    fs_rows = cur.filesystems if cur.filesystems is not None else filesystems or []
    sample = Sample(
        host=cur.host,
        time=cur.time,
        cpu_per_core=[None] * len(cur.cpu.cores),
        mem_total=memory.total,
        mem_available=memory.available,
        mem_percent=_percent(mem_used, memory.total),
        swap_total=memory.swap_total,
        swap_used=swap_used,
        # psutil reports 0 % for a host without swap.
        swap_percent=(
            None
            if swap_used is None
            else (0.0 if memory.swap_total == 0 else _percent(swap_used, memory.swap_total))
        ),
        load1=cur.load.load1,
        load5=cur.load.load5,
        load15=cur.load.load15,
        procs=cur.procs if cur.procs is not None else cur.load.total,
        filesystems=[fs for fs in fs_rows if fs.size > 0],
        uptime=cur.uptime,
    )
    if prev is None:
        return sample
    seconds = interval_seconds(prev, cur)
    if seconds is None:
        return sample
    _add_cpu(sample, prev, cur)
    _add_disks(sample, prev, cur, seconds)
    _add_net(sample, prev, cur, seconds)
    return sample


def _add_cpu(sample: Sample, prev: RawSample, cur: RawSample) -> None:
    if prev.cpu.total is not None and cur.cpu.total is not None:
        sample.cpu_percent = cpu_percent(prev.cpu.total, cur.cpu.total)
    per_core: list[float | None] = []
    for index, times in cur.cpu.cores.items():
        before = prev.cpu.cores.get(index)
        per_core.append(None if before is None else cpu_percent(before, times))
    sample.cpu_per_core = per_core


def _add_disks(sample: Sample, prev: RawSample, cur: RawSample, seconds: float) -> None:
    rates: dict[str, DiskRate] = {}
    broken = False
    for name, counters in cur.disks.items():
        before = prev.disks.get(name)
        if before is None:
            continue  # a disk that just appeared has no rate yet
        rate = disk_rate(before, counters, seconds)
        if rate is None:
            broken = True
        else:
            rates[name] = rate
    sample.disks = rates
    if rates and not broken:
        sample.disk_read_bps = sum(rate.read_bps for rate in rates.values())
        sample.disk_write_bps = sum(rate.write_bps for rate in rates.values())
    if rates:
        sample.disk_busiest_util = max(rate.util_percent for rate in rates.values())


def _add_net(sample: Sample, prev: RawSample, cur: RawSample, seconds: float) -> None:
    rates: dict[str, NetRate] = {}
    broken = False
    for name, counters in cur.net.items():
        before = prev.net.get(name)
        if before is None:
            continue
        rate = net_rate(before, counters, seconds)
        if rate is None:
            broken = True
        else:
            rates[name] = rate
    sample.interfaces = rates
    # A total without the interface whose counter went back would understate
    # the traffic, so the whole total waits for the next interval.
    if rates and not broken:
        sample.net_rx_bps = sum(rate.rx_bps for rate in rates.values())
        sample.net_tx_bps = sum(rate.tx_bps for rate in rates.values())


class SampleBuilder:
    """Turns one host's stream of raw samples into samples.

    Keeps the previous raw sample for rates and the last df result, which
    later frames without a df section reuse.
    """

    def __init__(self) -> None:
        self._prev: RawSample | None = None
        self._filesystems: list[Filesystem] = []

    def add(self, raw: RawSample) -> Sample:
        """The sample for ``raw``; rates are against the raw sample added before it."""
        if raw.filesystems is not None:
            self._filesystems = raw.filesystems
        sample = compute_sample(self._prev, raw, self._filesystems)
        self._prev = raw
        return sample

    def reset(self) -> None:
        """Forget the previous raw sample (the next sample has no rates)."""
        self._prev = None
