"""Full output of one host's command run."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from itop_tui.domain.output import strip_control
from itop_tui.screens.worker_errors import ReportsWorkerErrors
from itop_tui.services.transport import RunResult
from itop_tui.widgets.output_log import OutputLog


def result_heading(result: RunResult) -> Text:
    """``host · exit 0 · 0.42s`` (or the error), styled by outcome."""
    text = Text(result.host, style="bold")
    if result.error is not None:
        text.append(f"  error: {strip_control(result.error)}", style="red")
    else:
        style = "green" if result.exit_status == 0 else "red"
        text.append(f"  exit {result.exit_status}", style=style)
    text.append(f"  {result.duration:.2f}s", style="dim")
    if result.truncated:
        text.append("  output truncated", style="yellow")
    text.append(f"\n$ {strip_control(result.command)}", style="dim")
    return text


class ResultView(ReportsWorkerErrors, ModalScreen[None]):
    """Shows the heading and the full (bounded, sanitized) output of a result."""

    AUTO_FOCUS = "OutputLog"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "close", "Close"),
    ]

    def __init__(self, result: RunResult) -> None:
        """Show ``result``."""
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        """Heading, output, hint."""
        with Vertical(classes="dialog", id="result-dialog"):
            yield Static(result_heading(self.result), id="result-heading")
            yield OutputLog(id="result-output")
            yield Static("Esc closes. Arrows and PgUp/PgDn scroll.", classes="dialog-hint")

    def on_mount(self) -> None:
        """Fill the log (it has the focus, so the arrows scroll it)."""
        log = self.query_one(OutputLog)
        log.show_output(self.result.stdout, self.result.stderr, truncated=self.result.truncated)

    def action_close(self) -> None:
        """Close the view."""
        self.dismiss(None)
