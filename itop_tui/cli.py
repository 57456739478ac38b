"""The ``itop`` command: the TUI when run alone, headless subcommands otherwise.

Exit status: 0 ok, 1 the operation failed (a host failed, a check failed,
the log is broken), 2 usage, config or input error, 130 interrupted. Errors
are one message on stderr naming the file, line or field; never a
traceback (set ``ITOP_DEBUG=1`` to see one for an internal error).
``--json`` shapes are documented in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from itop_tui import __version__
from itop_tui.domain.models import (
    CRITICALITIES,
    HOST_CLASSES,
    HOST_STATUSES,
    Host,
    Inventory,
    ValidationError,
    host_change_detail,
)
from itop_tui.domain.output import strip_control
from itop_tui.domain.output_groups import format_groups, group_results
from itop_tui.domain.selectors import SelectorError, select_hosts
from itop_tui.domain.timespec import TimeSpecError, parse_since
from itop_tui.services.audit import AuditError, AuditEvent
from itop_tui.services.context import ReadOnlyError, Services
from itop_tui.services.store import StoreError
from itop_tui.services.transport import HostKeyChanged, HostKeyUnknown, TransportError
from itop_tui.settings import ConfigError, Settings, find_config_path, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# ProxyJump chains are at most 8 hops (transport_pool.MAX_JUMP_DEPTH), plus the host.
MAX_TRUST_STEPS = 10

IMPORT_FORMATS = ("ansible", "ssh-config", "csv")
EXPORT_FORMATS = ("ansible", "csv", "json")

# Fields `inventory set` may change, with how to read the value text.
LIST_FIELDS = ("groups", "tags")
OPTIONAL_TEXT_FIELDS = ("user", "runs_on", "proxy_jump", "identity_file", "ssh_alias")
SETTABLE_FIELDS = (
    "address", "port", "user", "class", "status", "criticality", "groups", "tags", "notes",
    "runs_on", "proxy_jump", "identity_file", "ssh_alias", "vars.KEY",
)

T = TypeVar("T")


class UsageError(Exception):
    """The command line asks for something impossible (exit status 2)."""


class OperationFailed(Exception):
    """The operation could not be done (exit status 1)."""


# -- argument parsing ----------------------------------------------------------

COMMANDS: list[tuple[str, str]] = [
    ("(no command)", "open the terminal UI"),
    ("check-config [FILE]", "validate a config file and show where itop keeps its data"),
    ("inventory list [SELECTOR]", "list hosts, all or those a selector picks"),
    ("inventory show HOST", "show one host with its vars and facts"),
    ("inventory import FILE", "import hosts from an Ansible inventory, ssh config or CSV"),
    ("inventory export", "write the inventory as Ansible YAML, CSV or JSON"),
    ("inventory add NAME", "add a host"),
    ("inventory remove NAME", "remove a host"),
    ("inventory set NAME F=V...", "change fields of a host"),
    ("inventory discover [SELECTOR]", "gather facts of hosts and store them"),
    ("run SELECTOR -- COMMAND", "run a command on hosts (--change CHG on production)"),
    ("audit list", "show audit events"),
    ("audit verify", "check the audit log's hash chain"),
    ("trust HOST", "show a host's SSH key fingerprint and trust it"),
]


# Modules that add command groups. Each has ``COMMANDS`` (name, text) pairs for
# the help and ``register(sub, add)`` adding its subparsers; they are imported
# lazily so a capability's imports cost nothing to the other commands.
EXTENSIONS: tuple[str, ...] = ("itop_tui.cli_procedure", "itop_tui.cli_metrics", "itop_tui.cli_change", "itop_tui.cli_backup")


def _extensions() -> list[Any]:
    import importlib

    return [importlib.import_module(name) for name in EXTENSIONS]


def _epilog() -> str:
    commands = list(COMMANDS)
    for module in _extensions():
        commands += module.COMMANDS
    width = max(len(name) for name, _ in commands)
    lines = ["commands:"]
    lines += [f"  itop {name.ljust(width)}  {text}" for name, text in commands]
    lines += [
        "",
        "Selectors: names, globs, groups, tag:X, status:production, web:db (union),",
        "web:&prod (intersection), all:!web03 (exclusion). Exit status: 0 ok,",
        "1 an operation failed, 2 usage or config error. See docs/cli.md.",
    ]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise instead of exiting the process."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command accepts, before or after the command name."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", type=Path, metavar="FILE", default=default,
                        help="config file (default: $ITOP_CONFIG, ./itop.yaml, user config dir)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", default=default,
                        help="data directory (default: $ITOP_DATA_DIR, config data_dir, user data dir)")
    parser.add_argument("--read-only", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="refuse anything that changes hosts or records")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def add_actions(add: Callable[[Any, str, str], argparse.ArgumentParser], sub: Any, name: str,
                text: str, *, metavar: str = "ACTION") -> Any:
    """Add the command ``itop NAME ACTION``; returns the subparsers its actions go in."""
    group = add(sub, name, text)
    return group.add_subparsers(dest=f"{name}_command", metavar=metavar, required=True)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0 (a count that may be none)."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not value > 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The full ``itop`` argument parser."""
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    parser = _Parser(
        prog="itop",
        description="Keyboard-first terminal console for operating IT infrastructure over SSH.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"itop {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(group: Any, name: str, text: str) -> argparse.ArgumentParser:
        parser_: argparse.ArgumentParser = group.add_parser(
            name, help=text, description=text, parents=[common]
        )
        return parser_

    p = add(sub, "check-config", "validate a config file and show where itop keeps its data")
    p.add_argument("file", nargs="?", type=Path, help="config file (default: the one itop would use)")
    p.set_defaults(handler=cmd_check_config)

    inv = add_actions(add, sub, "inventory",
                      "list, show, import, export, add, remove, set and discover hosts")

    p = add(inv, "list", "list hosts, all or those a selector picks")
    p.add_argument("selector", nargs="?", default=None, help="host selector (default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON list of host objects")
    p.set_defaults(handler=cmd_inventory_list)

    p = add(inv, "show", "show one host with its vars and facts")
    p.add_argument("host", help="host name")
    p.add_argument("--json", action="store_true", help="print the host object as JSON")
    p.set_defaults(handler=cmd_inventory_show)

    p = add(inv, "import", "import hosts from an Ansible inventory, ssh config or CSV file")
    p.add_argument("file", type=Path, help="inventory file")
    p.add_argument("--format", choices=IMPORT_FORMATS, default=None,
                   help="file format (default: guessed from the name and content)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_inventory_import)

    p = add(inv, "export", "write the inventory as Ansible YAML, CSV or JSON")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True, help="output format")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="write to FILE instead of stdout")
    p.set_defaults(handler=cmd_inventory_export)

    p = add(inv, "add", "add a host")
    p.add_argument("name", help="host name (one word)")
    p.add_argument("--address", default="", help="address or DNS name to connect to "
                   "(default: the name; 'local' for this machine without SSH)")
    p.add_argument("--port", type=int, default=None, help="SSH port")
    p.add_argument("--user", default=None, help="SSH user")
    p.add_argument("--group", action="append", default=[], dest="groups",
                   help="group (repeatable)")
    p.add_argument("--tag", action="append", default=[], dest="tags", help="tag (repeatable)")
    p.add_argument("--status", choices=HOST_STATUSES, default="development")
    p.add_argument("--class", choices=HOST_CLASSES, default="server", dest="host_class")
    p.add_argument("--criticality", choices=CRITICALITIES, default="medium")
    p.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                   help="host variable (repeatable)")
    p.add_argument("--notes", default="", help="free text")
    p.set_defaults(handler=cmd_inventory_add)

    p = add(inv, "remove", "remove a host")
    p.add_argument("name", help="host name")
    p.set_defaults(handler=cmd_inventory_remove)

    p = add(inv, "set", "change fields of a host")
    p.add_argument("name", help="host name")
    p.add_argument("assignments", nargs="+", metavar="FIELD=VALUE",
                   help=f"fields: {', '.join(SETTABLE_FIELDS)}; lists comma separated; "
                        "an empty value clears")
    p.set_defaults(handler=cmd_inventory_set)

    p = add(inv, "discover", "gather facts of hosts and store them")
    p.add_argument("selector", nargs="?", default="all", help="host selector (default: all)")
    p.add_argument("--forks", type=positive_int, default=None, help="hosts at once")
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    p.set_defaults(handler=cmd_inventory_discover)

    p = add(sub, "run", "run a command on hosts, output grouped by host")
    p.add_argument("selector", help="host selector")
    p.add_argument("words", nargs="*", metavar="COMMAND", help="the command, after --")
    p.add_argument("--forks", type=positive_int, default=None,
                   help="hosts at once (default: run.forks)")
    p.add_argument("--timeout", type=positive_float, default=None,
                   help="seconds per host (default: run.timeout)")
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    gate = p.add_mutually_exclusive_group()
    gate.add_argument("--change", default=None, metavar="CHG",
                      help="run under this approved change, inside its window (production "
                           "hosts refuse mutating commands without one)")
    gate.add_argument("--emergency", default=None, metavar="REASON",
                      help="open an emergency change for these hosts and this command; "
                           "nothing runs until an approver approves it")
    gate.add_argument("--observe", action="store_true",
                      help="a read-only command (one allowed program, no shell syntax): "
                           "needs no change")
    p.set_defaults(handler=cmd_run)

    aud = add_actions(add, sub, "audit", "show and verify the audit log")
    p = add(aud, "list", "show audit events")
    p.add_argument("--json", action="store_true", help="print a JSON list of events")
    p.add_argument("--since", default=None, metavar="WHEN",
                   help="only events since a duration ago (30m, 24h, 7d) or an ISO time")
    p.add_argument("--action", default=None, help="only events of this action (e.g. run)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the last N events")
    p.set_defaults(handler=cmd_audit_list)
    p = add(aud, "verify", "check the audit log's hash chain")
    p.set_defaults(handler=cmd_audit_verify)

    p = add(sub, "trust", "show a host's SSH key fingerprint and trust it")
    p.add_argument("host", help="host name")
    p.add_argument("--yes", action="store_true", help="trust without asking")
    p.set_defaults(handler=cmd_trust)

    for module in _extensions():
        module.register(sub, add)
    return parser


