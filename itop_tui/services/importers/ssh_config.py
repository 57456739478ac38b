"""``~/.ssh/config`` (and any file in that format) as inventory hosts.

Every ``Host`` pattern without wildcards (``*``, ``?``) or negation (``!``)
becomes a host named after the alias, with HostName, User, Port, ProxyJump and
IdentityFile resolved the way ``ssh -G ALIAS`` resolves them (OpenSSH 9):

- the first value obtained for an option wins, over all ``Host``/``Match``
  blocks that apply, in file order (IdentityFile accumulates);
- ``Host`` patterns match the alias case-sensitively; a matching ``!pattern``
  cancels the line; ``Match host`` compares case-insensitively against the
  HostName found so far (``%h`` expanded), ``Match originalhost`` against the
  alias; ``Match all``, ``user``, ``localuser``, ``canonical`` and ``final``
  (with OpenSSH's second pass) are supported; ``Match exec`` is never run and
  counts as not matching;
- ``Include`` paths are relative to the ssh directory (``~/.ssh``), ``~`` is
  expanded, globs are sorted; an ``Include`` inside a block that does not
  apply reads its files with every block disabled, as OpenSSH does;
- ``Key=value``, ``Key value``, quoted values and ``#`` comments;
- HostName expands ``%h`` and ``%%`` and is lower-cased; the port defaults to
  22 and the user to the local login.
"""

from __future__ import annotations

import glob
import os
import pwd
import socket
from dataclasses import dataclass, field
from pathlib import Path

from itop_tui.domain.models import Host
from itop_tui.services.importers import ImportResult, InventoryFileError

MAX_INCLUDE_DEPTH = 16
_WANTED = ("hostname", "user", "port", "proxyjump", "proxycommand", "identityfile", "hostkeyalias")
_UNSUPPORTED_MATCH = ("exec", "localnetwork", "tagged", "version", "sessiontype", "command")


@dataclass
class ConfigLine:
    """One keyword line; ``includes`` holds the parsed files of an ``Include``."""

    keyword: str
    args: list[str]
    path: Path
    line: int
    includes: list[list[ConfigLine]] = field(default_factory=list)


@dataclass
class SSHHostConfig:
    """What ``ssh -G ALIAS`` reports for the options itop uses.

    ``identity_files`` are as written (``ssh -G`` prints them unexpanded);
    empty when the config names none.
    """

    alias: str
    hostname: str
    user: str
    port: int
    proxy_jump: str | None
    identity_files: list[str]


def split_args(text: str, path: Path, line: int) -> list[str]:
    """Split like OpenSSH's ``argv_split``: quotes group, backslash escapes
    quotes, backslashes and (outside quotes) spaces, ``#`` at the start of a
    word ends the line."""
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        if text[i] == "#":
            break
        word: list[str] = []
        quote = ""
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n and (text[i + 1] in "'\"\\" or (not quote and text[i + 1] == " ")):
                word.append(text[i + 1])
                i += 2
                continue
            if not quote and c in " \t":
                break
            if not quote and c in "'\"":
                quote = c
            elif quote and c == quote:
                quote = ""
            else:
                word.append(c)
            i += 1
        if quote:
            raise InventoryFileError(path, line, "unterminated quote")
        args.append("".join(word))
    return args


def _split_keyword(text: str) -> tuple[str, str]:
    """``Key value``, ``Key=value`` or ``Key = value`` -> (key, rest)."""
    end = 0
    while end < len(text) and text[end] not in " \t=":
        end += 1
    key, rest = text[:end], text[end:].lstrip(" \t")
    if rest.startswith("="):
        rest = rest[1:].lstrip(" \t")
    return key, rest


