"""Issue 15 item 3: every way out of the dashboard asks while jobs run (q, ctrl+c, the palette's Quit)."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette

from app.tui import QaworkerApp
from tests.tui.scripted import build
from tests.tui.settle import settle
from widgets.dialogs import QuitScreen

pytestmark = pytest.mark.timeout(30)


async def palette_titles(app: QaworkerApp, pilot, query: str) -> list[str]:
    await pilot.press("ctrl+p")
    await pilot.pause(0.2)
    await pilot.press(*query)
    await pilot.pause(0.6)
    palette = app.screen
    assert isinstance(palette, CommandPalette)
    options = palette.query_one("CommandList")
    return [str(options.get_option_at_index(i).prompt).splitlines()[0] for i in range(options.option_count)]


async def test_the_palettes_quit_asks_while_jobs_run_and_there_is_only_one() -> None:
    rt = build("three_running")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        titles = await palette_titles(app, pilot, "quit")
        assert [t for t in titles if t.lower().startswith("quit")] == ["Quit"], titles
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, QuitScreen), "the palette's Quit quit without asking"
        assert rt.commands == [] and app.is_running
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert rt.commands == [] and rt.view.running_jobs == 3


@pytest.mark.parametrize("way", ["q", "ctrl+c", "ctrl+q", "action_quit"])
async def test_every_other_way_out_asks_the_same_question(way: str) -> None:
    rt = build("three_running")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        if way == "action_quit":  # Textual's own quit action, as any "app.quit" binding would run it
            await app.run_action("quit")
        else:
            await pilot.press(way)
        await settle(pilot)
        assert isinstance(app.screen, QuitScreen)
        assert "3 jobs running" in str(app.screen.query_one(".dialog-text").render())
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert rt.commands == [] and app.is_running
