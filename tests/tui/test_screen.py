"""The test's screen in the slot detail: half-cell rendering (what plain SSH and tmux get)."""

from __future__ import annotations

import pytest

from app.tui import QaworkerApp
from tests.tui.history_fixtures import screen_runtime
from tests.tui.settle import settle
from widgets.screen import ScreenPanel, image_class


@pytest.fixture(autouse=True)
def halfcell(monkeypatch) -> None:
    monkeypatch.setenv("QAWORKER_SCREEN", "halfcell")


async def _drawn(pilot) -> None:
    """The screenshot is decoded in a thread, then drawn: wait for it on the screen's panel."""
    for _ in range(50):
        panel = pilot.app.screen.query_one(ScreenPanel)
        if panel.query_one(".screen-image").image is not None:
            break
        await pilot.pause(0.1)
    await settle(pilot)


async def _select_running(pilot) -> None:
    await pilot.pause(0.3)
    await pilot.press("down")  # slot 2 runs the job
    await _drawn(pilot)


def test_screen_panel_in_the_dashboard(snap_compare) -> None:
    rt = screen_runtime()
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), terminal_size=(160, 44), run_before=_select_running)


def test_screen_panel_in_the_full_detail(snap_compare) -> None:
    rt = screen_runtime()

    async def open_detail(pilot) -> None:
        await _select_running(pilot)
        await pilot.press("enter")
        await pilot.pause(0.3)
        await _drawn(pilot)

    assert snap_compare(QaworkerApp(rt, clock=rt.clock), terminal_size=(140, 40), run_before=open_detail)


async def test_the_panel_asks_for_exactly_the_slot_it_shows() -> None:
    rt = screen_runtime()
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(160, 44)) as pilot:
        await pilot.pause(0.3)
        panel = app.screen.query_one(ScreenPanel)
        assert rt.screens.wants[panel] == frozenset()  # slot 1 is idle: nothing to watch
        await _select_running(pilot)
        assert rt.screens.wants[panel] == {2}
        assert panel.query_one(".screen-image").image is not None
        assert "logs_from_installation_system-3.png · 4 s ago" in str(panel.query_one("#screen-caption").render())
        await pilot.press("up")
        await pilot.pause(0.3)
        assert rt.screens.wants[panel] == frozenset()
    assert rt.screens.wants[panel] == frozenset()  # and when the dashboard closes


def test_the_renderer_can_be_chosen() -> None:
    from textual_image.widget import HalfcellImage, UnicodeImage

    assert image_class("halfcell") is HalfcellImage and image_class("unicode") is UnicodeImage
