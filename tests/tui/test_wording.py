"""Issue 15 item 10, the dashboard's part: plurals, the pause line, dialog buttons on Left/Right."""

from __future__ import annotations

import pytest
from textual.widgets import Button

from app.tui import QaworkerApp
from backend.state import CacheView, JobView, SlotView, UploadView
from tests.tui.scripted import build
from tests.tui.settle import settle
from widgets.cache import overview_text, usage_text
from widgets.dialogs import ConfirmScreen, QuitScreen
from widgets.job import summary_text, upload_text

pytestmark = pytest.mark.timeout(30)


def job(**kwargs) -> JobView:
    return JobView(5, "sim-5-simtest", "http://127.0.0.1:1", 0.0, 60.0, **kwargs)


@pytest.mark.parametrize("paused", ["paused at needle mismatch", "needle mismatch", "Paused: needle mismatch"])
def test_the_pause_line_says_paused_at_once(paused: str) -> None:
    text = summary_text(SlotView(1, job=job(paused=paused)), 10.0).plain
    assert "PAUSED at needle mismatch" in text and text.lower().count("paused") == 1


def test_one_file_and_one_asset_are_singular() -> None:
    done = upload_text(job(upload=UploadView(files_done=1, files_total=1, bytes_done=10, bytes_total=10)))
    assert done is not None and "uploaded 1 file," in done.plain and "1 files" not in done.plain
    going = upload_text(job(upload=UploadView(files_done=0, files_total=1, bytes_total=10)))
    assert going is not None and "0/1 file," in going.plain
    cache = CacheView(enabled=True, used_bytes=1, limit_bytes=10, assets=1)
    assert "· 1 asset ·" in usage_text(cache).plain
    assert "1 asset · hits" in overview_text(cache).plain
    assert "· 2 assets ·" in usage_text(CacheView(enabled=True, limit_bytes=10, assets=2)).plain


async def test_dialog_buttons_follow_left_and_right() -> None:
    rt = build("three_running")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await settle(pilot, at_least=0.2)
        assert isinstance(app.screen, QuitScreen)
        focused = []
        for key in ("left", "left", "right"):
            await pilot.press(key)
            focused.append(app.focused.id if isinstance(app.focused, Button) else None)
        assert focused == ["drain", "quit", "drain"]
        await pilot.press("escape")
        await settle(pilot, at_least=0.2)
        await pilot.press("down", "a")  # abort: Cancel first, Left reaches "Abort job", enter confirms
        await settle(pilot, at_least=0.2)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("left")
        assert isinstance(app.focused, Button) and app.focused.id == "confirm"
        await pilot.press("right")
        assert isinstance(app.focused, Button) and app.focused.id == "cancel"
        await pilot.press("left", "enter")
        await settle(pilot)
        assert rt.commands == ["abort:2"]
