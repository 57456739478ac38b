"""The ssh_config importer against the real ``ssh -G``."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from itop_tui.services.importers import InventoryFileError, import_file
from itop_tui.services.importers.ssh_config import (
    SSHHostConfig,
    aliases,
    expand_identity_file,
    import_ssh_config,
    local_user,
    parse_config,
    resolve,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "inventories" / "ssh"


@pytest.fixture
def tricky(tmp_path: Path) -> Path:
    """The tricky config with its Include files, in a temp dir (absolute
    Include paths, so ``ssh -G`` never reads the real ~/.ssh)."""
    shutil.copytree(DATA, tmp_path / "ssh")
    config = tmp_path / "ssh" / "config"
    config.write_text((DATA / "config.in").read_text().replace("@DIR@", str(tmp_path / "ssh")))
    return config


def ssh_g(config: Path, alias: str) -> tuple[str, str, int, str | None, list[str]]:
    """hostname, user, port, proxyjump and identity files as ``ssh -G`` prints them."""
    exe = shutil.which("ssh")
    if exe is None:
        pytest.skip("ssh not found: install openssh-client (the test command does this)")
    done = subprocess.run(
        [exe, "-G", "-F", str(config), alias], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    options: dict[str, str] = {}
    identities: list[str] = []
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "identityfile":
            identities.append(value)
        else:
            options.setdefault(key, value)
    return options["hostname"], options["user"], int(options["port"]), options.get("proxyjump"), identities


EXPECTED_ALIASES = [
    "inner",
    "web2",
    "second",
    "web1",
    "Web3",
    "bastion",
    "jump2",
    "percent",
    "secret.corp",
    "plain",
    "onlyhere",
    "finaltest",
]


def test_aliases_are_the_hosts_without_wildcards(tricky: Path) -> None:
    lines = parse_config(tricky, tricky.parent)
    assert aliases(lines) == EXPECTED_ALIASES


@pytest.mark.parametrize(
    "alias",
    [*EXPECTED_ALIASES, "WEBX", "webx", "db1", "x.corp", "matched-by-match", "MATCHED-BY-MATCH", "unknown"],
)
def test_resolution_matches_ssh_g(tricky: Path, alias: str) -> None:
    lines = parse_config(tricky, tricky.parent)
    hostname, user, port, jump, identities = ssh_g(tricky, alias)
    mine = resolve(lines, alias)
    assert (mine.hostname, mine.user, mine.port, mine.proxy_jump) == (hostname, user, port, jump)
    if mine.identity_files:
        assert mine.identity_files == identities
    else:
        # with none configured, ssh -G lists its defaults
        assert all(i.startswith("~/.ssh/id_") for i in identities)


def test_import_gives_one_host_per_alias(tricky: Path) -> None:
    result = import_ssh_config(tricky, ssh_dir=tricky.parent)
    assert [h.name for h in result.hosts] == EXPECTED_ALIASES
    assert result.source == "ssh-config" and result.groups == []
    hosts = {h.name: h for h in result.hosts}
    for name, host in hosts.items():
        hostname, user, port, jump, _ = ssh_g(tricky, name)
        assert (host.address, host.user, host.port, host.proxy_jump) == (hostname, user, port, jump)
        assert host.ssh_alias == name and host.source == "ssh-config"
        host.validate()
    assert hosts["web1"].identity_file == f"{os.path.expanduser('~')}/.ssh/id_web1.example.com_webuser_2201"
    assert hosts["bastion"].identity_file is None
    assert hosts["finaltest"].identity_file == "/keys/final"


def test_identity_tokens() -> None:
    config = SSHHostConfig("alias1", "real.example.com", "bob", 2222, None, [])
    home = "/home/someone"
    expanded = expand_identity_file("~/k/%d|%u|%l|%L|%h|%r|%p|%n|%i|%%|%C", config, home=home)
    local = socket.gethostname()
    assert expanded == (
        f"{home}/k/{home}|{local_user()}|{local}|{local.split('.')[0]}|real.example.com|bob|2222"
        f"|alias1|{os.getuid()}|%|%C"
    )


def test_relative_include_is_under_the_ssh_dir(tmp_path: Path) -> None:
    ssh_dir = tmp_path / "dot-ssh"
    (ssh_dir / "config.d").mkdir(parents=True)
    (ssh_dir / "config.d" / "b.conf").write_text("Host bee\n  Port 2\n")
    (ssh_dir / "config.d" / "a.conf").write_text("Host ay\n  Port 1\n")
    config = tmp_path / "config"
    config.write_text("Include config.d/*.conf missing/*.conf\nHost *\n  User u\n")
    result = import_ssh_config(config, ssh_dir=ssh_dir)
    assert [(h.name, h.port, h.user) for h in result.hosts] == [("ay", 1, "u"), ("bee", 2, "u")]


def test_match_exec_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "config"
    config.write_text(f'Match exec "touch {marker}"\n  Port 999\nHost h1\n  HostName h1.example\n')
    host = import_ssh_config(config, ssh_dir=tmp_path).hosts[0]
    assert not marker.exists()
    assert (host.name, host.address, host.port) == ("h1", "h1.example", 22)
    assert host.user == local_user()


def test_import_file_guesses_ssh_config(tricky: Path, tmp_path: Path) -> None:
    assert import_file(tricky).source == "ssh-config"
    other = tmp_path / "hosts.txt"
    other.write_text("# my hosts\nHost one\n  HostName one.example\n")
    assert [h.address for h in import_file(other).hosts] == ["one.example"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('Host a\n  HostName "unterminated\n', 2, "unterminated quote"),
        ("Host a\n  Port http-alt-nope\n", 2, "bad port"),
        ("Host a\n  Port 70000\n", 2, "bad port"),
        ("Host a\n  HostName %p.example\n", 2, "unknown token %p"),
        ("Match planet mars\n  Port 1\nHost a\n", 1, "unsupported Match criterion"),
        ("Match all host a\nHost a\n", 1, "cannot be combined"),
        ("Match host\nHost a\n", 1, "needs an argument"),
        ("Host a\n  User\n", 2, "no argument"),
        ("Host a\n  User a b\n", 2, "extra arguments"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    config = tmp_path / "config"
    config.write_text(text)
    with pytest.raises(InventoryFileError) as caught:
        import_ssh_config(config, ssh_dir=tmp_path)
    assert (caught.value.path, caught.value.line) == (str(config), line)
    assert words in caught.value.message
    assert str(caught.value).startswith(f"{config}:{line}: ")


def test_include_loop_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(f"Include {config}\nHost a\n")
    with pytest.raises(InventoryFileError, match="nested too deeply"):
        import_ssh_config(config, ssh_dir=tmp_path)


def test_damaged_files_give_clear_errors(tricky: Path) -> None:
    """Whatever the damage, the importer returns hosts or raises InventoryFileError."""
    rng = random.Random(7)
    original = tricky.read_text()
    for _ in range(250):
        chars = list(original)
        for _ in range(rng.randrange(1, 8)):
            pos = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5:
                chars.insert(pos, rng.choice("\"'#=*?!%~\\ \n\tHostMatch"))
            else:
                del chars[pos : pos + rng.randrange(1, 20)]
        tricky.write_text("".join(chars))
        try:
            import_ssh_config(tricky, ssh_dir=tricky.parent)
        except InventoryFileError as exc:
            assert exc.path.startswith(str(tricky.parent))
