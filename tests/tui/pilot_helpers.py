"""Reading the dashboard the way a user does, in Pilot tests (tests/tui) and with a real worker (tests/e2e)."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import App
from textual.widgets.data_table import CellDoesNotExist

from widgets.slots import SlotTable

WIDE = (120, 36)


def text_of(widget) -> str:
    return str(widget.render())


def text(app: App, selector) -> str:
    return str(app.screen.query_one(selector).render())


def cell(table: SlotTable, instance: int, column: str) -> str:
    """The slot table's cell; "" while the slot's row is not there (it appears with its first event)."""
    try:
        return str(table.get_cell(str(instance), column))
    except CellDoesNotExist:
        return ""


def toasts(app: App) -> list[str]:
    """The notifications the user sees right now."""
    return [str(toast.render()) for toast in app.screen.query("Toast")]


async def settle(pilot, delay: float = 0.25) -> None:
    await pilot.pause(delay)  # renders are throttled to ~10/s


async def until(pilot, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll what is on screen: the screen is the thing under test, not the backend's state."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not on screen within {timeout} s: {what}")
        await pilot.pause(0.05)
