"""Pilot tests of the Inventory pane (filter, tree, detail, sort, palette, help, production
banner) and of what every pane shares: the tab strip of panes and a footer that fits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from change_fixtures import as_person, change_services, ready_spec
from perf_fixtures import SourceBox, perf_app, scripted_factory, wait_until
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets._footer import FooterKey
from ui_fixtures import FIXED_NOW, fixed_clock, render_text, settle

import itop_tui.app as app_module
from itop_tui.app import PANES, ItopApp
from itop_tui.ops.change_workflow import ChangeSpec, ChangeWorkflow
from itop_tui.screens.help import HelpScreen, collect_help
from itop_tui.screens.inventory import InventoryScreen
from itop_tui.screens.procedures import ProceduresScreen
from itop_tui.services.context import Services
from itop_tui.widgets.filter_input import FilterInput
from itop_tui.widgets.group_tree import GroupTree
from itop_tui.widgets.host_detail import HostDetail
from itop_tui.widgets.host_table import HostTable
from itop_tui.widgets.pane_tabs import CURRENT_STYLE, PaneTabs, screen_path
from itop_tui.widgets.production_banner import ProductionBanner

SIZE = (160, 48)


def approved_now(tmp_path: Path, alice: Services, spec: ChangeSpec, now: datetime) -> str:
    """A change of alice's approved by bob, its window open from ``now`` for an hour."""
    mine = ChangeWorkflow(alice)  # the real clock: the window is checked against it
    ref = mine.create(spec).ref
    mine.submit(ref)
    bobs = ChangeWorkflow(as_person(tmp_path, "bob"))
    bobs.assess(ref, comment="fine")
    bobs.approve(ref, "go")
    mine.schedule(ref, now, now + timedelta(hours=1))
    return ref


def table_of(app: ItopApp) -> HostTable:
    return app.screen.query_one(HostTable)


def names(table: HostTable) -> list[str]:
    return [h.name for h in table.visible_hosts]


async def test_opens_on_inventory_with_every_host(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, InventoryScreen)
        assert app.current_mode == "inventory"
        table = table_of(app)
        assert table.row_count == 10
        assert names(table)[:3] == ["cache01", "db01", "db02"]
        assert "alice (operator)" in app.sub_title
        assert "/etc/itop/itop.yaml" in app.sub_title


async def test_selector_filter_narrows_rows(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"web:&prod")
        await pilot.pause()
        table = table_of(app)
        assert names(table) == ["web01", "web02", "web03"]
        screen = app.screen
        assert isinstance(screen, InventoryScreen)
        status = screen.status_text()
        assert "3 of 10 hosts" in status and "selector: web:&prod" in status
        await pilot.press("escape")  # clears the filter
        await pilot.pause()
        assert table.row_count == 10
        assert app.screen.query_one(FilterInput).value == ""


