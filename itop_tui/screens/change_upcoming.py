"""The upcoming view: approved change windows, blackouts and maintenance windows to come.

One line per window from now for :data:`UPCOMING_DAYS` days, in time order;
changes that conflict (approved, sharing a host, overlapping windows) are
highlighted, and the conflicts are listed under the calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from itop_tui.domain.change_windows import CalendarEntry, Conflict
from itop_tui.domain.output import strip_control
from itop_tui.ops.change_workflow import ChangeWorkflow
from itop_tui.screens.worker_errors import ReportsWorkerErrors

UPCOMING_DAYS = 7.0
KIND_STYLES = {"change": "bold", "blackout": "bold red", "maintenance": "cyan"}


@dataclass(frozen=True)
class Upcoming:
    """The calendar and the conflicts among approved changes."""

    entries: list[CalendarEntry]
    conflicts: list[Conflict]


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%a %m-%d %H:%M")


def upcoming_text(upcoming: Upcoming, days: float) -> Text:
    """The calendar as text, conflicts marked ``!`` and listed at the end."""
    out = Text()
    out.append(f"Windows in the next {days:g} days (UTC)\n\n", style="bold underline")
    if not upcoming.entries:
        out.append("  nothing scheduled, no blackout or maintenance window\n", style="dim")
    for entry in upcoming.entries:
        hosts = entry.hosts if isinstance(entry.hosts, str) else ", ".join(entry.hosts)
        style = "bold yellow reverse" if entry.conflict else KIND_STYLES.get(entry.kind, "")
        out.append("! " if entry.conflict else "  ", style="bold yellow")
        out.append(f"{_when(entry.start)} → {_when(entry.end)}  ", style="dim")
        out.append(f"{entry.kind:<12}", style=style)
        out.append(f" {strip_control(entry.name):<24} {strip_control(hosts)}\n")
    out.append("\nConflicts\n", style="bold underline")
    if not upcoming.conflicts:
        out.append("  none\n", style="dim")
    for conflict in upcoming.conflicts:
        out.append(f"  ! {conflict.describe()}\n", style="bold yellow")
    return out


class UpcomingScreen(ReportsWorkerErrors, Screen[None]):
    """Scheduled changes and config windows to come, conflicts highlighted."""

    TITLE = "Upcoming changes"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("f5", "reload", "Reload"),
    ]

    class Loaded(Message):
        """The calendar as read now."""

        def __init__(self, upcoming: Upcoming) -> None:
            super().__init__()
            self.upcoming = upcoming

    def __init__(self, workflow: ChangeWorkflow, days: float = UPCOMING_DAYS) -> None:
        """The windows of the next ``days`` days."""
        super().__init__()
        self.workflow = workflow
        self.days = days

    def compose(self) -> ComposeResult:
        """Header, the calendar, footer."""
        yield Header(icon="≡")
        with VerticalScroll(id="upcoming"):
            yield Static("Loading…", id="upcoming-body")
        yield Footer()

    def on_mount(self) -> None:
        """Read the calendar."""
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load",
          description="Read the upcoming windows")
    def load(self) -> None:
        """Calendar and conflicts (in a thread)."""
        self.post_message(self.Loaded(Upcoming(self.workflow.calendar(self.days),
                                               self.workflow.all_conflicts())))

    def on_upcoming_screen_loaded(self, message: Loaded) -> None:
        """Show the calendar."""
        self.query_one("#upcoming-body", Static).update(upcoming_text(message.upcoming, self.days))

    def action_back(self) -> None:
        """Back to the list."""
        self.dismiss(None)

    def action_reload(self) -> None:
        """Read the calendar again."""
        self.load()
