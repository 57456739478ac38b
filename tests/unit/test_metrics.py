"""Rates between raw samples, and the Sample shape."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itop_tui.domain.metrics import (
    METRIC_NAMES,
    Sample,
    SampleBuilder,
    compute_sample,
    counter_rate,
    cpu_percent,
    interval_seconds,
)
from itop_tui.domain.procfs import (
    CPU_FIELDS,
    MIN_INTERVAL,
    CpuStat,
    CpuTimes,
    DiskCounters,
    Filesystem,
    MemInfo,
    NetCounters,
    RawSample,
    parse_frame,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "proc"
FILES = ("stat", "meminfo", "loadavg", "diskstats", "net_dev", "uptime", "procs", "df")


def capture(name: str, time: float) -> RawSample:
    sections = {
        part: (DATA / name / part).read_bytes().decode("utf-8", errors="replace").splitlines()
        for part in FILES
    }
    return parse_frame(sections, host="vm", time=time)


def psutil_percent(prev: CpuTimes, cur: CpuTimes) -> float:
    """psutil's own computation, fed the same numbers (its private helpers)."""
    if not all(
        hasattr(psutil, name) for name in ("_cpu_tot_time", "_cpu_busy_time", "_cpu_times_deltas")
    ):
        pytest.skip("psutil renamed its private cpu_percent helpers; update this oracle")
    scputimes = type(psutil.cpu_times())
    if scputimes._fields != CPU_FIELDS:
        pytest.skip(f"psutil cpu_times fields {scputimes._fields} differ from Linux's ten")
    t1, t2 = scputimes(*prev.values()), scputimes(*cur.values())
    deltas = psutil._cpu_times_deltas(t1, t2)  # type: ignore[attr-defined]
    total = psutil._cpu_tot_time(deltas)  # type: ignore[attr-defined]
    return float(psutil._cpu_busy_time(deltas) / total * 100)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# Real captures 4 s apart


def test_real_captures_cpu_matches_psutil_formula() -> None:
    before, after = capture("vm-2cpu", 0.0), capture("vm-2cpu-t2", 4.0)
    sample = compute_sample(before, after)
    assert before.cpu.total is not None and after.cpu.total is not None
    assert sample.cpu_percent == pytest.approx(psutil_percent(before.cpu.total, after.cpu.total))
    assert sample.cpu_count == 2
    for index, value in enumerate(sample.cpu_per_core):
        assert value == pytest.approx(
            psutil_percent(before.cpu.cores[index], after.cpu.cores[index])
        )
    # The capture was taken during a one-core burn: clearly busy, not saturated.
    assert sample.cpu_percent is not None and 10 < sample.cpu_percent < 90


def test_real_captures_disk_rates_use_host_uptime_as_interval() -> None:
    before, after = capture("vm-2cpu", 100.0), capture("vm-2cpu-t2", 100.5)
    assert before.uptime is not None and after.uptime is not None
    seconds = after.uptime - before.uptime  # not the 0.5 s between receive times
    assert interval_seconds(before, after) == pytest.approx(seconds)
    sample = compute_sample(before, after)
    vda0, vda1 = before.disks["vda"], after.disks["vda"]
    assert sample.disks["vda"].write_bps == pytest.approx(
        (vda1.write_bytes - vda0.write_bytes) / seconds
    )
    assert sample.disks["vda"].read_bps == pytest.approx(
        (vda1.read_bytes - vda0.read_bytes) / seconds
    )
    assert sample.disks["vda"].util_percent == pytest.approx(
        (vda1.io_ms - vda0.io_ms) / (seconds * 10)
    )
    # A 50 MB direct write happened between the captures.
    assert sample.disk_write_bps is not None and sample.disk_write_bps * seconds >= 50 * 2**20
    assert sample.disk_busiest_util == sample.disks["vda"].util_percent
    assert sample.disk_read_bps == sample.disks["vda"].read_bps