async def test_free_text_filter_when_not_a_selector(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = table_of(app)
        # "rocky" names no host or group: the text is matched against OS facts.
        await pilot.press("slash", *"rocky")
        await pilot.pause()
        assert names(table) == ["db01", "db02", "db03"]
        await pilot.press("escape")
        # An address fragment names no host or group: matched as text.
        await pilot.press(*"127.0.1.")
        await pilot.pause()
        assert names(table) == [f"web{i:02d}" for i in range(1, 7)]
        await pilot.press(*"5 staging")
        await pilot.pause()
        assert names(table) == ["web05"]


async def test_group_tree_filters_table(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.screen.query_one(GroupTree)
        tree.focus()
        await pilot.pause()
        labels: list[str] = []
        # Walk down the tree with the keyboard until the "db" group, then choose it.
        for _ in range(20):
            node = tree.cursor_node
            assert node is not None
            labels.append(str(node.label))
            if node.data == "db":
                break
            await pilot.press("down")
        await pilot.press("enter")
        await pilot.pause()
        assert names(table_of(app)) == ["db01", "db02", "db03"]
        # The "envs" group holds prod and stage as children: all their hosts.
        envs = next(n for n in tree.root.children[1].children if n.data == "envs")
        tree.select_node(envs)
        await pilot.pause()
        assert table_of(app).row_count == 10
        tag = next(n for n in tree.root.children[2].children if n.data == "tag:postgres")
        tree.select_node(tag)
        await pilot.pause()
        assert names(table_of(app)) == ["db01", "db02", "db03"]
        # The text filter narrows within the tree's choice.
        await pilot.press("slash", *"db02")
        await pilot.pause()
        assert names(table_of(app)) == ["db02"]


async def test_detail_panel_shows_cursor_host(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        detail = app.screen.query_one(HostDetail)
        await wait_until(pilot, lambda: detail.host is not None and detail.host.name == "cache01")
        await pilot.press("down", "down", "up")  # db01; the panel follows once the cursor rests
        await wait_until(pilot, lambda: detail.host is not None and detail.host.name == "db01")
        body = detail.query_one("#host-detail-body", Static)
        text = render_text(body.content)  # type: ignore[arg-type]
        for expected in ("db01", "127.0.2.1", "2222", "postgres", "Rocky Linux", "64.0GiB",
                         "3d 4h", "primary in rack 4", "/ ext4 40.0GiB 25% used"):
            assert expected in text, expected


async def test_detail_and_banner_change_without_a_new_layout(fleet_services: Services) -> None:
    """Hosts whose detail has as many lines are shown by a repaint, not a layout of the
    screen; the body is as high as its content (the panel scrolls over all of it); the
    production banner's line stays where it is, warning or blank."""
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        detail = app.screen.query_one(HostDetail)
        banner = app.screen.query_one(ProductionBanner)
        table = table_of(app)

        async def show(name: str) -> None:
            assert table.move_to_host(name)
            await wait_until(pilot, lambda: detail.host is not None and detail.host.name == name,
                             what=f"the detail of {name}")
            await pilot.pause()

        def lines_of_content() -> int:
            text = render_text(detail.body.content, detail.body.content_size.width)  # type: ignore[arg-type]
            return len(text.rstrip("\n").split("\n"))

        await show("web01")
        body = detail.body
        height = body.styles.height.cells if body.styles.height is not None else None
        assert height == lines_of_content() == body.region.height
        assert detail.max_scroll_y == height - detail.scrollable_content_region.height > 0
        layouts, regions = detail.layouts, (banner.region, table.region, detail.region)
        assert banner.shown
        for name in ("web02", "web03", "web04"):  # the same lines; web04 is staging
            await show(name)
            assert detail.layouts == layouts, name
            assert (banner.region, table.region, detail.region) == regions
        assert not banner.shown and banner.display
        # cache01 was never discovered: fewer lines, one layout for the new height.
        await show("cache01")
        assert lines_of_content() != height
        assert detail.layouts == layouts + 1
        await pilot.pause()
        assert body.styles.height is not None
        assert body.styles.height.cells == lines_of_content() == body.region.height


async def test_sort_by_column_and_reverse(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = table_of(app)
        await pilot.press("s", "s", "s", "s", "s")  # name -> address -> status -> groups -> os -> cpus
        await pilot.pause()
        assert table.sort_column == "cpus"
        cpus = [h.facts.get("cpu_count") or -1 for h in table.visible_hosts]
        assert cpus == sorted(cpus)
        await pilot.press("S")
        await pilot.pause()
        assert table.sort_reverse
        assert names(table)[:3] == ["db01", "db02", "db03"]
        assert names(table)[-1] == "cache01"  # no facts: sorts last when descending
        # A click on a column header sorts by it; a second click reverses.
        x = 2 + sum(w + 1 for w in table.column_widths[:2]) + 1  # inside "Status"
        await pilot.click(HostTable, offset=(x, 0))
        assert (table.sort_column, table.sort_reverse) == ("status", False)
        assert names(table)[0] == "db01"  # production first
        await pilot.click(HostTable, offset=(x, 0))
        assert (table.sort_column, table.sort_reverse) == ("status", True)
        assert names(table)[:4] == ["web06", "web05", "web04", "cache01"]  # staging first


async def test_marks_survive_filtering(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = table_of(app)
        await pilot.press("down", "space", "space")  # marks db01 and db02
        assert table.marked == {"db01", "db02"}
        await pilot.press("slash", *"web", "enter")
        await pilot.pause()
        assert [h.name for h in table.marked_hosts()] == ["db01", "db02"]
        screen = app.screen
        assert isinstance(screen, InventoryScreen)
        assert "2 marked" in screen.status_text()


async def test_command_palette_jumps_to_host(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"web")  # db03 is filtered out
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"127.0.2.3")
        palette = app.screen
        await wait_until(pilot, lambda: palette.query_one(OptionList).option_count > 0,
                         what="the palette's hits")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, InventoryScreen))
        table = table_of(app)
        await wait_until(
            pilot, lambda: table.cursor_host is not None and table.cursor_host.name == "db03"
        )
        assert app.screen.query_one(FilterInput).value == ""


async def test_help_lists_bindings_of_screen_and_app(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        titles = [s.title for s in app.screen.sections]
        assert titles[-1] == "Everywhere"
        assert "Inventory pane" in titles and "Host Table" in titles
        described = {e.description for s in app.screen.sections for e in s.entries}
        # Every binding the pane and the table declare is listed, none hand-written.
        for binding_owner in (InventoryScreen, HostTable, ItopApp):
            for binding in binding_owner.BINDINGS:
                description = getattr(binding, "description", "")
                assert description in described, description
        everywhere = {e.description: e.keys for e in app.screen.sections[-1].entries}
        assert everywhere["Help"] == "?, f1"  # each key once
        await pilot.press("escape")
        assert isinstance(app.screen, InventoryScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, InventoryScreen)


async def test_production_banner_follows_cursor_and_marks(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        banner = app.screen.query_one(ProductionBanner)
        table = table_of(app)
        assert table.cursor_host is not None and table.cursor_host.status == "staging"
        # The line is reserved (no layout when it comes and goes): blank, not red.
        assert banner.display and not banner.shown and banner.text == ""
        assert not banner.has_class("-production")
        await pilot.press("down")  # db01, production
        await wait_until(pilot, lambda: banner.shown, what="the banner")
        assert banner.has_class("-production")
        assert banner.text.startswith("PRODUCTION (db01): mutating actions need an approved change")
        assert banner.text.endswith(" · no approved change covers db01 now")
        await pilot.press("up")  # cache01 again
        await wait_until(pilot, lambda: not banner.shown, what="the banner to blank")
        assert banner.text == "" and not banner.has_class("-production")
        # Marked hosts are what an action targets: the banner follows them.
        await pilot.press("down", "space", "space")  # marks db01 and db02; cursor on db03
        await pilot.press("G")  # web06, staging
        await wait_until(pilot, lambda: "2 hosts" in banner.text, what="marked production")
        assert banner.text.endswith(" · no approved change covers these 2 hosts now")
        await pilot.press("u")  # unmark: the cursor host (staging) decides again
        await wait_until(pilot, lambda: not banner.shown, what="the banner to blank")


async def test_production_banner_names_only_changes_covering_the_targets(tmp_path: Path) -> None:
    """Two changes open now, written and approved by the real workflow: one on web02
    only, one on web01 and web02. The banner names a change only when it covers
    every production host targeted, and says so when none does."""
    alice = change_services(tmp_path)
    now = datetime.now(UTC)  # the change gate decides with the real time
    only_web02 = approved_now(tmp_path, alice, ready_spec("Patch web02", "web02"), now)
    both = approved_now(tmp_path, alice, ready_spec("Patch web01-02", "web01,web02"), now)
    app = ItopApp(alice, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: len(app.open_changes) == 2, what="the open changes noted")
        assert [c.change.ref for c in app.open_changes] == [only_web02, both]
        assert all(f"{ref} active, " in app.sub_title for ref in (only_web02, both))
        banner = app.screen.query_one(ProductionBanner)
        table = table_of(app)

        async def cursor_on(name: str) -> str:
            assert table.move_to_host(name)
            await wait_until(pilot, lambda: f"({name})" in banner.text, what=f"the banner on {name}")
            return banner.text

        text = await cursor_on("web01")
        assert f"{both} active, " in text and only_web02 not in text
        text = await cursor_on("web02")
        assert f"{only_web02} active, " in text and f"{both} active, " in text
        text = await cursor_on("db01")
        assert text.endswith(" · no approved change covers db01 now")
        assert only_web02 not in text and both not in text
        # db01 and web02 marked: no change covers both.
        await pilot.press("space")
        assert table.move_to_host("web02")
        await pilot.press("space")
        await wait_until(pilot, lambda: "(2 hosts)" in banner.text, what="two marked hosts")
        assert banner.text.endswith(" · no approved change covers these 2 hosts now")
        # web01 and web02 marked: only the change on both is named.
        await pilot.press("u")
        assert table.move_to_host("web01")
        await pilot.press("space")
        assert table.move_to_host("web02")
        await pilot.press("space")
        await wait_until(pilot, lambda: "(2 hosts)" in banner.text and both in banner.text,
                         what="the change covering both marked hosts")
        assert banner.text.endswith(f" · {app.open_changes[1].note}")
        assert only_web02 not in banner.text


async def recomposed(footer: Footer) -> None:
    """Have ``footer`` draw its keys again from the bindings active now (in its own loop)."""
    done = asyncio.Event()

    async def again() -> None:
        await footer.recompose()
        done.set()

    footer.call_later(again)
    await asyncio.wait_for(done.wait(), timeout=10)


def laid_out(footer: Footer) -> bool:
    """True when the footer shows keys and each has its size."""
    keys = list(footer.query(FooterKey))
    return bool(keys) and all(key.outer_size.width > 0 for key in keys)


def footer_width(screen: Screen[object]) -> int:
    """Columns the footer's keys take side by side, the command palette's key included."""
    footer = screen.query_one(Footer)
    assert laid_out(footer), "the footer's keys are not laid out"
    return sum(key.outer_size.width for key in footer.query(FooterKey))


async def test_every_pane_shows_the_tab_strip_and_a_footer_that_fits(tmp_path: Path) -> None:
    """Each pane has the strip of panes at the top, its own tab highlighted, and its
    footer's keys (the pane keys 1-5 no longer among them) fit in 160 columns."""
    box: SourceBox = {}
    app = perf_app(change_services(tmp_path), scripted_factory(box), fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for pane in PANES:
            await pilot.press(pane.key)
            await wait_until(pilot, lambda pane=pane: screen_path(app.screen) == pane.screen,
                             what=f"the {pane.title} pane")
            screen = app.screen
            # Not settle(): the Performance pane's monitor worker runs until the app ends.
            tabs = screen.query_one(PaneTabs)
            await wait_until(pilot, lambda t=tabs: t.current is not None, what="the tabs")
            assert tabs.region.y == 1 and tabs.region.height == 1  # under the header
            assert tabs.current == pane.mode
            content = tabs.visual
            assert isinstance(content, Content)
            assert content.plain.split() == [w for p in PANES for w in (p.key, p.title)]
            highlighted = [content.plain[s.start:s.end] for s in content.spans
                           if s.style == CURRENT_STYLE]
            assert highlighted == [f" {pane.key} {pane.title} "]
            # Painted so: the current tab's background is the cursor's, no other's.
            background = app.theme_variables["block-cursor-background"]
            painted = [seg.text for seg in tabs.render_line(0)
                       if seg.style is not None and seg.style.bgcolor is not None
                       and seg.style.bgcolor.name.lower() == background.lower()]
            assert "".join(painted).strip() == f"{pane.key} {pane.title}"
            footer = screen.query_one(Footer)
            await wait_until(pilot, lambda f=footer: laid_out(f), what="the footer")
            shown = [key.key for key in footer.query(FooterKey)]
            assert not {p.key for p in PANES} & set(shown), shown
            assert "ctrl+p" in shown  # the palette's key is there, at the right
            assert footer_width(screen) <= SIZE[0], (pane.title, shown)
            # Whichever panel has the focus (its keys join the footer's), they fit.
            for widget in screen.focus_chain:
                screen.set_focus(widget)
                await pilot.pause()
                await recomposed(footer)
                await wait_until(pilot, lambda f=footer: laid_out(f), what="the footer's keys")
                shown = [key.key for key in footer.query(FooterKey)]
                assert footer_width(screen) <= SIZE[0], (pane.title, widget, shown)
        # The pane keys stay bound and listed in the help.
        described = {e.description for s in collect_help(app.screen) for e in s.entries}
        assert {p.title for p in PANES} <= described
        # A click on a tab opens its pane.
        tabs = app.screen.query_one(PaneTabs)
        x = tabs.visual.plain.index("3 Procedures") if isinstance(tabs.visual, Content) else -1
        assert await pilot.click(PaneTabs, offset=(x + 2, 0))
        await wait_until(pilot, lambda: isinstance(app.screen, ProceduresScreen),
                         what="the Procedures pane after a click")


class SlowTickApp(ItopApp):
    """The app without its periodic look for active changes: only the store follow is left."""

    ACTIVE_CHANGE_INTERVAL = 3600.0
    # Textual reads CSS_PATH relative to the module of the class that sets it.
    CSS_PATH = str(Path(app_module.__file__).parent / "app.tcss")


async def test_a_change_approved_elsewhere_reaches_header_and_banner_without_a_key(
    tmp_path: Path,
) -> None:
    alice = change_services(tmp_path)
    app = SlowTickApp(alice, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        banner = app.screen.query_one(ProductionBanner)
        assert table_of(app).move_to_host("web02")
        await wait_until(pilot, lambda: "(web02)" in banner.text, what="the banner on web02")
        assert banner.text.endswith(" · no approved change covers web02 now")
        # Another itop (alice and bob's own store handles) approves and schedules a change.
        ref = await asyncio.to_thread(
            approved_now, tmp_path, change_services(tmp_path),
            ready_spec("Patch web02", "web02"), datetime.now(UTC),
        )
        await wait_until(pilot, lambda: f"{ref} active, " in app.sub_title, 20,
                         "the header to name the change")
        await wait_until(pilot, lambda: f"{ref} active, " in banner.text, 5,
                         "the banner to name the change")


class TickingApp(ItopApp):
    """The app whose Inventory pane recomputes ages often (the clock is the test's)."""

    CSS_PATH = str(Path(app_module.__file__).parent / "app.tcss")


async def test_last_seen_ages_move_on_without_a_key(
    fleet_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(InventoryScreen, "AGES_REFRESH_SECONDS", 0.2)
    now = [FIXED_NOW]
    app = TickingApp(fleet_services, clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = table_of(app)

        def last_seen(name: str) -> str:
            row = table.row(name)
            assert row is not None
            return row.cells[-1].text

        assert last_seen("web01") == "5m ago"
        now[0] = FIXED_NOW + timedelta(hours=2)
        await wait_until(pilot, lambda: last_seen("web01") == "2h ago", what="the age moved on")
        assert last_seen("web02") == "2h ago"  # 2h10m
