"""One command on N hosts, cold: ``itop run`` vs bare asyncssh vs ``ansible -m raw``.

Every contender is a fresh process (interpreter start, imports, handshakes
with every host, the command, exit), timed by the wall clock, with its CPU
taken from ``wait4``. The contenders run in turns within each round, the
order rotating from round to round, so a noisy neighbour hits them alike;
the figures are medians over the rounds.

* ``itop``: ``itop run all -- cat /proc/loadavg`` with itop's defaults
  (50 forks, 10 handshakes in flight).
* ``bare``: :mod:`bench.bare_fanout`, plain asyncssh, all hosts at once with
  10 handshakes in flight.
* ``ansible-fN``: ``ansible all -i INV -m raw -a 'cat /proc/loadavg' -f N``
  with its default ssh arguments (ControlPersist), host key checking on, the
  fleet's ssh config. Its ControlPersist masters are closed after each run,
  so every run is cold.

Budget (ARCHITECTURE.md section 8): itop within 1.5x of bare, and at least
3x faster than Ansible with its best forks.

Usage: ``python -m bench.run_fanout [--hosts 100] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench.fleet import SSH_CONFIG_STYLES, Fleet, open_fleet
from bench.measure import ChildRun, emit, run_child, stop_on_sigterm, summary, verdict

COMMAND = "cat /proc/loadavg"
ANSIBLE_FORKS = (5, 100)
BUDGET_VS_BARE = 1.5
BUDGET_VS_ANSIBLE = 3.0
RUN_TIMEOUT = 300.0
SETTLE_TIMEOUT = 30.0


def _tool(name: str) -> str:
    """The tool installed beside this interpreter (not a pyenv shim, which adds its own start-up)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def ansible_env(fleet: Fleet, work: Path) -> dict[str, str]:
    """Ansible's environment: its state in ``work``, the fleet's ssh config, strict host keys."""
    env = dict(os.environ)
    home = work / "ansible-home"
    for sub in ("tmp", "cp", "home"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env.update({
        "ANSIBLE_HOME": str(home / "home"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_COMMON_ARGS": f"-F {fleet.ssh_config}",
        "ANSIBLE_CONFIG": str(home / "none.cfg"),  # no ansible.cfg from the cwd or ~
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
    })
    return env


def close_control_masters(fleet: Fleet, env: dict[str, str]) -> int:
    """Ask each ControlPersist master Ansible left behind to exit; return how many."""
    cp_dir = Path(env["ANSIBLE_SSH_CONTROL_PATH_DIR"])
    closed = 0
    for sock in cp_dir.iterdir():
        run_child(["ssh", "-F", str(fleet.ssh_config), "-o", f"ControlPath={sock}",
                   "-O", "exit", fleet.hosts[0]], timeout=10)
        sock.unlink(missing_ok=True)
        closed += 1
    return closed


def wait_sessions_gone(fleet: Fleet) -> float:
    """Wait until the sshd has no session processes left (the last run's teardown)."""
    started = time.monotonic()
    while fleet.sshd_processes() and time.monotonic() - started < SETTLE_TIMEOUT:
        time.sleep(0.05)
    return time.monotonic() - started


def check(name: str, run: ChildRun, hosts: int) -> str | None:
    """Why the run does not count (not every host answered), or None."""
    if run.returncode != 0:
        return f"{name}: exit status {run.returncode}: {run.stderr.strip()[-500:]}"
    if name.startswith("ansible"):
        answered = sum(1 for line in run.stdout.splitlines() if "| CHANGED | rc=0" in line)
        if answered != hosts:
            return f"{name}: {answered} of {hosts} hosts answered: {run.stdout[-500:]}"
    return None


def main() -> int:
    """Run the rounds and print the results."""
    parser = argparse.ArgumentParser(description="itop run vs bare asyncssh vs ansible -m raw")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--user", default=None, help="remote login (default: itopbench as root)")
    parser.add_argument("--ssh-config", choices=SSH_CONFIG_STYLES, default="per-host",
                        help="a Host block per alias (default), or one pattern block for all")
    args = parser.parse_args()
    stop_on_sigterm()

    with open_fleet(args.hosts, user=args.user, ssh_config_style=args.ssh_config) as fleet:
        env_ansible = ansible_env(fleet, fleet.dir)
        contenders: dict[str, tuple[list[str], dict[str, str]]] = {
            "itop": ([_tool("itop"), "run", "all", "--", COMMAND], fleet.itop_env()),
            "bare": (
                [sys.executable, str(Path(__file__).with_name("bare_fanout.py")),
                 "--hosts", str(args.hosts), "--address", fleet.address, "--port", str(fleet.port),
                 "--user", fleet.user, "--key", str(fleet.client_key),
                 "--known-hosts", str(fleet.known_hosts), "--handshakes", "10", COMMAND],
                dict(os.environ),
            ),
        }
        for forks in ANSIBLE_FORKS:
            contenders[f"ansible-f{forks}"] = (
                [_tool("ansible"), "all", "-i", str(fleet.ansible_inventory), "-m", "raw",
                 "-a", COMMAND, "-f", str(forks)],
                env_ansible,
            )
        names = list(contenders)
        walls: dict[str, list[float]] = {n: [] for n in names}
        cpus: dict[str, list[float]] = {n: [] for n in names}
        failures: list[str] = []
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                wait_sessions_gone(fleet)
                argv, env = contenders[name]
                run = run_child(argv, env=env, timeout=RUN_TIMEOUT, cwd=fleet.dir)
                if name.startswith("ansible"):
                    close_control_masters(fleet, env)
                problem = check(name, run, args.hosts)
                if problem:
                    failures.append(f"round {round_no + 1}: {problem}")
                    print(f"round {round_no + 1} {name}: FAILED", file=sys.stderr)
                    continue
                walls[name].append(run.wall)
                cpus[name].append(run.cpu)
                print(f"round {round_no + 1} {name}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU",
                      file=sys.stderr)

        med = {n: summary(walls[n]).get("median") for n in names}
        best_ansible = min(
            (n for n in names if n.startswith("ansible") and med[n] is not None),
            key=lambda n: float(med[n] or 0), default=None,
        )
        itop_wall, bare_wall = med["itop"], med["bare"]
        ratio_bare = itop_wall / bare_wall if itop_wall and bare_wall else None
        ansible_wall = med[best_ansible] if best_ansible else None
        speedup = ansible_wall / itop_wall if ansible_wall and itop_wall else None
        results: dict[str, object] = {
            "fleet": fleet.describe(),
            "command": COMMAND,
            "rounds": args.rounds,
            "wall_seconds": {n: summary(walls[n]) for n in names},
            "cpu_seconds": {n: summary(cpus[n]) for n in names},
            "itop_vs_bare": ratio_bare,
            "best_ansible": best_ansible,
            "ansible_best_vs_itop": speedup,
            "budget": {"itop_vs_bare_max": BUDGET_VS_BARE, "ansible_vs_itop_min": BUDGET_VS_ANSIBLE},
            "pass_vs_bare": ratio_bare is not None and ratio_bare <= BUDGET_VS_BARE,
            "pass_vs_ansible": speedup is not None and speedup >= BUDGET_VS_ANSIBLE,
            "failures": failures,
        }

    def fmt(name: str) -> str:
        w, c = summary(walls[name]), summary(cpus[name])
        if not w.get("n"):
            return f"  {name:12s} no successful run"
        return (f"  {name:12s} wall median {w['median']:.2f} s (min {w['min']:.2f}, max {w['max']:.2f},"
                f" n={w['n']}); CPU median {c['median']:.2f} s")

    lines = [f"One command on {args.hosts} hosts, cold, {args.rounds} rounds "
             f"(ssh config: {args.ssh_config}):"]
    lines += [fmt(n) for n in names]
    if ratio_bare is not None:
        lines.append(f"itop / bare = {ratio_bare:.2f} (budget <= {BUDGET_VS_BARE}): "
                     f"{verdict(ratio_bare <= BUDGET_VS_BARE)}")
    if speedup is not None:
        lines.append(f"{best_ansible} / itop = {speedup:.2f} (budget >= {BUDGET_VS_ANSIBLE}): "
                     f"{verdict(speedup >= BUDGET_VS_ANSIBLE)}")
    lines += failures
    emit("fanout", results, lines)
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
