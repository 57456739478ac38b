"""Pilot tests of the Performance pane, the host drill-down and the problems panel.

The pane is driven by a :class:`ScriptedSource` fed fixed samples, except in
the test that runs a real ``FleetMonitor`` on this machine. The terminal
output of the pane is measured in a pseudo-terminal (reported, not asserted).
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from fcntl import ioctl
from pathlib import Path
from typing import cast

import psutil
from perf_fixtures import (
    BASE_TIME,
    FLEET_FIGURES,
    SourceBox,
    feed_and_wait,
    fleet_history,
    fleet_states,
    flood_until,
    open_performance,
    perf_app,
    performance_screen,
    sample,
    scripted_factory,
    simulated_fleet,
    wait_until,
)
from rich.console import RenderableType
from rich.style import Style
from textual.widgets import Static
from ui_fixtures import (
    CONFIG_LABEL,
    fixed_clock,
    fleet,
    fleet_groups,
    open_services,
    render_text,
    settle,
)

from itop_tui.app import ItopApp
from itop_tui.domain.change import Change
from itop_tui.domain.history import Series
from itop_tui.domain.models import Host
from itop_tui.domain.thresholds import resolve_thresholds
from itop_tui.ops.fleet_monitor import (
    FleetMonitor,
    HostStatus,
    MonitorUpdate,
    NoticeUpdate,
    SampleUpdate,
    StateUpdate,
)
from itop_tui.screens.help import collect_help
from itop_tui.screens.host_drilldown import GRAPHS, HostDrilldown
from itop_tui.screens.performance import (
    NOTICES_KEPT,
    PerformanceScreen,
    UpdateBatch,
    UpdateFolder,
    next_wait,
)
from itop_tui.screens.problems import AcknowledgeDialog
from itop_tui.services.context import Services
from itop_tui.services.problem_repo import ProblemRepository
from itop_tui.settings import MetricsSettings, Settings
from itop_tui.widgets.fleet_table import FleetTable, HostProblems, fleet_row
from itop_tui.widgets.metric_graph import MetricGraph, bucket_values
from itop_tui.widgets.production_banner import OpenChange, ProductionBanner

SIZE = (160, 48)
HERE = Path(__file__).parent


def make(services: Services) -> tuple[ItopApp, SourceBox]:
    box: SourceBox = {}
    return perf_app(services, scripted_factory(box), fixed_clock), box


def names(table: FleetTable) -> list[str]:
    return table.view_keys


def line_of(table: FleetTable, name: str) -> int:
    """The screen line of a host's row (the header is line 0)."""
    return table.view_keys.index(name) - round(table.scroll_y) + 1


def static_text(static: Static, width: int = 60) -> str:
    """The plain text a Static shows."""
    content = static.content
    return content if isinstance(content, str) else render_text(cast(RenderableType, content), width)


def cell_style(table: FleetTable, name: str, text: str) -> Style:
    """The style the row of ``name`` is painted with where ``text`` is drawn."""
    strip = table.render_line(line_of(table, name))
    for segment in strip:
        if segment.text.strip() == text:
            assert segment.style is not None
            return segment.style
    raise AssertionError(f"{text!r} not drawn in the row of {name}: {strip.text!r}")


async def test_monitor_starts_when_the_pane_is_first_shown_and_stops_on_exit(
    fleet_services: Services,
) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "source" not in box  # the Inventory pane alone builds no monitor
        screen = await open_performance(pilot, box)
        source = box["source"]
        assert source.starts == 1 and source.running
        assert sorted(source.host_names) == sorted(h.name for h in fleet())
        await pilot.press("1")  # back to the inventory: the monitor keeps running
        await pilot.pause()
        assert source.running and source.stops == 0
        await pilot.press("2")
        await pilot.pause()
        assert app.screen is screen and source.starts == 1
    assert source.stops == 1 and not source.running


