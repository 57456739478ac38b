"""`itop` as a subprocess against the real sshd fixture: import, trust, run,
discover, audit, and host keys that are unknown or changed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
from cli_helpers import ItopCli, ssh_config

pytestmark = pytest.mark.integration


def sshd_itop(tmp_path: Path, sshd: Any, name: str = "itop") -> ItopCli:
    """`python -m itop_tui` with a config pointing at the fixture's ssh files."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(ssh_config(sshd) + "run:\n  timeout: 30\n")
    return ItopCli(config, tmp_path / f"{name}-data", timeout=90)


def test_import_trust_run_discover_and_audit(tmp_path: Path, sshd: Any) -> None:
    itop = sshd_itop(tmp_path, sshd)
    fingerprint = sshd.host_key_fingerprint()
    imported = itop.json("inventory", "import", str(sshd.ssh_config), "--format", "ssh-config")
    assert (imported["hosts"], imported["added"]) == (3, 3)
    names = {h["name"] for h in itop.json("inventory", "list", "source:ssh-config*")}
    assert names == {"testhost", "testhost2", "jumped"}

    # Strict host keys: nothing is trusted in a fresh data dir.
    done = itop("run", "testhost", "--", "echo hi")
    assert done.returncode == 1
    assert fingerprint in done.stderr
    assert "itop trust testhost" in done.stderr
    assert "---------------- testhost (error)" in done.stdout

    done = itop("trust", "testhost")
    assert done.returncode == 2
    assert "--yes" in done.stderr
    done = itop("trust", "testhost", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"fingerprint: {fingerprint}" in done.stdout
    assert "address:     127.0.0.1" in done.stdout
    assert f"port:        {sshd.port}" in done.stdout
    known = (itop.data_dir / "known_hosts").read_text()
    assert f"[127.0.0.1]:{sshd.port} {sshd.host_key_data()}" in known

    # `jumped` goes through testhost (now trusted) to 127.0.0.2 (not yet).
    done = itop("run", "testhost:jumped", "--", "echo hi")
    assert done.returncode == 1
    assert "---------------- testhost (exit 0)\nhi\n" in done.stdout
    assert "itop trust jumped" in done.stderr
    done = itop("trust", "jumped", "--yes")
    assert done.returncode == 0, done.stderr
    assert "address:     127.0.0.2" in done.stdout
    assert itop("trust", "jumped", "--yes").stdout.strip().endswith("is trusted already")

    done = itop("run", "testhost:jumped", "--", "echo $((6*7))")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "---------------- jumped,testhost (exit 0)\n42\n"
    results = itop.json("run", "testhost:jumped", "--forks", "1", "--", "hostname")
    assert [(r["host"], r["ok"], r["exit_status"]) for r in results] == [
        ("testhost", True, 0), ("jumped", True, 0)]

    discovered = itop.json("inventory", "discover", "testhost:jumped")
    assert [(r["host"], r["ok"]) for r in discovered] == [("testhost", True), ("jumped", True)]
    for name in ("testhost", "jumped"):
        facts = itop.json("inventory", "show", name)["facts"]
        assert facts["cpu_count"] == psutil.cpu_count()
        assert facts["mem_total"] == psutil.virtual_memory().total

    runs = itop.json("audit", "list", "--action", "run")
    pairs = [(e["target"], e["result"]) for e in runs]
    # One event per host and run; hosts of one run finish in any order.
    assert len(pairs) == 7
    assert pairs[0] == ("testhost", "failed")
    assert sorted(pairs[1:3]) == [("jumped", "failed"), ("testhost", "ok")]
    assert sorted(pairs[3:5]) == sorted(pairs[5:7]) == [("jumped", "ok"), ("testhost", "ok")]
    assert {e["detail"]["command"] for e in runs} == {"echo hi", "echo $((6*7))", "hostname"}
    assert all(e["origin"] == "cli" for e in runs)
    trusts = itop.json("audit", "list", "--action", "host.trust")
    assert [e["detail"]["fingerprint"] for e in trusts] == [fingerprint, fingerprint]
    assert sorted(e["target"] for e in itop.json("audit", "list", "--action", "discover")) == [
        "jumped", "testhost"]
    done = itop("audit", "verify")
    assert done.returncode == 0, done.stderr
    assert "the hash chain is intact" in done.stdout


def test_trusting_a_jumped_host_offers_the_unknown_hop_first(tmp_path: Path, sshd: Any) -> None:
    itop = sshd_itop(tmp_path, sshd)
    assert itop("inventory", "add", "jumped").returncode == 0
    done = itop("trust", "jumped", "--yes")
    assert done.returncode == 0, done.stderr
    assert "jump host testhost" in done.stdout
    assert done.stdout.count(f"fingerprint: {sshd.host_key_fingerprint()}") == 2
    done = itop("run", "jumped", "--", "echo through")
    assert (done.returncode, done.stdout) == (0, "---------------- jumped (exit 0)\nthrough\n")


def test_changed_host_key_is_refused(tmp_path: Path, sshd: Any) -> None:
    itop = sshd_itop(tmp_path, sshd)
    itop.data_dir.mkdir()
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    other_type, other_b64 = other.with_name("other_key.pub").read_text().split()[:2]
    other_fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(other.with_name("other_key.pub"))],
        capture_output=True, text=True, check=True,
    ).stdout.split()[1]
    known_hosts = itop.data_dir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other_type} {other_b64}\n")
    assert itop("inventory", "add", "testhost").returncode == 0

    done = itop("run", "testhost", "--", "echo never")
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "HOST KEY CHANGED" in output
    assert other_fingerprint in output and sshd.host_key_fingerprint() in output
    assert "never" not in done.stdout

    done = itop("trust", "testhost", "--yes")
    assert done.returncode == 1
    assert "HOST KEY CHANGED" in done.stderr
    assert other_fingerprint in done.stderr and sshd.host_key_fingerprint() in done.stderr
    assert known_hosts.read_text() == f"[127.0.0.1]:{sshd.port} {other_type} {other_b64}\n"
    failed = itop.json("audit", "list", "--action", "run")
    assert [(e["target"], e["result"]) for e in failed] == [("testhost", "failed")]
    assert itop.json("audit", "list", "--action", "host.trust") == []
