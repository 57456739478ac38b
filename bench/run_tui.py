"""The terminal UI: first paint, keystroke to paint on 10,000 hosts, terminal bytes per second.

Measured two ways where it matters:

* **In a real pty** (:class:`bench.pty_terminal.PtyTerminal`, 160x48, the
  synchronized-output query answered like a modern terminal): ``itop`` is
  started as a user starts it, and a paint is the end of the frame
  (``ESC [ ? 2026 l``) that carries it. First paint is from spawning the
  process to the end of the first frame that shows the first host row
  (interpreter start-up and imports included). Keystroke to paint is from
  writing the key to the pty to the last byte of the output it caused
  (output quiet for 150 ms afterwards).
* **With Pilot** (``App.run_test``, headless, in this process): the app's
  ``_display`` (where a frame would be written to the terminal) is wrapped
  to record when frames are produced; keystroke to paint is from
  ``pilot.press`` to the last frame produced for it. Headless Textual does
  not encode frames to escape sequences, so this is a lower bound.

Terminal bytes: ``itop`` in the pty at 160x48, bytes it writes per second
over a window, and its CPU (``/proc/PID/stat``). With the Performance pane
(once it exists in ``itop_tui.app.PANES``) on a live loopback fleet of
``--live-hosts`` hosts; without it, the Inventory pane at rest (the
harness check, and the floor).

Budgets (ARCHITECTURE.md section 8): first paint under 0.5 s; keystroke to
paint p95 under 100 ms with 10,000 hosts; Performance pane at 1 Hz, 160x48,
under 20 KB/s.

Usage: ``python -m bench.run_tui [--hosts 10000] [--repeats 5] [--live-hosts 100 500]
[--parts first-paint keys pane]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.measure import emit, percentile, process_cpu, stop_on_sigterm, summary, verdict
from bench.pty_terminal import PtyTerminal

BUDGET_FIRST_PAINT = 0.5
BUDGET_KEYSTROKE_P95 = 0.100
BUDGET_BYTES_PER_SECOND = 20 * 1024
COLS, ROWS = 160, 48
QUIET = 0.15
# Narrowing text, a group, a tag, a selector, then widening again by backspace.
QUERIES = ("node0123", "rack42", "zone3", "web:&rack03", "node09")
BACKSPACE = b"\x7f"


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def host_name(index: int) -> str:
    """Name of generated host ``index``."""
    return f"node{index:05d}"


def write_inventory(data_dir: Path, count: int) -> None:
    """A data dir whose inventory holds ``count`` generated hosts (none: the embedded default)."""
    from itop_tui.domain.models import HOST_STATUSES, Group, Host
    from itop_tui.services.context import Services
    from itop_tui.settings import Settings

    services = Services.open(Settings(data_dir=data_dir), origin="cli")
    if count == 0:
        return
    for name in list(services.inventory.load().hosts):
        services.inventory.remove_host(name)
    services.inventory.upsert_groups(
        [Group(f"rack{r:02d}") for r in range(100)] + [Group("web"), Group("app")]
    )
    services.inventory.upsert_hosts([
        Host(
            name=host_name(i),
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            groups=[f"rack{i % 100:02d}", "web" if i % 3 == 0 else "app"],
            tags=[f"zone{i % 7}"],
            status=HOST_STATUSES[i % len(HOST_STATUSES)],
            facts={"os_name": "Debian GNU/Linux", "os_version": "12", "cpu_count": 2 + i % 30,
                   "mem_total": (4 + i % 60) * 1024**3},
        )
        for i in range(count)
    ])


def first_row_name(count: int) -> str:
    """The host the first table row shows (the embedded default shows this machine)."""
    if count == 0:
        name = socket.gethostname().split(".", 1)[0].strip()
        return name if name and not any(c.isspace() for c in name) else "localhost"
    return host_name(0)


def tui_env(data_dir: Path, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ``itop`` on ``data_dir`` with no config but the one given in ``extra``."""
    env = dict(os.environ)
    env.pop("ITOP_CONFIG", None)
    env["ITOP_DATA_DIR"] = str(data_dir)
    env["XDG_CONFIG_HOME"] = str(home / "config")  # no user itop.yaml
    env.pop("TEXTUAL", None)  # no devtools
    env.update(extra or {})
    return env