def _bare_parser() -> argparse.ArgumentParser:
    """A parser of the global options alone: ``itop`` starting the TUI, or ``--version``.

    It knows no command, so the command modules (:data:`EXTENSIONS`) and
    their imports stay out of the terminal UI's start-up.
    """
    parser = _Parser(prog="itop", add_help=False)
    parser.add_argument("--version", action="version", version=f"itop {__version__}")
    _global_options(parser, suppress=False)
    parser.set_defaults(command=None)
    return parser


# Global options that take a value, as separate words (``--config FILE``).
_VALUE_OPTIONS = ("--config", "--data-dir")


def names_no_command(words: Sequence[str]) -> bool:
    """True when ``words`` hold only the global options: no command, no help.

    Anything this does not recognise (an abbreviation, ``-h``, a word) is
    left to the full parser, so its messages stay the same.
    """
    index = 0
    while index < len(words):
        word = words[index]
        if word in _VALUE_OPTIONS:
            index += 2
        elif word in ("--read-only", "--version") or word.startswith(
            tuple(f"{option}=" for option in _VALUE_OPTIONS)
        ):
            index += 1
        else:
            return False
    return True


_NEGATIVE_DURATION = re.compile(r"-\d+\s*[smhdwSMHDW]")


def _join_negative_durations(words: list[str]) -> list[str]:
    """``--since -5h`` as ``--since=-5h``: argparse would take ``-5h`` for an option."""
    joined: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else ""
        if word == "--since" and _NEGATIVE_DURATION.fullmatch(following):
            joined.append(f"{word}={following}")
            index += 2
            continue
        joined.append(word)
        index += 1
    return joined


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; everything after the first ``--`` is the command of ``run``."""
    words = list(argv)
    tail: list[str] | None = None
    if "--" in words:
        split = words.index("--")
        words, tail = words[:split], words[split + 1:]
    words = _join_negative_durations(words)
    args: argparse.Namespace | None = None
    if tail is None and names_no_command(words):
        # An error (``--config`` without its file) is reported by the full
        # parser below, with the usage it always printed.
        with contextlib.suppress(UsageError):
            args = _bare_parser().parse_args(words)
    if args is None:
        args = build_parser().parse_args(words)
    args.command_words = None
    if args.command == "run":
        if tail is not None and args.words:
            raise UsageError(
                f"itop run: unexpected {' '.join(args.words)!r} before --; "
                "put the whole command after --"
            )
        command_words = tail if tail is not None else args.words
        if not command_words or not " ".join(command_words).strip():
            raise UsageError("itop run: no command given; usage: itop run SELECTOR -- COMMAND")
        args.command_words = command_words
    elif tail is not None:
        raise UsageError("itop: -- is only used by `itop run SELECTOR -- COMMAND`")
    return args


# -- main ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``itop`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `itop audit list | head`): not an error.
        _silence_stdout()
        return EXIT_OK


def _main(argv: Sequence[str]) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        err(str(exc), prefix=False)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    handler: Callable[[argparse.Namespace], int] = getattr(args, "handler", cmd_tui)
    try:
        return handler(args)
    except (ConfigError, StoreError, SelectorError, TimeSpecError, UsageError) as exc:
        err(str(exc))
        return EXIT_USAGE
    except ValidationError as exc:
        err(f"invalid {exc.field}: {exc.message}")
        return EXIT_USAGE
    except (ReadOnlyError, OperationFailed, AuditError, TransportError) as exc:
        err(str(exc))
        return EXIT_FAILED
    except BrokenPipeError:
        raise  # handled in main(): the reader went away
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        err(f"{where}{exc.strerror or exc}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
        if isinstance(exc, _file_errors()):
            err(str(exc))
            return EXIT_USAGE
        if os.environ.get("ITOP_DEBUG"):
            traceback.print_exc()
        err(f"internal error: {type(exc).__name__}: {exc} (set ITOP_DEBUG=1 for details)")
        return EXIT_FAILED


def _file_errors() -> tuple[type[Exception], ...]:
    """Errors in files to import or export: usage errors, imported only when
    one is raised (the terminal UI starts without the importers and exporters)."""
    from itop_tui.services.exporters import ExportError
    from itop_tui.services.importers import InventoryFileError

    return (ExportError, InventoryFileError)


def err(message: str, *, prefix: bool = True) -> None:
    """Print an ``itop:`` message on stderr."""
    print(f"itop: {message}" if prefix else message, file=sys.stderr)


def _silence_stdout() -> None:
    # Python would complain again when flushing stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings the global options point at."""
    return load_settings(args.config, args.data_dir)


