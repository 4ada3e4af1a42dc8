"""Wait until the dashboard shows its final picture, however loaded the machine is.

A fixed pause is not enough on a busy CI machine: the dashboard's render is throttled (a timer), a
``Log`` scrolls to its end after the next refresh, and layout can take another refresh. ``settle``
waits until no render is pending and two screenshots a short while apart are the same.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot

STEP = 0.1


async def settle(pilot: Pilot, *, at_least: float = 0.3, timeout: float = 15.0) -> None:
    await pilot.pause(at_least)
    app = pilot.app
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        await pilot.wait_for_scheduled_animations()
        current = app.export_screenshot() if not getattr(app, "_render_pending", False) else None
        if current is not None and current == previous:
            return
        previous = current
        await pilot.pause(STEP)
    raise AssertionError(f"the screen did not settle within {timeout:g} s")


def then_settle(*keys: str) -> Callable[[Pilot], Awaitable[None]]:
    """A snapshot's ``run_before``: settle, press the keys, settle again (what they open is drawn)."""
    async def run(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot, at_least=0.1)
    return run