ITOP_QUIT = (b"\x1b", b"\x1b", b"q")
BARE_QUIT = (b"\x1b",)


@contextmanager
def started_app(
    argv: list[str], env: dict[str, str], cwd: Path, first_row: str, quit_keys: tuple[bytes, ...],
) -> Iterator[tuple[PtyTerminal, float, float]]:
    """A TUI in a pty; yields it, its first-paint seconds and the CPU seconds it used until then.

    The CPU is read just after the paint was seen, so it may include a few
    milliseconds of work done after it; unlike the wall time, it does not grow
    when other processes compete for the cores.
    """
    term = PtyTerminal(argv, env=env, cols=COLS, rows=ROWS, cwd=cwd)
    try:
        offset = term.wait_for(first_row.encode(), timeout=120)
        painted = term.frame_end_after(offset)
        cpu = process_cpu(term.proc.pid)
        yield term, painted - term.started, cpu
    finally:
        term.close(quit_keys)


def started_itop(env: dict[str, str], cwd: Path, first_row: str) -> Any:
    """``itop`` in a pty (see :func:`started_app`)."""
    return started_app([_tool("itop")], env, cwd, first_row, ITOP_QUIT)


def started_bare(count: int, cwd: Path) -> Any:
    """The bare Textual baseline on ``count`` hosts in a pty (see :func:`started_app`)."""
    argv = [sys.executable, str(Path(__file__).with_name("bare_textual_app.py")), "--hosts", str(count)]
    return started_app(argv, dict(os.environ), cwd, host_name(0), BARE_QUIT)


def ensure_inventory(work: Path, count: int) -> Path:
    """The data dir holding ``count`` generated hosts, written on first use."""
    data_dir = work / f"inv-{count}"
    if not data_dir.exists():
        write_inventory(data_dir, count)
    return data_dir


def measure_first_paint(work: Path, counts: list[int], repeats: int) -> dict[str, Any]:
    """First paint in a pty of itop per inventory size, and of the bare app, alternating."""
    results: dict[str, Any] = {}
    for count in counts:
        env = tui_env(ensure_inventory(work, count), work)
        times: list[float] = []
        cpus: list[float] = []
        bare: list[float] = []
        bare_cpus: list[float] = []
        for _ in range(repeats):
            with started_itop(env, work, first_row_name(count)) as (_term, first, cpu):
                times.append(first)
                cpus.append(cpu)
            if count:
                with started_bare(count, work) as (_term, first, cpu):
                    bare.append(first)
                    bare_cpus.append(cpu)
        results[str(count)] = summary(times) | {"all": times, "cpu": summary(cpus)}
        if bare:
            results[f"bare-{count}"] = summary(bare) | {"all": bare, "cpu": summary(bare_cpus)}
        print(f"first paint, {count or 'embedded'} hosts: itop median {statistics.median(times):.3f} s"
              + (f", bare {statistics.median(bare):.3f} s" if bare else ""), file=sys.stderr)
    return results


def type_queries(term: PtyTerminal) -> tuple[list[float], list[float]]:
    """Type each query then erase it, one key at a time.

    Returns keystroke-to-paint seconds per key, and the CPU seconds the
    program used per key (``/proc``, in clock ticks of 10 ms).
    """
    latencies: list[float] = []
    cpus: list[float] = []

    def key(data: bytes) -> None:
        before = term.size
        cpu0 = process_cpu(term.proc.pid)
        sent = term.send(data)
        if not term.wait_output(before, timeout=5):
            return  # nothing repainted (the key changed nothing on screen)
        last = term.wait_quiet(QUIET, timeout=10)
        assert last is not None
        latencies.append(last - sent)
        cpus.append(process_cpu(term.proc.pid) - cpu0)

    for query in QUERIES:
        for char in query:
            key(char.encode())
        for _ in query:
            key(BACKSPACE)
    return latencies, cpus


