"""The acknowledge dialog refuses an empty note and dismisses with a real one."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import App, ComposeResult
from textual.widgets import Input

from itop_tui.screens.problems import AcknowledgeDialog, ProblemRow, problem_row
from itop_tui.services.problem_repo import Problem


class DialogHost(App[None]):
    """Pushes the dialog and keeps what it dismissed with."""

    def __init__(self, row: ProblemRow) -> None:
        super().__init__()
        self.row = row
        self.results: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.push_screen(AcknowledgeDialog(self.row), self.results.append)


async def test_an_empty_note_is_refused_and_a_note_acknowledges() -> None:
    problem = Problem(id="PRB-1", host="web01", metric="cpu_percent", severity="critical",
                      opened="2026-11-25T23:00:00Z")
    app = DialogHost(problem_row(problem, datetime(2026, 11, 25, 23, 5, tzinfo=UTC)))
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("space", "enter")
        await pilot.pause()
        assert isinstance(app.screen, AcknowledgeDialog) and app.results == []
        assert any("needs a note" in n.message for n in app._notifications)
        app.screen.query_one("#ack-note", Input).value = ""
        await pilot.press(*"on it", "enter")
        await pilot.pause()
        assert app.results == ["on it"]
