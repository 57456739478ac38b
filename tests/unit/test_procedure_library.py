"""The built-in procedure library: loads, matches the schema, and its read-only steps really run here.

Read-only steps (checks and ``mutates: false`` commands) run on this machine
through ``sh -c``, once with the normal PATH and once with a PATH holding
only basic tools, so a missing tool must be detected and explained rather
than failing with "not found" (exit 127). Mutating steps are only
syntax-checked, except log rotation, which runs on a temporary file.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from itop_tui.domain.procedure import Procedure, Step
from itop_tui.domain.procedure_loader import (
    EXPECT_KEYS,
    PROCEDURE_KEYS,
    STEP_KEYS_BY_KIND,
    UNTIL_KEYS,
    VARIABLE_KEYS,
    ProcedureFormatError,
    dump_procedure,
    load_procedure,
    procedure_from_dict,
)
from itop_tui.domain.substitution import builtin_values, render_command, resolve_values

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "config" / "procedures"
SCHEMA_PATH = LIBRARY / "schema.json"
FILES = sorted(LIBRARY.glob("*.yaml"))
REQUIRED_TOPICS = {
    "disk-space-triage", "high-load-triage", "restart-service", "security-updates", "rotate-log",
    "add-user-ssh-key", "cert-expiry-check", "time-sync-check", "new-server-baseline",
    "decommission-checklist",
}
# A real ed25519 public key (its private half was thrown away).
SAMPLE_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN3iNUwuNdd9k1khVOgxD4Gln2Bqbx9jpwBeQ5ldHWTa itop-test"
)
BASHISMS = (r"\[\[ ", r"<<<", r"(^|\s)(function|source|declare|local|let)\s", r"\$'", r"\w+=\(")
# Tools every Debian or RHEL host has (POSIX, coreutils, findutils, grep, sed,
# gawk/mawk, gzip, libc's getent/getconf). Anything else must be detected.
BASE_TOOLS = [
    "sh", "awk", "sed", "grep", "cat", "cut", "sort", "uniq", "head", "tail", "wc", "tr",
    "date", "id", "ls", "stat", "readlink", "find", "df", "du", "timeout", "sleep", "getconf",
    "uname", "mktemp", "dirname", "basename", "getent", "gzip", "env", "expr", "xargs", "who",
    "printf", "test", "[", "true", "false", "mv", "cp", "rm", "mkdir", "chmod", "chown",
    "nproc", "tee",
]


def load_file(path: Path) -> Procedure:
    return load_procedure(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


@pytest.fixture(scope="module")
def library() -> dict[str, Procedure]:
    return {path.stem: load_file(path) for path in FILES}


# -- loading and hashing -----------------------------------------------------------


def test_the_library_has_the_required_procedures(library: dict[str, Procedure]) -> None:
    assert len(library) >= 10
    assert set(library) >= REQUIRED_TOPICS
    for stem, procedure in library.items():
        assert procedure.id == stem, f"{stem}.yaml holds procedure {procedure.id!r}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_file_loads_and_hashes_stably(path: Path) -> None:
    first, second = load_file(path), load_file(path)
    assert first == second
    assert first.content_hash() == second.content_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", first.content_hash())
    assert load_procedure(dump_procedure(first), "dumped").content_hash() == first.content_hash()
    assert procedure_from_dict(first.to_dict()) == first
    assert procedure_from_dict(json.loads(first.canonical_json())).content_hash() == first.content_hash()


def test_hashes_differ_between_procedures(library: dict[str, Procedure]) -> None:
    hashes = [procedure.content_hash() for procedure in library.values()]
    assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_procedure_is_written_for_people_and_check_mode(path: Path) -> None:
    procedure = load_file(path)
    assert procedure.description.strip(), "say what the procedure is for"
    assert any(step.runs_in_check_mode and step.runs_command for step in procedure.steps), (
        "check mode would run nothing"
    )
    for step in procedure.steps:
        if step.runs_command:
            assert step.command is not None
            # No bash-only syntax: the commands run under POSIX sh (dash here).
            for bashism in BASHISMS:
                assert not re.search(bashism, step.command), f"{step.id}: /{bashism}/ is not POSIX sh"


# -- schema ------------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def schema_errors(instance: Any, node: dict[str, Any], root: dict[str, Any], path: str = "") -> list[str]:
    """A small JSON Schema checker for the keywords schema.json uses."""
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return schema_errors(instance, target, root, path)
    errors: list[str] = []
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if "type" in node:
        wanted = node["type"] if isinstance(node["type"], list) else [node["type"]]
        ok = False
        for kind in wanted:
            if kind == "integer":
                ok |= isinstance(instance, int) and not isinstance(instance, bool)
            elif kind == "number":
                ok |= isinstance(instance, int | float) and not isinstance(instance, bool)
            else:
                ok |= isinstance(instance, types[kind])
        if not ok:
            return [f"{path}: not of type {wanted}"]
    if "const" in node and instance != node["const"]:
        errors.append(f"{path}: not {node['const']!r}")
    if "enum" in node and instance not in node["enum"]:
        errors.append(f"{path}: not one of {node['enum']}")
    if "not" in node and not schema_errors(instance, node["not"], root, path):
        errors.append(f"{path}: matches a forbidden schema")
    if isinstance(instance, str):
        if len(instance) < node.get("minLength", 0):
            errors.append(f"{path}: too short")
        if "pattern" in node and not re.search(node["pattern"], instance):
            errors.append(f"{path}: does not match {node['pattern']}")
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        if "minimum" in node and instance < node["minimum"]:
            errors.append(f"{path}: below minimum")
        if "maximum" in node and instance > node["maximum"]:
            errors.append(f"{path}: above maximum")
        if "exclusiveMinimum" in node and instance <= node["exclusiveMinimum"]:
            errors.append(f"{path}: not above exclusiveMinimum")
    if isinstance(instance, dict):
        for key in node.get("required", []):
            if key not in instance:
                errors.append(f"{path}.{key}: required")
        properties = node.get("properties", {})
        for key, value in instance.items():
            if key in properties:
                errors += schema_errors(value, properties[key], root, f"{path}.{key}")
            elif node.get("additionalProperties") is False:
                errors.append(f"{path}.{key}: not allowed")
    if isinstance(instance, list):
        if len(instance) < node.get("minItems", 0):
            errors.append(f"{path}: too few items")
        if node.get("uniqueItems") and len({json.dumps(i) for i in instance}) != len(instance):
            errors.append(f"{path}: items not unique")
        if "items" in node:
            for index, item in enumerate(instance):
                errors += schema_errors(item, node["items"], root, f"{path}[{index}]")
    if "oneOf" in node:
        matches = [not schema_errors(instance, option, root, path) for option in node["oneOf"]]
        if matches.count(True) != 1:
            errors.append(f"{path}: matches {matches.count(True)} of the oneOf schemas, not exactly one")
    return errors


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_file_matches_the_schema(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert schema_errors(document, schema(), schema()) == []


def test_the_reference_validator_agrees_when_installed() -> None:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed; the hand-written check above covers the library"
    )
    validator_class = jsonschema.Draft202012Validator
    validator_class.check_schema(schema())
    validator = validator_class(schema())
    for path in FILES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert list(validator.iter_errors(document)) == [], path.name


def test_schema_keys_match_the_loaders_keys() -> None:
    document = schema()
    definitions = document["$defs"]
    assert tuple(document["properties"]) == PROCEDURE_KEYS
    assert set(document["required"]) == {"id", "title", "version", "steps"}
    assert tuple(definitions["variable"]["properties"]) == VARIABLE_KEYS
    assert tuple(definitions["expect"]["properties"]) == EXPECT_KEYS
    assert tuple(definitions["until"]["properties"]) == UNTIL_KEYS
    step_refs = [option["$ref"] for option in document["properties"]["steps"]["items"]["oneOf"]]
    assert step_refs == [f"#/$defs/{kind}Step" for kind in STEP_KEYS_BY_KIND]
    for kind, keys in STEP_KEYS_BY_KIND.items():
        step_schema = definitions[f"{kind}Step"]
        assert set(step_schema["properties"]) == set(keys), kind
        assert step_schema["properties"]["kind"] == {"const": kind}
        assert step_schema["additionalProperties"] is False


BROKEN = textwrap.dedent(
    """\
    id: broken
    title: Broken
    version: "1"
    steps:
      - id: a
        title: A
        kind: command
        command: "true"
    """
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("title: Broken\n", ""),
        ("kind: command", "kind: comand"),
        ('command: "true"', 'command: "true"\n    until: {timeout: 5}'),
        ('command: "true"', 'command: "true"\n    colour: red'),
        ('version: "1"', 'version: "1"\nserial: "150%"'),
        ('version: "1"', 'version: "1"\nstrategy: free'),
        ("kind: command\n", "kind: check\n    mutates: true\n"),
        ("kind: command\n    command: \"true\"\n", "kind: manual\n"),
        ("steps:\n", "variables:\n  - name: host\nsteps:\n"),
    ],
)
def test_schema_and_loader_both_refuse_broken_documents(old: str, new: str) -> None:
    assert old in BROKEN
    text = BROKEN.replace(old, new)
    with pytest.raises(ProcedureFormatError):
        load_procedure(text, "broken.yaml")
    assert schema_errors(yaml.safe_load(text), schema(), schema()) != []


def test_schema_accepts_the_unbroken_document() -> None:
    load_procedure(BROKEN, "ok.yaml")
    assert schema_errors(yaml.safe_load(BROKEN), schema(), schema()) == []


# -- running the read-only steps here -------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("library")


@pytest.fixture(scope="module")
def certificate(workdir: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: apt-get install openssl to test the certificate procedure")
    key, cert = workdir / "tls.key", workdir / "tls.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "10", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert


@pytest.fixture(scope="module")
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture(scope="module")
def samples(workdir: Path, certificate: Path, listening_port: int) -> dict[str, dict[str, str]]:
    """Variable values for each procedure, all pointing at harmless local things."""
    log = workdir / "app.log"
    log.write_text("".join(f"line {i}\n" for i in range(2000)))
    backups = workdir / "backups"
    backups.mkdir(exist_ok=True)
    (backups / "last-run.stamp").write_text("ok\n")
    return {
        "disk-space-triage": {"path": str(ROOT), "du_seconds": "10", "top": "5"},
        "restart-service": {"service": "ssh"},
        "rotate-log": {"path": str(log)},
        "add-user-ssh-key": {"user": "itop-nosuchuser", "ssh_key": SAMPLE_KEY, "full_name": "Test $(id) User"},
        "cert-expiry-check": {"certificate": str(certificate), "days": "5"},
        "decommission-checklist": {"ticket": "CHG-1", "backup_path": str(backups)},
        "port-listening-check": {"port": str(listening_port)},
        "new-server-baseline": {"users": "root"},
    }


def rendered_steps(procedure: Procedure, sample: dict[str, str]) -> list[tuple[Step, str]]:
    values = resolve_values(procedure.variables, sample, deferred=procedure.input_variable_names())
    values.update(builtin_values("local", "127.0.0.1"))
    result = []
    for step in procedure.steps:
        if step.command is not None:
            rendered = render_command(step.command, values, secret_names=procedure.secret_names())
            result.append((step, rendered.text))
    return result


def run_sh(command: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=timeout, env=env,
        stdin=subprocess.DEVNULL,
    )


def is_read_only(step: Step) -> bool:
    return step.kind == "check" or (step.kind == "command" and not step.mutates)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_command_parses_as_posix_sh(path: Path, samples: dict[str, dict[str, str]]) -> None:
    procedure = load_file(path)
    for step, command in rendered_steps(procedure, samples.get(procedure.id, {})):
        result = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, f"{step.id}: {result.stderr}"


def assert_ran_cleanly(step: Step, result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode not in (126, 127), f"{step.id}: exit {result.returncode}\n{output}"
    assert "syntax error" not in output.lower(), f"{step.id}:\n{output}"
    assert "not found" not in result.stderr, f"{step.id}: a missing tool was not detected\n{output}"
    assert output.strip(), f"{step.id}: printed nothing; say what was found"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_read_only_steps_run_here(path: Path, samples: dict[str, dict[str, str]]) -> None:
    procedure = load_file(path)
    for step, command in rendered_steps(procedure, samples.get(procedure.id, {})):
        if is_read_only(step):
            assert_ran_cleanly(step, run_sh(command, timeout=min(step.timeout or 60, 120)))


@pytest.fixture(scope="module")
def base_tools_path(workdir: Path) -> str:
    bin_dir = workdir / "base-bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in BASE_TOOLS:
        found = shutil.which(tool)
        if found is not None and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_read_only_steps_explain_missing_tools(
    path: Path, samples: dict[str, dict[str, str]], base_tools_path: str
) -> None:
    procedure = load_file(path)
    env = {"PATH": base_tools_path, "LC_ALL": "C"}
    for step, command in rendered_steps(procedure, samples.get(procedure.id, {})):
        if is_read_only(step):
            # Steps may add /usr/sbin; hide it too so sbin tools count as missing.
            hidden = command.replace("PATH=$PATH:/usr/sbin:/sbin", "PATH=$PATH")
            assert_ran_cleanly(step, run_sh(hidden, timeout=min(step.timeout or 60, 120), env=env))


# -- procedures that do what they say -----------------------------------------------------


def step_result(procedure_id: str, step_id: str, sample: dict[str, str],
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    procedure = load_file(LIBRARY / f"{procedure_id}.yaml")
    commands = dict((step.id, command) for step, command in rendered_steps(procedure, sample))
    return run_sh(commands[step_id], timeout=120, env=env)


def test_disk_triage_finds_a_deleted_file_held_open(tmp_path: Path) -> None:
    victim = tmp_path / "deleted-but-open.log"
    holder = subprocess.Popen(
        ["sh", "-c", f"exec 3>{victim}; head -c 100000 /dev/zero >&3; rm {victim}; exec sleep 30"],
    )
    try:
        for _ in range(50):
            if not victim.exists():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        result = step_result("disk-space-triage", "deleted-open", {"top": "50"})
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0
    assert f"{victim} (deleted)" in result.stdout
    assert "100000" in result.stdout


def test_disk_triage_threshold_check_passes_and_fails() -> None:
    assert step_result("disk-space-triage", "below-threshold", {"threshold": "99"}).returncode in (0, 1)
    # No real filesystem is below 1% use on every inode and block, so 1 must fail with a reason.
    failing = step_result("disk-space-triage", "below-threshold", {"threshold": "1"})
    assert failing.returncode == 1
    assert "above 1%" in failing.stdout


def test_high_load_limits_check() -> None:
    result = step_result("high-load-triage", "within-limits",
                         {"load_per_cpu": "1000", "min_available_percent": "0"})
    assert result.returncode == 0, result.stdout
    assert "load per CPU" in result.stdout


def test_rotate_log_rotates_keeps_copies_and_verifies(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    procedure = load_file(LIBRARY / "rotate-log.yaml")
    generations = []
    for generation in range(4):
        content = "".join(f"gen {generation} line {i}\n" for i in range(500))
        generations.append(content)
        log.write_text(content)
        os.chmod(log, 0o640)
        for step, command in rendered_steps(procedure, {"path": str(log), "keep": "2"}):
            result = run_sh(command, timeout=60)
            assert result.returncode == 0, f"{step.id}: {result.stdout}{result.stderr}"
            assert step.expect.passes(result.returncode, result.stdout), step.id
    assert log.read_text() == ""
    assert oct(log.stat().st_mode & 0o777) == "0o640"  # truncated in place
    assert gzip.decompress((tmp_path / "service.log.1.gz").read_bytes()).decode() == generations[3]
    assert gzip.decompress((tmp_path / "service.log.2.gz").read_bytes()).decode() == generations[2]
    assert not (tmp_path / "service.log.3.gz").exists()  # keep: 2
    (tmp_path / "service.log.2.gz").write_bytes(b"not gzip")
    broken = step_result("rotate-log", "archives-intact", {"path": str(log)})
    assert broken.returncode == 1
    assert f"BROKEN  {tmp_path}/service.log.2.gz" in broken.stdout


def test_rotate_log_refuses_a_missing_file(tmp_path: Path) -> None:
    result = step_result("rotate-log", "is-file", {"path": str(tmp_path / "nope.log")})
    assert result.returncode == 1
    assert "does not exist" in result.stdout


def test_certificate_check_reads_files_and_servers(certificate: Path, tmp_path: Path) -> None:
    sample = {"certificate": str(certificate), "days": "30"}
    failing = step_result("cert-expiry-check", "not-expiring", sample)
    assert failing.returncode == 1
    assert "EXPIRES within 30 days" in failing.stdout
    passing = step_result("cert-expiry-check", "not-expiring", {**sample, "days": "5"})
    assert passing.returncode == 0, passing.stdout
    shown = step_result("cert-expiry-check", "show", sample)
    assert "subject=CN = localhost" in shown.stdout or "subject=CN=localhost" in shown.stdout

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(certificate),
         "-key", str(certificate.with_suffix(".key")), "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            subprocess.run(["sleep", "0.1"], check=True)
        remote = step_result("cert-expiry-check", "not-expiring",
                             {"certificate": f"localhost:{port}", "days": "5"})
    finally:
        server.kill()
        server.wait()
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert "day(s) left" in remote.stdout


def test_port_check_tells_listening_from_closed(listening_port: int) -> None:
    listening = step_result("port-listening-check", "listening", {"port": str(listening_port)})
    if shutil.which("ss") is None and shutil.which("netstat") is None:
        assert "neither ss nor netstat" in listening.stdout
    else:
        assert listening.returncode == 0, listening.stdout
        assert "loopback only" in listening.stdout
    assert step_result("port-listening-check", "connects", {"port": str(listening_port)}).returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = step_result("port-listening-check", "connects", {"port": str(closed)})
    assert result.returncode == 1
    assert "refused" in result.stdout


def test_add_user_refuses_an_existing_account() -> None:
    result = step_result("add-user-ssh-key", "user-absent", {"user": "root", "ssh_key": SAMPLE_KEY})
    assert result.returncode == 1
    assert "user root already exists" in result.stdout
    fresh = step_result("add-user-ssh-key", "user-absent", {"user": "itop-nosuchuser", "ssh_key": SAMPLE_KEY})
    assert fresh.returncode == 0


def fake_tool(bin_dir: Path, name: str, output: str) -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\n")
    script.chmod(0o755)


CHRONY_TRACKING = """\
Reference ID    : A9FEA97B (169.254.169.123)
Stratum         : 4
Ref time (UTC)  : Tue Nov 25 19:20:01 2025
System time     : {offset} seconds {direction} of NTP time
Last offset     : -0.000012000 seconds
RMS offset      : 0.000030000 seconds
Frequency       : 12.345 ppm slow
Residual freq   : -0.001 ppm
Skew            : 0.020 ppm
Root delay      : 0.000500000 seconds
Root dispersion : 0.000400000 seconds
Update interval : 16.1 seconds
Leap status     : {leap}
"""

NTPQ_PEERS = """\
     remote           refid      st t when poll reach   delay   offset  jitter
