"""Live metrics at 1 s: itop's collector vs a bare asyncssh streaming loop, and memory per host.

For each fleet size, the two collectors run in turns (``--rounds`` each,
the order alternating), every run a fresh :mod:`bench.collector_worker`
process over the same sshd, measured over the same window after all hosts
are up. Figures per run: CPU of the collector process (user + system, all
threads) as % of one core and per host-sample; medians over the rounds.

The hosts' loops and sshd run on this same machine: with 500 hosts they can
take most of its cores, which delays frames and lowers the samples per
second both collectors receive. The CPU per host-sample is unaffected by
that, so the projected load at the full rate (per-sample CPU x hosts /
interval) is reported beside the measured percentage.

Memory: in the itop runs, RSS of the process before the monitor starts,
with every host streaming, and after each host's ring buffers were filled
to one hour; the growth divided by the host count is the cost per
monitored host.

Budgets (ARCHITECTURE.md section 8): itop within 1.5x of bare per
host-sample; 500 hosts under 30% of one core; under 200 KB per monitored
host with one hour of history.

Usage: ``python -m bench.run_collector [--hosts 100 500] [--rounds 3] [--duration 30]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.fleet import Fleet, open_fleet
from bench.measure import emit, run_child, stop_on_sigterm, summary, verdict

BUDGET_RATIO = 1.5
BUDGET_CORE_PERCENT_500 = 30.0
BUDGET_BYTES_PER_HOST = 200 * 1024
SETTLE_TIMEOUT = 60.0


def worker_argv(mode: str, fleet: Fleet, hosts: int, args: argparse.Namespace) -> list[str]:
    """The command line of one measured collector process."""
    argv = [sys.executable, "-m", "bench.collector_worker", mode, "--hosts", str(hosts),
            "--interval", str(args.interval), "--duration", str(args.duration),
            "--warmup", str(args.warmup), "--connect-limit", str(args.connect_limit)]
    if mode == "itop":
        argv += ["--config", str(fleet.config_path), "--data-dir", str(fleet.data_dir)]
    else:
        argv += ["--address", fleet.address, "--port", str(fleet.port), "--user", fleet.user,
                 "--key", str(fleet.client_key), "--known-hosts", str(fleet.known_hosts)]
    return argv


def _float(value: object) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def wait_sessions_gone(fleet: Fleet) -> None:
    """Wait until the previous run's sessions (and their loops) are gone on the 'hosts'."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while fleet.sshd_processes() and time.monotonic() < deadline:
        time.sleep(0.2)


def measure_size(fleet: Fleet, hosts: int, args: argparse.Namespace) -> dict[str, object]:
    """Alternate itop and bare runs over ``hosts`` hosts; return per-mode runs and medians."""
    runs: dict[str, list[dict[str, object]]] = {"itop": [], "bare": []}
    failures: list[str] = []
    repo_root = Path(__file__).resolve().parent.parent
    limit = args.connect_limit + args.warmup + args.duration + 300
    for round_no in range(args.rounds):
        order = ["itop", "bare"] if round_no % 2 == 0 else ["bare", "itop"]
        for mode in order:
            wait_sessions_gone(fleet)
            run = run_child(worker_argv(mode, fleet, hosts, args), timeout=limit, cwd=repo_root)
            figures: dict[str, object] = {}
            for line in run.stdout.splitlines():
                if line.startswith("{"):
                    figures.update(json.loads(line))
            if run.returncode != 0:
                failures.append(f"{hosts} hosts, {mode}, round {round_no + 1}: exit "
                                f"{run.returncode}: {run.stderr.strip()[-800:]}")
                print(failures[-1], file=sys.stderr)
            if figures.get("cpu_ms_per_sample") is None:
                continue
            figures["exit_status"] = run.returncode
            runs[mode].append(figures)
            print(f"{hosts} hosts round {round_no + 1} {mode}: up {figures['hosts_up']}, "
                  f"{figures['cpu_percent_of_one_core']:.1f}% of a core, "
                  f"{figures['cpu_ms_per_sample'] or 0:.3f} ms/sample, "
                  f"{figures['samples_per_second']:.0f} samples/s, "
                  f"machine {figures['machine_busy_percent']:.0f}% busy", file=sys.stderr)

    def med(mode: str, key: str) -> float | None:
        values = [_float(r[key]) for r in runs[mode] if r.get(key) is not None]
        return float(summary(values)["median"]) if values else None

    result: dict[str, object] = {"hosts": hosts, "runs": runs, "failures": failures}
    for mode in runs:
        result[mode] = {
            key: med(mode, key)
            for key in ("cpu_percent_of_one_core", "cpu_ms_per_sample", "samples_per_second",
                        "machine_busy_percent", "hosts_up", "connect_seconds",
                        "rss_growth_per_host_steady", "rss_growth_per_host_hour",
                        "history_nbytes_per_host")
        }
    itop_ms, bare_ms = med("itop", "cpu_ms_per_sample"), med("bare", "cpu_ms_per_sample")
    result["ratio_per_sample"] = itop_ms / bare_ms if itop_ms and bare_ms else None
    if itop_ms:
        result["itop_projected_percent_at_full_rate"] = itop_ms * hosts / args.interval / 10
    if bare_ms:
        result["bare_projected_percent_at_full_rate"] = bare_ms * hosts / args.interval / 10
    return result