async def test_rows_show_figures_states_and_threshold_colours(fleet_services: Services) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        await feed_and_wait(pilot, box["source"], [*fleet_history(), *fleet_states()])
        table = screen.table
        # Worst first: unreachable, stale, then hosts up by CPU, highest first.
        up_by_cpu = sorted(FLEET_FIGURES, key=lambda n: -FLEET_FIGURES[n]["cpu"])
        assert names(table) == ["web06", "cache01", *up_by_cpu]
        web01 = table.cell_texts("web01")
        assert (web01["state"], web01["cpu"], web01["mem"], web01["load"]) == ("up", "97", "62", "3.40")
        assert web01["rx"] == "146K" and web01["disk"] == "12"
        assert len(web01["trend"]) == 12 and web01["trend"].strip()
        # Built-in limits: CPU 85/95, memory 85/95, busiest disk 80/95, load per core 1.5/3.
        assert table.cell_styles("web01")["cpu"] == "critical"
        assert table.cell_styles("db02")["cpu"] == "warning"
        assert table.cell_styles("web02")["mem"] == "warning"
        assert table.cell_styles("web02")["load"] == "warning"  # 6.5 on 4 cores
        assert table.cell_styles("db01")["load"] == ""  # 8 on 16 cores
        assert table.cell_styles("web03")["disk"] == "critical"
        assert table.cell_styles("web04")["cpu"] == ""
        assert table.cell_styles("web06")["state"] == "unreachable"
        assert table.cell_texts("web06")["note"] == "connection refused"
        assert table.cell_styles("cache01")["state"] == "stale"
        assert table.cell_styles("web01")["state"] == "up"
        # What is painted carries those styles (the cursor row is web06).
        assert cell_style(table, "web01", "97") == cell_style(table, "web03", "97")
        critical = table.get_component_rich_style("fleet-table--critical")
        assert cell_style(table, "web01", "97").color == critical.color
        assert cell_style(table, "db02", "88").color == (
            table.get_component_rich_style("fleet-table--warning").color
        )
        assert cell_style(table, "cache01", "stale").color == (
            table.get_component_rich_style("fleet-table--stale").color
        )
        status = screen.status_text()
        assert "10 hosts: 8 up, 1 stale, 1 unreachable" in status
        assert "sort: State (worst first)" in status


async def test_sort_by_columns_and_reverse(fleet_services: Services) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        await feed_and_wait(pilot, box["source"], [*fleet_history(), *fleet_states()])
        table = screen.table
        await pilot.press("s")  # the next column after State: CPU%
        assert table.sort_column == "cpu"
        by_cpu = sorted(FLEET_FIGURES, key=lambda n: -FLEET_FIGURES[n]["cpu"])
        assert names(table) == [*by_cpu, "web06", "cache01"]  # unknown values last
        await pilot.press("S")
        assert names(table) == [*reversed(by_cpu), "web06", "cache01"]
        assert "CPU% (lowest first)" in screen.status_text()
        # The narrow CPU% column keeps its arrow in the header: up, lowest first.
        await pilot.pause()
        header = table.render_line(0).text
        assert "CPU%▲" in header or "CPU% ▲" in header, header
        await pilot.press("S")
        await pilot.pause()
        header = table.render_line(0).text
        assert "CPU%▼" in header or "CPU% ▼" in header, header  # down, highest first
        await pilot.press("S")
        await pilot.press("s", "S")  # memory, lowest first
        by_mem = sorted(FLEET_FIGURES, key=lambda n: FLEET_FIGURES[n]["mem"])
        assert table.sort_column == "mem" and names(table)[:8] == by_mem
        table.sort_by("host")
        assert names(table) == ["cache01", "db01", "db02", "db03", *[f"web0{i}" for i in range(1, 7)]]
        await pilot.pause()


async def test_filter_with_selectors_and_text(fleet_services: Services) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        await feed_and_wait(pilot, box["source"], [*fleet_history(), *fleet_states()])
        table = screen.table
        await pilot.press("slash", *"web:&prod")
        await pilot.pause()
        assert sorted(names(table)) == ["web01", "web02", "web03"]
        assert screen.filter_result.mode == "selector"
        assert "3 shown" in screen.status_text() and "selector: web:&prod" in screen.status_text()
        await pilot.press("escape")  # clears the box
        await pilot.pause()
        assert table.row_count == 10
        # Free text also matches the live state.
        await pilot.press(*"unreachable")
        await pilot.pause()
        assert names(table) == ["web06"] and screen.filter_result.mode == "text"
        await pilot.press("escape", "escape")  # clear, leave the box
        await pilot.pause()
        await pilot.press("slash", *"db")
        await pilot.pause()
        assert names(table) == ["db02", "db01", "db03"]  # still worst (busiest) first


