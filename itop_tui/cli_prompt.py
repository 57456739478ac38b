"""Asking the person at the terminal during ``itop change`` and ``itop procedure`` runs.

Secret variables never come from the command line (``ps`` and shell history
would show them): they come from ``ITOP_VAR_<NAME>`` in the environment or
from a prompt that does not echo. Prompts go to stderr, so that ``--json``
output on stdout stays clean.

During a run the questions are asked without blocking the event loop
(:func:`prompt_async`): a Ctrl-C at a ``[y/N]`` then stops the run at once,
through asyncio's own SIGINT handling (the run is recorded ``paused`` and
itop exits 130). A blocking ``readline`` would hold the loop, so the first
Ctrl-C would wait for Enter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from itop_tui.cli import clean
from itop_tui.ops.procedure_runner import CHECK_MODE_MANUAL

SECRET_ENV_PREFIX = "ITOP_VAR_"
CHECK_MODE_NOTE = CHECK_MODE_MANUAL


def env_value(name: str) -> str | None:
    """The value of a variable from ``ITOP_VAR_<name>`` (or the name in upper case)."""
    for key in (f"{SECRET_ENV_PREFIX}{name}", f"{SECRET_ENV_PREFIX}{name.upper()}"):
        if key in os.environ:
            return os.environ[key]
    return None


def interactive() -> bool:
    """True when a person can be asked (stdin is a terminal)."""
    return sys.stdin.isatty()


def prompt(text: str) -> str | None:
    """Ask on the terminal; None at the end of input."""
    sys.stderr.write(text)
    sys.stderr.flush()
    line = sys.stdin.readline()
    return None if not line else line.rstrip("\n")


def ask_secret(name: str) -> str:
    """Ask for the secret variable ``name`` without echoing it."""
    return getpass.getpass(f"{name} (secret, not shown): ")


async def prompt_async(text: str) -> str | None:
    """Ask on the terminal while the event loop goes on; None at the end of input.

    The line is read from stdin's descriptor when it is readable (a
    terminal hands over whole lines), so a cancelled run (Ctrl-C) stops
    waiting at once.
    """
    sys.stderr.write(text)
    sys.stderr.flush()
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    line: asyncio.Future[bytes | None] = loop.create_future()
    received = bytearray()

    def readable() -> None:
        if line.done():
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            line.set_exception(exc)
            return
        if not data:  # end of input (Ctrl-D)
            line.set_result(bytes(received) if received else None)
            return
        received.extend(data)
        if b"\n" in data:
            line.set_result(bytes(received))

    loop.add_reader(fd, readable)
    try:
        answer = await line
    finally:
        loop.remove_reader(fd)
    if answer is None:
        return None
    return answer.decode("utf-8", errors="replace").split("\n", 1)[0].rstrip("\r")


async def ask_secret_async(name: str) -> str | None:
    """Ask for the secret variable ``name`` without echoing it, while the event loop goes on."""
    with _no_echo(sys.stdin.fileno()):
        value = await prompt_async(f"{name} (secret, not shown): ")
    sys.stderr.write("\n")
    sys.stderr.flush()
    return value


@contextlib.contextmanager
def _no_echo(fd: int) -> Iterator[None]:
    """Turn the terminal's echo off inside the block (as getpass does)."""
    import termios

    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield  # not a terminal: nothing is echoed anyway
        return
    quiet = list(saved)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def said_yes(answer: str | None) -> bool:
    """True for ``y`` or ``yes``."""
    return answer is not None and answer.strip().lower() in ("y", "yes")


def yes_or_note(answer: str | None) -> bool | str:
    """``y``/``yes`` as True, ``y NOTE`` as the note, anything else as False."""
    if answer is None:
        return False
    words = answer.strip().split(None, 1)
    if not words or words[0].lower().rstrip(",:") not in ("y", "yes"):
        return False
    return words[1].strip() if len(words) > 1 and words[1].strip() else True


class RunConsole:
    """The CLI side of a run: ``--yes``, progress lines, and the manual steps it asks about.

    Progress goes to stderr under ``--json`` (stdout holds only the JSON).
    Subclasses say how a yes/no question is put (:meth:`answer`).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.yes = bool(args.yes)
        self.json = bool(args.json)
        self.check = bool(getattr(args, "check", False))
        self.out: TextIO = sys.stderr if self.json else sys.stdout

    def write(self, text: str) -> None:
        """One progress line, safe for the terminal."""
        print(clean(text), file=self.out, flush=True)

    async def answer(self, question: str) -> bool | str:
        """Ask ``question`` (ending ``[y/N]``): True or a note for yes, False for no."""
        return said_yes(await prompt_async(f"{question} "))

    async def manual(self, step: Any, hosts: list[str], instructions: str) -> bool | str:
        """Confirm a manual step: by ``--yes``, by the person, or not at all.

        In check mode nothing is done, so there is nothing to confirm: the
        step is shown and the run goes on.
        """
        if self.check:
            self.write(f"  check mode: manual step {step.id} shown, not confirmed (nothing is done)")
            return CHECK_MODE_NOTE
        if self.yes:
            return "confirmed with --yes"
        if not interactive():
            self.write(f"  manual step {step.id}: confirm it on a terminal, or pass --yes")
            return False
        return await self.answer(f"Done on {', '.join(hosts)}? [y/N]")
