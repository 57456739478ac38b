"""The bare baseline of a fan-out: plain asyncssh, one command on N hosts.

What any asyncssh program would do at the least: load the key and the
known_hosts once, open every connection concurrently with at most
``--handshakes`` handshakes in flight (as itop bounds them, since sshd's
MaxStartups drops the rest), run the command on each, close. No ssh config,
no inventory, no audit. Prints one JSON object: hosts, ok, failed, errors.

Run by ``bench/run_fanout.py`` as a separate, cold process, like ``itop``
and ``ansible``; it imports nothing from itop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import asyncssh


async def run_all(args: argparse.Namespace) -> dict[str, object]:
    """Run ``args.command`` on ``args.hosts`` connections; count the outcomes."""
    keys = asyncssh.load_keypairs([args.key])
    known = asyncssh.read_known_hosts(args.known_hosts)
    handshakes = asyncio.Semaphore(args.handshakes)
    errors: list[str] = []

    async def one(index: int) -> bool:
        try:
            async with handshakes:
                conn = await asyncssh.connect(
                    args.address, port=args.port, username=args.user, client_keys=keys,
                    known_hosts=known, config=[], agent_path=None, connect_timeout=10,
                )
            async with conn:
                result = await conn.run(args.command, check=False)
            return result.exit_status == 0 and bool(result.stdout)
        except (OSError, asyncssh.Error) as exc:
            errors.append(f"host {index}: {exc}")
            return False

    outcomes = await asyncio.gather(*(one(i) for i in range(args.hosts)))
    ok = sum(outcomes)
    return {"hosts": args.hosts, "ok": ok, "failed": args.hosts - ok, "errors": errors[:5]}


def main() -> int:
    """Parse the arguments, fan out, print JSON; exit 1 when a host failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--handshakes", type=int, default=10)
    parser.add_argument("command")
    args = parser.parse_args()
    summary = asyncio.run(run_all(args))
    json.dump(summary, sys.stdout)
    print()
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