def test_real_captures_net_and_gauges() -> None:
    before, after = capture("vm-2cpu", 0.0), capture("vm-2cpu-t2", 4.0)
    sample = compute_sample(before, after)
    seconds = interval_seconds(before, after)
    assert seconds is not None
    eth0 = sample.interfaces["eth0"]
    assert eth0.rx_bps == pytest.approx(
        (after.net["eth0"].rx_bytes - before.net["eth0"].rx_bytes) / seconds
    )
    assert sample.net_rx_bps == pytest.approx(
        sum(rate.rx_bps for rate in sample.interfaces.values())
    )
    assert "lo" not in sample.interfaces
    memory = after.memory
    assert memory.total is not None and memory.available is not None
    assert sample.mem_percent == pytest.approx(
        (memory.total - memory.available) / memory.total * 100
    )
    assert sample.swap_total == 0 and sample.swap_percent == 0.0  # psutil says 0 % without swap
    assert sample.load1 == after.load.load1 and sample.procs == after.procs
    assert sample.uptime == after.uptime
    assert all(fs.size > 0 for fs in sample.filesystems)


def test_first_sample_has_gauges_but_no_rates() -> None:
    sample = compute_sample(None, capture("vm-2cpu", 0.0))
    assert sample.mem_percent is not None and sample.load1 is not None
    assert sample.cpu_percent is None and sample.cpu_per_core == [None, None]
    assert sample.disk_read_bps is None and sample.net_rx_bps is None and sample.disks == {}


def test_guest_time_is_not_counted_twice() -> None:
    before = CpuTimes(user=100, idle=100, guest=50)
    after = CpuTimes(user=200, idle=200, guest=100)  # 100 user ticks, 50 of them guest
    assert cpu_percent(before, after) == pytest.approx(50.0)
    assert cpu_percent(before, after) == pytest.approx(psutil_percent(before, after))


def test_iowait_counts_as_idle_and_steal_as_busy() -> None:
    before = CpuTimes()
    after = CpuTimes(user=10, iowait=30, steal=10, idle=50)
    assert cpu_percent(before, after) == pytest.approx(20.0)


def test_old_kernel_memory_estimate_gives_a_percent() -> None:
    sample = compute_sample(None, capture("old-kernel", 0.0))
    assert sample.mem_available is not None and sample.mem_total is not None
    assert sample.mem_percent == pytest.approx((1 - sample.mem_available / sample.mem_total) * 100)
    assert sample.swap_used == (4192956 - 3144717) * 1024
    assert sample.swap_percent == pytest.approx((4192956 - 3144717) / 4192956 * 100)


# --------------------------------------------------------------------------
# Counters going backwards, odd intervals


def raw(
    time: float,
    ticks: float,
    disk: int = 0,
    net: int = 0,
    uptime: float | None = None,
) -> RawSample:
    times = CpuTimes(user=ticks / 2, idle=ticks / 2)
    return RawSample(
        host="h",
        time=time,
        cpu=CpuStat(total=times, cores={0: times}),
        memory=MemInfo(total=1000, available=250, swap_total=0, swap_free=0),
        disks={"sda": DiskCounters(disk, disk, int(disk / 1000))},
        net={"eth0": NetCounters(net, net)},
        uptime=uptime,
    )


def test_reboot_gives_no_rates_then_normal_ones() -> None:
    builder = SampleBuilder()
    builder.add(raw(0.0, 10_000, disk=10**9, net=10**9, uptime=5000.0))
    normal = builder.add(raw(1.0, 10_200, disk=10**9 + 1000, net=10**9 + 500, uptime=5001.0))
    assert normal.cpu_percent == pytest.approx(50.0)
    assert normal.disk_read_bps == pytest.approx(1000.0) and normal.net_rx_bps == pytest.approx(
        500.0
    )
    rebooted = builder.add(raw(60.0, 300, disk=2000, net=100, uptime=30.0))
    assert rebooted.cpu_percent is None and rebooted.cpu_per_core == [None]
    assert rebooted.disk_read_bps is None and rebooted.net_rx_bps is None
    assert rebooted.mem_percent == pytest.approx(75.0)  # gauges still shown
    after = builder.add(raw(61.0, 500, disk=3000, net=600, uptime=31.0))
    assert after.cpu_percent == pytest.approx(50.0)
    assert after.disk_read_bps == pytest.approx(1000.0) and after.net_rx_bps == pytest.approx(500.0)


def test_counters_backwards_without_uptime() -> None:
    before = raw(0.0, 10_000, disk=5000, net=2**32 - 100)
    wrapped = raw(1.0, 9_000, disk=4000, net=50)  # 32-bit net counter wrapped
    sample = compute_sample(before, wrapped)
    assert sample.cpu_percent is None
    assert sample.disk_read_bps is None and sample.disks == {}
    assert sample.net_rx_bps is None and sample.interfaces == {}