async def test_only_visible_changed_cells_are_repainted(fleet_services: Services) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        source = box["source"]
        await feed_and_wait(pilot, source, [*fleet_history(), *fleet_states()])
        table = screen.table
        await pilot.pause(0.2)
        figures = FLEET_FIGURES["web04"]
        later = BASE_TIME + 2  # same trend bucket, order unchanged (web04 stays last)

        def web04(cpu: float) -> SampleUpdate:
            return SampleUpdate(
                "web04",
                sample("web04", later, cpu=cpu, mem=figures["mem"], load1=figures["load1"],
                       disk_util=figures["disk_util"], rx=4 * 150_000.0, tx=4 * 40_000.0),
            )

        before = table.repainted_cells
        await feed_and_wait(pilot, source, [web04(6.0)])
        assert table.cell_texts("web04")["cpu"] == "6"
        assert table.repainted_cells - before == 1  # the CPU cell, nothing else
        # A host filtered out of view changes: nothing is repainted.
        await pilot.press("slash", *"db")
        await pilot.press("enter")  # keep the filter, back to the table
        await pilot.pause(0.2)
        before = table.repainted_cells
        await feed_and_wait(pilot, source, [web04(7.0)])
        assert "web04" not in table.view_keys and table.cell_texts("web04")["cpu"] == "7"
        assert table.repainted_cells == before


async def test_window_interval_pause_and_retry_keys(fleet_services: Services) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        source = box["source"]
        await feed_and_wait(pilot, source, [*fleet_history(), *fleet_states()])
        table = screen.table
        one_minute = table.cell_texts("web01")["trend"]
        await pilot.press("w")
        assert table.column_label("trend") == "CPU 5m" and "window 5m" in screen.status_text()
        # 90 s of history in a 5-minute trend of 12 characters: 25 s per character.
        assert table.cell_texts("web01")["trend"] != one_minute
        assert table.cell_texts("web01")["trend"].startswith(" " * 7)
        await pilot.press("w", "w", "w")
        assert table.column_label("trend") == "CPU 1m"
        assert source.config.interval == 2.0
        await pilot.press("plus")
        assert source.intervals == [5.0] and "interval 5s" in screen.status_text()
        await pilot.press("minus", "minus")
        assert source.intervals == [5.0, 2.0, 1.0]
        await pilot.press("space")
        await pilot.pause(0.7)
        assert source.paused and "PAUSED" in screen.status_text()
        assert table.cell_texts("web01")["state"] == "paused"
        assert table.cell_styles("web01")["cpu"] == "muted"
        await pilot.press("P")
        await pilot.pause(0.7)
        assert not source.paused and table.cell_texts("web01")["state"] == "connecting"
        table.move_to("web06")
        await pilot.press("r")
        assert source.retried == ["web06"]


async def test_help_lists_the_panes_keys(fleet_services: Services) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_performance(pilot, box)
        described = {
            entry.description: entry.keys
            for section in collect_help(app.screen)
            for entry in section.entries
        }
        for description in ("Filter", "Window", "Slower", "Faster", "Pause", "Sort", "Reverse",
                            "Details", "Acknowledge", "Problems", "Retry"):
            assert description in described, description
        assert described["Pause"] == "space, P"
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"


