"""The change gate: production hosts take mutating actions only under an approved change.

Every mutating action on hosts (an ad-hoc ``itop run``, a mutating procedure
step, a restore in place) asks :meth:`ChangeGate.check` first. A host whose
status is ``production`` is protected: the action goes ahead only when an
approved change (state ``scheduled`` or ``implement``) that covers the host
is inside its window right now: the change the caller names, or else the
single active change covering every protected host. The decision names that
change, and the action is written to the change's work log and to the audit
log (``change.gate``). Refusals are audited too.

A procedure run the change workflow made for its change (``itop change
implement|backout``) asks :meth:`ChangeGate.check_step`, which lets it
through while that change is open on the hosts, without a second record
(the workflow records the run itself); the backout run of a *failed*
change counts as open inside the window (see :func:`opens_linked_run`).

Read-only work (metrics, checks, discovery, check mode, ``itop run
--observe``) is never blocked. What counts as read-only for an ad-hoc
command is decided by :func:`observe_command`: a conservative allowlist of
programs that only read, with no shell syntax at all (see docs/changes.md,
"Observing production without a change").
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from itop_tui.domain.change import APPROVED_STATES, Change, normalize_ref
from itop_tui.domain.change_windows import active_changes
from itop_tui.domain.models import Host
from itop_tui.services.change_repo import ChangeRepository
from itop_tui.services.context import Services

PRODUCTION = "production"


@dataclass(frozen=True)
class GateDecision:
    """Whether an action on hosts may go ahead, and under which change.

    ``change_ref`` is the change the action is recorded against (None when
    no change was needed or none was found); ``protected`` the production
    hosts among the targets; ``reason`` a sentence for the person.
    """

    allowed: bool
    reason: str
    change_ref: str | None = None
    protected: tuple[str, ...] = ()
    mutating: bool = True

    def to_dict(self) -> dict[str, object]:
        """Plain data for ``--json`` and the audit log."""
        return {
            "allowed": self.allowed, "reason": self.reason, "change": self.change_ref,
            "protected": list(self.protected), "mutating": self.mutating,
        }


REMEDIES = (". Run under a change with --change CHG-N, open an emergency change with "
            "--emergency REASON, or use --observe for a read-only command")
"""How a refusal ends for ``itop run``; commands without these options replace it."""

NAME_ONE = "; name one with --change"
"""How a refusal for several active changes ends for ``itop run``."""

OBSERVE_OPTION = "--observe"
"""What :class:`ObserveRefused` calls the read-only mode (the ``itop run`` option)."""


def without_cli_remedies(reason: str) -> str:
    """``reason`` without the ``itop run`` options it suggests.

    For front ends that word their own remedies (the TUI has no options):
    the CLI keeps the reason as it is.
    """
    return reason.removesuffix(REMEDIES).removesuffix(NAME_ONE)


class ChangeRequired(Exception):
    """A mutating action on production hosts was refused by the gate."""

    def __init__(self, decision: GateDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class ObserveRefused(ValueError):
    """A command given as read-only (``--observe``) is not on the read-only allowlist.

    The message names the ``--observe`` option; :meth:`worded` gives it with
    another name for the mode, for front ends without that option.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(f"{OBSERVE_OPTION}{problem}")
        self.problem = problem
        """The message after the mode's name (it starts with ``:`` or a space)."""

    def worded(self, mode: str) -> str:
        """The message with the read-only mode called ``mode`` instead of ``--observe``."""
        return f"{mode}{self.problem}"


