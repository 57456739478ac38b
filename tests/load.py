"""Run a command while the machine is kept busy, to shake out timing-sensitive tests.

CI runs the suite on small shared machines; a test that passes only when
the CPU is idle fails there. Reproduce that here::

    python tests/load.py --loops 4 --runs 5 -- python -m pytest tests/integration/x.py -q

``--loops`` busy shell loops run for the whole time (each its own session,
killed by pid afterwards, whatever happens); the command runs ``--runs``
times in a row and a summary line per run is printed. The exit status is 0
when every run passed, else 1.

:func:`busy_loops` is the same load as a context manager, for benchmarks
or tests that want it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

BUSY_LOOP = ["sh", "-c", "while :; do :; done"]


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` busy shell loops, killed (by pid) on exit whatever happens."""
    loops: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            loops.append(subprocess.Popen(BUSY_LOOP, start_new_session=True))
        yield loops
    finally:
        for proc in loops:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        for proc in loops:
            proc.wait(10)


def run_under_load(command: Sequence[str], loops: int, runs: int) -> int:
    """Run ``command`` ``runs`` times under ``loops`` busy loops; 0 when all passed."""
    failed = 0
    with busy_loops(loops):
        for number in range(1, runs + 1):
            started = time.monotonic()
            status = subprocess.call(list(command))
            took = time.monotonic() - started
            load1 = os.getloadavg()[0]
            print(
                f"load.py: run {number}/{runs}: exit {status} in {took:.0f}s (load {load1:.1f})",
                flush=True,
            )
            failed += status != 0
    print(f"load.py: {runs - failed} of {runs} runs passed under {loops} busy loops", flush=True)
    return 0 if failed == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=4, help="busy loops to run (default 4)")
    parser.add_argument("--runs", type=int, default=1, help="times to run the command")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.loops < 0 or args.runs < 1:
        parser.error("--loops must be >= 0 and --runs >= 1")
    return run_under_load(command, args.loops, args.runs)


if __name__ == "__main__":
    sys.exit(main())
