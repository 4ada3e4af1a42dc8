"""The dashboard's event pump: it survives its own bugs, bursts and floods, and keeps the log in order.

The app renders from the read model on a throttle; these tests drive it through the bus the way the
worker does and check what is on the screen (toasts, the slot table, the log tail).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import pytest

from app.tui import RENDER_INTERVAL, QaworkerApp
from backend import events as ev
from backend.events import SlotState
from tests.tui import scripted
from tests.tui.pilot_helpers import WIDE, cell, toasts, until
from tests.tui.scripted import ScriptedRuntime, build
from widgets.logtail import TAIL_LINES, LogTail
from widgets.slots import SlotTable

pytestmark = pytest.mark.timeout(60)

def cache_text(app: QaworkerApp) -> str:
    return str(app.screen.query_one("#cache").render())


@dataclass
class RenderCount:
    count: int = 0


def count_renders(app: QaworkerApp) -> RenderCount:
    """Count the app's screen redraws (each still draws)."""
    renders, original = RenderCount(), app._render_now

    def counting_render() -> None:
        renders.count += 1
        original()

    app._render_now = counting_render  # type: ignore[method-assign]
    return renders


def start_job(rt: ScriptedRuntime, instance: int, job_id: int, name: str) -> None:
    rt.emit(ev.JobAccepted, instance=instance, job_id=job_id, name=name, host=scripted.HOST, max_job_time=600)
    rt.emit(ev.SlotStateChanged, instance=instance, state=SlotState.RUNNING, job_id=job_id)


class FlakyApp(QaworkerApp):
    """The dashboard with a bug: handling certain notices raises (as a formatting bug would)."""

    def __init__(self, rt: ScriptedRuntime, bad: set[str]) -> None:
        super().__init__(rt, clock=rt.clock)
        self.bad = bad

    def handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Notice) and event.message in self.bad:
            raise RuntimeError(f"cannot show {event.message!r}")
        super().handle_event(event)


async def test_a_pump_that_raises_shows_a_notice_and_events_flow_again() -> None:
    rt = build("idle")
    app = FlakyApp(rt, bad={"poison"})
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await until(pilot, lambda: "36.0 GiB / 50.0 GiB" in cache_text(app), 10, "the scenario's cache totals")
        rt.emit(ev.Notice, level="warning", message="poison")
        await until(pilot, lambda: any("event pump failed" in t for t in toasts(app)), 10, "a pump-failure notice")
        assert any("cannot show 'poison'" in t for t in toasts(app))
        # the restarted pump shows what comes next: a warning toast and the new cache totals
        rt.emit(ev.Notice, level="warning", message="disk almost full")
        rt.emit(ev.CacheTotals, used_bytes=5 * 1024**3, limit_bytes=10 * 1024**3)
        await until(pilot, lambda: any("disk almost full" in t for t in toasts(app)), 10, "a toast after the restart")
        await until(pilot, lambda: "5.0 GiB / 10.0 GiB (50%)" in cache_text(app), 10, "new cache totals")
        assert app.is_running


async def test_a_pump_that_keeps_failing_is_restarted_with_backoff_and_the_screen_stays_current() -> None:
    rt = build("idle")
    app = FlakyApp(rt, bad={"poison"})
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await pilot.pause(0.2)
        for _ in range(3):
            rt.emit(ev.Notice, level="warning", message="poison")
        await until(pilot, lambda: any("restarting in" in t for t in toasts(app)), 10, "a delayed restart")
        # while the pump waits to restart, state still reaches the screen through the view
        rt.emit(ev.SlotStateChanged, instance=2, state=SlotState.BROKEN, reason="disk gone")
        rt.emit(ev.Notice, level="error", message="after the storm")
        await until(pilot, lambda: any("after the storm" in t for t in toasts(app)), 10, "events after the restarts")
        table = app.screen.query_one(SlotTable)
        await until(pilot, lambda: cell(table, 2, "state") == "broken", 10, "the broken slot")


