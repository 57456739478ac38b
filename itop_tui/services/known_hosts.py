"""Known SSH host keys: itop's own file plus the user's read-only files.

Entries are read in OpenSSH ``known_hosts`` format: comma-separated host
patterns with ``*``/``?`` wildcards and ``!`` negation, ``[host]:port`` forms
for non-default ports, hashed ``|1|salt|hash`` names, and the
``@cert-authority`` and ``@revoked`` markers. A host is looked up the way
OpenSSH does: by ``host`` on port 22, by ``[host]:port`` otherwise.

Only itop's own file (in the data directory) is ever written; the user's
files are never touched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncssh

from itop_tui.services.transport import HostKeyChanged, TransportError

DEFAULT_SSH_PORT = 22

HostKeyStatus = Literal["known", "unknown"] | tuple[Literal["changed"], str]


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The key's fingerprint in OpenSSH's ``SHA256:...`` form."""
    return key.get_fingerprint("sha256")


def key_line(key: asyncssh.SSHKey) -> str:
    """The key as an OpenSSH public key line, ``TYPE BASE64`` without comment."""
    fields = key.export_public_key("openssh").decode("ascii").split()
    return f"{fields[0]} {fields[1]}"


def parse_key(key_data: str | bytes | asyncssh.SSHKey) -> asyncssh.SSHKey:
    """An SSH public key from a ``TYPE BASE64 [COMMENT]`` line or key object.

    Raises :class:`TransportError` with a clear message for unreadable data.
    """
    if isinstance(key_data, asyncssh.SSHKey):
        return key_data
    text = key_data.decode("ascii", "replace") if isinstance(key_data, bytes) else key_data
    fields = text.split()
    if len(fields) < 2:
        raise TransportError(f"not an SSH public key line: {text[:60]!r}")
    try:
        return asyncssh.import_public_key(f"{fields[0]} {fields[1]}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise TransportError(f"not an SSH public key line ({exc}): {text[:60]!r}") from None


def lookup_name(host: str, port: int | None) -> str:
    """The name OpenSSH looks up in known_hosts: ``host`` or ``[host]:port``."""
    host = host.lower()
    if port is None or port == DEFAULT_SSH_PORT:
        return host
    return f"[{host}]:{port}"


class _HostPatterns:
    """The host field of one known_hosts line."""

    def __init__(self, field: str) -> None:
        self.hashed: tuple[bytes, bytes] | None = None
        self.positive: list[re.Pattern[str]] = []
        self.negative: list[re.Pattern[str]] = []
        if field.startswith("|"):
            self.hashed = _parse_hashed(field)
            return
        for pattern in field.split(","):
            if not pattern:
                continue
            target = self.negative if pattern.startswith("!") else self.positive
            target.append(_compile_pattern(pattern.lstrip("!")))

    def matches(self, name: str) -> bool:
        """True when the lookup name matches these patterns."""
        if self.hashed is not None:
            salt, digest = self.hashed
            return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
        if any(p.fullmatch(name) for p in self.negative):
            return False
        return any(p.fullmatch(name) for p in self.positive)


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()
    )
    return re.compile(regex, re.DOTALL)


def _parse_hashed(field: str) -> tuple[bytes, bytes]:
    parts = field.split("|")
    # "|1|salt|hash" splits into ["", "1", salt, hash]
    if len(parts) != 4 or parts[1] != "1":
        raise ValueError("unsupported hashed host name (only |1| HMAC-SHA1 exists)")
    try:
        return base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except binascii.Error:
        raise ValueError("hashed host name is not valid base64") from None


@dataclass
class KnownHostEntry:
    """One usable line of a known_hosts file."""

    marker: str | None  # None, "cert-authority" or "revoked"
    patterns: _HostPatterns
    key: asyncssh.SSHKey
    source: Path
    line: int