def open_services(args: argparse.Namespace) -> Services:
    """Settings and services for a headless command, reporting store recoveries."""
    services = Services.open(settings_for(args), origin="cli", read_only=bool(args.read_only))
    for message in services.recovery_messages:
        err(f"warning: {message}")
    return services


def warn_recovered(*stores: Any) -> None:
    """Say on stderr which of ``stores`` were repaired on opening (``recovery_message``)."""
    for store in stores:
        if store.recovery_message:
            err(f"warning: {store.recovery_message}")


def run_closing(services: Services, work: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``work()`` to its end, then close ``services``' connections."""

    async def go() -> T:
        try:
            return await work()
        finally:
            await services.close()

    return asyncio.run(go())


@contextlib.contextmanager
def on_stop_signals(handle: Callable[[signal.Signals], None], *, once: bool = False) -> Iterator[None]:
    """Call ``handle(signal)`` on SIGINT or SIGTERM inside the block (in the running loop).

    With ``once`` the handlers go after the first signal, so a second Ctrl-C
    interrupts as usual. Outside the main thread nothing is installed.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        handle(sig)
        if once:
            for one in installed:
                loop.remove_signal_handler(one)
            installed.clear()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread: Ctrl-C then interrupts as usual
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file beside it: never half a file."""
    temp = path.with_name(f".{path.name}.itop-tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def split_assignment(text: str, form: str, option: str | None = "--var") -> tuple[str, str]:
    """``NAME=VALUE`` as its stripped name and its value, or a usage error naming
    ``form`` (as in ``NAME=VALUE``) and the ``option`` it was given to."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        where = f"{option}: " if option else ""
        raise UsageError(f"{where}expected {form}, got {text!r}")
    return name, value


def print_json(data: Any, out: TextIO | None = None) -> None:
    """Print ``data`` as indented JSON (the ``--json`` form of every command)."""
    print(json.dumps(data, indent=2, ensure_ascii=False), file=out or sys.stdout)


def clean(value: object) -> str:
    """Text from hosts or files as safe to print on a terminal."""
    return strip_control("" if value is None else str(value))


def known_change(services: Services, text: str | None) -> str | None:
    """``--change`` as the reference (CHG-N) of a change that exists; None when not given.

    A malformed or unknown reference is a usage error (exit 2), caught
    before anything runs or is recorded.
    """
    if text is None:
        return None
    from itop_tui.domain.change import normalize_ref
    from itop_tui.services.change_repo import ChangeRepository

    try:
        ref = normalize_ref(text)
    except ValueError as exc:
        raise UsageError(f"--change: {exc}") from None
    if ChangeRepository.in_data_dir(services.settings.data_dir).get(ref) is None:
        raise UsageError(f"--change: no change {ref} (see `itop change list`)")
    return ref


def _unknown_host(name: str) -> UsageError:
    return UsageError(f"unknown host {name!r} (see `itop inventory list`)")


def _require_host(services: Services, name: str) -> Host:
    host = services.inventory.get_host(name)
    if host is None:
        raise _unknown_host(name)
    return host


# -- the TUI -------------------------------------------------------------------


def cmd_tui(args: argparse.Namespace) -> int:
    """``itop`` alone: the terminal UI."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the terminal UI needs a terminal (stdin and stdout are not one); "
            "see `itop --help` for the headless commands"
        )
    settings = settings_for(args)
    services = Services.open(settings, origin="tui", read_only=bool(args.read_only))
    # Imported here so headless commands never load textual.
    from itop_tui.app import ItopApp

    app = ItopApp(services=services)
    app.run()
    return int(app.return_code or 0)


# -- check-config ----------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    """``itop check-config [FILE]``."""
    path = args.file if args.file is not None else find_config_path(args.config)
    settings = load_settings(path, args.data_dir)
    if settings.config_path is None:
        print("no config file found: itop runs on the embedded default")
    else:
        print(f"{settings.config_path}: ok")
    print(f"data dir: {settings.data_dir}")
    print(f"known hosts: {settings.known_hosts_path}")
    return EXIT_OK


# -- inventory -------------------------------------------------------------------


def select_or_all(inventory: Inventory, selector: str | None) -> list[Host]:
    """Hosts a selector picks, or every host when there is none."""
    if selector is None:
        return list(inventory.hosts.values())
    return select_hosts(inventory, selector)


def select_some(inventory: Inventory, selector: str) -> list[Host]:
    """Hosts a selector picks; a usage error when it picks none."""
    hosts = select_hosts(inventory, selector)
    if not hosts:
        raise UsageError(f"selector {selector!r} matches no host (see `itop inventory list`)")
    return hosts


def format_bytes(value: object) -> str:
    """``3.8 GiB`` for a byte count; empty for unknown."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def format_duration(seconds: object) -> str:
    """``3d 4h``, ``5h 12m`` or ``42m`` for an uptime; empty for unknown."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return ""
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _os_text(facts: dict[str, Any]) -> str:
    return " ".join(str(facts[k]) for k in ("os_name", "os_version") if facts.get(k))


def table(rows: list[list[str]]) -> str:
    """Rows as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def cmd_inventory_list(args: argparse.Namespace) -> int:
    """``itop inventory list [SELECTOR] [--json]``.

    A selector that matches no host is a usage error (exit 2), as for every
    command taking one; an empty inventory listed whole is not.
    """
    services = open_services(args)
    inventory = services.inventory.load()
    hosts = list(inventory.hosts.values()) if args.selector is None else select_some(
        inventory, args.selector)
    if args.json:
        print_json([host.to_dict() for host in hosts])
        return EXIT_OK
    if not hosts:
        print("no hosts")
        return EXIT_OK
    rows = [["NAME", "ADDRESS", "STATUS", "GROUPS", "OS", "CPUS", "MEMORY", "LAST SEEN"]]
    for host in hosts:
        facts = host.facts or {}
        rows.append([clean(cell) for cell in (
            host.name,
            host.address or host.name,
            host.status,
            ",".join(host.groups),
            _os_text(facts),
            facts.get("cpu_count") or "",
            format_bytes(facts.get("mem_total")),
            host.last_seen or "",
        )])
    print(table(rows))
    return EXIT_OK


def _show_lines(host: Host) -> list[str]:
    pairs: list[tuple[str, object]] = [
        ("name", host.name),
        ("address", host.address or "(the name)"),
        ("port", host.port or ""),
        ("user", host.user or ""),
        ("class", host.host_class),
        ("status", host.status),
        ("criticality", host.criticality),
        ("groups", ", ".join(host.groups)),
        ("tags", ", ".join(host.tags)),
    ]
    pairs += [(label, value) for label, value in (
        ("runs_on", host.runs_on), ("proxy_jump", host.proxy_jump),
        ("ssh_alias", host.ssh_alias), ("identity_file", host.identity_file)) if value]
    pairs += [("source", host.source), ("last seen", host.last_seen or "never")]
    if host.notes:
        pairs.append(("notes", host.notes))
    width = max(len(label) for label, _ in pairs) + 2
    lines = [f"{label + ':':<{width}}{value}".rstrip() for label, value in pairs]
    lines.append(f"{'vars:':<{width}}(none)" if not host.vars else "vars:")
    lines += [f"  {key}: {json.dumps(value, ensure_ascii=False)}" for key, value in sorted(host.vars.items())]
    if not host.facts:
        lines.append(f"{'facts:':<{width}}not discovered yet (itop inventory discover HOST)")
        return lines
    lines.append(f"facts (at {host.facts_at}):")
    for key, value in host.facts.items():
        if key == "filesystems" and isinstance(value, list):
            lines.append("  filesystems:")
            for fs in value:
                if isinstance(fs, dict):
                    lines.append(
                        f"    {fs.get('mount')} ({fs.get('fstype') or '?'}) "
                        f"{format_bytes(fs.get('used'))} used of {format_bytes(fs.get('size'))}, "
                        f"{format_bytes(fs.get('avail'))} free"
                    )
        elif key == "mem_total":
            lines.append(f"  mem_total: {format_bytes(value)} ({value} bytes)")
        elif key == "uptime_seconds":
            lines.append(f"  uptime_seconds: {value} ({format_duration(value)})")
        elif isinstance(value, list):
            lines.append(f"  {key}: {', '.join(str(v) for v in value)}")
        else:
            lines.append(f"  {key}: {'' if value is None else value}")
    return lines


def cmd_inventory_show(args: argparse.Namespace) -> int:
    """``itop inventory show HOST [--json]``."""
    services = open_services(args)
    host = _require_host(services, args.host)
    if args.json:
        print_json(host.to_dict())
    else:
        print("\n".join(clean(line) for line in _show_lines(host)))
    return EXIT_OK


def cmd_inventory_import(args: argparse.Namespace) -> int:
    """``itop inventory import FILE [--format ...] [--json]``."""
    from itop_tui.services.importers import import_file

    services = open_services(args)
    services.require_operator("import an inventory")
    result = import_file(args.file, args.format)
    added, updated = services.inventory.upsert_hosts(list(result.hosts))
    groups_added, groups_updated = services.inventory.upsert_groups(list(result.groups))
    summary = {
        "file": str(args.file),
        "source": result.source,
        "hosts": len(result.hosts),
        "added": added,
        "updated": updated,
        "unchanged": len(result.hosts) - added - updated,
        "groups": len(result.groups),
        "groups_added": groups_added,
        "groups_updated": groups_updated,
        "warnings": list(result.warnings),
    }
    services.audit.append("inventory.import", str(Path(args.file).absolute()), summary)
    for warning in result.warnings:
        err(f"warning: {clean(warning)}")
    if args.json:
        print_json(summary)
    else:
        print(
            f"{args.file}: {summary['hosts']} hosts ({added} added, {updated} updated, "
            f"{summary['unchanged']} unchanged), {summary['groups']} groups"
        )
    return EXIT_OK


def cmd_inventory_export(args: argparse.Namespace) -> int:
    """``itop inventory export --format ansible|csv|json [-o FILE]``."""
    from itop_tui.services.exporters import export_inventory  # only this command needs it

    services = open_services(args)
    inventory = services.inventory.load()
    text = export_inventory(inventory, args.format)
    if args.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return EXIT_OK
    write_atomic(Path(args.output), text)
    err(f"wrote {len(inventory.hosts)} hosts to {args.output}", prefix=False)
    return EXIT_OK


def cmd_inventory_add(args: argparse.Namespace) -> int:
    """``itop inventory add NAME [options]``."""
    services = open_services(args)
    services.require_operator("add hosts")
    host = Host(
        name=args.name,
        address=args.address,
        port=args.port,
        user=args.user,
        host_class=args.host_class,
        status=args.status,
        criticality=args.criticality,
        groups=list(dict.fromkeys(args.groups)),
        tags=list(dict.fromkeys(args.tags)),
        vars=dict(split_assignment(v, "KEY=VALUE") for v in args.var),
        notes=args.notes,
        source="manual",
    )
    host.validate()
    if services.inventory.get_host(host.name) is not None:
        raise UsageError(
            f"host {host.name!r} exists already; change it with `itop inventory set {host.name} FIELD=VALUE`"
        )
    services.inventory.upsert_hosts([host])
    services.audit.append("inventory.add", host.name, {
        "address": host.address, "port": host.port, "user": host.user, "groups": host.groups,
        "tags": host.tags, "status": host.status, "class": host.host_class,
        "criticality": host.criticality, "vars": host.vars,
    })
    print(f"added {host.name}")
    return EXIT_OK


def cmd_inventory_remove(args: argparse.Namespace) -> int:
    """``itop inventory remove NAME``."""
    services = open_services(args)
    services.require_operator("remove hosts")
    if not services.inventory.remove_host(args.name):
        raise _unknown_host(args.name)
    services.audit.append("inventory.remove", args.name)
    print(f"removed {args.name}")
    return EXIT_OK


def parse_assignments(host: Host, assignments: list[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` words as keyword changes for ``update_host``.

    Lists are comma separated; an empty value clears a field; ``vars.KEY=``
    removes a variable.
    """
    changes: dict[str, Any] = {}
    new_vars = dict(host.vars)
    vars_changed = False
    for text in assignments:
        name, value = split_assignment(text, "FIELD=VALUE", option=None)
        if name.startswith("vars."):
            key = name[len("vars."):]
            if not key:
                raise UsageError(f"{text!r}: give the variable name, as in vars.KEY=VALUE")
            if value:
                new_vars[key] = value
            else:
                new_vars.pop(key, None)
            vars_changed = True
        elif name in LIST_FIELDS:
            changes[name] = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
        elif name == "port":
            if value and not value.isdigit():
                raise ValidationError("port", f"must be a number, got {value!r}")
            changes["port"] = int(value) if value else None
        elif name in OPTIONAL_TEXT_FIELDS:
            changes[name] = value or None
        elif name in ("address", "class", "status", "criticality", "notes"):
            changes[name] = value
        else:
            raise UsageError(
                f"{name!r} cannot be set; settable fields: {', '.join(SETTABLE_FIELDS)}"
            )
    if vars_changed:
        changes["vars"] = new_vars
    return changes


def cmd_inventory_set(args: argparse.Namespace) -> int:
    """``itop inventory set NAME FIELD=VALUE...``."""
    services = open_services(args)
    services.require_operator("change hosts")
    host = _require_host(services, args.name)
    changes = parse_assignments(host, args.assignments)
    try:
        updated = services.inventory.update_host(args.name, **changes)
    except KeyError:
        raise _unknown_host(args.name) from None
    services.audit.append("inventory.set", args.name, host_change_detail(host, changes))
    print(f"updated {updated.name}: {', '.join(sorted(changes))}")
    return EXIT_OK


def _key_hints(unknown: dict[str, HostKeyUnknown], changed: dict[str, HostKeyChanged]) -> None:
    for name, exc in sorted(unknown.items()):
        key_host = getattr(exc, "key_host", exc.host)
        err(
            f"{name}: unknown host key of {key_host} port {exc.port}, fingerprint "
            f"{exc.fingerprint}; check it, then trust it with `itop trust {name}`"
        )
    for name, changed_exc in sorted(changed.items()):
        err(
            f"{name}: HOST KEY CHANGED (trusted {changed_exc.known}, offered {changed_exc.offered}); "
            "connection refused"
        )


def cmd_inventory_discover(args: argparse.Namespace) -> int:
    """``itop inventory discover [SELECTOR] [--json]``."""
    from itop_tui.ops.discovery import DiscoveryResult, FactDiscovery

    services = open_services(args)
    services.require_writable("discover facts")
    hosts = select_some(services.inventory.load(), args.selector)
    discovery = FactDiscovery(services)

    def show(result: DiscoveryResult) -> None:
        if args.json:
            return
        if result.ok and result.facts is not None:
            facts = result.facts
            summary = ", ".join(part for part in (
                _os_text(facts),
                f"{facts['cpu_count']} CPUs" if facts.get("cpu_count") else "",
                format_bytes(facts.get("mem_total")),
                f"up {format_duration(facts.get('uptime_seconds'))}"
                if facts.get("uptime_seconds") is not None else "",
            ) if part)
            print(clean(f"{result.host}: ok  {summary}"), flush=True)
        else:
            print(clean(f"{result.host}: FAILED  {result.error}"), flush=True)

    results = run_closing(
        services, lambda: discovery.discover(hosts, on_result=show, forks=args.forks))
    if args.json:
        print_json([r.to_dict() for r in results])
    failed = [r for r in results if not r.ok]
    _key_hints(discovery.unknown_keys, discovery.changed_keys)
    for warning in discovery.warnings:
        err(f"warning: {warning}")
    err(f"discovered {len(results) - len(failed)} of {len(results)} hosts", prefix=False)
    return EXIT_FAILED if failed else EXIT_OK


# -- run -------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """``itop run SELECTOR [--change CHG | --emergency REASON | --observe] -- COMMAND
    [--forks N] [--timeout S] [--json]``.

    Commands are mutating unless ``--observe``: on production hosts they run
    only under an approved change in its window (docs/changes.md).
    """
    from itop_tui.ops.change_gate import ChangeRequired, ObserveRefused
    from itop_tui.ops.fleet import FleetRunner

    # As with ssh, several words are joined by spaces and the remote shell
    # reads them: `itop run all -- echo '$HOME'` expands on the host.
    command = " ".join(args.command_words)
    services = open_services(args)
    services.require_writable("run commands")
    if not args.observe:
        # A trainee may only observe; refused before the selector is even read.
        services.require_operator("run commands")
    hosts = select_some(services.inventory.load(), args.selector)
    if args.emergency is not None:
        return _open_emergency(services, hosts, args, command)
    change_ref = known_change(services, args.change)
    runner = FleetRunner(services)
    try:
        results = run_closing(services, lambda: runner.run(
            hosts, command, forks=args.forks, timeout=args.timeout,
            mutating=not args.observe, change_ref=change_ref))
    except ObserveRefused as exc:
        raise UsageError(str(exc)) from None
    except ChangeRequired as exc:
        raise OperationFailed(f"refused: {exc}") from None
    if runner.decision is not None and runner.decision.change_ref:
        err(f"recorded against {runner.decision.change_ref}", prefix=False)
    if args.json:
        print_json([r.to_dict() for r in results])
    else:
        sys.stdout.write(format_groups(group_results(results)))
    failed = [r for r in results if not r.ok]
    _key_hints(runner.unknown_keys, runner.changed_keys)
    for warning in runner.warnings:
        err(f"warning: {warning}")
    if failed:
        err(f"{len(failed)} of {len(results)} hosts failed", prefix=False)
    return EXIT_FAILED if failed else EXIT_OK


def _open_emergency(services: Services, hosts: list[Host], args: argparse.Namespace,
                    command: str) -> int:
    """``itop run --emergency REASON``: open an emergency change; nothing runs yet (exit 1)."""
    import shlex

    from itop_tui.domain.change import ChangeRefused
    from itop_tui.ops.change_workflow import ChangeWorkflow

    if not any(h.status == "production" for h in hosts):
        raise UsageError(
            "--emergency opens a change for production hosts, and none of the selected hosts "
            "is in production: run the command without it"
        )
    workflow = ChangeWorkflow(services)
    try:
        change = workflow.open_emergency(hosts, args.emergency, command)
    except ChangeRefused as exc:
        raise OperationFailed(exc.reason) from None
    approvers = workflow.approvers_for(change)
    who = ", ".join(approvers) if approvers else "nobody is listed with the approver role under roles"
    minutes = services.settings.changes.emergency_window_minutes
    rerun = " ".join(shlex.quote(w) for w in args.command_words)
    if args.json:
        print_json(change.to_dict())
    err(
        f"{change.ref} opened: an emergency change for {', '.join(change.hosts)}. Nothing ran.\n"
        f"It needs one approval by an approver other than {services.actor} ({who}):\n"
        f"  itop change approve {change.ref}\n"
        f"Once approved, its window is open for {minutes:g} minutes; then run:\n"
        f"  itop run --change {change.ref} {shlex.quote(args.selector)} -- {rerun}",
        prefix=False,
    )
    return EXIT_FAILED


# -- audit -----------------------------------------------------------------------


def _event_line(event: AuditEvent) -> str:
    detail = "" if event.detail in (None, {}) else json.dumps(event.detail, ensure_ascii=False)
    return clean(
        f"{event.at}  #{event.seq}  {event.actor}@{event.origin}  {event.action}  "
        f"{event.target}  {event.result}  {detail}"
    ).rstrip()


def cmd_audit_list(args: argparse.Namespace) -> int:
    """``itop audit list [--json] [--since WHEN] [--action A] [--limit N]``."""
    services = open_services(args)
    since = None
    if args.since is not None:
        since = datetime.fromtimestamp(parse_since(args.since, time.time()), UTC)
    events = [e for e in services.audit.events(since=since)
              if args.action is None or e.action == args.action]
    if args.limit is not None:
        events = events[-args.limit:]
    if args.json:
        print_json([e.to_dict() for e in events])
    else:
        for event in events:
            print(_event_line(event))
        if not events:
            err("no audit events", prefix=False)
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """``itop audit verify``: exit 1 naming the first broken line."""
    services = open_services(args)
    verification = services.audit.verify()
    if verification.ok:
        print(verification.message)
        return EXIT_OK
    err(f"audit log broken: {verification.message}")
    return EXIT_FAILED


# -- trust -----------------------------------------------------------------------


def cmd_trust(args: argparse.Namespace) -> int:
    """``itop trust HOST [--yes]``."""
    services = open_services(args)
    services.require_operator("trust host keys")
    host = _require_host(services, args.host)
    if host.is_local:
        raise UsageError(f"{host.name} is this machine (address local): there is no host key")
    return run_closing(services, lambda: _trust(services, host, assume_yes=bool(args.yes)))


async def _trust(services: Services, host: Host, *, assume_yes: bool) -> int:
    """Fetch the key and trust it; unknown ProxyJump hops are offered first, one by one.

    The caller closes ``services``.
    """
    pool = services.transports
    for _ in range(MAX_TRUST_STEPS):
        try:
            fingerprint, key_data = await pool.fetch_host_key(host)
        except HostKeyUnknown as hop:
            # A jump host on the way has an unknown key: it must be trusted first.
            key_host = str(getattr(hop, "key_host", hop.host))
            label = f"jump host {hop.host} (on the way to {host.name})"
            if not _confirm_key(label, key_host, hop.port, hop.fingerprint, assume_yes):
                print("not trusted")
                return EXIT_FAILED
            services.trust_host_key(key_host, hop.port, hop.key_data)
            print(f"trusted {hop.fingerprint} for {key_host} port {hop.port}")
            continue
        except HostKeyChanged as exc:
            raise OperationFailed(str(exc)) from None
        endpoint = pool.endpoint(host)
        status = pool.known_hosts.check(endpoint.key_host, endpoint.port, key_data)
        where = f"{endpoint.key_host} port {endpoint.port}"
        if status == "known":
            print(f"{host.name} ({where}): key {fingerprint} is trusted already")
            return EXIT_OK
        if isinstance(status, tuple):
            raise OperationFailed(
                f"{host.name} ({where}): HOST KEY CHANGED, refusing to trust it. "
                f"Trusted fingerprint {status[1]}, offered {fingerprint}. If the host was "
                f"really reinstalled, remove the old key from "
                f"{services.settings.known_hosts_path} first."
            )
        if not _confirm_key(host.name, endpoint.key_host, endpoint.port, fingerprint, assume_yes):
            print("not trusted")
            return EXIT_FAILED
        services.trust_host_key(endpoint.key_host, endpoint.port, key_data)
        print(f"trusted {fingerprint} for {host.name} ({where})")
        return EXIT_OK
    raise OperationFailed(f"{host.name}: too many jump hosts with unknown keys")


def _confirm_key(label: str, address: str, port: int, fingerprint: str, assume_yes: bool) -> bool:
    """Show the key and ask; True when it may be trusted."""
    print(f"host:        {label}")
    print(f"address:     {address}")
    print(f"port:        {port}")
    print(f"fingerprint: {fingerprint}")
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("not a terminal, cannot ask: check the fingerprint and pass --yes")
    try:
        answer = input("Trust this key? [y/N] ").strip().lower()
    except EOFError:
        return False
    return answer in ("y", "yes")
