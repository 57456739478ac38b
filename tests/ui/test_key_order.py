"""Keys reach the focused widget in the order they were typed, whenever they arrive:
in one burst, or one by one while the app is between two keys."""

from __future__ import annotations

import asyncio
import random
import string

from textual import events
from ui_fixtures import fixed_clock, settle

from itop_tui.app import ItopApp
from itop_tui.services.context import Services
from itop_tui.widgets.filter_input import FilterInput

SIZE = (160, 48)


def key_event(char: str) -> events.Key:
    return events.Key("space" if char == " " else char, char)


async def test_keys_arriving_between_two_keys_keep_their_order(fleet_services: Services) -> None:
    app = ItopApp(fleet_services, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        field = app.screen.query_one(FilterInput)
        assert app.focused is field
        text = "".join(random.Random(7).choice(string.ascii_lowercase) for _ in range(150))
        # A burst, then a trickle at uneven pauses: some keys land just as the one
        # before is settled and the queued next one is about to be routed.
        pauses = random.Random(11)
        for index, char in enumerate(text):
            app.post_message(key_event(char))
            if index >= 40:
                await asyncio.sleep(pauses.choice((0, 0, 0.0005, 0.001, 0.002, 0.004)))
        for _ in range(400):
            if field.value == text:
                break
            await pilot.pause(0.02)
        assert field.value == text
