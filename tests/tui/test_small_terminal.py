"""Issue 15 item 8: the dashboard at 80×24 and on a wide terminal — nothing cut that matters."""

from __future__ import annotations

import pytest
from textual.containers import VerticalScroll
from textual.widgets._footer import FooterKey

from app.tui import QaworkerApp
from backend import events as ev
from tests.tui.scripted import build
from tests.tui.settle import settle
from widgets.dialogs import ConfirmScreen, HelpScreen
from widgets.logtail import LogTail
from widgets.slots import SlotTable

pytestmark = pytest.mark.timeout(30)

SMALL = (80, 24)


def start(scenario: str = "three_running") -> QaworkerApp:
    rt = build(scenario)
    return QaworkerApp(rt, clock=rt.clock)


async def footer_fits(app: QaworkerApp, pilot) -> None:
    """Every key of the footer is on screen whole, left of the palette key, on the last line."""
    for _ in range(50):  # the footer recomposes when a screen's keys change: wait for its layout
        shown = list(app.screen.query(FooterKey))
        if shown and all(k.region.width for k in shown):
            break
        await settle(pilot, at_least=0.1)
    keys = list(app.screen.query(FooterKey))
    palette = [k for k in keys if k.has_class("-command-palette")]
    others = [k for k in keys if not k.has_class("-command-palette")]
    assert others and palette
    limit = palette[0].region.x
    for key in others:
        assert key.region.width > 0 and key.region.right <= limit, f"footer key {key.description!r} is cut"
        assert key.region.y == SMALL[1] - 1


async def test_full_detail_at_80x24_gives_the_log_most_of_the_width_and_keeps_the_footer() -> None:
    app = start()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await footer_fits(app, pilot)  # the dashboard's footer too
        await pilot.press("enter")
        await settle(pilot)
        tail = app.screen.query_one(LogTail)
        assert tail.region.width >= 48, f"the log gets {tail.region.width} of 80 columns"
        assert tail.region.bottom <= SMALL[1] - 1
        await footer_fits(app, pilot)


async def test_help_fits_80x24_without_scrolling() -> None:
    app = start()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one(VerticalScroll)
        assert body.max_scroll_y == 0 and body.max_scroll_x == 0, "the help needs scrolling at 80x24"
        assert body.region.height <= SMALL[1]
        close = app.screen.query_one("#close")
        assert close.region.bottom <= body.region.bottom  # the Close button is on screen
        await pilot.press("escape")
        await settle(pilot, at_least=0.2)
        assert not isinstance(app.screen, HelpScreen)


async def test_toasts_wait_until_the_dialog_is_closed() -> None:
    rt = build("three_running")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        for n in range(3):
            rt.emit(ev.Notice, level="warning", message=f"disk almost full ({n})", instance=1)
        await settle(pilot, at_least=0.4)
        dialog = app.screen.query_one(".dialog").region
        assert len(app._notifications) == 3
        drawn = [t for t in app.screen.query("Toast") if t.region.width and t.visible]
        assert not any(t.region.overlaps(dialog) for t in drawn), "a toast covers the dialog"
        await pilot.press("escape")
        await settle(pilot, at_least=0.4)
        drawn = [t for t in app.screen.query("Toast") if t.region.width and t.visible]
        assert len(drawn) == 3, "the notices show once the dialog is gone"


@pytest.mark.parametrize("width", [160, 200])
async def test_a_wide_terminal_goes_to_the_job_names(width: int) -> None:
    rt = build("three_running")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(width, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SlotTable)
        jobs = {i: str(table.get_cell(str(i), "job")) for i in (1, 2, 3)}
        if width >= 200:  # every name whole
            for i in (1, 2, 3):
                job = rt.view.slots[i].job
                assert job is not None and jobs[i] == f"#{job.job_id} {job.name}"
        used = sum(c.width for c in table.columns.values()) + 2 * len(table.columns)
        assert width - 12 <= used <= width, f"the table uses {used} of {width} columns"