class ChangeGate:
    """Decides whether actions on hosts may go ahead (see the module docstring).

    ``clock`` returns the current time (UTC); tests pass their own.
    """

    def __init__(
        self,
        services: Services,
        *,
        changes: ChangeRepository | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.services = services
        self._changes = changes
        self.clock = clock or (lambda: datetime.now(UTC))

    @property
    def changes(self) -> ChangeRepository:
        """The change records (opened on first use: most runs touch no production host)."""
        if self._changes is None:
            self._changes = ChangeRepository.in_data_dir(self.services.settings.data_dir)
        return self._changes

    def check(
        self,
        hosts: Sequence[Host],
        *,
        mutating: bool,
        change_ref: str | None,
        what: str | None = None,
    ) -> GateDecision:
        """Decide for an action on ``hosts``; records it against the change when allowed.

        ``what`` describes the action (``run: systemctl restart nginx``):
        when the decision is taken under a change it goes to that change's
        work log. A refusal, and any decision under a change, is audited.
        """
        protected = tuple(dict.fromkeys(h.name for h in hosts if h.status == PRODUCTION))
        names = [h.name for h in hosts]
        if not mutating:
            return GateDecision(True, "read-only work is never blocked", None, protected, False)
        now = self.clock()
        if change_ref is not None:
            decision = self._under(change_ref, protected, now)
        elif not protected:
            return GateDecision(True, "no production host among the targets", None, protected)
        else:
            decision = self._find(protected, now)
        self._record(decision, names, what, now)
        return decision

    def require(
        self,
        hosts: Sequence[Host],
        *,
        mutating: bool,
        change_ref: str | None,
        what: str | None = None,
    ) -> GateDecision:
        """:meth:`check`, raising :class:`ChangeRequired` when the action is refused."""
        decision = self.check(hosts, mutating=mutating, change_ref=change_ref, what=what)
        if not decision.allowed:
            raise ChangeRequired(decision)
        return decision

    def check_step(
        self,
        hosts: Sequence[Host],
        *,
        run_id: str,
        change_ref: str | None,
        what: str,
    ) -> GateDecision:
        """Decide for a mutating procedure step of run ``run_id`` on ``hosts``.

        A run that the change ``change_ref`` made for itself (linked in the
        change as its implementation or backout run) is allowed while the
        change is open on the production hosts (:func:`opens_linked_run`),
        without a second record: the workflow audits the run and writes it
        to the work log. Any other step is decided by :meth:`check` under
        ``change_ref`` (else the single active change), and recorded.
        """
        protected = tuple(dict.fromkeys(h.name for h in hosts if h.status == PRODUCTION))
        if change_ref is not None and protected:
            try:
                change = self.changes.get(normalize_ref(change_ref))
            except ValueError:
                change = None
            if change is not None and opens_linked_run(change, run_id, protected, self.clock()):
                purposes = "/".join(sorted({r.purpose for r in change.runs if r.id == run_id}))
                return GateDecision(True, f"{run_id} is the {purposes} run of {change.ref}, "
                                          "open now", change.ref, protected)
        return self.check(hosts, mutating=True, change_ref=change_ref, what=what)

    def active(self, host_names: Sequence[str] = ()) -> list[Change]:
        """Approved changes inside their window now, covering every one of ``host_names``."""
        return active_changes(self.changes.all(), list(host_names), self.clock())

    # -- internals -------------------------------------------------------------

    def _under(self, change_ref: str, protected: tuple[str, ...], now: datetime) -> GateDecision:
        try:
            ref = normalize_ref(change_ref)
        except ValueError as exc:
            return GateDecision(False, str(exc), None, protected)
        change = self.changes.get(ref)
        if change is None:
            return GateDecision(False, f"no change {ref} (see `itop change list`)", None, protected)
        problem = _why_not(change, protected, now)
        if problem:
            return GateDecision(False, problem, ref, protected)
        left = _minutes(change, now)
        return GateDecision(True, f"allowed under {ref} (window open, {left} left)", ref, protected)

    def _find(self, protected: tuple[str, ...], now: datetime) -> GateDecision:
        changes = self.changes.all()
        active = active_changes(changes, list(protected), now)
        hosts = ", ".join(protected)
        if len(active) == 1:
            change = active[0]
            return GateDecision(
                True,
                f"allowed under {change.ref}, the active change covering {hosts} "
                f"({_minutes(change, now)} left)",
                change.ref, protected,
            )
        if len(active) > 1:
            refs = ", ".join(c.ref for c in active)
            return GateDecision(
                False,
                f"several active changes cover {hosts}: {refs}{NAME_ONE}",
                None, protected,
            )
        hint = _upcoming_hint(changes, protected, now)
        return GateDecision(
            False,
            f"{hosts} {'is a production host' if len(protected) == 1 else 'are production hosts'}"
            f": a mutating action needs an approved change covering "
            f"{'it' if len(protected) == 1 else 'them'} inside its window, and none is active"
            f"{hint}{REMEDIES}",
            None, protected,
        )

    def _record(
        self, decision: GateDecision, names: list[str], what: str | None, now: datetime
    ) -> None:
        detail: dict[str, object] = {
            "hosts": names, "protected": list(decision.protected), "change": decision.change_ref,
            "what": what, "reason": decision.reason,
        }
        target = decision.change_ref or ",".join(decision.protected or tuple(names))
        self.services.audit.append(
            "change.gate", target, detail, result="ok" if decision.allowed else "refused"
        )
        if decision.allowed and decision.change_ref is not None and what:
            self.changes.append_log(
                decision.change_ref, actor=self.services.actor, now=now, kind="run",
                text=f"{what} on {', '.join(names)}",
                detail={"hosts": names, "origin": self.services.origin},
            )


def opens_linked_run(change: Change, run_id: str, hosts: Sequence[str], now: datetime) -> bool:
    """Whether ``change`` made run ``run_id`` and is open on ``hosts`` at ``now``.

    Open means: the run is linked in the change (its implementation or
    backout run), the change is approved (scheduled or being implemented)
    and ``now`` is inside its window, covering every host. One exception:
    a *failed* change stays open to its own backout run inside its window,
    because a failed change can be backed out later (docs/changes.md) and
    the backout is what takes it out of ``failed``.
    """
    purposes = {r.purpose for r in change.runs if r.id == run_id}
    if not purposes:
        return False
    if change.state == "failed" and "backout" in purposes:
        # Judged as if it were still being implemented: same window, same hosts.
        change = replace(change, state="implement")
    return bool(active_changes([change], list(hosts), now))


def _why_not(change: Change, protected: tuple[str, ...], now: datetime) -> str | None:
    """Why ``change`` cannot cover an action on ``protected`` now (None: it can)."""
    if change.state not in APPROVED_STATES:
        return (f"{change.ref} is in state {change.state}: only an approved change (scheduled or "
                "being implemented) opens production hosts")
    start, end = change.start, change.end
    if start is None or end is None:
        return f"{change.ref} has no window"
    if now < start:
        return f"the window of {change.ref} opens at {change.window_start}"
    if now >= end:
        return f"the window of {change.ref} closed at {change.window_end}"
    uncovered = [h for h in protected if not change.covers(h)]
    if uncovered:
        return (f"{change.ref} does not cover {', '.join(uncovered)} (its hosts: "
                f"{', '.join(change.hosts)})")
    return None


def _minutes(change: Change, now: datetime) -> str:
    end = change.end
    if end is None:
        return "?"
    seconds = max(0, int((end - now).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"


def _upcoming_hint(changes: list[Change], protected: tuple[str, ...], now: datetime) -> str:
    later = [c for c in changes
             if c.state in APPROVED_STATES and c.start is not None and c.start > now
             and all(c.covers(h) for h in protected)]
    if not later:
        return ""
    first = min(later, key=lambda c: c.window_start or "")
    return f" ({first.ref} opens at {first.window_start})"


# -- observing production: read-only ad-hoc commands ------------------------------

# Outside quotes, any of these is shell syntax (lists, pipes, redirections,
# substitutions, globs, history, comments): refused, not interpreted.
_UNQUOTED_SYNTAX = frozenset(";&|<>()$`\\*?[]{}~!#\n\r")
# Inside double quotes the shell still expands these.
_DOUBLE_QUOTED_SYNTAX = frozenset("$`\\!\n\r")

_ANY_ARGS = frozenset({
    "uptime", "uname", "whoami", "id", "w", "who", "last", "df", "du", "free", "vmstat",
    "iostat", "mpstat", "lscpu", "lsblk", "lsmod", "nproc", "ps", "pgrep", "pidof", "netstat",
    "cat", "head", "tail", "grep", "egrep", "fgrep", "ls", "stat", "wc", "md5sum", "sha256sum",
    "findmnt", "getent", "printenv", "lsof", "echo",
})
_HOSTNAME_OPTIONS = frozenset({
    "-f", "-s", "-i", "-I", "-d", "-A", "--fqdn", "--long", "--short", "--ip-address",
    "--all-ip-addresses", "--domain", "--all-fqdns",
})
_SYSTEMCTL_VERBS = frozenset({
    "status", "show", "is-active", "is-enabled", "is-failed", "list-units", "list-unit-files",
    "list-timers", "list-sockets", "list-dependencies", "cat", "get-default",
})
_IP_VERBS = frozenset({"show", "list", "ls", "lst", "get"})
_IP_OPTIONS = frozenset({
    "-4", "-6", "-s", "-stats", "-statistics", "-d", "-details", "-br", "-brief", "-j",
    "-json", "-p", "-pretty", "-o", "-oneline", "-c", "-color", "-h", "-human",
})
_IP_OBJECTS = frozenset({
    "a", "addr", "address", "r", "route", "l", "link", "n", "neigh", "neighbour", "neighbor",
    "rule", "ru", "maddr", "maddress",
})
_JOURNALCTL_FORBIDDEN = (
    "--vacuum", "--rotate", "--flush", "--sync", "--relinquish-var", "--smart-relinquish-var",
    "--setup-keys", "--update-catalog",
)
_DMESG_FORBIDDEN_LONG = frozenset({
    "--clear", "--read-clear", "--console-off", "--console-on", "--console-level",
})
_FIND_FORBIDDEN = frozenset({
    "-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls",
})

OBSERVE_PROGRAMS = tuple(sorted(
    _ANY_ARGS | {"hostname", "date", "systemctl", "journalctl", "dmesg", "find", "ss", "ip"}
))
"""Programs ``--observe`` accepts (some with their writing options refused)."""


def _shell_syntax(text: str) -> str | None:
    """The first character the shell would treat as syntax, or None."""
    quote: str | None = None
    for char in text:
        if quote == "'":
            if char == "'":
                quote = None
            elif char in "\n\r":
                return char
        elif quote == '"':
            if char == '"':
                quote = None
            elif char in _DOUBLE_QUOTED_SYNTAX:
                return char
        elif char in "'\"":
            quote = char
        elif char in _UNQUOTED_SYNTAX:
            return char
    return None


def _arguments_problem(program: str, args: list[str]) -> str | None:
    """Why ``program args`` might change something (None: it only reads)."""
    if program in _ANY_ARGS:
        return None
    if program == "hostname":
        bad = [a for a in args if a not in _HOSTNAME_OPTIONS]
        return f"hostname with {bad[0]!r} could set the host name" if bad else None
    if program == "date":
        for arg in args:
            ok = (arg.startswith("+") or arg in ("-u", "--utc", "--universal", "-R", "--rfc-email")
                  or arg.startswith(("-I", "--iso-8601", "--rfc-3339")))
            if not ok:
                return f"date with {arg!r} might set the clock; only formats (+FMT), -u, -R, -I"
        return None
    if program == "systemctl":
        words = [a for a in args if not a.startswith("-")]
        if any(a in ("-H", "--host", "-M", "--machine") or a.startswith(("--host=", "--machine="))
               for a in args):
            return "systemctl on another machine is not observed here"
        if words and words[0] not in _SYSTEMCTL_VERBS:
            return (f"systemctl {words[0]} is not read-only; allowed: "
                    f"{', '.join(sorted(_SYSTEMCTL_VERBS))}")
        return None
    if program == "journalctl":
        bad = [a for a in args if a.startswith(_JOURNALCTL_FORBIDDEN)]
        return f"journalctl {bad[0]} changes the journal" if bad else None
    if program == "dmesg":
        for arg in args:
            if arg in _DMESG_FORBIDDEN_LONG or arg.startswith("--console-level="):
                return f"dmesg {arg} changes the kernel log"
            if arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) & set("cCDEn"):
                return f"dmesg {arg} may clear the kernel log or change the console"
        return None
    if program == "find":
        bad = [a for a in args if a in _FIND_FORBIDDEN]
        return f"find {bad[0]} writes or runs commands" if bad else None
    if program == "ss":
        bad = [a for a in args if a in ("-K", "--kill") or (
            a.startswith("-") and not a.startswith("--") and "K" in a)]
        if bad:
            return f"ss {bad[0]} kills sockets"
        dump = [a for a in args if a.startswith("--diag") or (
            a.startswith("-") and not a.startswith("--") and "D" in a)]
        return f"ss {dump[0]} writes a file" if dump else None
    if program == "ip":
        # ip abbreviates its options (-b is -batch, which reads commands from
        # a file), so only these exact, argument-free display options pass.
        options = [a for a in args if a.startswith("-")]
        bad_options = [a for a in options if a not in _IP_OPTIONS]
        if bad_options:
            return (f"ip option {bad_options[0]} is not observed; options: "
                    f"{', '.join(sorted(_IP_OPTIONS))}")
        words = [a for a in args if not a.startswith("-")]
        if not words:
            return None
        if words[0] not in _IP_OBJECTS:
            return f"ip {words[0]} is not observed; objects: addr, route, link, neigh, rule"
        if len(words) > 1 and words[1] not in _IP_VERBS:
            return f"ip {words[0]} {words[1]} may change the network; only show, list, get"
        return None
    return f"{program} is not on the read-only list"


def observe_command(text: str) -> str:
    """The command to run for ``--observe``, or :class:`ObserveRefused` saying why not.

    The command must be one program from :data:`OBSERVE_PROGRAMS` with
    plain arguments: no pipes, lists, redirections, substitutions, globs or
    variables, and none of the program's options that write. The words are
    shell-quoted again, so the host's shell sees only literal words.
    """
    problem = _shell_syntax(text)
    if problem is not None:
        shown = {"\n": "a newline", "\r": "a carriage return"}.get(problem, repr(problem))
        raise ObserveRefused(
            f" runs one read-only program with plain arguments: {shown} is shell "
            "syntax (pipes, redirections, substitutions, globs and variables are refused)"
        )
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ObserveRefused(f": cannot read the command: {exc}") from None
    if not words:
        raise ObserveRefused(": no command given")
    program, args = words[0], words[1:]
    if "/" in program or "=" in program:
        raise ObserveRefused(
            f": give the program by its name ({program!r} is a path or an assignment)"
        )
    why = _arguments_problem(program, args)
    if why is not None:
        raise ObserveRefused(
            f" refuses this command: {why}. Read-only programs: "
            f"{', '.join(OBSERVE_PROGRAMS)}. Anything else on production needs a change"
        )
    return shlex.join(words)