def main() -> int:
    """Measure every requested fleet size and print the results."""
    parser = argparse.ArgumentParser(description="collector CPU and memory vs bare asyncssh")
    parser.add_argument("--hosts", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--connect-limit", type=float, default=300.0)
    parser.add_argument("--user", default=None, help="remote login (default: itopbench as root)")
    args = parser.parse_args()
    stop_on_sigterm()

    sizes = sorted(set(args.hosts))
    with open_fleet(max(sizes), user=args.user) as fleet:
        fleet_info = fleet.describe()
        measured = [measure_size(fleet, n, args) for n in sizes]

    lines = [f"Live metrics at {args.interval:g} s, {args.duration:g} s windows, "
             f"{args.rounds} rounds per collector (medians):"]
    ok = True
    for m in measured:
        itop, bare = m["itop"], m["bare"]
        assert isinstance(itop, dict) and isinstance(bare, dict)
        ratio = m["ratio_per_sample"]
        lines.append(
            f"  {m['hosts']} hosts: itop {itop['cpu_percent_of_one_core'] or 0:.1f}% of a core, "
            f"{itop['cpu_ms_per_sample'] or 0:.3f} ms/sample ({itop['samples_per_second'] or 0:.0f}/s); "
            f"bare {bare['cpu_percent_of_one_core'] or 0:.1f}%, {bare['cpu_ms_per_sample'] or 0:.3f} "
            f"ms/sample ({bare['samples_per_second'] or 0:.0f}/s); machine "
            f"{itop['machine_busy_percent'] or 0:.0f}% busy"
        )
        if isinstance(ratio, float):
            lines.append(f"    itop/bare per sample = {ratio:.2f} (budget <= {BUDGET_RATIO}): "
                         f"{verdict(ratio <= BUDGET_RATIO)}")
            ok = ok and ratio <= BUDGET_RATIO
        projected = m.get("itop_projected_percent_at_full_rate")
        if m["hosts"] == 500 and itop["cpu_percent_of_one_core"] is not None:
            worst = max(_float(itop["cpu_percent_of_one_core"]), _float(projected or 0))
            lines.append(f"    500 hosts: measured {itop['cpu_percent_of_one_core']:.1f}%, projected at "
                         f"{m['hosts']} samples/s {projected or 0:.1f}% (budget < "
                         f"{BUDGET_CORE_PERCENT_500}%): {verdict(worst < BUDGET_CORE_PERCENT_500)}")
            ok = ok and worst < BUDGET_CORE_PERCENT_500
        per_host = itop.get("rss_growth_per_host_hour")
        if per_host is not None:
            lines.append(f"    memory per host with an hour of history: {per_host / 1024:.0f} KiB RSS "
                         f"(ring buffers {float(itop['history_nbytes_per_host'] or 0) / 1024:.0f} KiB; "
                         f"bare streaming {float(bare['rss_growth_per_host_steady'] or 0) / 1024:.0f} KiB) "
                         f"(budget < 200 KB): {verdict(per_host < BUDGET_BYTES_PER_HOST)}")
            ok = ok and per_host < BUDGET_BYTES_PER_HOST
        if not isinstance(ratio, float):
            ok = False  # a collector that could not be measured has not met its budget
        for failure in m["failures"]:  # type: ignore[attr-defined]
            lines.append(f"    FAILED: {failure}")
            ok = False
    emit("collector", {"fleet": fleet_info, "interval": args.interval, "duration": args.duration,
                       "rounds": args.rounds, "sizes": measured,
                       "budget": {"ratio_max": BUDGET_RATIO,
                                  "percent_of_core_500_max": BUDGET_CORE_PERCENT_500,
                                  "bytes_per_host_max": BUDGET_BYTES_PER_HOST},
                       "all_pass": ok}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