async def test_drilldown_shows_graphs_and_local_top_processes(tmp_path: Path) -> None:
    here = Host(name="here", address="local", groups=["web"])
    services = open_services(tmp_path / "data", [*fleet(), here], fleet_groups())
    app, box = make(services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        source = box["source"]
        local = [
            SampleUpdate("here", sample("here", BASE_TIME - 60 + 2 * i, cpu=20.0 + i, cores=2))
            for i in range(31)
        ]
        await feed_and_wait(pilot, source, [*fleet_history(), *fleet_states(), *local])
        assert screen.table.move_to("here")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HostDrilldown), what="drill-down")
        drill = app.screen
        assert isinstance(drill, HostDrilldown) and drill.host.name == "here"
        await pilot.pause()
        cpu_graph = drill.query_one("#graph-cpu", MetricGraph)
        values = cpu_graph.column_values()
        assert sum(v is not None for v in values) >= len(values) - 1
        assert max(v for v in values if v is not None) == 50.0
        assert cpu_graph.title_text().startswith("CPU  now 50%")
        assert len(drill.query(MetricGraph)) == len(GRAPHS)
        status = static_text(drill.query_one("#drill-status", Static), 160)
        assert "here · up · 2 cores" in status and "window 1m" in status
        await pilot.press("w")
        assert drill.window == 300 and cpu_graph.bucket_seconds() == 300 / cpu_graph.columns
        # Top processes of this machine, read with psutil in a worker.
        await pilot.press("p")
        await wait_until(pilot, lambda: drill.processes is not None, timeout=20, what="processes")
        result = drill.processes
        assert result is not None and result.error is None
        assert result.by_cpu and result.by_memory
        assert result.by_memory[0].rss == max(r.rss for r in result.by_memory)
        shown = static_text(drill.query_one("#drill-processes", Static))
        assert str(result.by_memory[0].pid) in shown and "by resident memory" in shown
        assert any(psutil.pid_exists(r.pid) for r in result.by_memory)
        # Live: a new sample of the host repaints the drill-down.
        await feed_and_wait(
            pilot, source, [SampleUpdate("here", sample("here", BASE_TIME + 2, cpu=80.0, cores=2))]
        )
        assert cpu_graph.title_text().startswith("CPU  now 80%")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, PerformanceScreen)


async def test_drilldown_shows_facts_discovered_after_the_pane_started(tmp_path: Path) -> None:
    here = Host(name="here", address="local")
    services = open_services(tmp_path / "data", [*fleet(), here], fleet_groups())
    app, box = make(services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        # Discovered later, as the Inventory pane's d would store them.
        services.inventory.set_facts("here", {"os_name": "Plan 9", "cpu_count": 7},
                                     "2026-11-25T23:00:00Z")
        assert screen.table.move_to("here")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HostDrilldown), what="drill-down")
        drill = app.screen
        assert isinstance(drill, HostDrilldown)
        assert drill.host.facts.get("os_name") == "Plan 9"


async def test_acknowledge_a_problem_is_stored_and_audited(fleet_services: Services) -> None:
    repo = ProblemRepository.in_data_dir(fleet_services.settings.data_dir)
    problem, _ = repo.open("web01", "cpu_percent", "critical", BASE_TIME - 300, 97.0, 95.0)
    repo.open("db01", "mem_percent", "warning", BASE_TIME - 120, 91.0, 85.0)
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        await feed_and_wait(pilot, box["source"], [*fleet_history(), *fleet_states()])
        problems = screen.problem_table
        await wait_until(pilot, lambda: problems.row_count == 2, what="problems listed")
        assert problems.view_keys == [problem.id, "PRB-2"]  # critical first
        assert screen.table.cell_texts("web01")["problems"] == "1!"
        assert screen.table.cell_styles("web01")["problems"] == "critical"
        row = problems.row(problem.id)
        assert row is not None and row.cells[4].text == "5m ago"
        await pilot.press("o")
        assert app.screen.focused is problems
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AcknowledgeDialog), what="dialog")
        await pilot.press(*"on it, see INC-7", "enter")
        await wait_until(
            pilot,
            lambda: (r := problems.row(problem.id)) is not None and r.acknowledged_by == "alice",
            what="the acknowledgement listed",
        )
        stored = repo.get(problem.id)
        assert stored is not None
        assert (stored.acknowledged_by, stored.note) == ("alice", "on it, see INC-7")
        events = [e for e in fleet_services.audit.events() if e.action == "problem.acknowledge"]
        assert [e.target for e in events] == [problem.id]
        assert events[0].detail is not None and events[0].detail["note"] == "on it, see INC-7"
        assert screen.table.cell_texts("web01")["problems"] == "1"
        # Enter on a problem opens its host.
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HostDrilldown), what="drill-down")
        drill = app.screen
        assert isinstance(drill, HostDrilldown) and drill.host.name == "web01"
        assert problem.id in static_text(drill.query_one("#drill-problems", Static))


