"""Pilot tests: what the dashboard shows, and which commands its keys and signals send."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from textual.widgets import Button

from app.tui import RC_TERMINAL_LOST, QaworkerApp
from backend import events as ev
from backend.events import SlotState
from tests.tui import scripted
from tests.tui.pilot_helpers import WIDE, cell, settle, text_of
from tests.tui.scripted import ScriptedRuntime, build
from widgets.connection import ConnectionBar, StopBanner
from widgets.dialogs import ConfirmScreen, HelpScreen, QuitScreen
from widgets.job import DeveloperPanel, JobSummary, ModuleList
from widgets.logtail import LogTail
from widgets.slots import SlotTable

pytestmark = pytest.mark.timeout(30)

def make(name: str, **kwargs) -> tuple[ScriptedRuntime, QaworkerApp]:
    rt = build(name)
    return rt, QaworkerApp(rt, clock=rt.clock, **kwargs)


async def test_running_slots_table_header_and_detail() -> None:
    _rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SlotTable)
        assert table.row_count == 4
        assert "#3725140" in cell(table, 2, "job")
        assert cell(table, 1, "state") == "running"
        assert "18/28" in cell(table, 1, "progress")
        assert "30:43 / 2:00:00" in cell(table, 1, "time")
        assert "last #3725011 passed" in cell(table, 4, "job")
        header = text_of(app.screen.query_one(ConnectionBar))
        assert "openqa.example.com" in header and "connected" in header and "4/4 connections up" in header
        assert "#1→41" in header
        # slot 1 is selected first; ↓ selects slot 2 and the detail follows
        assert "#3725102" in text_of(app.screen.query_one(JobSummary))
        await pilot.press("down")
        await settle(pilot)
        assert app.selected == 2
        summary = text_of(app.screen.query_one(JobSummary))
        assert "#3725140" in summary and "1 live viewer" in summary
        modules = text_of(app.screen.query_one("#modules-text"))
        assert "✘ partitioning_finish failed" in modules
        assert "▶ installation_overview" in modules


async def test_live_events_reach_table_and_log_without_gaps_or_duplicates() -> None:
    rt, app = make("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        rt.emit(ev.SlotStateChanged, instance=1, state=SlotState.RUNNING, job_id=77)
        rt.emit(ev.JobAccepted, instance=1, job_id=77, name="live-job", host=scripted.HOST, max_job_time=60)
        mods, current = scripted.modules(3)
        rt.emit(ev.JobProgress, instance=1, job_id=77, current_module=current, modules=mods)
        for i in range(300):  # a burst: must coalesce, and the log tail must stay exact
            rt.emit(ev.LogLines, instance=1, job_id=77, lines=(f"line {i}a", f"line {i}b"))
        await settle(pilot, 0.4)
        table = app.screen.query_one(SlotTable)
        assert "#77 live-job" in cell(table, 1, "job")
        assert cell(table, 1, "module") == "scc_registration"
        tail = app.screen.query_one(LogTail)
        assert tail.line_count == 500
        assert tail.lines[-1] == "line 299b" and tail.lines[0] == "line 50a"
        rt.emit(ev.LogLines, instance=1, job_id=77, lines=("the end",))
        await settle(pilot)
        assert tail.lines[-2:] == ["line 299b", "the end"]


async def test_drain_asks_and_cancel_sends_nothing() -> None:
    rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "3 running jobs" in text_of(app.screen.query_one(".dialog-text"))
        await pilot.press("escape")
        await settle(pilot)
        assert rt.commands == []
        assert not app.screen.query_one(StopBanner).display


async def test_drain_confirmed_shows_banner() -> None:
    rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("d")
        await settle(pilot)
        await pilot.click("#confirm")
        await settle(pilot)
        assert rt.commands == ["drain"]
        banner = app.screen.query_one(StopBanner)
        assert banner.display and "DRAINING" in text_of(banner)
        # the app stays until the jobs are done, then exits with the worker
        for i in (1, 2, 3):
            rt.finish_job(i)
        await settle(pilot)
    assert app.return_code == 0


async def test_abort_confirm_and_cancel() -> None:
    rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("down", "a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "#3725140" in text_of(app.screen.query_one(".dialog-text"))
        await pilot.press("n")
        await settle(pilot)
        assert rt.commands == []
        assert rt.view.slots[2].job is not None
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert rt.commands == ["abort:2"]
        table = app.screen.query_one(SlotTable)
        assert "incomplete" in cell(table, 2, "job")


async def test_abort_on_idle_slot_only_notifies() -> None:
    rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "down", "a")
        await settle(pilot)
        assert app.selected == 4
        assert not isinstance(app.screen, ConfirmScreen)
        assert rt.commands == []
        assert any("no job to abort" in n.message for n in app._notifications)


async def test_quit_with_running_jobs_asks_first() -> None:
    rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, QuitScreen)
        assert "3 jobs running — quit now (jobs end incomplete) or drain" in text_of(
            app.screen.query_one(".dialog-text"))
        assert isinstance(app.focused, Button) and app.focused.id == "cancel"  # the safe default
        await pilot.press("escape")
        await settle(pilot)
        assert rt.commands == []
        await pilot.press("q")
        await settle(pilot)
        await pilot.press("d")  # drain from the quit dialog
        await settle(pilot)
        assert rt.commands == ["drain"]
        assert app.is_running
        await pilot.press("ctrl+c")  # same as q
        await settle(pilot)
        assert isinstance(app.screen, QuitScreen)
        await pilot.click("#quit")
        await settle(pilot)
    assert rt.commands == ["drain", "quit"]
    assert app.return_code == 0
    assert rt.view.results == {"incomplete": 3, "passed": 1}


async def test_quit_when_idle_does_not_ask() -> None:
    rt, app = make("idle")
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("q")
        await settle(pilot)
    assert rt.commands == ["quit"]
    assert app.return_code == 0


async def test_app_exits_with_the_worker_exit_code() -> None:
    rt, app = make("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        rt.stop(exit_code=3)
        await settle(pilot)
    assert app.return_code == 3


@pytest.mark.parametrize(("sig", "command"), [(signal.SIGHUP, "drain"), (signal.SIGTERM, "quit")])
async def test_signals_drain_and_quit(sig: int, command: str) -> None:
    rt, app = make("three_running", terminal_check=lambda: True)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        os.kill(os.getpid(), sig)
        await settle(pilot)
        assert rt.commands[:1] == [command]
    # after the app is gone the default handlers are back
    assert signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler)


async def test_lost_terminal_exits_with_distinct_code_without_draining() -> None:
    alive = True
    rt, app = make("three_running", terminal_check=lambda: alive)
    app.terminal_check_interval = 0.05
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        assert app.is_running
        alive = False
        await settle(pilot, 0.3)
    assert app.return_code == RC_TERMINAL_LOST
    assert rt.commands == []


async def test_sighup_with_dead_terminal_is_not_a_drain() -> None:
    rt, app = make("three_running", terminal_check=lambda: False)
    app.terminal_check_interval = 60
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        os.kill(os.getpid(), signal.SIGHUP)
        await settle(pilot)
    assert app.return_code == RC_TERMINAL_LOST
    assert rt.commands == []


async def test_failing_command_becomes_notification() -> None:
    rt, app = make("idle")

    def broken_drain() -> None:
        raise RuntimeError("bus on fire")

    rt.drain = broken_drain  # type: ignore[method-assign]
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert app.is_running
        assert any("drain failed: bus on fire" in n.message for n in app._notifications)


async def test_developer_session_and_pause_are_unmissable() -> None:
    rt, app = make("developer_session")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        panel = app.screen.query_one(DeveloperPanel)
        assert panel.display and "DEVELOPER SESSION OPEN" in text_of(panel)
        assert "PAUSED at needle mismatch" in text_of(app.screen.query_one(JobSummary))
        assert "DEV" in cell(app.screen.query_one(SlotTable), 1, "state")
        rt.emit(ev.DeveloperSession, instance=1, job_id=3725230, active=False)
        await settle(pilot)
        assert not panel.display


async def test_broken_and_disconnected_states_are_explained() -> None:
    _rt, app = make("broken_host")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        header = text_of(app.screen.query_one(ConnectionBar))
        assert "failed: 503 Service Unavailable · retry in 42s" in header
        table = app.screen.query_one(SlotTable)
        assert cell(table, 3, "state") == "broken"
        assert "qemu-system-x86_64 not found" in cell(table, 3, "job")
    _rt, app = make("disconnected")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        header = text_of(app.screen.query_one(ConnectionBar))
        assert "connection refused · retry in 9s" in header
        assert "disabled (API key rejected (403))" in header
        assert "0/4 connections up" in header


async def test_upload_and_cache_progress() -> None:
    _rt, app = make("uploading")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        summary = text_of(app.screen.query_one(JobSummary))
        assert "148/231 files" in summary and "1.8 GiB / 2.6 GiB" in summary
        assert "optipng queue 12" in summary and "sle-15-SP5-x86_64-gnome.qcow2" in summary
    _rt, app = make("cache_downloading")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        cache = text_of(app.screen.query_one("#cache"))
        assert "36.0 GiB / 50.0 GiB (72%)" in cache
        assert "2.5 GiB / 4.3 GiB · 61.0 MiB/s · for #3725410 #3725412" in cache
        await pilot.press("c")
        await settle(pilot)
        full = text_of(app.screen.query_one("#cache-text"))
        assert "SLE-15-SP5-Full-x86_64-GM-Media1.iso" in full and f"{scripted.HOST}/tests" in full
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.id == "dashboard"


async def test_enter_opens_detail_and_l_toggles_follow() -> None:
    _rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        tail = app.screen.query_one(LogTail)
        await pilot.press("l")
        assert tail.auto_scroll is False and "OFF" in str(tail.border_subtitle)
        await pilot.press("l")
        assert tail.auto_scroll is True
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.id != "dashboard"
        detail_modules = text_of(app.screen.query_one(ModuleList).query_one("#modules-text"))
        assert "bootloader installation passed" in detail_modules  # full view shows categories
        assert app.screen.query_one(LogTail).line_count == 30
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.id == "dashboard"


async def test_help_and_command_palette() -> None:
    rt, app = make("three_running")
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert "ctrl+c" in text_of(app.screen.query_one(".dialog-text"))
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"drain")
        await settle(pilot, 0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert rt.commands == ["drain"]


async def test_narrow_layout_at_80_columns() -> None:
    _rt, app = make("three_running")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.screen.has_class("narrow")
        table = app.screen.query_one(SlotTable)
        assert sum(c.width for c in table.columns.values()) + 2 * len(table.columns) <= 80
        await pilot.resize_terminal(160, 48)
        await settle(pilot)
        assert not app.screen.has_class("narrow")
        assert "30:43 / 2:00:00" in cell(table, 1, "time")


async def test_events_from_another_task_keep_flowing() -> None:
    """The pump is a worker: events published by backend tasks on the same loop appear live."""
    rt, app = make("idle")
    async with app.run_test(size=WIDE) as pilot:
        async def backend() -> None:
            for n in range(5):
                rt.emit(ev.CacheTotals, used_bytes=n * 1024**3, limit_bytes=10 * 1024**3, hits=n)
                await asyncio.sleep(0.02)

        await backend()
        await settle(pilot)
        assert "4.0 GiB / 10.0 GiB (40%)" in text_of(app.screen.query_one("#cache"))


def test_backend_never_imports_textual() -> None:
    code = "import sys, backend.events, backend.state, backend.api; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.stdout.strip() == "False"
