"""Asking the person at the terminal during ``itop change`` and ``itop procedure`` runs.

Secret variables never come from the command line (``ps`` and shell history
would show them): they come from ``ITOP_VAR_<NAME>`` in the environment or
from a prompt that does not echo. Prompts go to stderr, so that ``--json``
output on stdout stays clean.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, TextIO

from itop_tui.cli import clean

SECRET_ENV_PREFIX = "ITOP_VAR_"


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
        self.out: TextIO = sys.stderr if self.json else sys.stdout

    def write(self, text: str) -> None:
        """One progress line, safe for the terminal."""
        print(clean(text), file=self.out, flush=True)

    def answer(self, question: str) -> bool | str:
        """Ask ``question`` (ending ``[y/N]``): True or a note for yes, False for no."""
        return said_yes(prompt(f"{question} "))

    def manual(self, step: Any, hosts: list[str], instructions: str) -> bool | str:
        """Confirm a manual step: by ``--yes``, by the person, or not at all."""
        if self.yes:
            return "confirmed with --yes"
        if not interactive():
            self.write(f"  manual step {step.id}: confirm it on a terminal, or pass --yes")
            return False
        return self.answer(f"Done on {', '.join(hosts)}? [y/N]")