async def test_read_only_cannot_acknowledge(tmp_path: Path) -> None:
    services = open_services(tmp_path / "data", fleet(), fleet_groups(), read_only=True)
    repo = ProblemRepository.in_data_dir(services.settings.data_dir)
    problem, _ = repo.open("web01", "cpu_percent", "critical", BASE_TIME - 300, 97.0, 95.0)
    app, box = make(services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        await wait_until(pilot, lambda: screen.problem_table.row_count == 1, what="problems")
        await pilot.press("o", "a")
        await pilot.pause()
        assert not isinstance(app.screen, AcknowledgeDialog)
        assert "READ-ONLY" in screen.status_text()
        stored = repo.get(problem.id)
        assert stored is not None and stored.acknowledged_by is None


async def test_real_monitor_shows_this_machine_up_with_cpu(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        config_path=Path("/etc/itop/itop.yaml"),
        metrics=MetricsSettings(interval=0.5),
    )
    here = Host(name="here", address="local")
    services = open_services(tmp_path / "data", [here], settings=settings)
    app = ItopApp(services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, PerformanceScreen) and app.screen.table.total_count == 1,
            what="the pane",
        )
        screen = performance_screen(pilot)
        table = screen.table
        # The first sample has no rates; the second, one interval later, has CPU %.
        await wait_until(
            pilot,
            lambda: table.cell_texts("here")["state"] == "up"
            and table.cell_texts("here")["cpu"].isdigit(),
            timeout=5,
            what="a CPU figure",
        )
        cpu = float(table.cell_texts("here")["cpu"])
        assert 0 <= cpu <= 100
        mem = float(table.cell_texts("here")["mem"])
        assert abs(mem - psutil.virtual_memory().percent) < 10
        monitor = screen.source
        assert isinstance(monitor, FleetMonitor) and monitor.running
    assert not monitor.running


def _read_pty(fd: int, marks: int, deadline: float) -> tuple[int, int, float, bytes]:
    """Read the terminal until the child is done; bytes between the marks and their time."""
    total = 0
    measured_from: int | None = None
    started = 0.0
    measured = 0
    elapsed = 0.0
    tail = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd, marks], [], [], 0.5)
        if marks in ready:
            mark = os.read(marks, 64)
            if b"start" in mark:
                measured_from, started = total, time.monotonic()
            if b"stop" in mark and measured_from is not None:
                measured = total - measured_from
                elapsed = time.monotonic() - started
        if fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            total += len(chunk)
            tail = (tail + chunk)[-200_000:]
            # Answer nothing: Textual does not wait for terminal replies.
    return total, measured, elapsed, tail


