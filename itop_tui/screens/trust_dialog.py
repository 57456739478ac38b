"""Ask whether to trust a host key that itop has not seen before."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Static
from textual.worker import Worker, WorkerState

from itop_tui.screens.worker_errors import ReportsWorkerErrors, describe_error
from itop_tui.services.context import ReadOnlyError, Services
from itop_tui.services.transport import HostKeyUnknown, TransportError


def key_location(unknown: HostKeyUnknown) -> str:
    """The name the key is stored under in known_hosts.

    The transport reports it as ``key_host`` (the HostName after ssh config,
    or the ProxyJump hop's address when the key belongs to the hop).
    """
    return unknown.key_host or unknown.host


def key_owner(name: str, unknown: HostKeyUnknown) -> str:
    """Who presented the key: the host, where, and whose jump host it is.

    ``name`` is the inventory host that met the key; when the key came from
    a ProxyJump hop on the way to it, the hop is named, not ``name``.
    """
    location = key_location(unknown)
    where = location if unknown.port in (None, 22) else f"{location} port {unknown.port}"
    if unknown.jump_for is not None:
        return f"{unknown.host} ({where}), the jump host of {unknown.jump_for},"
    return name if where == name else f"{name} ({where})"


def key_question(name: str, unknown: HostKeyUnknown) -> Text:
    """The question: which host, where, and the SHA256 fingerprint to check."""
    text = Text()
    owner = key_owner(name, unknown)
    head, sep, rest = owner.partition(" ")
    text.append(head, style="bold")
    text.append(sep + rest)
    text.append(" presented a host key that itop does not know.\n\n")
    text.append("Fingerprint  ")
    text.append(unknown.fingerprint, style="bold yellow")
    text.append(
        "\n\nCompare it with the host's own key (on the host: "
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before trusting it. "
        "A yes is stored in itop's known_hosts."
    )
    return text


class TrustDialog(ReportsWorkerErrors, ModalScreen[bool]):
    """Shows one unknown host key; dismisses True once a yes has been stored.

    No is focused and there is no single-key yes, so a stray key never
    trusts a key: trusting takes Tab to the button and Enter (or a click).
    """

    AUTO_FOCUS = "#no"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "refuse", "Do not trust"),
        Binding("left,right", "app.focus_next", "Switch button", show=False),
    ]

    class Stored(Message):
        """The key was stored in itop's known_hosts."""

    class Refused(Message):
        """Storing the key failed; ``message`` says why."""

        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    def __init__(self, services: Services, name: str, unknown: HostKeyUnknown) -> None:
        """Ask about ``unknown``, the key host ``name`` presented."""
        super().__init__()
        self.services = services
        self.host_name = name
        self.unknown = unknown

    def compose(self) -> ComposeResult:
        """The question, an error line and the two buttons."""
        with Vertical(classes="dialog", id="trust-dialog"):
            yield Static("Unknown host key", classes="dialog-title")
            yield Static(key_question(self.host_name, self.unknown), classes="dialog-text")
            yield Static("", id="trust-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("No", id="no")
                yield Button("Trust this key", id="yes", variant="warning")

    @on(Button.Pressed, "#no")
    def action_refuse(self) -> None:
        """Do not trust the key."""
        self.dismiss(False)

    @on(Button.Pressed, "#yes")
    def _trust(self) -> None:
        """Store the key (in a worker: it writes files and the audit log)."""
        self.query_one("#yes", Button).disabled = True
        self._store()

    @work(thread=True, exclusive=True, exit_on_error=False, group="trust", description="Trust key")
    def _store(self) -> None:
        unknown = self.unknown
        try:
            self.services.trust_host_key(key_location(unknown), unknown.port, unknown.key_data)
        except (ReadOnlyError, TransportError, OSError) as exc:
            self.post_message(self.Refused(describe_error(exc)))
            return
        self.post_message(self.Stored())

    def on_trust_dialog_stored(self, message: Stored) -> None:
        """Close with yes."""
        owner = key_owner(self.host_name, self.unknown).removesuffix(",")
        self.app.notify(f"Trusted the host key of {owner}.", markup=False)
        self.dismiss(True)

    def on_trust_dialog_refused(self, message: Refused) -> None:
        """Show why the key was not stored."""
        self.query_one("#trust-error", Static).update(message.message)
        self.query_one("#yes", Button).disabled = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """After an unexpected failure (reported by the mixin) the buttons work again."""
        if event.worker.group == "trust" and event.state is WorkerState.ERROR:
            self.query_one("#yes", Button).disabled = False