def measure_keystrokes_pty(work: Path, count: int, *, bare: bool = False) -> dict[str, Any]:
    """Keystroke to paint in a pty while filtering ``count`` hosts (itop, or the bare app)."""
    app = (started_bare(count, work) if bare
           else started_itop(tui_env(ensure_inventory(work, count), work), work, first_row_name(count)))
    with app as (term, _first, _cpu):
        term.wait_quiet(0.5, timeout=30)
        before = term.size
        term.send(b"/")
        term.wait_output(before, timeout=5)
        term.wait_quiet(QUIET, timeout=10)
        latencies, cpus = type_queries(term)
    return {
        "keys": len(latencies),
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "max": max(latencies),
        "cpu_p50": statistics.median(cpus),
        "cpu_p95": percentile(cpus, 0.95),
        "all": latencies,
        "cpu_all": cpus,
    }


async def _pilot_run(data_dir: Path, count: int) -> dict[str, Any]:
    from itop_tui.app import ItopApp
    from itop_tui.services.context import Services
    from itop_tui.settings import Settings
    from itop_tui.widgets.host_table import HostTable

    services = Services.open(Settings(data_dir=data_dir), origin="tui")
    app = ItopApp(services)
    frames: list[float] = []
    first_rows: list[float] = []
    original = app._display

    def display(screen: Any, renderable: Any) -> None:
        original(screen, renderable)
        if renderable is None:
            return
        now = time.perf_counter()
        frames.append(now)
        if not first_rows:
            try:
                if screen.query_one(HostTable).row_count > 0:
                    first_rows.append(now)
            except Exception:  # noqa: BLE001 - not composed yet
                pass

    app._display = display  # type: ignore[method-assign]
    started = time.perf_counter()
    latencies: list[float] = []
    cpu_per_key: list[float] = []
    async with app.run_test(size=(COLS, ROWS)) as pilot:
        while not first_rows and time.perf_counter() - started < 120:
            await pilot.pause(0.01)
        first_paint = first_rows[0] - started if first_rows else None
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("slash")
        await pilot.pause()

        async def key(name: str) -> None:
            mark = len(frames)
            c0 = time.process_time()
            t0 = time.perf_counter()
            await pilot.press(name)
            await pilot.pause()
            cpu_per_key.append(time.process_time() - c0)
            if len(frames) > mark:
                latencies.append(frames[-1] - t0)

        for query in QUERIES:
            for char in query:
                await key(char)
            for _ in query:
                await key("backspace")
    return {
        "first_paint_seconds": first_paint,
        "keys": len(latencies),
        "p50": statistics.median(latencies) if latencies else None,
        "p95": percentile(latencies, 0.95) if latencies else None,
        "max": max(latencies) if latencies else None,
        "cpu_p50": statistics.median(cpu_per_key) if cpu_per_key else None,
        "cpu_p95": percentile(cpu_per_key, 0.95) if cpu_per_key else None,
        "all": latencies,
    }


def measure_keystrokes_pilot(work: Path, count: int) -> dict[str, Any]:
    """Keystroke to paint with Pilot while filtering ``count`` hosts."""
    return asyncio.run(_pilot_run(ensure_inventory(work, count), count))


def performance_pane_key() -> str | None:
    """The key of the Performance pane, or None while the app has no such pane."""
    from itop_tui.app import PANES

    for pane in PANES:
        if pane.mode == "performance":
            return pane.key
    return None