def test_one_interface_wrapping_withholds_the_total_only() -> None:
    before = replace(
        raw(0.0, 100), net={"eth0": NetCounters(2**32 - 10, 0), "eth1": NetCounters(0, 0)}
    )
    after = replace(raw(1.0, 200), net={"eth0": NetCounters(5, 10), "eth1": NetCounters(700, 70)})
    sample = compute_sample(before, after)
    assert set(sample.interfaces) == {"eth1"}
    assert sample.interfaces["eth1"].rx_bps == pytest.approx(700.0)
    assert sample.net_rx_bps is None and sample.net_tx_bps is None


@pytest.mark.parametrize("dt", [0.0, -1.0, 0.001, math.nan])
def test_zero_negative_or_tiny_interval_gives_no_rates(dt: float) -> None:
    before = raw(10.0, 100, disk=0, net=0)
    after = raw(10.0 + dt, 200, disk=10**6, net=10**6)
    sample = compute_sample(before, after)
    assert sample.disk_read_bps is None and sample.net_rx_bps is None
    assert sample.cpu_percent is None


def test_no_ticks_elapsed_gives_none_not_zero() -> None:
    assert cpu_percent(CpuTimes(user=5, idle=5), CpuTimes(user=5, idle=5)) is None


def test_new_disk_and_interface_appear_without_rates() -> None:
    before = raw(0.0, 100, disk=1000, net=1000)
    after = replace(
        raw(1.0, 200, disk=2000, net=2000),
        disks={"sda": DiskCounters(2000, 2000, 1), "sdb": DiskCounters(10**9, 0, 0)},
    )
    sample = compute_sample(before, after)
    assert set(sample.disks) == {"sda"}
    assert sample.disk_read_bps == pytest.approx(1000.0)


def test_disk_util_never_exceeds_100() -> None:
    before = replace(raw(0.0, 100), disks={"sda": DiskCounters(0, 0, 0)})
    after = replace(raw(1.0, 200), disks={"sda": DiskCounters(0, 0, 1300)})  # io_ticks overshoot
    assert compute_sample(before, after).disks["sda"].util_percent == 100.0


# --------------------------------------------------------------------------
# Properties

cpu_times = st.builds(
    CpuTimes, *[st.integers(min_value=0, max_value=2**40).map(float) for _ in CPU_FIELDS]
)


@settings(max_examples=500)
@given(cpu_times, cpu_times)
def test_cpu_percent_is_none_or_between_0_and_100(prev: CpuTimes, cur: CpuTimes) -> None:
    value = cpu_percent(prev, cur)
    if cur.total < prev.total:
        assert value is None
    if value is not None:
        assert 0.0 <= value <= 100.0


@settings(max_examples=300)
@given(cpu_times, st.lists(st.integers(min_value=0, max_value=10**6), min_size=10, max_size=10))
def test_cpu_percent_agrees_with_psutil_on_forward_counters(
    prev: CpuTimes, steps: list[int]
) -> None:
    cur = CpuTimes(*(value + step for value, step in zip(prev.values(), steps, strict=True)))
    value = cpu_percent(prev, cur)
    delta = CpuTimes(*map(float, steps))
    if delta.total <= 0:
        assert value is None
        return
    assert value is not None
    # psutil does not clamp: guest deltas larger than user can push it outside 0-100.
    assert value == pytest.approx(max(0.0, min(100.0, psutil_percent(prev, cur))), abs=1e-9)


@given(
    st.integers(min_value=0, max_value=2**64),
    st.integers(min_value=0, max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_counter_rate_never_negative(prev: int, cur: int, seconds: float) -> None:
    rate = counter_rate(prev, cur, seconds)
    if cur < prev or not seconds >= MIN_INTERVAL or not math.isfinite(seconds):
        assert rate is None
    else:
        assert rate is not None and rate >= 0 and math.isfinite(rate)


counters = st.integers(min_value=0, max_value=2**48)


@st.composite
def raw_samples(draw: st.DrawFn) -> RawSample:
    cores = draw(st.integers(min_value=0, max_value=4))
    return RawSample(
        host="h",
        time=draw(st.floats(min_value=0, max_value=1e6)),
        cpu=CpuStat(
            total=draw(st.one_of(st.none(), cpu_times)),
            cores={index: draw(cpu_times) for index in range(cores)},
        ),
        memory=MemInfo(
            total=draw(st.one_of(st.none(), counters)),
            available=draw(st.one_of(st.none(), counters)),
            swap_total=draw(st.one_of(st.none(), counters)),
            swap_free=draw(st.one_of(st.none(), counters)),
        ),
        disks=draw(
            st.dictionaries(
                st.sampled_from(["sda", "sdb"]),
                st.builds(DiskCounters, counters, counters, counters),
            )
        ),
        net=draw(
            st.dictionaries(
                st.sampled_from(["eth0", "eth1"]), st.builds(NetCounters, counters, counters)
            )
        ),
        uptime=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1e7))),
    )


