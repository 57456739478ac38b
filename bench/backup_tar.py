"""tar backups of about 1 GiB from a loopback host: ``itop backup run`` vs OpenSSH.

One sshd (the benchmark fleet's, one alias ``h0001``) serves a tree of mixed
files: incompressible binaries, compressible log-like text, and many small
files. In each round, in rotating order, every contender is a fresh process
timed by the wall clock, with its CPU and peak RSS taken from ``wait4``:

* ``openssh-czf``: ``ssh h0001 'tar czf - -C / TREE' > FILE`` (the budget's
  reference);
* ``openssh-gzip-pipe``: ``ssh h0001 'tar cf - -C / TREE | gzip -c' > FILE``,
  the other way to gzip on the host (it loses tar's exit status in a POSIX
  shell, which is why itop uses ``tar -z``);
* ``itop-gzip``: ``itop backup run`` of a tar job with ``compression: gzip``
  (what itop does by default: stream, sha256, per-file manifest, fsync,
  rename; no verify, no retention);
* ``itop-none``: the same job with ``compression: none`` (more bytes over
  SSH, no gzip on the host).

Then ``itop-gzip`` runs once more on the small-files fifth of the tree, so
its peak RSS on a small and on the full tree can be compared: streaming means the archive
never sits in memory, so the peak should not grow with the tree.

Budget (issue 6): itop within 1.5x of OpenSSH's wall time, same run, and
itop's memory flat.

Usage: ``python -m bench.backup_tar [--size-mib 1024] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.fleet import Fleet, open_fleet
from bench.measure import emit, stop_on_sigterm, summary, verdict

BUDGET_RATIO = 1.5
# "Flat": the full tree may cost at most this much more peak RSS than a fifth of it.
RSS_FLAT_MIB = 32
RUN_TIMEOUT = 1800.0
MIB = 1024 * 1024
TIME = "/usr/bin/time"


@dataclass
class Measured:
    """One contender run: wall and CPU seconds, peak RSS, bytes written."""

    wall: float
    cpu: float
    max_rss: int
    output_bytes: int


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[Measured, str]:
    """Run ``argv``; wall clock, CPU from ``wait4``, peak RSS from ``/usr/bin/time``.

    ``wait4``'s ``ru_maxrss`` of a child of this (large) process would start
    at this process's size: Linux keeps the high-water mark across fork and
    exec. ``/usr/bin/time`` is a small parent, so its ``%M`` is the command's own.
    """
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        started = time.perf_counter()
        proc = subprocess.Popen([TIME, "-o", rss.name, "-f", "%M", *argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
        max_rss_kib = int(rss.read().split()[-1])
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed ({os.waitstatus_to_exitcode(status)}):\n{text}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, max_rss_kib * 1024, 0), text


# -- the tree ----------------------------------------------------------------------------


def make_tree(root: Path, size_mib: int, seed: int = 6) -> tuple[int, int]:
    """About ``size_mib`` MiB of mixed files; returns (files, bytes)."""
    rng = random.Random(seed)
    words = [
        "GET", "POST", "/api/v1/orders", "/static/app.js", "200", "304", "404", "500",
        "user=alice", "user=bob", "session", "timeout", "connection", "reset", "INFO", "WARN",
        "ERROR", "db01", "web03", "cache", "miss", "hit", "latency_ms", "bytes", "upstream",
    ]
    corpus = "".join(
        f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
        f"{rng.randint(0, 59):02d}Z " + " ".join(rng.choices(words, k=8)) + f" {rng.random():.6f}\n"
        for _ in range(60_000)
    ).encode()
    target = size_mib * MIB
    files = written = 0
    binary_dir, text_dir, small_dir = root / "bin", root / "logs", root / "small"
    for directory in (binary_dir, text_dir, small_dir):
        directory.mkdir(parents=True)
    # 40% incompressible, 40% log-like text, 20% small files of both kinds.
    while written < target * 0.4:
        size = rng.randint(1, 32) * MIB
        (binary_dir / f"blob-{files:05d}.bin").write_bytes(os.urandom(size))
        files, written = files + 1, written + size
    while written < target * 0.8:
        size = rng.randint(1, 24) * MIB
        with open(text_dir / f"app-{files:05d}.log", "wb") as handle:
            left = size
            while left > 0:
                start = rng.randrange(len(corpus) // 2)
                piece = corpus[start:start + min(left, len(corpus) // 2)]
                handle.write(piece)
                left -= len(piece)
        files, written = files + 1, written + size
    sub = small_count = 0
    while written < target:
        if small_count % 500 == 0:
            sub += 1
            (small_dir / f"d{sub:03d}").mkdir()
        small_count += 1
        size = rng.randint(1, 64) * 1024
        start = rng.randrange(len(corpus) - size)
        data = corpus[start:start + size] if files % 2 else os.urandom(size)
        (small_dir / f"d{sub:03d}" / f"f-{files:06d}").write_bytes(data)
        files, written = files + 1, written + size
    # The remote user of the fleet is not root: it must read everything.
    for directory, _dirs, _files in os.walk(root):
        os.chmod(directory, 0o755)
    return files, written


# -- contenders ----------------------------------------------------------------------


def add_jobs(fleet: Fleet, tree: Path, small: Path, archives: Path) -> None:
    """Append the benchmark's backup jobs to the fleet's itop.yaml."""
    jobs = [("full-gzip", tree, "gzip"), ("full-none", tree, "none"), ("small-gzip", small, "gzip")]
    lines = ["backups:", f"  destination_root: {archives}", "  jobs:"]
    for name, source, compression in jobs:
        lines += [
            f"    - name: {name}",
            "      hosts: h0001",
            f"      sources: [{source}]",
            f"      compression: {compression}",
            "      verify: {when: never}",
            "",
        ]
    with open(fleet.config_path, "a") as config:
        config.write("\n".join(lines) + "\n")


def run_itop(fleet: Fleet, job: str, archives: Path) -> Measured:
    argv = [sys.executable, "-m", "itop_tui", "backup", "run", job]
    result, _text = measure(argv, env=fleet.itop_env())
    result.output_bytes = sum(p.stat().st_size for p in archives.rglob("*.tar*"))
    shutil.rmtree(archives, ignore_errors=True)
    return result


def run_openssh(fleet: Fleet, tree: Path, out: Path, pipe: bool) -> Measured:
    member = str(tree).lstrip("/")
    remote = f"tar cf - -C / {member} | gzip -c" if pipe else f"tar czf - -C / {member}"
    shell = f"ssh -F {fleet.ssh_config} h0001 '{remote}' > {out}"
    result, _text = measure(["/bin/sh", "-c", shell])
    result.output_bytes = out.stat().st_size
    out.unlink()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="tree size (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every contender")
    parser.add_argument("--base-dir", type=Path, default=Path("/var/tmp"),
                        help="where the tree and the archives go (needs about 3x the size)")
    args = parser.parse_args()
    if not Path(TIME).exists():
        print(f"{TIME} is missing: apt-get install time", file=sys.stderr)
        return 2
    stop_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="itop-bench-backup-", dir=args.base_dir))
    try:
        work.chmod(0o755)
        tree = work / "tree"
        started = time.perf_counter()
        files, size = make_tree(tree, args.size_mib)
        made_in = time.perf_counter() - started
        small = tree / "small"
        small_bytes = sum(p.stat().st_size for p in small.rglob("*") if p.is_file())
        archives = work / "archives"
        with open_fleet(1, base_dir=work) as fleet:
            add_jobs(fleet, tree, small, archives)
            contenders = {
                "openssh-czf": lambda: run_openssh(fleet, tree, work / "out.tar.gz", pipe=False),
                "openssh-gzip-pipe": lambda: run_openssh(fleet, tree, work / "out.tar.gz",
                                                         pipe=True),
                "itop-gzip": lambda: run_itop(fleet, "full-gzip", archives),
                "itop-none": lambda: run_itop(fleet, "full-none", archives),
            }
            names = list(contenders)
            results: dict[str, list[Measured]] = {name: [] for name in names}
            for number in range(args.rounds):
                order = names[number % len(names):] + names[:number % len(names)]
                for name in order:
                    results[name].append(contenders[name]())
                    print(f"round {number + 1}: {name} {results[name][-1].wall:.1f}s",
                          file=sys.stderr)
            small_run = run_itop(fleet, "small-gzip", archives)

    finally:
        shutil.rmtree(work, ignore_errors=True)

    walls = {name: statistics.median(r.wall for r in runs) for name, runs in results.items()}
    ratio = walls["itop-gzip"] / walls["openssh-czf"]
    rss_full = max(r.max_rss for r in results["itop-gzip"])
    rss_small = small_run.max_rss
    flat = rss_full - rss_small <= RSS_FLAT_MIB * MIB
    data: dict[str, object] = {
        "tree": {"files": files, "bytes": size, "small_subset_bytes": small_bytes,
                 "generated_seconds": round(made_in, 1)},
        "rounds": args.rounds,
        "contenders": {
            name: {
                "wall": summary(r.wall for r in runs),
                "cpu": summary(r.cpu for r in runs),
                "max_rss_mib": summary(r.max_rss / MIB for r in runs),
                "output_bytes": runs[-1].output_bytes,
            }
            for name, runs in results.items()
        },
        "itop_small_subset": {"wall": small_run.wall, "max_rss_mib": small_run.max_rss / MIB},
        "ratio_itop_gzip_vs_openssh_czf": ratio,
        "budget_ratio": BUDGET_RATIO,
        "rss_full_mib": rss_full / MIB,
        "rss_small_mib": rss_small / MIB,
        "rss_flat_allowance_mib": RSS_FLAT_MIB,
    }
    lines = [
        f"tree: {files} files, {size / MIB:.0f} MiB (small subset {small_bytes / MIB:.0f} MiB)",
        *(f"{name:18} wall {walls[name]:6.1f}s  cpu {statistics.median(r.cpu for r in runs):6.1f}s"
          f"  peak RSS {max(r.max_rss for r in runs) / MIB:6.1f} MiB"
          f"  output {runs[-1].output_bytes / MIB:7.1f} MiB"
          for name, runs in results.items()),
        f"itop-gzip vs openssh-czf: {ratio:.2f}x (budget {BUDGET_RATIO}x) {verdict(ratio <= BUDGET_RATIO)}",
        f"itop peak RSS: {rss_full / MIB:.1f} MiB on the full tree, {rss_small / MIB:.1f} MiB on "
        f"the small subset (flat within {RSS_FLAT_MIB} MiB) {verdict(flat)}",
    ]
    emit("backup_tar", data, lines)
    return 0 if ratio <= BUDGET_RATIO and flat else 1


if __name__ == "__main__":
    sys.exit(main())