async def test_a_burst_of_10000_events_keeps_the_app_responsive_and_shows_the_final_state() -> None:
    rt = build("idle")
    app = QaworkerApp(rt, clock=rt.clock)
    renders = count_renders(app)
    async with app.run_test(size=WIDE) as pilot:
        start_job(rt, 1, 77, "burst-job")
        rt.emit(ev.LogLines, instance=1, job_id=77, lines=("before the burst",))
        tail = app.screen.query_one(LogTail)
        await until(pilot, lambda: tail.lines[-1:] == ["before the burst"], 10, "the first line")
        renders_before, started = renders.count, time.monotonic()

        async def backend() -> None:  # the worker publishes from its own tasks on the same loop
            for i in range(10_000):
                rt.emit(ev.LogLines, instance=1, job_id=77, lines=(f"line {i}",))
                if i % 1000 == 999:
                    mods, current = scripted.modules(i // 1000)
                    rt.emit(ev.JobProgress, instance=1, job_id=77, current_module=current, modules=mods)
                    rt.emit(ev.CacheTotals, used_bytes=(i // 1000) * 1024**3, limit_bytes=20 * 1024**3)
                    await asyncio.sleep(0)

        burst = asyncio.create_task(backend())
        await pilot.press("question_mark")  # keys work during the burst
        await until(pilot, lambda: app.screen.query(".dialog-text"), 10, "the help dialog")
        await pilot.press("escape")
        await burst
        table = app.screen.query_one(SlotTable)
        await until(pilot, lambda: tail.lines[-1:] == ["line 9999"], 10, "the burst's last line")
        await until(pilot, lambda: "9/28" in cell(table, 1, "progress"), 10, "the last module count")
        await until(pilot, lambda: "9.0 GiB / 20.0 GiB" in cache_text(app), 10, "the last cache totals")
        elapsed = time.monotonic() - started
        # one render per throttle interval at most, not one per event
        assert renders.count - renders_before <= elapsed / RENDER_INTERVAL + 3
        # the tail is the burst's newest lines, in order, after a marker saying how many it skipped
        assert tail.line_count == TAIL_LINES
        assert tail.lines[1:] == [f"line {i}" for i in range(10_000 - (TAIL_LINES - 1), 10_000)]
        marker = re.fullmatch(r"··· (\d+) lines dropped \(more arrived than the tail keeps\) ···", tail.lines[0])
        assert marker is not None, tail.lines[0]
        # renders during the burst showed some lines; the rest is counted, never silently skipped
        assert int(marker.group(1)) <= tail.dropped <= 10_000 - (TAIL_LINES - 1)


async def test_log_lines_of_two_slots_stay_ordered_without_gaps_or_duplicates() -> None:
    rt = build("idle")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=WIDE) as pilot:
        start_job(rt, 1, 101, "left")
        start_job(rt, 2, 202, "right")
        sent: dict[int, list[str]] = {1: [], 2: []}
        tail = app.screen.query_one(LogTail)
        for step in range(40):  # small batches, some rendered in between, interleaved across slots
            for instance in (1, 2):
                lines = tuple(f"s{instance} {step}.{k}" for k in range(step % 4 + 1))
                sent[instance].extend(lines)
                rt.emit(ev.LogLines, instance=instance, job_id=100 * instance + instance, lines=lines)
            if step % 7 == 0:
                await pilot.pause(0.12)
        await until(pilot, lambda: tail.lines[-1:] == sent[1][-1:], 10, "slot 1's last line")
        assert tail.lines == sent[1]
        assert tail.dropped == 0
        await pilot.press("down")  # slot 2: its own lines, all of them, in order
        await until(pilot, lambda: tail.lines[-1:] == sent[2][-1:], 10, "slot 2's last line")
        assert tail.lines == sent[2]


async def test_a_flood_beyond_the_pump_queue_is_reported_and_the_screen_shows_the_final_state(monkeypatch) -> None:
    import app.tui

    monkeypatch.setattr(app.tui, "PUMP_SUBSCRIPTION", 50)  # a small queue, so the flood overflows it
    rt = build("idle")
    dashboard = QaworkerApp(rt, clock=rt.clock)
    async with dashboard.run_test(size=WIDE, notifications=True) as pilot:
        await pilot.pause(0.2)
        for n in range(1, 1001):  # published without a pause: the app cannot take any of it yet
            rt.emit(ev.CacheTotals, used_bytes=n * 1024**2, limit_bytes=2000 * 1024**2)
        await until(pilot, lambda: any("fell behind: 950 events skipped" in t for t in toasts(dashboard)), 10,
                    "the skipped events reported")
        await until(pilot, lambda: "1000.0 MiB / 2.0 GiB" in cache_text(dashboard), 10, "the final cache totals")


async def test_a_rendering_bug_is_shown_once_and_the_screen_recovers_when_it_is_gone(monkeypatch) -> None:
    rt = build("idle")
    dashboard = QaworkerApp(rt, clock=rt.clock)
    async with dashboard.run_test(size=WIDE, notifications=True) as pilot:
        await until(pilot, lambda: "36.0 GiB / 50.0 GiB" in cache_text(dashboard), 10, "the first render")
        original = SlotTable.show

        def broken(self, *args, **kwargs) -> None:
            raise ValueError("column overflow")

        monkeypatch.setattr(SlotTable, "show", broken)
        for n in range(5):  # several renders with the same bug
            rt.emit(ev.CacheTotals, used_bytes=n * 1024**3, limit_bytes=10 * 1024**3)
            await pilot.pause(0.15)
        shown = [t for t in toasts(dashboard) if "drawing the screen failed" in t]
        assert len(shown) == 1 and "column overflow" in shown[0]
        assert dashboard.is_running
        monkeypatch.setattr(SlotTable, "show", original)
        rt.emit(ev.SlotStateChanged, instance=2, state=SlotState.BROKEN, reason="disk gone")
        table = dashboard.screen.query_one(SlotTable)
        await until(pilot, lambda: cell(table, 2, "state") == "broken", 10, "the table drawn again")


async def test_a_cache_queue_storm_costs_no_redraw_and_the_next_drawn_event_shows() -> None:
    """CacheQueue (every download queued, started, ended) is drawn nowhere: it must not keep redrawing."""
    rt = build("idle")
    app = QaworkerApp(rt, clock=rt.clock)
    renders = count_renders(app)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: "36.0 GiB / 50.0 GiB" in cache_text(app), 10, "the first render")
        await pilot.pause(0.3)  # the start-up renders are over
        renders_before, started = renders.count, time.monotonic()
        for n in range(50):  # spread over several throttle intervals: each would get a redraw of its own
            rt.emit(ev.CacheQueue, active=n % 5, downloads=n % 5, queued=n % 3, failed=0, limit=5)
            await pilot.pause(0.02)
        await pilot.pause(RENDER_INTERVAL * 2)
        # only the once-a-second clock (uptime, elapsed) redraws meanwhile, not ~10 per second
        assert renders.count - renders_before <= time.monotonic() - started + 1
        rt.emit(ev.CacheTotals, used_bytes=7 * 1024**3, limit_bytes=10 * 1024**3)
        await until(pilot, lambda: "7.0 GiB / 10.0 GiB" in cache_text(app), 10, "the cache totals after the storm")