@settings(max_examples=150, deadline=None)
@given(raw_samples(), raw_samples())
def test_any_two_raw_samples_give_sane_rates(prev: RawSample, cur: RawSample) -> None:
    sample = compute_sample(prev, cur)
    for value in (
        sample.cpu_percent,
        *sample.cpu_per_core,
        sample.mem_percent,
        sample.swap_percent,
    ):
        assert value is None or 0.0 <= value <= 100.0
    for value in (
        sample.disk_read_bps,
        sample.disk_write_bps,
        sample.net_rx_bps,
        sample.net_tx_bps,
    ):
        assert value is None or (value >= 0 and math.isfinite(value))
    for disk in sample.disks.values():
        assert disk.read_bps >= 0 and disk.write_bps >= 0 and 0 <= disk.util_percent <= 100
    for name, link in sample.interfaces.items():
        assert link.rx_bps >= 0 and link.tx_bps >= 0
        assert cur.net[name].rx_bytes >= prev.net[name].rx_bytes
    if prev.cpu.total and cur.cpu.total and cur.cpu.total.total < prev.cpu.total.total:
        assert sample.cpu_percent is None
    json.dumps(sample.to_dict())


@settings(max_examples=60, deadline=None)
@given(raw_samples(), st.floats(min_value=0.1, max_value=1e7))
def test_interval_and_rates_are_none_when_uptime_falls(cur: RawSample, uptime: float) -> None:
    before = replace(cur, uptime=uptime)
    later = replace(cur, time=cur.time + 5, uptime=uptime / 2)
    assert interval_seconds(before, later) is None
    sample = compute_sample(before, later)
    assert sample.cpu_percent is None and sample.disk_read_bps is None and sample.net_rx_bps is None


# --------------------------------------------------------------------------
# The Sample shape


def test_to_dict_is_stable_json_and_round_trips() -> None:
    builder = SampleBuilder()
    builder.add(capture("vm-2cpu", 1_764_097_560.25))
    sample = builder.add(capture("vm-2cpu-t2", 1_764_097_564.25))
    data = sample.to_dict()
    assert list(data) == [
        "host", "time", "epoch", "cpu_percent", "cpu_count", "cpu_per_core", "mem_total",
        "mem_available", "mem_percent", "swap_total", "swap_used", "swap_percent", "load1",
        "load5", "load15", "procs", "disk_read_bps", "disk_write_bps", "disk_busiest_util",
        "disks", "net_rx_bps", "net_tx_bps", "interfaces", "filesystems", "uptime",
    ]  # fmt: skip
    assert data["time"] == "2025-11-25T19:06:04.250Z"
    text = json.dumps(data)
    assert json.loads(text) == data
    again = Sample.from_dict(json.loads(text))
    assert again.to_dict() == data
    assert data["cpu_percent"] == round(sample.cpu_percent or -1, 1)


def test_values_cover_the_metric_names() -> None:
    sample = compute_sample(capture("vm-2cpu", 0.0), capture("vm-2cpu-t2", 4.0))
    values = sample.values()
    assert list(values) == list(METRIC_NAMES)
    assert values["load_per_core"] == pytest.approx((sample.load1 or 0) / 2)
    assert values["fs_max_percent"] == max(fs.percent or 0 for fs in sample.filesystems)


def test_builder_carries_filesystems_between_df_frames() -> None:
    builder = SampleBuilder()
    with_df = replace(raw(0.0, 100), filesystems=[Filesystem("/dev/sda1", "/", 100, 40, 60)])
    first = builder.add(with_df)
    second = builder.add(raw(1.0, 200))  # no df in this frame
    third = builder.add(replace(raw(2.0, 300), filesystems=[]))  # df ran and found nothing
    assert [fs.mount for fs in first.filesystems] == ["/"]
    assert second.filesystems == first.filesystems and second.fs_max_percent == pytest.approx(40.0)
    assert third.filesystems == []
    builder.reset()
    assert builder.add(raw(3.0, 400)).cpu_percent is None
