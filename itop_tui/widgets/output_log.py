"""A scrollable, read-only view of command output from a host."""

from __future__ import annotations

from textual.widgets import Log

from itop_tui.domain.output import strip_control

MAX_SHOWN_LINES = 20_000
"""Output is bounded by the transport already; this caps what the widget keeps."""


class OutputLog(Log):
    """Shows a host's stdout and stderr, stripped of terminal control sequences.

    Host output is untrusted: it is sanitized again here so that nothing a
    host prints can move the cursor or change the terminal, whatever path
    the text took to get here.
    """

    DEFAULT_CSS = """
    OutputLog {
        background: $surface;
        border: none;
    }
    """

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """Create an empty log that does not follow new output (it is written once)."""
        super().__init__(
            max_lines=MAX_SHOWN_LINES, auto_scroll=False, name=name, id=id, classes=classes
        )

    def show_output(self, stdout: str, stderr: str, *, truncated: bool = False) -> None:
        """Replace the content with ``stdout``, then ``stderr`` under a rule."""
        self.clear()
        lines = strip_control(stdout).splitlines()
        if stderr:
            lines += ["", "── stderr ──", *strip_control(stderr).splitlines()]
        if truncated:
            lines += ["", "── output truncated at the output limit ──"]
        if not lines:
            lines = ["(no output)"]
        self.write_lines(lines, scroll_end=False)
        self.scroll_home(animate=False)
