"""The `itop` command line, run as a real subprocess against this machine.

Each test gets its own config file (via ITOP_CONFIG) and data dir. The only
network address ever used is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from cli_helpers import ItopCli

from itop_tui import __version__
from itop_tui.cli import COMMANDS

CONFIG = """\
ssh:
  connect_timeout: 2
  connect_retries: 0
  config_files: []
  known_hosts_files: []
  use_agent: false
run:
  forks: 4
  timeout: 20
"""


class Itop(ItopCli):
    """`python -m itop_tui` with a private config and data dir; audit events read by itop."""

    def __init__(self, config: Path, data_dir: Path) -> None:
        super().__init__(config, data_dir, timeout=60)

    def audit(self) -> list[dict[str, Any]]:
        events = self.json("audit", "list")
        assert isinstance(events, list)
        return events


@pytest.fixture
def itop(tmp_path: Path) -> Itop:
    config = tmp_path / "itop.yaml"
    config.write_text(CONFIG)
    return Itop(config, tmp_path / "data")


def local_name() -> str:
    return socket.gethostname().split(".", 1)[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- help, version, config -----------------------------------------------------


def test_help_lists_every_subcommand(itop: Itop) -> None:
    done = itop("--help")
    assert done.returncode == 0
    for name, description in COMMANDS:
        assert f"itop {name}" in done.stdout
        assert description in done.stdout
    for command in ("check-config", "inventory", "run", "audit", "trust"):
        assert command in done.stdout
    done = itop("inventory", "--help")
    for action in ("list", "show", "import", "export", "add", "remove", "set", "discover"):
        assert action in done.stdout
    assert "edit" not in done.stdout  # there is no such action: `set` changes hosts
    top = " ".join(itop("--help").stdout.split())
    assert "inventory list, show, import, export, add, remove, set and discover hosts" in top


def test_the_tui_and_version_start_without_the_command_modules(itop: Itop) -> None:
    """`itop`, `itop --read-only` and `itop --version` parse without importing the
    command modules (their imports would slow the terminal UI's first paint)."""
    probe = (
        "import sys\n"
        "from itop_tui.cli import EXTENSIONS, main, parse_args\n"
        "args = parse_args(sys.argv[1:])\n"
        "assert args.command is None and not hasattr(args, 'handler'), args\n"
        "assert args.read_only == ('--read-only' in sys.argv), args\n"
        "assert [m for m in EXTENSIONS if m in sys.modules] == [], sys.argv\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in EXTENSIONS if m in sys.modules))\n"
    )
    for words in ([], ["--read-only"], ["--config", str(itop.config), "--data-dir=x"]):
        done = subprocess.run([sys.executable, "-c", probe, *words], capture_output=True,
                              text=True, timeout=60, env=itop.env())
        assert (done.returncode, done.stderr) == (0, ""), words
        assert done.stdout.splitlines() == ["itop 0.1.0".replace("0.1.0", __version__), "[]"]


def test_global_option_errors_read_as_they_always_did(itop: Itop) -> None:
    for args, message in (
        (("--config",), "itop: argument --config: expected one argument"),
        (("--bogus",), "itop: unrecognized arguments: --bogus"),
        (("--read-only", "--data-dir"), "itop: argument --data-dir: expected one argument"),
    ):
        done = itop(*args)
        assert done.returncode == 2, args
        # The usage is the full parser's, which lists the commands.
        assert done.stderr.splitlines()[0] == message
        assert "COMMAND ..." in done.stderr


def test_version(itop: Itop) -> None:
    done = itop("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"itop {__version__}")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("ssh:\n  host_key_policy: lax\n", ":2: ssh.host_key_policy: must be one of strict, accept-new"),
        ("run:\n  forkz: 2\n", ":2: run.forkz: unknown key (did you mean 'forks'?)"),
        ("run:\n  forks: many\n", ":2: run.forks: expected an integer"),
        ("run: {forks: 2\n", ":2: (yaml): invalid YAML"),
    ],
)
def test_bad_config_exits_2_naming_file_line_and_field(itop: Itop, text: str, where: str) -> None:
    itop.config.write_text(text)
    for args in (("inventory", "list"), ("check-config",), ("check-config", str(itop.config))):
        done = itop(*args)
        assert done.returncode == 2, args
        assert f"{itop.config}{where}" in done.stderr
        assert done.stdout == ""
    assert not itop.data_dir.exists()  # nothing opened with a broken config


