"""The detail panel: everything known about the host under the cursor."""

from __future__ import annotations

from typing import Any

from rich.console import Group as RenderGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from itop_tui.domain.models import Host
from itop_tui.domain.output import strip_control
from itop_tui.widgets.host_facts import fact_text, format_fact

_STATUS_STYLES = {
    "production": "bold red",
    "staging": "yellow",
    "development": "green",
    "retired": "dim strike",
}


def _clean(value: Any) -> str:
    return strip_control(fact_text(value)) if value not in (None, "") else "-"


def _pairs(
    title: str, items: list[tuple[str, Any]], empty: str, *, facts: bool = False
) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in items:
        if isinstance(value, Text):
            cell = value
        elif facts:
            cell = Text(strip_control(format_fact(str(key), value)))
        else:
            cell = Text(_clean(value))
        table.add_row(Text(strip_control(str(key))), cell)
    if not items:
        table.add_row(Text(empty, style="dim italic"), "")
    return RenderGroup(Text(title, style="bold underline"), table)


def describe_host(host: Host) -> RenderableType:
    """The panel's content for ``host``: identity, facts, vars and notes side by side."""
    status = Text(host.status, style=_STATUS_STYLES.get(host.status, ""))
    identity: list[tuple[str, Any]] = [
        ("name", host.name),
        ("address", host.connect_address),
        ("port", host.port or ("-" if host.is_local else "default")),
        ("user", host.user),
        ("class", host.host_class),
        ("status", status),
        ("criticality", host.criticality),
        ("groups", ", ".join(host.groups)),
        ("tags", ", ".join(host.tags)),
        ("source", host.source),
    ]
    if host.runs_on:
        identity.append(("runs on", host.runs_on))
    if host.proxy_jump:
        identity.append(("proxy jump", host.proxy_jump))
    if host.ssh_alias:
        identity.append(("ssh alias", host.ssh_alias))
    identity.append(("last seen", host.last_seen or "never"))
    facts_title = f"Facts ({host.facts_at})" if host.facts_at else "Facts"
    facts = sorted(host.facts.items())
    vars_ = sorted(host.vars.items())
    grid = Table.grid(padding=(0, 3), expand=True)
    grid.add_column(ratio=3)
    grid.add_column(ratio=4)
    grid.add_column(ratio=3)
    notes = (
        Text(strip_control(host.notes))
        if host.notes
        else Text("no notes", style="dim italic")
    )
    grid.add_row(
        _pairs("Host", identity, ""),
        _pairs(facts_title, facts, "not discovered yet (press d)", facts=True),
        RenderGroup(
            _pairs("Vars", vars_, "none"),
            Text(""),
            Text("Notes", style="bold underline"),
            notes,
        ),
    )
    return grid


class HostDetail(VerticalScroll, can_focus=True):
    """Shows one host in full; scrolls when it does not fit.

    The body's height is set to what its content needs, so that showing
    another host repaints the panel without a layout pass (which lays out
    the whole screen: tens of milliseconds beside a 10,000-row table, on
    every filter key that changes the first row); only a host whose
    content needs a different number of lines lays the screen out again.
    The gutter is kept for the scrollbar, so its coming and going does not
    change the body's width, nor therefore its height.
    """

    DEFAULT_CSS = """
    HostDetail {
        height: 12;
        background: $surface;
        padding: 0 1;
        scrollbar-gutter: stable;
        & > Static { width: 1fr; }
    }
    """

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        """Create an empty panel."""
        super().__init__(name=name, id=id, classes=classes)
        self.host: Host | None = None
        """The host shown, if any."""
        self.layouts = 0
        """Times showing a host needed a layout pass (the body's height changed)."""

    def compose(self) -> ComposeResult:
        """One Static holds the rendered host."""
        yield Static(Text("No host selected.", style="dim italic"), id="host-detail-body")

    @property
    def body(self) -> Static:
        """The Static that holds the rendered host."""
        return self.query_one("#host-detail-body", Static)

    def show_host(self, host: Host | None) -> None:
        """Show ``host`` (or a hint when None); a no-op when it is already shown."""
        if host is self.host:
            return
        self.host = host
        content = Text("No host selected.", style="dim italic") if host is None else describe_host(host)
        body = self.body
        body.update(content, layout=False)
        if host is not None:
            # The one-line hint keeps the last host's height: a filter that matches
            # nothing, then something again, costs no layout.
            self._fit_body(body)
        self.scroll_home(animate=False)

    def on_resize(self) -> None:
        """Another width wraps the content differently: fit the body again."""
        self._fit_body(self.body)

    def _fit_body(self, body: Static) -> None:
        """Give the body the height its content needs at its width (a layout only if it changed)."""
        width = body.content_size.width
        if width <= 0:
            body.refresh(layout=True)  # not laid out yet: the first layout measures it
            return
        height = body.get_content_height(self.size, self.size, width)
        current = body.styles.height
        if current is None or current.cells != height:
            self.layouts += 1
            body.styles.height = height
