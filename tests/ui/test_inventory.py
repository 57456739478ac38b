"""Pilot tests of the Inventory pane: filter, tree, detail, sort, palette, help."""

from __future__ import annotations

from perf_fixtures import wait_until
from textual.widgets import OptionList, Static
from ui_fixtures import fixed_clock, render_text, settle

from itop_tui.app import ItopApp
from itop_tui.screens.help import HelpScreen
from itop_tui.screens.inventory import InventoryScreen
from itop_tui.services.context import Services
from itop_tui.widgets.filter_input import FilterInput
from itop_tui.widgets.group_tree import GroupTree
from itop_tui.widgets.host_detail import HostDetail
from itop_tui.widgets.host_table import HostTable
from itop_tui.widgets.production_banner import ProductionBanner

SIZE = (160, 48)


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
        assert not banner.display and banner.text == ""
        await pilot.press("down")  # db01, production
        await wait_until(pilot, lambda: banner.display, what="the banner")
        assert banner.text.startswith("PRODUCTION (db01): mutating actions need an approved change")
        assert "no change window open now" in banner.text
        await pilot.press("up")  # cache01 again
        await wait_until(pilot, lambda: not banner.display, what="the banner to hide")
        assert banner.text == ""
        # Marked hosts are what an action targets: the banner follows them.
        await pilot.press("down", "space", "space")  # marks db01 and db02; cursor on db03
        await pilot.press("G")  # web06, staging
        await wait_until(pilot, lambda: "2 hosts" in banner.text, what="marked production")
        assert banner.display
        await pilot.press("u")  # unmark: the cursor host (staging) decides again
        await wait_until(pilot, lambda: not banner.display, what="the banner to hide")
