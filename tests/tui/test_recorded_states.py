"""Pilot tests of what the dashboard shows for states recorded from the real worker.

Each test replays a recording (tests/tui/recordings/, made by tests/tui/recorder.py from a real
Worker + mock web UI + simulator run) and checks the screen: the slot table, the header, the detail.
"""

from __future__ import annotations

import pytest
from textual.widgets import Static

from app.tui import QaworkerApp
from tests.tui.pilot_helpers import WIDE, cell, settle, text_of
from tests.tui.replay import load
from widgets.connection import ConnectionBar
from widgets.job import DeveloperPanel, JobSummary
from widgets.slots import SlotTable

pytestmark = pytest.mark.timeout(30)

def make(name: str) -> QaworkerApp:
    rt = load(name)
    return QaworkerApp(rt, clock=rt.clock)


async def test_three_real_jobs_in_the_table_and_the_detail_follows_the_selection() -> None:
    app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SlotTable)
        assert table.row_count == 4
        assert [cell(table, i, "state") for i in (1, 2, 3, 4)] == ["running", "running", "running", "idle"]
        assert "#1 sim-1-textmode" in cell(table, 1, "job") and "3/9" in cell(table, 1, "progress")
        assert "#2 sim-1-kde" in cell(table, 2, "job") and "3/7" in cell(table, 2, "progress")
        header = text_of(app.screen.query_one(ConnectionBar))
        assert "http://127.0.0.1:9526" in header and "4/4 connections up" in header
        assert "#1 sim-1-textmode" in text_of(app.screen.query_one(JobSummary))
        await pilot.press("down")
        await settle(pilot)
        assert app.selected == 2
        assert "#2 sim-1-kde" in text_of(app.screen.query_one(JobSummary))
        modules = text_of(app.screen.query_one("#modules-text"))
        assert "✘ desktop failed" in modules and "▶ firefox" in modules  # SIM_FAIL_MODULE=desktop


async def test_a_real_developer_session_and_pause_are_unmissable() -> None:
    app = make("developer_session")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        panel = app.screen.query_one(DeveloperPanel)
        assert panel.display and "DEVELOPER SESSION OPEN" in text_of(panel)
        assert "PAUSED" in text_of(app.screen.query_one(JobSummary))
        assert "needle mismatch" in text_of(app.screen.query_one(JobSummary))
        assert "DEV" in cell(app.screen.query_one(SlotTable), 1, "state")


async def test_broken_slots_and_a_failing_web_ui_are_explained() -> None:
    app = make("broken_host")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        header = text_of(app.screen.query_one(ConnectionBar))
        assert "http://127.0.0.1:9527" in header and "503" in header and "retry in 28s" in header
        assert "3/6 connections up" in header
        table = app.screen.query_one(SlotTable)
        assert cell(table, 1, "state") == "running"
        assert cell(table, 2, "state") == "broken" and "The average load" in cell(table, 2, "job")


async def test_unreachable_web_uis_show_why_and_when_the_next_attempt_is() -> None:
    app = make("disconnected")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        header = text_of(app.screen.query_one(ConnectionBar))
        assert "0/4 connections up" in header
        assert header.count("Failed to register") == 2  # one line per web UI
        assert "retry in 14s" in header or "retry in 15s" in header


async def test_real_upload_progress_in_the_detail() -> None:
    app = make("uploading")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        assert cell(app.screen.query_one(SlotTable), 1, "state") == "uploading"
        summary = text_of(app.screen.query_one(JobSummary))
        assert "26/28 files" in summary and "console-7.txt" in summary


async def test_real_downloads_in_the_cache_panel_and_the_cache_view() -> None:
    app = make("cache_downloading")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SlotTable)
        assert cell(table, 1, "state") == "setup" and cell(table, 2, "state") == "setup"
        cache = text_of(app.screen.query_one("#cache"))
        assert "0 B / 1.0 GiB" in cache and "for #2" in cache  # the smaller download is listed first
        await pilot.press("c")
        await settle(pilot)
        full = text_of(app.screen.query_one("#cache-text", Static))
        assert "openSUSE-Tumbleweed-DVD-x86_64-Snapshot.iso" in full and "sle-15-SP5-x86_64-gnome.qcow2" in full
