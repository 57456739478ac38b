"""KnownHosts against real known_hosts files written and hashed by OpenSSH tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from itop_tui.services.known_hosts import KnownHosts, fingerprint, lookup_name, parse_key
from itop_tui.services.transport import HostKeyChanged, TransportError


def make_key(tmp_path: Path, name: str, key_type: str = "ed25519") -> str:
    """A fresh public key line made by ssh-keygen: ``TYPE BASE64``."""
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    fields = path.with_name(name + ".pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


def keygen_fingerprint(tmp_path: Path, key_data: str) -> str:
    pub = tmp_path / "fp.pub"
    pub.write_text(key_data + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    return {name: make_key(tmp_path, name) for name in ("a", "b", "c")}


def test_fingerprint_matches_ssh_keygen(tmp_path: Path, keys: dict[str, str]) -> None:
    for key_data in keys.values():
        assert fingerprint(parse_key(key_data)) == keygen_fingerprint(tmp_path, key_data)


def test_lookup_name_uses_brackets_only_for_other_ports() -> None:
    assert lookup_name("Web01.Example.com", 22) == "web01.example.com"
    assert lookup_name("10.0.0.1", None) == "10.0.0.1"
    assert lookup_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_check_known_unknown_changed_for_plain_and_port_entries(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    user = tmp_path / "user_known_hosts"
    user.write_text(
        f"web01,10.0.0.1 {keys['a']}\n"
        f"[10.0.0.2]:2222 {keys['b']}\n"
    )
    kh = KnownHosts(tmp_path / "data" / "known_hosts", [user])
    assert kh.check("web01", 22, keys["a"]) == "known"
    assert kh.check("10.0.0.1", None, keys["a"]) == "known"
    assert kh.check("10.0.0.2", 2222, keys["b"]) == "known"
    # A [host]:port entry says nothing about port 22, and the other way round.
    assert kh.check("10.0.0.2", 22, keys["b"]) == "unknown"
    assert kh.check("web01", 2222, keys["a"]) == "unknown"
    status = kh.check("web01", 22, keys["c"])
    assert status == ("changed", fingerprint(parse_key(keys["a"])))
    assert kh.check("nothere", 22, keys["a"]) == "unknown"


def test_hashed_entries_written_by_ssh_keygen_match(tmp_path: Path, keys: dict[str, str]) -> None:
    user = tmp_path / "hashed_known_hosts"
    user.write_text(f"db01 {keys['a']}\n[db02]:2200 {keys['b']}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(user)], check=True, capture_output=True)
    text = user.read_text()
    assert "db01" not in text and text.startswith("|1|")
    kh = KnownHosts(tmp_path / "own", [user])
    assert kh.check("db01", 22, keys["a"]) == "known"
    assert kh.check("db02", 2200, keys["b"]) == "known"
    assert kh.check("db02", 22, keys["b"]) == "unknown"
    assert kh.check("db01", 22, keys["b"]) == ("changed", fingerprint(parse_key(keys["a"])))
    assert kh.problems == []


def test_wildcards_and_negation(tmp_path: Path, keys: dict[str, str]) -> None:
    user = tmp_path / "kh"
    user.write_text(f"*.lab.example,!secret.lab.example {keys['a']}\n[*.lab.example]:2222 {keys['b']}\n")
    kh = KnownHosts(tmp_path / "own", [user])
    assert kh.check("web.lab.example", 22, keys["a"]) == "known"
    assert kh.check("secret.lab.example", 22, keys["a"]) == "unknown"
    assert kh.check("web.lab.example", 2222, keys["b"]) == "known"
    assert kh.check("web.lab.example.evil", 22, keys["a"]) == "unknown"


def test_markers_revoked_and_cert_authority(tmp_path: Path, keys: dict[str, str]) -> None:
    user = tmp_path / "kh"
    user.write_text(
        f"@cert-authority *.example {keys['a']}\n"
        f"@revoked * {keys['b']}\n"
        f"host.example {keys['b']}\n"
    )
    kh = KnownHosts(tmp_path / "own", [user])
    host_keys, ca_keys, revoked = kh.match("host.example", 22)
    assert [fingerprint(k) for k in ca_keys] == [fingerprint(parse_key(keys["a"]))]
    assert [fingerprint(k) for k in revoked] == [fingerprint(parse_key(keys["b"]))]
    # A CA key is not a host key: presenting it as the host key is not "known".
    assert kh.check("other.example", 22, keys["a"]) == "unknown"
    # A revoked key is refused even where a line lists it as the host's key.
    status = kh.check("host.example", 22, keys["b"])
    assert isinstance(status, tuple) and status[0] == "changed" and "revoked" in status[1]
    assert host_keys  # listed, but refused by check()


def test_bad_lines_are_reported_with_file_and_line(tmp_path: Path, keys: dict[str, str]) -> None:
    user = tmp_path / "kh"
    user.write_text(
        "# comment\n"
        "\n"
        "onlyonefield\n"
        "host ssh-ed25519 notbase64!!\n"
        f"@bogus host {keys['a']}\n"
        f"good {keys['a']}\n"
    )
    kh = KnownHosts(tmp_path / "own", [user])
    assert kh.check("good", 22, keys["a"]) == "known"
    assert kh.problems[0].startswith(f"{user}:3: ")
    assert kh.problems[1].startswith(f"{user}:4: ")
    assert kh.problems[2].startswith(f"{user}:5: ") and "@bogus" in kh.problems[2]
    assert len(kh.problems) == 3


def test_trust_appends_to_own_file_only(tmp_path: Path, keys: dict[str, str]) -> None:
    user = tmp_path / "user_kh"
    user.write_text(f"other {keys['c']}")  # no trailing newline: must stay as is
    before = user.read_bytes()
    own = tmp_path / "data" / "known_hosts"
    kh = KnownHosts(own, [user])
    assert kh.trust("10.1.1.1", 2222, keys["a"] + " a-comment") is True
    assert kh.trust("web01", 22, keys["b"]) is True
    assert user.read_bytes() == before
    assert own.read_text() == f"[10.1.1.1]:2222 {keys['a']}\nweb01 {keys['b']}\n"
    assert own.stat().st_mode & 0o777 == 0o600
    assert own.parent.stat().st_mode & 0o777 == 0o700
    assert kh.check("10.1.1.1", 2222, keys["a"]) == "known"
    # Already trusted: nothing appended.
    assert kh.trust("web01", 22, keys["b"]) is False
    assert own.read_text().count("web01") == 1
    # A fresh instance reads what was stored.
    assert KnownHosts(own, []).check("web01", 22, keys["b"]) == "known"


def test_trust_keeps_existing_lines_intact(tmp_path: Path, keys: dict[str, str]) -> None:
    own = tmp_path / "known_hosts"
    own.write_text(f"old {keys['c']}")  # edited by hand, no final newline
    KnownHosts(own, []).trust("new", 22, keys["a"])
    assert own.read_text() == f"old {keys['c']}\nnew {keys['a']}\n"


def test_trust_refuses_a_changed_key_until_forgotten(tmp_path: Path, keys: dict[str, str]) -> None:
    own = tmp_path / "known_hosts"
    kh = KnownHosts(own, [])
    kh.trust("db", 22, keys["a"])
    kh.trust("keep", 22, keys["c"])
    with pytest.raises(HostKeyChanged) as info:
        kh.trust("db", 22, keys["b"])
    assert info.value.known == fingerprint(parse_key(keys["a"]))
    assert info.value.offered == fingerprint(parse_key(keys["b"]))
    assert kh.forget("db", 22) == 1
    assert kh.check("db", 22, keys["b"]) == "unknown"
    assert kh.trust("db", 22, keys["b"]) is True
    assert own.read_text() == f"keep {keys['c']}\ndb {keys['b']}\n"


def test_forget_never_touches_user_files(tmp_path: Path, keys: dict[str, str]) -> None:
    user = tmp_path / "user_kh"
    user.write_text(f"db {keys['a']}\n")
    kh = KnownHosts(tmp_path / "own", [user])
    assert kh.forget("db", 22) == 0
    assert user.read_text() == f"db {keys['a']}\n"
    assert kh.check("db", 22, keys["a"]) == "known"


def test_parse_key_rejects_garbage() -> None:
    with pytest.raises(TransportError, match="not an SSH public key"):
        parse_key("ssh-ed25519")
    with pytest.raises(TransportError, match="not an SSH public key"):
        parse_key("ssh-ed25519 AAAAnotakey")


def test_keys_of_other_types_count_as_changed(tmp_path: Path, keys: dict[str, str]) -> None:
    ecdsa = make_key(tmp_path, "e", "ecdsa")
    own = tmp_path / "kh"
    own.write_text(f"h {keys['a']}\n")
    status = KnownHosts(own, []).check("h", 22, ecdsa)
    assert status == ("changed", fingerprint(parse_key(keys["a"])))