def measure_terminal_rate(
    env: dict[str, str], cwd: Path, first_row: str, seconds: float, pane_key: str | None,
    settle: float, probe: Callable[[], int] | None = None, ready_at: int = 0,
) -> dict[str, Any]:
    """Bytes per second ``itop`` writes to a 160x48 pty, and its CPU, over ``seconds``."""
    with started_itop(env, cwd, first_row) as (term, _first, _cpu):
        if pane_key is not None:
            term.send(pane_key.encode())
        waited_from = time.perf_counter()
        while probe is not None and probe() < ready_at and time.perf_counter() - waited_from < settle:
            time.sleep(1)
        ready_after = time.perf_counter() - waited_from
        time.sleep(5 if probe is not None and ready_at else settle)
        pid = term.proc.pid
        box0 = psutil.cpu_times()
        cpu0, start = process_cpu(pid), time.perf_counter()
        time.sleep(seconds)
        end = time.perf_counter()
        cpu = process_cpu(pid) - cpu0
        box1 = psutil.cpu_times()
        probed = probe() if probe is not None else None
        per_second = [term.bytes_between(start + i, start + i + 1) for i in range(int(seconds))]
        total = term.bytes_between(start, end)
    return {
        "pane": "performance" if pane_key else "inventory (idle)",
        "seconds": end - start,
        "bytes_per_second_mean": total / (end - start),
        "bytes_per_second_median": statistics.median(per_second) if per_second else None,
        "bytes_per_second_max": max(per_second) if per_second else None,
        "cpu_percent_of_one_core": 100 * cpu / (end - start),
        "machine_busy_percent": _busy_percent(box0, box1),
        "probe": probed,
        "ready_after_seconds": ready_after,
        "bytes_per_second_all": per_second,
    }


def _busy_percent(before: Any, after: Any) -> float | None:
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 100 * (total - idle) / total if total else None


def measure_performance_pane(work: Path, live_hosts: int, seconds: float) -> dict[str, Any]:
    """The Performance pane on a live fleet at 1 s when it exists; the idle Inventory pane otherwise."""
    from bench.fleet import open_fleet

    key = performance_pane_key()
    with open_fleet(live_hosts, metrics_interval=1.0) as fleet:
        env = tui_env(fleet.data_dir, work, {"ITOP_CONFIG": str(fleet.config_path)})
        # The window starts once every host streams: a streaming host has at
        # least 3 processes below the sshd (monitor, session, its loop).
        result = measure_terminal_rate(
            env, work, fleet.hosts[0], seconds, key, settle=300.0 if key else 2.0,
            probe=fleet.sshd_processes, ready_at=3 * live_hosts if key else 0)
        result["live_hosts"] = live_hosts if key else 0
        result["inventory_hosts"] = live_hosts
        result["performance_pane_exists"] = key is not None
    return result


PARTS = ("first-paint", "keys", "pane")


def main() -> int:
    """Run the requested TUI measurements and print the results."""
    parser = argparse.ArgumentParser(description="itop TUI: first paint, keystrokes, terminal bytes")
    parser.add_argument("--hosts", type=int, default=10_000, help="inventory size for the filter test")
    parser.add_argument("--repeats", type=int, default=5, help="first-paint runs per inventory size")
    parser.add_argument("--live-hosts", type=int, nargs="+", default=[100, 500],
                        help="fleet sizes for the Performance pane")
    parser.add_argument("--rate-seconds", type=float, default=30.0)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to measure (default: all)")
    args = parser.parse_args()
    stop_on_sigterm()

    results: dict[str, object] = {"size": [COLS, ROWS]}
    lines = ["itop TUI at 160x48 (wall time; CPU time of the TUI process beside it):"]
    work = Path(tempfile.mkdtemp(prefix="itop-bench-tui-"))
    try:
        if "first-paint" in args.parts:
            first = measure_first_paint(work, [0, 100, args.hosts], args.repeats)
            results["first_paint"] = first
            lines += first_paint_lines(first)
        if "keys" in args.parts:
            keys = {
                f"itop, {args.hosts} hosts, pty": measure_keystrokes_pty(work, args.hosts),
                f"bare Textual app (DataTable), {args.hosts} hosts, pty":
                    measure_keystrokes_pty(work, args.hosts, bare=True),
                f"itop, {args.hosts} hosts, Pilot (headless)": measure_keystrokes_pilot(work, args.hosts),
            }
            results["keystrokes"] = keys
            lines += keystroke_lines(keys)
        if "pane" in args.parts:
            rates = [measure_performance_pane(work, n, args.rate_seconds) for n in args.live_hosts]
            results["terminal_rate"] = rates
            lines += rate_lines(rates)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["budget"] = {"first_paint_s": BUDGET_FIRST_PAINT, "keystroke_p95_s": BUDGET_KEYSTROKE_P95,
                         "bytes_per_second": BUDGET_BYTES_PER_SECOND}
    emit("tui", results, lines)
    return 0


