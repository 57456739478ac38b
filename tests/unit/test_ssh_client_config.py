"""The ssh config read once per pool gives what asyncssh gives reading it per host."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from itop_tui.services.ssh_client_config import SSHConfigFiles

MAIN = """\
# a comment
Include {include}

Host web*  !web-old
    HostName %h.example.test
    User deploy
    Port 2201
    IdentityFile ~/.ssh/id_%r_%h

Host web-old
    HostName 10.0.0.9
    HostKeyAlias legacy

Host db1 db2
    ProxyJump bastion
    User=dbadmin
    ServerAliveInterval = 7

Host "quoted host"
    HostName 127.0.0.5

Match originalhost db2 user dbadmin
    Port 2299
    IdentitiesOnly yes

Match host *.example.test
    ProxyJump jump@gateway:2022

Host *
    User fallback
    Port 22
    IdentityFile ~/.ssh/id_default
    Compression yes
"""

INCLUDED = """\
Host alias-*
    HostName %h.lan
Host db1
    Port 2201
    HostName db1.internal
"""

HOSTS = [
    "web1", "web-old", "web-new", "db1", "db2", "quoted host", "alias-7", "other",
    "WEB1", "bastion", "10.0.0.1",
]


def _write(tmp_path: Path) -> list[Path]:
    included = tmp_path / "included.conf"
    included.write_text(INCLUDED)
    main = tmp_path / "config"
    main.write_text(MAIN.format(include=included))
    return [main]


def _reference(paths: list[Path], host: str, port: int | None, user: str | None
               ) -> asyncssh.SSHClientConnectionOptions:
    return asyncssh.SSHClientConnectionOptions(
        config=[str(p) for p in paths], host=host,
        port=port if port else (), username=user if user else (),
        client_keys=None, agent_path=None, agent_identities=None, known_hosts=None,
        x509_trusted_certs=None, x509_trusted_cert_paths=[],
    )


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(("port", "user"), [(None, None), (2022, "ops")])
def test_every_option_equals_asyncssh_reading_the_files(
    tmp_path: Path, host: str, port: int | None, user: str | None
) -> None:
    paths = _write(tmp_path)
    files = SSHConfigFiles(paths)
    ours = files.options(
        host, port, user, client_keys=None, agent_path=None, agent_identities=None,
        known_hosts=None, x509_trusted_certs=None, x509_trusted_cert_paths=[],
    )
    theirs = _reference(paths, host, port, user)
    assert ours.config.get_options(False) == theirs.config.get_options(False)
    assert (ours.host, ours.port, ours.username, ours.host_key_alias) == (
        theirs.host, theirs.port, theirs.username, theirs.host_key_alias
    )


def test_files_are_read_once_for_many_hosts(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    files = SSHConfigFiles(paths)
    assert files.evaluate("db1").get("Hostname") == "db1.internal"  # from the Include
    # Changing the files afterwards changes nothing: they were read once.
    paths[0].write_text("Host *\n    Port 9999\n")
    (tmp_path / "included.conf").write_text("Host *\n    HostName elsewhere\n")
    assert files.evaluate("db1").get("Hostname") == "db1.internal"
    assert files.evaluate("alias-7").get("Hostname") == "alias-7.lan"
    assert files.evaluate("web1").get("Port") == 2201
    assert SSHConfigFiles(paths).evaluate("web1").get("Port") == 9999


def test_connect_options_built_on_them_keep_the_config(tmp_path: Path) -> None:
    """asyncssh.connect builds its own options on top of ours: the config must survive."""
    paths = _write(tmp_path)
    base = SSHConfigFiles(paths).options("db2", known_hosts=None, client_keys=None)
    derived = asyncssh.SSHClientConnectionOptions(base, config=[], host="db2")
    assert derived.port == 2299
    assert derived.username == "dbadmin"
    assert derived.config.get("ProxyJump") == "bastion"
    assert derived.config.get("IdentitiesOnly") is True


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('Host a\n    HostName "unterminated\n', 2, "No closing quotation"),
        ("Host a\n    Port many\n", 2, "Invalid Port integer value"),
        ("Host b\n    Port many\nHost a\n    User\n", 4, "Missing User value"),
        ("Host a\n    User x y\n", 2, "Extra data at end"),
    ],
)
def test_errors_name_the_file_and_line_as_asyncssh_does(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad_config"
    path.write_text(text)
    with pytest.raises(asyncssh.ConfigParseError) as ours:
        SSHConfigFiles([path]).evaluate("a")
    with pytest.raises(asyncssh.ConfigParseError) as theirs:
        _reference([path], "a", None, None)
    assert str(ours.value) == str(theirs.value)
    assert f"{path} line {line}: " in str(ours.value)
    assert message in str(ours.value)


def test_a_line_starting_with_equals_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad_config"
    path.write_text("Host a\n  = value\n")
    with pytest.raises(asyncssh.ConfigParseError, match=r"bad_config line 2: missing keyword"):
        SSHConfigFiles([path]).evaluate("a")