def parse_config(path: Path, ssh_dir: Path, depth: int = 0) -> list[ConfigLine]:
    """Parse ``path`` and, recursively, the files it includes."""
    if depth > MAX_INCLUDE_DEPTH:
        raise InventoryFileError(path, None, "Include nested too deeply (a loop?)")
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise InventoryFileError(path, None, f"cannot read: {exc.strerror or exc}") from None
    lines: list[ConfigLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip(" \t\r\f")
        if not stripped or stripped.startswith("#"):
            continue
        key, rest = _split_keyword(stripped)
        keyword = key.lower()
        if not rest:
            raise InventoryFileError(path, number, f"no argument after keyword {key!r}")
        args = split_args(rest, path, number) if keyword != "match" else [rest]
        entry = ConfigLine(keyword, args, path, number)
        if keyword == "include":
            for pattern in args:
                for included in _include_paths(pattern, ssh_dir):
                    entry.includes.append(parse_config(included, ssh_dir, depth + 1))
        elif keyword == "host" and not args:
            raise InventoryFileError(path, number, "Host needs at least one pattern")
        lines.append(entry)
    return lines


def _include_paths(pattern: str, ssh_dir: Path) -> list[Path]:
    expanded = os.path.expanduser(pattern)
    if not os.path.isabs(expanded):
        expanded = str(ssh_dir / expanded)
    return [Path(p) for p in sorted(glob.glob(expanded)) if os.path.isfile(p)]


def _match_pattern(text: str, pattern: str) -> bool:
    """OpenSSH's ``match_pattern``: ``*`` and ``?`` wildcards only."""
    if not pattern:
        return not text
    if pattern[0] == "*":
        rest = pattern.lstrip("*")
        if not rest:
            return True
        return any(_match_pattern(text[i:], rest) for i in range(len(text) + 1))
    if not text:
        return False
    if pattern[0] == "?" or pattern[0] == text[0]:
        return _match_pattern(text[1:], pattern[1:])
    return False


def _match_list(text: str, patterns: str, fold: bool = False) -> bool:
    """A comma-separated pattern list: a matching ``!pattern`` vetoes."""
    if fold:
        text, patterns = text.lower(), patterns.lower()
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _match_pattern(text, pattern[1:] if negated else pattern):
            if negated:
                return False
            matched = True
    return matched


def _has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?!")


@dataclass
class _Resolution:
    alias: str
    host: str
    local_user: str
    final: bool = False
    want_final: bool = False
    options: dict[str, tuple[str, ConfigLine]] = field(default_factory=dict)
    identity_files: list[str] = field(default_factory=list)

    def expanded_hostname(self) -> str:
        value = self.options.get("hostname")
        if self.final:
            # the first pass already expanded it
            return value[0] if value else self.host
        if value is None:
            return self.alias
        return expand_hostname(value[0], self.alias, value[1])


def expand_hostname(value: str, alias: str, origin: ConfigLine) -> str:
    """HostName with ``%h`` (the alias) and ``%%`` expanded."""
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and i + 1 < len(value):
            token = value[i + 1]
            if token == "h":
                out.append(alias)
            elif token == "%":
                out.append("%")
            else:
                raise InventoryFileError(
                    origin.path, origin.line, f"HostName: unknown token %{token} (only %h and %% are allowed)"
                )
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _walk(lines: list[ConfigLine], state: _Resolution, active: bool, never: bool) -> None:
    for entry in lines:
        keyword = entry.keyword
        if keyword == "host":
            active = False
            if not never:
                for pattern in entry.args:
                    negated = pattern.startswith("!")
                    if _match_pattern(state.host, pattern[1:] if negated else pattern):
                        if negated:
                            active = False
                            break
                        active = True
        elif keyword == "match":
            matched = _match_line(entry, state)
            active = matched and not never
        elif keyword == "include":
            for included in entry.includes:
                _walk(included, state, active, never or not active)
        elif active and keyword in _WANTED:
            _set_option(entry, state)


def _set_option(entry: ConfigLine, state: _Resolution) -> None:
    keyword = entry.keyword
    if keyword == "identityfile":
        if entry.args[0] not in state.identity_files:
            state.identity_files.append(entry.args[0])
        return
    proxy_set = "proxyjump" in state.options or "proxycommand" in state.options
    if keyword in ("proxyjump", "proxycommand") and proxy_set:
        # ProxyJump and ProxyCommand exclude each other: whichever comes first wins
        return
    if keyword not in state.options:
        if len(entry.args) > 1 and keyword != "proxycommand":
            raise InventoryFileError(entry.path, entry.line, f"{keyword}: extra arguments at end of line")
        state.options[keyword] = (" ".join(entry.args), entry)


def _match_line(entry: ConfigLine, state: _Resolution) -> bool:
    words = split_args(entry.args[0], entry.path, entry.line)
    result = True
    i = 0
    count = 0
    while i < len(words):
        word = words[i]
        negate = word.startswith("!")
        criterion = (word[1:] if negate else word).lower()
        i += 1
        if criterion == "all":
            if count or i < len(words):
                raise InventoryFileError(entry.path, entry.line, "'Match all' cannot be combined with other criteria")
            return not negate
        count += 1
        if criterion in ("canonical", "final"):
            if criterion == "final":
                state.want_final = True
            if state.final == negate:
                result = False
            continue
        if i >= len(words):
            raise InventoryFileError(entry.path, entry.line, f"Match {criterion} needs an argument")
        arg = words[i]
        i += 1
        if criterion == "host":
            hit = _match_list(state.expanded_hostname(), arg, fold=True)
        elif criterion == "originalhost":
            hit = _match_list(state.alias, arg, fold=True)
        elif criterion == "user":
            user = state.options.get("user")
            hit = _match_list(user[0] if user else state.local_user, arg)
        elif criterion == "localuser":
            hit = _match_list(state.local_user, arg)
        elif criterion in _UNSUPPORTED_MATCH:
            # never run commands from a file being imported
            hit = negate
        else:
            raise InventoryFileError(entry.path, entry.line, f"unsupported Match criterion {criterion!r}")
        if hit == negate:
            result = False
    return result


def local_user() -> str:
    """The local login name, as ssh finds it (from the password database)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", "root")


def resolve(lines: list[ConfigLine], alias: str, user: str | None = None) -> SSHHostConfig:
    """The options ``ssh -G alias`` would use, from parsed ``lines``."""
    state = _Resolution(alias=alias, host=alias, local_user=user or local_user())
    _walk(lines, state, True, False)
    if state.want_final:
        hostname = state.expanded_hostname().lower()
        if "hostname" in state.options:
            state.options["hostname"] = (hostname, state.options["hostname"][1])
        state.final, state.host = True, hostname
        _walk(lines, state, True, False)
    hostname = state.expanded_hostname().lower()
    port = 22
    if "port" in state.options:
        text, origin = state.options["port"]
        port = _port(text, origin)
    remote_user = state.options["user"][0] if "user" in state.options else state.local_user
    jump = state.options.get("proxyjump")
    proxy_jump = jump[0] if jump and jump[0].lower() != "none" else None
    return SSHHostConfig(alias, hostname, remote_user, port, proxy_jump, list(state.identity_files))


def _port(text: str, origin: ConfigLine) -> int:
    if text.isdigit():
        value = int(text)
    else:
        try:
            value = socket.getservbyname(text, "tcp")
        except OSError:
            value = 0
    if not 0 < value < 65536:
        raise InventoryFileError(origin.path, origin.line, f"Port: bad port {text!r}")
    return value


def aliases(lines: list[ConfigLine]) -> list[str]:
    """Every ``Host`` pattern without wildcards or negation, first seen first."""
    found: dict[str, None] = {}
    for entry in lines:
        if entry.keyword == "host":
            for pattern in entry.args:
                if pattern and not _has_wildcard(pattern):
                    found.setdefault(pattern, None)
        for included in entry.includes:
            for name in aliases(included):
                found.setdefault(name, None)
    return list(found)


def expand_identity_file(path: str, config: SSHHostConfig, home: str | None = None) -> str:
    """An IdentityFile with ``~`` and the ``%d %u %l %L %h %r %p %n %i %%``
    tokens expanded (other tokens are left as written)."""
    home = home or os.path.expanduser("~")
    local = socket.gethostname()
    tokens = {
        "d": home,
        "u": local_user(),
        "l": local,
        "L": local.split(".")[0],
        "h": config.hostname,
        "r": config.user,
        "p": str(config.port),
        "n": config.alias,
        "i": str(os.getuid()),
        "%": "%",
    }
    out: list[str] = []
    i = 0
    while i < len(path):
        if path[i] == "%" and i + 1 < len(path) and path[i + 1] in tokens:
            out.append(tokens[path[i + 1]])
            i += 2
        else:
            out.append(path[i])
            i += 1
    result = "".join(out)
    if result == "~" or result.startswith("~/"):
        result = home + result[1:]
    return result


def import_ssh_config(path: str | Path, ssh_dir: str | Path | None = None) -> ImportResult:
    """Hosts for every alias in an ssh_config file.

    ``ssh_dir`` is where relative ``Include`` paths point (``~/.ssh`` unless
    given).
    """
    path = Path(path)
    base = Path(ssh_dir) if ssh_dir is not None else Path(os.path.expanduser("~/.ssh"))
    lines = parse_config(path, base)
    hosts: list[Host] = []
    for alias in aliases(lines):
        config = resolve(lines, alias)
        identity = expand_identity_file(config.identity_files[0], config) if config.identity_files else None
        hosts.append(
            Host(
                name=alias,
                address=config.hostname,
                port=config.port,
                user=config.user,
                proxy_jump=config.proxy_jump,
                identity_file=identity,
                ssh_alias=alias,
                source="ssh-config",
            )
        )
    return ImportResult(hosts=hosts, groups=[], source="ssh-config")
