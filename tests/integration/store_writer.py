"""A writer process for the store crash and concurrency tests.

Usage: python store_writer.py STORE PREFIX COUNT [GO_FILE]

Prints ``ready`` once the store is open, waits for GO_FILE to exist when one
is given, then for i in 0..COUNT-1 adds host ``PREFIX-i`` (one write) and
prints ``host PREFIX-i``, then sets ``vars.n = i`` on host ``PREFIX-counter``
(another write) and prints ``counter i``. Each line is printed and flushed
only after its write block has returned, i.e. after the commit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from itop_tui.domain.models import Host
from itop_tui.services.inventory_repo import InventoryRepository
from itop_tui.services.store import JsonStore


def main(argv: list[str]) -> int:
    store_path, prefix, count = Path(argv[0]), argv[1], int(argv[2])
    go_file = Path(argv[3]) if len(argv) > 3 else None
    repo = InventoryRepository(JsonStore(store_path))
    counter = f"{prefix}-counter"
    repo.upsert_hosts([Host(name=counter, vars={"n": -1})])
    print("ready", flush=True)
    while go_file is not None and not go_file.exists():
        time.sleep(0.005)
    for i in range(count):
        name = f"{prefix}-{i}"
        repo.upsert_hosts([Host(name=name, address="127.0.0.1", port=22, groups=[prefix])])
        print(f"host {name}", flush=True)
        repo.update_host(counter, vars={"n": i})
        print(f"counter {i}", flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
