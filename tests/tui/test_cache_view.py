"""Issue 15 item 9: the cache view (c) is a real view — usage, counters, downloads, waiting jobs — and live."""

from __future__ import annotations

import pytest

from app.tui import QaworkerApp
from backend import events as ev
from backend.events import SlotState
from tests.tui import scripted
from tests.tui.scripted import ScriptedRuntime, build
from tests.tui.settle import settle, then_settle

pytestmark = pytest.mark.timeout(30)


def shown(app: QaworkerApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_cache_view_shows_usage_counters_downloads_and_who_waits() -> None:
    rt = build("cache_downloading")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        overview = shown(app, "#cache-overview")
        assert "36.0 GiB of 50.0 GiB (72%) · 14.0 GiB free" in overview
        assert "57 assets · hits 412 · misses 23 · hit rate 95% · evicted 4" in overview
        downloads = shown(app, "#cache-text")
        assert "Downloads in flight (3)" in downloads
        assert "SLE-15-SP5-Full-x86_64-GM-Media1.iso" in downloads and "~8 min left" in downloads
        waiting = shown(app, "#cache-waiting")
        assert "#3725411 (slot 2): SLE-15-SP5-Full-x86_64-GM-Media1.iso, tests" in waiting
        # usage and counters fit 80 columns whole (long asset names are cut with an ellipsis instead)
        assert all(len(line) <= 76 for line in overview.splitlines())

        # live while open: a hit and a finished download show without leaving the view
        rt.emit(ev.CacheTotals, used_bytes=38_654_705_664, limit_bytes=53_687_091_200, assets=57, hits=413,
                misses=23, evictions=4)
        rt.emit(ev.CacheProgress, key=f"{scripted.HOST}/tests", done=True)
        await settle(pilot)
        assert "hits 413" in shown(app, "#cache-overview")
        assert "Downloads in flight (2)" in shown(app, "#cache-text")
        await pilot.press("escape")
        await settle(pilot, at_least=0.2)
        assert app.screen.id == "dashboard"


async def test_an_idle_cache_and_no_cache_at_all_are_explained() -> None:
    rt = build("idle")
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert "Downloads in flight (0)" in shown(app, "#cache-text")
        assert "none: an asset is downloaded here once" in shown(app, "#cache-text")
        assert "none" in shown(app, "#cache-waiting")
    rt = ScriptedRuntime()  # a worker without CACHEDIRECTORY: it never publishes cache events
    rt.emit(ev.WorkerStarted, version=scripted.VERSION, instances=(1,), hosts=(scripted.HOST,))
    rt.emit(ev.SlotStateChanged, instance=1, state=SlotState.IDLE)
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert "not configured (CACHEDIRECTORY in workers.ini)" in shown(app, "#cache-overview")
        assert not app.screen.query_one("#cache-waiting").display


def test_cache_view_snapshot(snap_compare) -> None:
    rt = build("cache_downloading")
    assert snap_compare(QaworkerApp(rt, clock=rt.clock), terminal_size=(80, 24), run_before=then_settle("c"))