==============================================================================
+192.0.2.10      .GPS.            1 u   33   64  377    0.512   -0.101   0.020
*192.0.2.11      .PPS.            1 u   12   64  377    0.498  {offset}   0.015
"""


@pytest.mark.parametrize(
    ("tool", "output", "expected_exit", "expected_text"),
    [
        ("chronyc", CHRONY_TRACKING.format(offset="0.000012345", direction="slow", leap="Normal"), 0, "chrony: offset 0.012 ms"),
        ("chronyc", CHRONY_TRACKING.format(offset="0.250000000", direction="fast", leap="Normal"), 1, "chrony: offset 250.000 ms"),
        ("chronyc", CHRONY_TRACKING.format(offset="0.000001000", direction="slow", leap="Not synchronised"), 1, "chrony is not synchronised"),
        ("ntpq", NTPQ_PEERS.format(offset=" -12.500"), 0, "offset 12.500 ms"),
        ("ntpq", NTPQ_PEERS.format(offset="-512.000"), 1, "offset 512.000 ms"),
        ("ntpq", NTPQ_PEERS.format(offset="-1.000").replace("*192", " 192"), 1, "no selected peer"),
    ],
)
def test_time_sync_check_reads_each_tools_output(
    tmp_path: Path, base_tools_path: str, tool: str, output: str, expected_exit: int, expected_text: str
) -> None:
    # Recorded output formats of chronyc and ntpq stand in for the daemons, which do not run here.
    fake_tool(tmp_path, tool, output)
    env = {"PATH": f"{tmp_path}:{base_tools_path}", "LC_ALL": "C"}
    result = step_result("time-sync-check", "synchronised", {"max_offset_ms": "100"}, env=env)
    assert result.returncode == expected_exit, result.stdout + result.stderr
    assert expected_text in result.stdout


def test_baseline_reports_sshd_settings_when_root() -> None:
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs root and /usr/sbin/sshd (sshd -T reads the host keys); CI runs as root")
    result = step_result("new-server-baseline", "baseline", {"users": "root"})
    assert "== packages" in result.stdout and "== accounts" in result.stdout
    assert re.search(r"(ok|FAIL) +permitrootlogin ", result.stdout), result.stdout + result.stderr
    assert re.search(r"(ok|FAIL) +maxauthtries ", result.stdout)
    assert result.returncode == (1 if "FAIL" in result.stdout or "MISSING" in result.stdout else 0)


def test_samples_cover_every_required_variable(library: dict[str, Procedure],
                                               samples: dict[str, dict[str, str]]) -> None:
    for procedure in library.values():
        resolve_values(procedure.variables, samples.get(procedure.id, {}),
                       deferred=procedure.input_variable_names())