def test_terminal_output_of_fifty_hosts_at_one_hertz(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Bytes written to a 160x48 terminal per second, 50 hosts updating at 1 Hz (reported)."""
    seconds = float(os.environ.get("ITOP_OUTPUT_SECONDS", "10"))
    master, slave = pty.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    marks_read, marks_write = os.pipe()
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "PYTHONPATH": str(HERE)}
    env.pop("TEXTUAL", None)
    child = subprocess.Popen(
        [sys.executable, str(HERE / "perf_fixtures.py"), "--data-dir", str(tmp_path / "data"),
         "--hosts", "50", "--seconds", str(seconds), "--marks-fd", str(marks_write)],
        # Textual writes to stderr: the terminal is stdin, stdout and stderr.
        stdin=slave, stdout=slave, stderr=slave, env=env, pass_fds=(marks_write,),
        start_new_session=True,
    )
    os.close(slave)
    os.close(marks_write)
    try:
        total, measured, elapsed, tail = _read_pty(master, marks_read, time.monotonic() + seconds + 60)
        status = child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)
        os.close(marks_read)
    assert status == 0, tail[-2000:].decode(errors="replace")
    assert measured > 0 and elapsed > seconds * 0.9, (measured, elapsed)
    assert b"node0" in tail and b"50 hosts" in tail  # the pane was on screen
    rate = measured / elapsed
    record_property("terminal_bytes_per_second_50_hosts_1hz", round(rate))
    print(
        f"\nPerformance pane, 50 hosts at 1 Hz, 160x48: {rate / 1024:.1f} KiB/s "
        f"({measured:,} bytes in {elapsed:.1f}s; {total:,} bytes in all, first paint included)"
    )



async def test_bad_thresholds_are_reported_and_nothing_starts(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        config_path=Path("/etc/itop/itop.yaml"),
        thresholds={"cpu_percent": {"warning": 90, "critical": 80}},
    )
    services = open_services(tmp_path / "data", fleet(), fleet_groups(), settings=settings)
    app, box = make(services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, PerformanceScreen)
            and "could not start" in str(app.screen.query_one("#perf-status", Static).content),
            what="the failure shown",
        )
        messages = [n.message for n in app._notifications]
        assert any("warning must not be above critical" in m for m in messages), messages
        assert "source" not in box


def test_buckets_are_aligned_to_the_epoch_and_cover_the_interval() -> None:
    history = Series([100.0, 102.0, 104.0, 106.0], [10.0, None, 30.0, 40.0])
    # 1 s buckets, samples every 2 s: each value covers the 2 s before its time.
    assert bucket_values(history, 1.0, 8, 105, span=2.0) == [
        10.0, 10.0, None, None, 30.0, 30.0, 40.0, 40.0
    ]
    assert bucket_values(history, 5.0, 2, 21) == [30.0, 40.0]  # highest of 100-105, 105-110
    assert bucket_values(history, 5.0, 2, 22) == [40.0, None]


def test_fleet_row_levels_follow_the_thresholds() -> None:
    host = Host(name="h1", address="127.0.0.1")
    thresholds = resolve_thresholds("h1", (), {"mem_percent": {"warning": 50, "critical": 70}})
    ok = fleet_row(host, "up", None, sample("h1", BASE_TIME, mem=49.0), (), HostProblems(), thresholds)
    warn = fleet_row(host, "up", None, sample("h1", BASE_TIME, mem=50.0), (), HostProblems(), thresholds)
    crit = fleet_row(host, "up", None, sample("h1", BASE_TIME, mem=80.0), (), HostProblems(), thresholds)
    down = fleet_row(host, "unreachable", "timed out", sample("h1", BASE_TIME, mem=80.0), (),
                     HostProblems(), thresholds)
    assert [r.cells[3].style for r in (ok, warn, crit, down)] == ["", "warning", "critical", "muted"]
    assert down.cells[-1].text == "timed out"


async def test_production_banner_follows_the_fleet_cursor(fleet_services: Services) -> None:
    app, box = make(fleet_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        await feed_and_wait(pilot, box["source"], [*fleet_history(), *fleet_states()])
        banner = screen.query_one(ProductionBanner)
        table = screen.table
        assert table.move_to("web05")  # staging
        await wait_until(pilot, lambda: not banner.shown, what="no banner on staging")
        assert table.move_to("web01")  # production
        await wait_until(pilot, lambda: banner.shown, what="the banner on production")
        assert banner.text.startswith("PRODUCTION (web01): mutating actions need an approved change")
        assert banner.text.endswith(" · no approved change covers web01 now")
        # The app's open changes are named on the banner when they cover the host.
        app.open_changes.append(OpenChange(Change("CHG-7", hosts=("web02",)), "CHG-7 active, 20m left"))
        assert table.move_to("web02")  # production too, covered by CHG-7
        await wait_until(pilot, lambda: "(web02)" in banner.text, what="the banner on web02")
        assert banner.text.endswith(" · CHG-7 active, 20m left")
        assert table.move_to("web03")  # production, not covered
        await wait_until(pilot, lambda: "(web03)" in banner.text, what="the banner on web03")
        assert banner.text.endswith(" · no approved change covers web03 now")
        table.move_to("web06")
        await wait_until(pilot, lambda: not banner.shown, what="the banner to blank")
        assert banner.text == ""


async def test_pane_keeps_painting_when_fed_faster_than_it_paints(tmp_path: Path) -> None:
    """500 hosts reporting round after round, with one turn of the event loop
    between rounds: the pane keeps showing batches, the monitor's queue never
    backs up, and what ends on screen is the last round."""
    hosts = simulated_fleet(500)
    names_ = [h.name for h in hosts]
    settings = Settings(
        data_dir=tmp_path,
        config_path=CONFIG_LABEL,
        metrics=MetricsSettings(interval=0.5, history_seconds=60),
    )
    app, box = make(open_services(tmp_path, hosts, settings=settings))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        source = box["source"]
        start = screen.batches_shown
        flood = await flood_until(source, names_, lambda: screen.batches_shown >= start + 3)
        # Batches were painted while the flood went on, each with one sample per
        # host at most: the rounds in between were folded, not queued.
        assert flood.rounds > screen.batches_shown - start
        # The queue held at most one round (a sample per host, and the first
        # round's "up" states), so the monitor never had to drop anything.
        assert flood.max_queued <= 2 * len(hosts)
        assert screen.folder is not None and len(screen.folder.batch.samples) <= len(hosts)
        table = screen.table
        await wait_until(
            pilot,
            lambda: all(screen._samples.get(n) is s for n, s in flood.last.items())
            and all(table.row(n) == screen._row(n) for n in names_),
            what="the last round in the table",
        )
        await pilot.pause()
        # What is painted is the last round: the worst host first, with its figure.
        worst = max(flood.last.values(), key=lambda s: s.cpu_percent or 0.0)
        top = table.view_keys[0]
        assert flood.last[top].cpu_percent == worst.cpu_percent
        line = table.render_line(1).text
        assert top in line and f" {table.cell_texts(top)['cpu']} " in line
        assert table.cell_texts(top)["cpu"] == f"{worst.cpu_percent:.0f}"


def test_a_batch_keeps_the_newest_sample_and_state_of_each_host() -> None:
    first, second = sample("a", BASE_TIME, cpu=1.0), sample("a", BASE_TIME + 1, cpu=2.0)
    other = sample("b", BASE_TIME, cpu=3.0)
    down = HostStatus("a", "unreachable", BASE_TIME, "refused")
    up = HostStatus("a", "up", BASE_TIME + 1)
    batch = UpdateBatch.of([
        SampleUpdate("a", first), StateUpdate("a", down), SampleUpdate("b", other),
        SampleUpdate("a", second), StateUpdate("a", up),
        *(NoticeUpdate(f"notice {i % (NOTICES_KEPT + 5)}") for i in range(200)),
    ])
    assert batch.samples == {"a": second, "b": other}
    assert batch.states == {"a": up}
    assert batch.notices is not None and len(batch.notices) == NOTICES_KEPT
    assert not UpdateBatch({}, {}) and batch


def test_the_wait_between_batches_grows_with_the_time_to_show_one() -> None:
    assert next_wait(0.5, 0.01) == 0.5  # showing is quick: the repaint period
    assert next_wait(0.5, 1.0) == 2.0  # at most half the time goes to showing
    assert next_wait(1.0, 60.0) == 5.0  # bounded, so the pane still moves


async def test_the_folder_keeps_what_arrives_after_a_batch_was_taken() -> None:
    queue: asyncio.Queue[MonitorUpdate] = asyncio.Queue()
    folder = UpdateFolder(queue)
    task = asyncio.create_task(folder.run())
    try:
        taken = []
        for cpu in (1.0, 2.0, 3.0):
            update = SampleUpdate("a", sample("a", BASE_TIME + cpu, cpu=cpu))
            queue.put_nowait(update)
            await asyncio.wait_for(folder.arrived.wait(), 10)
            taken.append(folder.take())
            assert taken[-1].samples == {"a": update.sample}
        assert not folder.batch and queue.empty() and folder.folded == 3
    finally:
        task.cancel()


async def test_drilldown_below_wide_keeps_the_graphs_and_says_why_there_is_no_data(
    tmp_path: Path,
) -> None:
    lost = Host(name="lost", address="127.0.0.1", port=1)
    services = open_services(tmp_path / "data", [*fleet(), lost], fleet_groups())
    app, box = make(services)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        screen = await open_performance(pilot, box)
        down = HostStatus("lost", "unreachable", BASE_TIME - 30, "connection refused", None, 1,
                          BASE_TIME + 8)
        await feed_and_wait(pilot, box["source"], [*fleet_history(), StateUpdate("lost", down)])
        assert screen.table.move_to("lost")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HostDrilldown), what="drill-down")
        drill = app.screen
        assert isinstance(drill, HostDrilldown)
        await pilot.pause()
        assert drill.has_class("-narrow")
        graphs = drill.query_one("#drill-graphs").region
        right = drill.query_one("#drill-right").region
        assert graphs.width >= 40, graphs
        assert right.y >= graphs.bottom and right.width >= 90, (graphs, right)
        cores = static_text(drill.query_one("#drill-cores", Static))
        assert "no data: the host is unreachable" in cores
        assert "waiting" not in static_text(drill.query_one("#drill-memory", Static))
        status = static_text(drill.query_one("#drill-status", Static), 100)
        assert "lost · unreachable (connection refused)" in status
