"""The job history on the dashboard: the table (filters, details, links) and the idle slot's recent jobs."""

from __future__ import annotations

from app.history_screen import HistoryScreen
from app.tui import QaworkerApp
from tests.tui.history_fixtures import BASE, history_runtime
from tests.tui.settle import settle, then_settle
from widgets.history import HistoryDetailScreen, HistoryTable, SlotHistory, ago, cycle, slot_history_text


def test_history_table(snap_compare) -> None:
    rt = history_runtime()
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), terminal_size=(160, 30), run_before=then_settle("h"))


def test_history_table_filtered_by_slot(snap_compare) -> None:
    rt = history_runtime()
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), terminal_size=(160, 30),
                        run_before=then_settle("h", "s", "s"))


def test_idle_slot_shows_its_recent_jobs(snap_compare) -> None:
    rt = history_runtime(running=True)
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), terminal_size=(140, 36), run_before=settle)


async def test_newest_first_filters_and_details() -> None:
    rt = history_runtime()
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        table = app.screen.query_one(HistoryTable)
        assert table.row_count == 12
        assert str(table.get_row_at(0)[2]).startswith("#3725044")  # newest first
        await pilot.press("r")  # result filter: the first result in alphabetical order
        await settle(pilot, at_least=0.2)
        assert {table.get_row_at(i)[3].plain.split()[-1] for i in range(table.row_count)} == {"failed"}
        await pilot.press("x", "s")  # slot 1 only
        await settle(pilot, at_least=0.2)
        assert {table.get_row_at(i)[1] for i in range(table.row_count)} == {"1"} and table.row_count == 4
        await pilot.press("enter")
        await settle(pilot, at_least=0.2)
        assert isinstance(app.screen, HistoryDetailScreen)
        detail = str(app.screen.query_one("#history-detail").render())
        assert "#3725011" in detail and f"{BASE}/tests/3725011" in detail and "passed" in detail
        link = table.get_row_at(0)[6]
        assert f"link {BASE}/tests/3725011" in str(link.style)  # clickable where the terminal has OSC 8
        await pilot.press("escape", "escape")
        await settle(pilot, at_least=0.2)
        assert not isinstance(app.screen, HistoryScreen)


async def test_an_idle_slot_shows_history_instead_of_empty_boxes() -> None:
    rt = history_runtime()
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(140, 36)) as pilot:
        await settle(pilot)
        panel = app.screen.query_one(SlotHistory)
        assert panel.display and panel.region.height > 5
        text = str(app.screen.query_one("#slot-history-text").render())
        assert "#3725011" in text and "#3724988" in text and "#3725030" not in text  # slot 1's jobs only
        assert not app.screen.query_one(".detail-body").display


def test_small_helpers() -> None:
    assert ago(42) == "42 s ago" and ago(125) == "2 min ago" and ago(3 * 3600 + 5) == "3 h ago"
    assert cycle(None, [1, 2]) == 1 and cycle(2, [1, 2]) is None
    assert "no job of slot 4 in the job history yet" in slot_history_text([], 4, 0).plain


async def test_the_table_fits_the_terminal() -> None:
    for width, columns in ((160, 7), (140, 7), (80, 5)):
        rt = history_runtime()
        app = QaworkerApp(rt, clock=rt.clock)
        async with app.run_test(size=(width, 30)) as pilot:
            await settle(pilot)
            await pilot.press("h")
            await settle(pilot)
            table = app.screen.query_one(HistoryTable)
            assert len(table.columns) == columns
            assert table.virtual_size.width <= width, f"{width} columns: the table scrolls sideways"