def test_check_config_ok(itop: Itop, tmp_path: Path) -> None:
    done = itop("check-config")
    assert done.returncode == 0
    assert f"{itop.config}: ok" in done.stdout
    assert f"data dir: {itop.data_dir}" in done.stdout
    example = Path(__file__).resolve().parents[2] / "config" / "itop.example.yaml"
    assert itop("check-config", str(example)).returncode == 0
    missing = tmp_path / "missing.yaml"
    done = itop("check-config", str(missing))
    assert done.returncode == 2
    assert f"{missing}: (file): config file not found" in done.stderr


def test_usage_errors_exit_2(itop: Itop) -> None:
    for args in (
        ("bogus",),
        ("inventory",),
        ("run", "all"),
        ("run", "all", "--forks", "0", "--", "true"),
        ("run", "all", "--timeout", "soon", "--", "true"),
        ("audit", "list", "--since", "5 fortnights"),
        ("inventory", "list", "--", "x"),
    ):
        done = itop(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip(), args


def test_tui_needs_a_terminal(itop: Itop) -> None:
    done = itop()
    assert done.returncode == 2
    assert "needs a terminal" in done.stderr


# -- inventory -----------------------------------------------------------------


def test_fresh_data_dir_holds_this_machine(itop: Itop) -> None:
    hosts = itop.json("inventory", "list")
    assert isinstance(hosts, list) and len(hosts) == 1
    host = hosts[0]
    assert host["name"] == local_name()
    assert (host["address"], host["class"], host["status"], host["source"]) == (
        "local", "server", "development", "embedded",
    )
    for key in ("name", "address", "port", "user", "groups", "tags", "status", "criticality",
                "vars", "facts"):
        assert key in host
    assert stat.S_IMODE(itop.data_dir.stat().st_mode) == 0o700
    assert (itop.data_dir / "inventory.json").exists()
    events = itop.audit()
    assert [(e["action"], e["target"]) for e in events] == [("inventory.add", local_name())]


def test_add_show_set_remove(itop: Itop) -> None:
    done = itop("inventory", "add", "web01", "--address", "127.0.0.1", "--port", "2222",
                "--user", "deploy", "--group", "web", "--group", "prod", "--tag", "frontend",
                "--status", "production", "--class", "vm", "--criticality", "high",
                "--var", "http_port=8080", "--notes", "first web")
    assert done.returncode == 0, done.stderr
    host = itop.json("inventory", "show", "web01")
    assert isinstance(host, dict)
    assert {k: host[k] for k in ("address", "port", "user", "groups", "tags", "status", "class",
                                 "criticality", "vars", "notes", "source")} == {
        "address": "127.0.0.1", "port": 2222, "user": "deploy", "groups": ["web", "prod"],
        "tags": ["frontend"], "status": "production", "class": "vm", "criticality": "high",
        "vars": {"http_port": "8080"}, "notes": "first web", "source": "manual",
    }
    text = itop("inventory", "show", "web01").stdout
    assert "address:     127.0.0.1" in text and "http_port" in text

    done = itop("inventory", "set", "web01", "status=staging", "groups=web,canary", "user=",
                "vars.http_port=", "vars.role=frontend", "port=22")
    assert done.returncode == 0, done.stderr
    host = itop.json("inventory", "show", "web01")
    assert isinstance(host, dict)
    assert (host["status"], host["groups"], host["user"], host["vars"], host["port"]) == (
        "staging", ["web", "canary"], None, {"role": "frontend"}, 22,
    )
    names = [h["name"] for h in itop.json("inventory", "list", "web")]
    assert names == ["web01"]
    names = [h["name"] for h in itop.json("inventory", "list", "status:staging")]
    assert names == ["web01"]

    assert itop("inventory", "remove", "web01").returncode == 0
    assert itop("inventory", "show", "web01").returncode == 2
    actions = [(e["action"], e["target"]) for e in itop.audit()]
    assert actions[-3:] == [("inventory.add", "web01"), ("inventory.set", "web01"),
                            ("inventory.remove", "web01")]


def test_inventory_input_errors_exit_2(itop: Itop) -> None:
    assert itop("inventory", "add", "web01").returncode == 0
    cases = {
        ("inventory", "add", "web01"): "exists already",
        ("inventory", "add", "bad", "--port", "70000"): "port",
        ("inventory", "add", "bad", "--var", "novalue"): "KEY=VALUE",
        ("inventory", "show", "nope"): "unknown host 'nope'",
        ("inventory", "remove", "nope"): "unknown host 'nope'",
        ("inventory", "set", "nope", "status=staging"): "unknown host 'nope'",
        ("inventory", "set", "web01", "status=broken"): "invalid status",
        ("inventory", "set", "web01", "port=abc"): "invalid port",
        ("inventory", "set", "web01", "facts=x"): "cannot be set",
        ("inventory", "set", "web01", "status"): "FIELD=VALUE",
        ("inventory", "list", "status:bogus"): "bogus",
    }
    for args, words in cases.items():
        done = itop(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr, (args, done.stderr)


def test_import_is_idempotent_and_reports_counts(itop: Itop, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[web]\nweb[01:03] ansible_host=127.0.0.1\n\n[db]\ndb1 ansible_port=2200\n\n"
        "[prod:children]\nweb\ndb\n\n[web:vars]\nhttp_port=80\n"
    )
    first = itop.json("inventory", "import", str(inventory))
    assert first == {
        "file": str(inventory), "source": first["source"], "hosts": 4, "added": 4,
        "updated": 0, "unchanged": 0, "groups": first["groups"],
        "groups_added": first["groups_added"], "groups_updated": 0, "warnings": [],
    }
    again = itop("inventory", "import", str(inventory), "--format", "ansible")
    assert again.returncode == 0
    assert f"{inventory}: 4 hosts (0 added, 0 updated, 4 unchanged)" in again.stdout
    hosts = {h["name"]: h for h in itop.json("inventory", "list", "prod")}
    assert sorted(hosts) == ["db1", "web01", "web02", "web03"]
    assert hosts["db1"]["port"] == 2200
    assert len(itop.json("inventory", "list")) == 5
    assert [e["action"] for e in itop.audit()].count("inventory.import") == 2

    broken = tmp_path / "broken.csv"
    broken.write_text("name,port\nweb9,notaport\n")
    done = itop("inventory", "import", str(broken))
    assert done.returncode == 2
    assert str(broken) in done.stderr and ":2" in done.stderr


def test_export_round_trips(itop: Itop, tmp_path: Path) -> None:
    itop("inventory", "add", "web01", "--address", "127.0.0.1", "--group", "web", "--tag", "t1",
         "--status", "production", "--var", "k=v")
    itop("inventory", "add", "db1", "--port", "2200", "--user", "pg", "--criticality", "high")
    exported = json.loads(itop("inventory", "export", "--format", "json").stdout)
    assert sorted(h["name"] for h in exported["hosts"]) == sorted(["web01", "db1", local_name()])

    out = tmp_path / "fleet.csv"
    done = itop("inventory", "export", "--format", "csv", "-o", str(out))
    assert done.returncode == 0 and done.stdout == ""
    other = Itop(itop.config, tmp_path / "other-data")
    assert other.json("inventory", "import", str(out))["added"] == 2

    def shape(hosts: object) -> dict[str, tuple[object, ...]]:
        assert isinstance(hosts, list)
        return {h["name"]: (h["address"], h["port"], h["user"], h["groups"], h["tags"],
                            h["status"], h["criticality"], h["vars"]) for h in hosts}

    assert shape(other.json("inventory", "list")) == shape(itop.json("inventory", "list"))
    ansible = itop("inventory", "export", "--format", "ansible")
    assert ansible.returncode == 0 and "web01" in ansible.stdout


def test_discover_this_machine(itop: Itop) -> None:
    results = itop.json("inventory", "discover")
    assert isinstance(results, list) and len(results) == 1
    result = results[0]
    assert (result["host"], result["ok"], result["error"]) == (local_name(), True, None)
    host = itop.json("inventory", "show", local_name())
    assert isinstance(host, dict)
    facts = host["facts"]
    assert facts["cpu_count"] == psutil.cpu_count()
    assert facts["mem_total"] == psutil.virtual_memory().total
    assert host["facts_at"] == result["facts_at"]
    assert host["last_seen"] == result["facts_at"]
    events = [e for e in itop.audit() if e["action"] == "discover"]
    assert [(e["target"], e["result"]) for e in events] == [(local_name(), "ok")]
    text = itop("inventory", "discover", local_name())
    assert text.returncode == 0
    assert text.stdout.startswith(f"{local_name()}: ok  ")
    assert f"{psutil.cpu_count()} CPUs" in text.stdout


# -- run -----------------------------------------------------------------------


def test_run_on_this_machine(itop: Itop) -> None:
    name = local_name()
    done = itop("run", "all", "--", "echo", "hello;", "echo", "oops", ">&2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"---------------- {name} (exit 0)\nhello\noops\n"
    results = itop.json("run", name, "--timeout", "10", "--", "printf '%s' \"$((6*7))\"")
    assert results == [{
        "host": name, "command": "printf '%s' \"$((6*7))\"", "exit_status": 0, "stdout": "42",
        "stderr": "", "duration": results[0]["duration"], "truncated": False,
        "error": None, "ok": True,
    }]
    runs = [e for e in itop.audit() if e["action"] == "run"]
    assert len(runs) == 2
    assert runs[1]["target"] == name and runs[1]["result"] == "ok"
    detail = runs[1]["detail"]
    assert isinstance(detail, dict)
    assert (detail["command"], detail["exit_status"], detail["error"]) == (
        "printf '%s' \"$((6*7))\"", 0, None)
    assert itop.json("inventory", "show", name)["last_seen"]


def test_run_exits_1_when_a_host_fails(itop: Itop) -> None:
    name = local_name()
    port = closed_port()
    itop("inventory", "add", "down", "--address", "127.0.0.1", "--port", str(port))
    itop("inventory", "add", "twin", "--address", "local")
    done = itop("run", "all", "--", "echo same")
    assert done.returncode == 1
    assert done.stdout.startswith(f"---------------- {','.join(sorted([name, 'twin']))} (exit 0)\nsame\n")
    assert "---------------- down (error)\n" in done.stdout
    assert "connection refused" in done.stdout
    assert "1 of 3 hosts failed" in done.stderr
    results = {r["host"]: r for r in itop.json("run", "all", "--", "true", status=1)
               if isinstance(r, dict)}
    assert results["down"]["exit_status"] is None and results["down"]["ok"] is False
    done = itop("run", "twin", "--", "exit 3")
    assert done.returncode == 1
    assert done.stdout == "---------------- twin (exit 3)\n"
    failed = [e for e in itop.audit() if e["action"] == "run" and e["result"] == "failed"]
    assert sorted(e["target"] for e in failed) == ["down", "down", "twin"]
    assert itop("run", "nothing*", "--", "true").returncode == 2


def test_read_only_refuses_changes(itop: Itop) -> None:
    itop("inventory", "list")
    before = len(itop.audit())
    for args in (("run", "all", "--", "true"), ("inventory", "add", "x"),
                 ("inventory", "discover"), ("inventory", "remove", local_name())):
        done = itop("--read-only", *args)
        assert done.returncode == 1, args
        assert "read-only" in done.stderr
    assert itop("inventory", "list", "--read-only").returncode == 0
    assert len(itop.audit()) == before


def sleep_processes(pid: int) -> list[psutil.Process]:
    """Running `sleep` processes below ``pid``."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() == "sleep" and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_interrupted_run_exits_130_and_audits_cancelled(itop: Itop) -> None:
    itop("inventory", "list")
    proc = subprocess.Popen(itop.argv("run", "all", "--", "sleep 30"), env=itop.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        sleepers: list[psutil.Process] = []
        while time.monotonic() < deadline and not sleepers:
            sleepers = sleep_processes(proc.pid)
            time.sleep(0.05)
        assert sleepers, "the command never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    gone, alive = psutil.wait_procs(sleepers, timeout=5)
    assert not alive, "the remote command outlived the interrupt"
    last = itop.audit()[-1]
    assert (last["action"], last["target"], last["result"]) == ("run", local_name(), "cancelled")


# -- audit ---------------------------------------------------------------------


def test_audit_list_filters_and_verify(itop: Itop) -> None:
    itop("inventory", "add", "a1")
    itop("inventory", "add", "a2")
    itop("run", local_name(), "--", "true")
    events = itop.audit()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["target"] for e in itop.json("audit", "list", "--action", "inventory.add")] == [
        local_name(), "a1", "a2"]
    assert [e["seq"] for e in itop.json("audit", "list", "--limit", "2")] == [
        len(events) - 1, len(events)]
    assert len(itop.json("audit", "list", "--since", "1h")) == len(events)
    text = itop("audit", "list").stdout.splitlines()
    assert len(text) == len(events) and "run" in text[-1]

    done = itop("audit", "verify")
    assert done.returncode == 0
    assert f"{len(events)} events, the hash chain is intact" in done.stdout


def test_audit_since_takes_a_negative_duration_as_journalctl_does(itop: Itop) -> None:
    itop("inventory", "add", "a1")
    events = itop.json("audit", "list", "--since", "-1h")
    assert [e["target"] for e in events][-1] == "a1"
    assert itop.json("audit", "list", "--since=-1h") == events
    done = itop("audit", "list", "--since")
    assert done.returncode == 2
    assert done.stderr.startswith("itop audit list: argument --since: expected one argument")


def test_audit_since_in_the_future_is_an_input_error(itop: Itop) -> None:
    done = itop("audit", "list", "--since", "2999-01-01")
    assert done.returncode == 2
    assert "in the future" in done.stderr


def test_audit_verify_fails_after_the_log_is_edited(itop: Itop) -> None:
    itop("inventory", "add", "a1")
    itop("inventory", "add", "a2", "--tag", "x")
    log = itop.data_dir / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    lines[1] = lines[1].replace('"a1"', '"zz"')
    log.write_text("".join(lines))
    done = itop("audit", "verify")
    assert done.returncode == 1
    assert "line 2" in done.stderr and "modified" in done.stderr


def test_inventory_show_aligns_every_label_even_the_longest() -> None:
    from itop_tui.cli import _show_lines
    from itop_tui.domain.models import Host

    host = Host(name="web01", address="127.0.0.1", identity_file="/keys/web", proxy_jump="bastion")
    lines = [line for line in _show_lines(host) if not line.startswith(" ") and ": " in line]
    columns = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}
    assert len(columns) == 1, lines
    assert "identity_file: /keys/web" in "\n".join(lines)
