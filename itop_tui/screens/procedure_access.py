"""Who may do what in the Procedures pane, and why not, in words for the status lines.

The runner enforces every rule itself (``ops/procedure_runner.py``); these
functions let the screens grey out what a person may not do and say why,
before they try. They mirror the runner: starting, resuming and aborting
runs use the person's role in ``services.role``; approving uses the role the
config gives their login, as ``ProcedureRunner.approve`` checks it.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen

from itop_tui.domain.roles import Role, can_manage_library, can_start_run
from itop_tui.services.context import Services


def role_of(services: Services) -> Role:
    """The role of the person running this itop (viewer when it cannot be read)."""
    try:
        return Role.parse(services.role)
    except ValueError:
        return Role.VIEWER


def run_refusal(services: Services) -> str | None:
    """Why this person may not start, resume or abort runs; None when they may."""
    role = role_of(services)
    if not can_start_run(role):
        return f"the {role} role reads procedures and runs, nothing more"
    if services.read_only:
        return "itop is read-only (--read-only)"
    return None


def approve_refusal(services: Services) -> str | None:
    """Why this person may not approve or reject any run; None when they may in general.

    Uses the role the runner checks: the configured role of this login.
    """
    try:
        role = Role.parse(services.settings.role_for(services.actor))
    except ValueError:
        role = Role.VIEWER
    if role < Role.APPROVER:
        return f"deciding needs the approver or admin role; {services.actor} is {role}"
    if services.read_only:
        return "itop is read-only (--read-only)"
    return None


def import_refusal(services: Services) -> str | None:
    """Why this person may not import procedures; None when they may."""
    role = role_of(services)
    if not can_manage_library(role):
        return f"importing procedures needs the operator role or above; {services.actor} is {role}"
    if services.read_only:
        return "itop is read-only (--read-only)"
    return None


class ShowsAllowedKeys(Screen[None]):
    """A screen whose keys depend on its state (``check_action``) and on who uses it.

    :meth:`refresh_keys` asks the footer to redraw only when what the keys
    may do changed: the footer is rebuilt on every refresh, which typing in a
    search box would otherwise pay for on each key.
    """

    _keys_shown: tuple[bool | None, ...] = ()

    def refresh_keys(self) -> None:
        """Redraw the footer (and what help shows) if a key became allowed or not."""
        bindings = [b for b in type(self).BINDINGS if isinstance(b, Binding)]
        keys = tuple(self.check_action(b.action, ()) for b in bindings)
        if keys != self._keys_shown:
            self._keys_shown = keys
            self.refresh_bindings()
