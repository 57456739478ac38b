"""OpenSSH client config files, read once, applied to each host by asyncssh's own rules.

asyncssh evaluates ``Host`` and ``Match`` while it reads a config file, so
asking it for the options of each host re-reads and re-tokenizes every file
(a ``shlex.split`` per line): with a generated config of one ``Host`` block
per host that is O(hosts x lines). :class:`SSHConfigFiles` reads and
tokenizes each file once and replays the tokens per host through asyncssh's
own :class:`~asyncssh.config.SSHClientConfig` handlers, so every rule
(first value wins, ``Host``/``Match`` and negation, ``Include``, percent
expansion, ``ProxyJump``) stays asyncssh's, and only the reading is shared.

Imports asyncssh: import this module only when a connection is about to be made.
"""

from __future__ import annotations

import getpass
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.config import SSHClientConfig
from asyncssh.misc import Options
from asyncssh.pattern import WildcardPatternList


class _Line:
    """One tokenized config line: its number, lowercase keyword and arguments.

    ``error`` is set when the line cannot be tokenized; asyncssh reports such a
    line whether or not it is in a matching block, and so does the replay.
    """

    __slots__ = ("number", "keyword", "args", "error")

    def __init__(self, number: int, keyword: str, args: tuple[str, ...], error: str | None) -> None:
        self.number = number
        self.keyword = keyword
        self.args = args
        self.error = error


def _tokenize(path: Path) -> list[_Line]:
    """The lines of one config file split as asyncssh's ``SSHConfig.parse`` splits them."""
    conditionals = SSHClientConfig._conditionals
    no_split = SSHClientConfig._no_split
    lines: list[_Line] = []
    with open(path) as file:
        for number, raw in enumerate(file, 1):
            line = raw.strip()
            if not line or line[0] == "#":
                continue
            try:
                split_args = shlex.split(line)
            except ValueError as exc:
                lines.append(_Line(number, "", (), str(exc)))
                continue
            args: list[str] = []
            keyword = ""
            allow_equal = True
            error: str | None = None
            for i, arg in enumerate(split_args, 1):
                if arg.startswith("="):
                    if len(arg) > 1:
                        args.append(arg[1:])
                elif not allow_equal:
                    args.extend(split_args[i - 1 :])
                    break
                elif arg.endswith("="):
                    args.append(arg[:-1])
                elif "=" in arg:
                    name, value = arg.split("=", 1)
                    args.append(name)
                    args.append(value)
                else:
                    args.append(arg)
                if i == 1:
                    if not args:
                        # asyncssh would fail with an IndexError here ("= value").
                        error = "missing keyword before '='"
                        break
                    keyword = args.pop(0).lower()
                    allow_equal = keyword in conditionals
            if error is not None:
                lines.append(_Line(number, "", (), error))
                continue
            if keyword in no_split:
                args = [line.lstrip()[len(keyword) :].strip()]
            lines.append(_Line(number, keyword, tuple(args), None))
    return lines


class _ReplayedConfig(SSHClientConfig):
    """asyncssh's client config, fed pre-tokenized lines instead of reading files."""

    files: SSHConfigFiles

    def _match_host_cached(self, option: str, args: list[str]) -> None:
        # Same as asyncssh's _match_host, with the pattern list built once per pool.
        self._matching = self.files.host_patterns(",".join(args)).matches(self._orig_host)
        args.clear()

    _handlers = {**SSHClientConfig._handlers, "host": ("Host", _match_host_cached)}

    def parse(self, path: Path) -> None:
        """Apply one config file (also called by ``Include``), as asyncssh's parse does."""
        self._path = path
        self._line_no = 0
        self._matching = True
        self._tokens = {"%": "%"}
        conditionals = self._conditionals
        handlers = self._handlers
        for line in self.files.lines(path):
            if line.error is not None:
                self._line_no = line.number
                self._error(line.error)
            if not self._matching and line.keyword not in conditionals:
                continue
            entry = handlers.get(line.keyword)
            if entry is None:
                continue
            self._line_no = line.number
            option, handler = entry
            args = list(line.args)
            if not args:
                self._error(f"Missing {option} value")
            handler(self, option, args)
            if args:
                self._error(f"Extra data at end: {' '.join(args)}")
        self._set_tokens()
        for option in self._percent_expand:
            value = self._options.get(option)
            if isinstance(value, list):
                self._options[option] = [self._expand_val(item) for item in value]
            elif isinstance(value, str):
                self._options[option] = self._expand_val(value)


class _PreparsedOptions(asyncssh.SSHClientConnectionOptions):
    """Connection options built on an already evaluated config (no file is read)."""

    def __init__(self, config: SSHClientConfig, **kwargs: Any) -> None:
        # SSHConnectionOptions.__init__ would take last_config from an options
        # object; going to Options directly hands it the evaluated config.
        Options.__init__(self, last_config=config, config=[], **kwargs)


class SSHConfigFiles:
    """A set of ssh config files, read once and evaluated per host on demand.

    Files are read on first use (a file included by ``Include`` when a host
    first reaches it) and kept for the life of the object: a pool sees the
    config as it was when it first read it.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self._lines: dict[Path, list[_Line]] = {}
        self._patterns: dict[str, WildcardPatternList] = {}
        self._local_user: str | None = None

    def lines(self, path: Path) -> list[_Line]:
        """The tokenized lines of ``path``, read on first use. Raises OSError."""
        lines = self._lines.get(path)
        if lines is None:
            lines = self._lines[path] = _tokenize(path)
        return lines

    def host_patterns(self, pattern: str) -> WildcardPatternList:
        """The compiled ``Host`` pattern list for ``pattern``."""
        compiled = self._patterns.get(pattern)
        if compiled is None:
            compiled = self._patterns[pattern] = WildcardPatternList(pattern)
        return compiled

    def evaluate(self, host: str, port: int | None = None, user: str | None = None) -> SSHClientConfig:
        """The config for ``ssh [-p port] [-l user] host``, as asyncssh would evaluate it.

        Raises ``asyncssh.ConfigParseError`` (a ValueError) naming the file
        and line, OSError when a file cannot be read.
        """
        if self._local_user is None:
            try:
                self._local_user = getpass.getuser()
            except KeyError:
                raise ValueError(
                    "unknown local user name: set LOGNAME or USER in the environment"
                ) from None
        # (last config, reload, canonical, final, local user, user, host, port);
        # () means "not given", as in asyncssh.
        arguments: tuple[Any, ...] = (
            None, False, False, False, self._local_user, user if user else (), host,
            port if port else (),
        )
        config = _ReplayedConfig(*arguments)
        config.files = self
        for path in self.paths:
            config.parse(path)
        config.loaded = bool(self.paths)
        return config

    def options(
        self, host: str, port: int | None = None, user: str | None = None, **kwargs: Any
    ) -> asyncssh.SSHClientConnectionOptions:
        """Connection options for ``host`` with the config applied and ``kwargs`` on top.

        Equal to ``SSHClientConnectionOptions(config=paths, host=host, ...)``
        without reading any file again.
        """
        return _PreparsedOptions(
            self.evaluate(host, port, user),
            host=host,
            port=port if port else (),
            username=user if user else (),
            **kwargs,
        )