class KnownHosts:
    """Host keys from itop's own known_hosts and the user's (read-only) files.

    Files are read once, on first use. Unreadable lines are skipped and
    described in :attr:`problems` (``FILE:LINE: reason``), as OpenSSH skips
    them too.
    """

    def __init__(self, own_path: Path, user_files: Sequence[Path] = ()) -> None:
        self.own_path = Path(own_path)
        self.user_files = [Path(p).expanduser() for p in user_files]
        self.problems: list[str] = []
        self._entries: list[KnownHostEntry] | None = None

    # -- loading ---------------------------------------------------------

    def _loaded(self) -> list[KnownHostEntry]:
        if self._entries is None:
            entries: list[KnownHostEntry] = []
            for path in [self.own_path, *self.user_files]:
                entries.extend(self._read(path))
            self._entries = entries
        return self._entries

    def _read(self, path: Path) -> list[KnownHostEntry]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.problems.append(f"{path}: cannot read ({exc.strerror})")
            return []
        entries = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entries.append(_parse_line(line, path, number))
            except ValueError as exc:
                self.problems.append(f"{path}:{number}: {exc}")
        return entries

    # -- lookups ---------------------------------------------------------

    def match(
        self, host: str, port: int | None
    ) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        """Host keys, CA keys and revoked keys that apply to ``host:port``."""
        name = lookup_name(host, port)
        host_keys: list[asyncssh.SSHKey] = []
        ca_keys: list[asyncssh.SSHKey] = []
        revoked: list[asyncssh.SSHKey] = []
        for entry in self._loaded():
            if entry.marker == "revoked":
                # OpenSSH honours @revoked whatever the host field says.
                revoked.append(entry.key)
            elif entry.patterns.matches(name):
                (ca_keys if entry.marker == "cert-authority" else host_keys).append(entry.key)
        return host_keys, ca_keys, revoked

    def host_keys(self, host: str, port: int | None) -> list[asyncssh.SSHKey]:
        """Plain host keys trusted for ``host:port``."""
        return self.match(host, port)[0]

    def check(
        self, host: str, port: int | None, key: str | bytes | asyncssh.SSHKey
    ) -> HostKeyStatus:
        """``"known"``, ``"unknown"`` or ``("changed", known_fingerprint)``.

        A key is "changed" when other keys are trusted for this host and it is
        none of them, or when it is revoked: itop never connects then.
        """
        offered = parse_key(key)
        host_keys, _ca, revoked = self.match(host, port)
        if offered in revoked:
            return ("changed", f"{fingerprint(offered)} (revoked)")
        if offered in host_keys:
            return "known"
        if not host_keys:
            return "unknown"
        same_type = [k for k in host_keys if k.algorithm == offered.algorithm]
        return ("changed", fingerprint((same_type or host_keys)[0]))

    # -- writing ---------------------------------------------------------

    def trust(self, host: str, port: int | None, key_data: str | bytes | asyncssh.SSHKey) -> bool:
        """Append ``key_data`` for ``host:port`` to itop's own known_hosts.

        Returns False when the key was already trusted. Raises
        :class:`HostKeyChanged` when another key is trusted for the host: a
        changed key is never trusted over the old one (remove it with
        :meth:`forget` first).
        """
        key = parse_key(key_data)
        status = self.check(host, port, key)
        if status == "known":
            return False
        if isinstance(status, tuple):
            raise HostKeyChanged(host, port or DEFAULT_SSH_PORT, status[1], fingerprint(key))
        line = f"{lookup_name(host, port)} {key_line(key)}\n"
        self._append(line)
        self._loaded().append(
            KnownHostEntry(None, _HostPatterns(lookup_name(host, port)), key, self.own_path, -1)
        )
        return True

    def forget(self, host: str, port: int | None) -> int:
        """Remove every entry for ``host:port`` from itop's own file; return how many.

        Entries in the user's files are left alone (they are not itop's).
        """
        name = lookup_name(host, port)
        try:
            lines = self.own_path.read_text(encoding="utf-8").splitlines(keepends=True)
        except FileNotFoundError:
            return 0
        kept: list[str] = []
        removed = 0
        for number, raw in enumerate(lines, start=1):
            stripped = raw.strip()
            if stripped and not stripped.startswith("#"):
                try:
                    entry = _parse_line(stripped, self.own_path, number)
                except ValueError:
                    entry = None
                if entry is not None and entry.marker is None and entry.patterns.matches(name):
                    removed += 1
                    continue
            kept.append(raw)
        if removed:
            tmp = self.own_path.with_name(self.own_path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.writelines(kept)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.own_path)
            self._entries = None
        return removed

    def _append(self, line: str) -> None:
        self.own_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.own_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size:
                with self.own_path.open("rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        line = "\n" + line
            # One write with O_APPEND: two itop processes trusting at once
            # cannot interleave within a line.
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)


def _parse_line(line: str, path: Path, number: int) -> KnownHostEntry:
    marker: str | None = None
    fields = line.split()
    if fields[0].startswith("@"):
        marker = fields.pop(0)[1:]
        if marker not in ("cert-authority", "revoked"):
            raise ValueError(f"unknown marker @{marker}")
    if len(fields) < 3:
        raise ValueError("expected HOSTS KEYTYPE BASE64")
    patterns = _HostPatterns(fields[0])
    try:
        key = asyncssh.import_public_key(f"{fields[1]} {fields[2]}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"unreadable {fields[1]} key ({exc})") from None
    return KnownHostEntry(marker, patterns, key, path, number)