def first_paint_lines(first: dict[str, Any]) -> list[str]:
    """The summary of the first-paint figures."""
    lines = []
    for count, figures in first.items():
        label = "embedded default (1 host)" if count == "0" else f"{count} hosts"
        if count.startswith("bare-"):
            label = f"bare Textual app, {count[5:]} hosts"
        lines.append(f"  first paint, {label}: median {figures['median']:.3f} s "
                     f"(min {figures['min']:.3f}, max {figures['max']:.3f}, n={figures['n']}); "
                     f"CPU {figures['cpu']['median']:.3f} s")
    fp_100 = first["100"]["median"]
    lines.append(f"  first paint with 100 hosts {fp_100:.3f} s, bare {first['bare-100']['median']:.3f} s "
                 f"(budget < {BUDGET_FIRST_PAINT} s): {verdict(fp_100 < BUDGET_FIRST_PAINT)}")
    return lines


def keystroke_lines(keys: dict[str, dict[str, Any]]) -> list[str]:
    """The summary of the keystroke figures; the budget is checked on the first (itop, pty)."""
    lines = []
    for label, figures in keys.items():
        if figures["p95"] is None:
            continue
        lines.append(f"  keystroke to paint, {label}: p50 {figures['p50'] * 1000:.0f} ms, "
                     f"p95 {figures['p95'] * 1000:.0f} ms, max {figures['max'] * 1000:.0f} ms "
                     f"({figures['keys']} keys); CPU per key p50 {figures['cpu_p50'] * 1000:.0f} ms, "
                     f"p95 {figures['cpu_p95'] * 1000:.0f} ms")
    itop = next(iter(keys.values()))
    lines.append(f"  keystroke p95 (pty, budget < 100 ms): {verdict(itop['p95'] < BUDGET_KEYSTROKE_P95)}")
    return lines


def rate_lines(rates: list[dict[str, Any]]) -> list[str]:
    """The summary of the terminal-bytes figures."""
    lines = []
    for rate in rates:
        lines.append(f"  terminal output, {rate['pane']}, {rate['inventory_hosts']} hosts: "
                     f"{rate['bytes_per_second_mean']:.0f} B/s mean, max {rate['bytes_per_second_max']} B/s "
                     f"in a second; TUI CPU {rate['cpu_percent_of_one_core']:.1f}% of a core; machine "
                     f"{rate['machine_busy_percent'] or 0:.0f}% busy; ready after "
                     f"{rate['ready_after_seconds']:.0f} s ({rate['probe']} processes below sshd)")
        if rate["performance_pane_exists"]:
            lines.append(f"  Performance pane (budget < 20 KB/s): "
                         f"{verdict(rate['bytes_per_second_mean'] < BUDGET_BYTES_PER_SECOND)}")
        else:
            lines.append("  Performance pane: not in itop_tui.app.PANES yet; measured the idle "
                         "Inventory pane as the harness check")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
