"""The detail panel: everything known about the host under the cursor."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
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


WIDE_DETAIL = 100
"""Cells from which the sections stand side by side in three columns."""
SPLIT_DETAIL = 60
"""Cells from which the facts stand beside the host (vars and notes under the host);
below it every section is under the one before, each across the whole width."""


def detail_layout(width: int | None) -> str:
    """``wide``, ``split`` or ``stacked``: how the sections fit ``width`` cells (None: wide).

    The three side-by-side columns of a wide panel leave a value one or two
    cells on an 80-column terminal; narrower panels put sections under others.
    """
    if width is None or width >= WIDE_DETAIL:
        return "wide"
    return "split" if width >= SPLIT_DETAIL else "stacked"


def _natural_width(items: list[tuple[str, Any]]) -> int:
    """Cells the pairs need on one line each: the longest key, a space, the longest value."""
    if not items:
        return 0
    keys = max(cell_len(strip_control(str(key))) for key, _ in items)
    values = max(cell_len(value.plain if isinstance(value, Text) else _clean(value))
                 for _, value in items)
    return keys + 1 + values


def describe_host(host: Host, width: int | None = None) -> RenderableType:
    """The panel's content for ``host`` in ``width`` cells (see :func:`detail_layout`):
    identity, facts, vars and notes."""
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
    notes = (
        Text(strip_control(host.notes))
        if host.notes
        else Text("no notes", style="dim italic")
    )
    host_part = _pairs("Host", identity, "")
    facts_part = _pairs(facts_title, facts, "not discovered yet (press d)", facts=True)
    vars_part = _pairs("Vars", vars_, "none")
    notes_title = Text("Notes", style="bold underline")
    layout = detail_layout(width)
    if layout == "stacked":
        blank = Text("")
        return RenderGroup(host_part, blank, facts_part, blank, vars_part, blank,
                           notes_title, notes)
    if layout == "split":
        assert width is not None
        grid = Table.grid(padding=(0, 3), expand=True)
        # The host's column as wide as its longest line, up to 45% of the panel:
        # the facts (long values: CPU model, filesystems) get the rest.
        left = min(max(_natural_width(identity), _natural_width(vars_), 20),
                   width * 45 // 100)
        grid.add_column(width=left)
        grid.add_column(ratio=1)
        grid.add_row(
            RenderGroup(host_part, Text(""), vars_part, Text(""), notes_title, notes),
            facts_part,
        )
        return grid
    grid = Table.grid(padding=(0, 3), expand=True)
    grid.add_column(ratio=3)
    grid.add_column(ratio=4)
    grid.add_column(ratio=3)
    grid.add_row(
        host_part,
        facts_part,
        RenderGroup(vars_part, Text(""), notes_title, notes),
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
        self.detail_layout = detail_layout(None)
        """How the shown host's sections are laid out (see :func:`detail_layout`)."""

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
        body = self.body
        if host is None:
            body.update(Text("No host selected.", style="dim italic"), layout=False)
        else:
            self._show_content(body, host)
            # The one-line hint keeps the last host's height: a filter that matches
            # nothing, then something again, costs no layout.
            self._fit_body(body)
        self.scroll_home(animate=False)

    def on_resize(self) -> None:
        """Another width wraps the content differently (or lays it out another way):
        fit the body again."""
        body = self.body
        if self.host is not None:
            self._show_content(body, self.host)
        self._fit_body(body)

    def _body_width(self) -> int | None:
        """Cells the body has for the host (None before the first layout)."""
        width = self.body.content_size.width or self.scrollable_content_region.width
        return width if width > 0 else None

    def _show_content(self, body: Static, host: Host) -> None:
        width = self._body_width()
        self.detail_layout = detail_layout(width)
        body.update(describe_host(host, width), layout=False)

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
