"""The one place where a failed worker is reported to the user.

Screens start workers with ``exit_on_error=False`` so that a failure (a store
error, a read-only refusal, a bug) does not end the app. Every screen mixes in
:class:`ReportsWorkerErrors`, whose handler turns the failure into a
notification; screens that must also reset their own state handle
``Worker.StateChanged`` in addition (Textual calls handlers along the MRO).
"""

from __future__ import annotations

from textual.message_pump import MessagePump
from textual.worker import Worker, WorkerState

from itop_tui.domain.models import ValidationError


def describe_error(error: BaseException) -> str:
    """A one-line message for ``error``.

    itop's own exceptions carry user-facing text; anything else is shown with
    its type, since its text alone ("0", "'name'") may say nothing.
    """
    text = str(error).strip()
    if isinstance(error, ValidationError | OSError) or type(error).__module__.startswith(
        "itop_tui"
    ):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def worker_title(worker: Worker[object]) -> str:
    """What the worker was doing, for the notification's title."""
    return worker.description or worker.name or worker.group


class ReportsWorkerErrors(MessagePump):
    """Mixin for screens: notify the user when one of their workers fails."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Report a worker that ended with an error."""
        if event.state is not WorkerState.ERROR or event.worker.error is None:
            return
        self.app.notify(
            describe_error(event.worker.error),
            title=f"{worker_title(event.worker)} failed",
            severity="error",
            timeout=10,
            markup=False,
        )
