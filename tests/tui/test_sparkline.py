"""Sparklines per slot: recent job durations, and upload throughput while a job uploads."""

from __future__ import annotations

from app.tui import QaworkerApp
from backend import events as ev
from backend.events import SlotState
from tests.tui.history_fixtures import history_runtime
from tests.tui.settle import settle
from widgets.slots import SlotTable
from widgets.sparkline import RateSampler, durations_text, short_rate, sparkline


def test_sparkline_scales_to_the_largest_value() -> None:
    assert sparkline([], 5) == ""
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8], 8) == "▂▃▄▅▅▆▇█"
    assert sparkline([0, 10], 2) == "▁█"
    assert sparkline([5, 5, 5], 3) == "███"  # bars measure from zero: equal jobs, equal bars
    assert sparkline([0, 0], 2) == "▁▁"
    assert sparkline([*range(100), 0], 3) == "██▁"  # the newest `width` values only


def test_duration_bars_take_their_jobs_colour() -> None:
    text = durations_text([60, 600], ["passed", "failed"], 8)
    assert text.plain == "▂█"
    assert [str(span.style) for span in text.spans] == ["green", "bold red"]


def test_rate_sampler_and_short_rates() -> None:
    sampler = RateSampler(min_interval=0.5)
    sampler.sample("job", 0.0, 0)
    sampler.sample("job", 0.2, 1)  # too soon: no sample
    sampler.sample("job", 1.0, 10 * 1024 * 1024)
    assert sampler.rates == [10 * 1024 * 1024] or list(sampler.rates) == [10 * 1024 * 1024]
    sampler.sample("other job", 2.0, 5)
    assert not sampler.rates
    assert short_rate(950) == "950B/s" and short_rate(48.6 * 2**20) == "48.6M/s" and short_rate(150 * 2**10) == "150K/s"


def recent(app: QaworkerApp, instance: int) -> str:
    return str(app.screen.query_one(SlotTable).get_cell(str(instance), "recent"))


async def test_the_slot_table_shows_durations_then_the_upload_rate() -> None:
    rt = history_runtime(running=True)
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert recent(app, 1) == "██▂█"  # slot 1: 40, 38, 7 (cancelled) and 40 minutes, oldest left
        rt.emit(ev.SlotStateChanged, instance=2, state=SlotState.UPLOADING, job_id=3725102)
        for second in range(4):
            rt.advance(1)
            rt.emit(ev.UploadProgress, instance=2, job_id=3725102, files_done=second, files_total=9,
                    bytes_done=second * 3 * 2**20, bytes_total=40 * 2**20)
            await settle(pilot, at_least=0.15)
        assert recent(app, 2).endswith("3.0M/s")
    narrow = QaworkerApp(history_runtime(), clock=rt.clock)
    async with narrow.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        keys = [c.key.value for c in narrow.screen.query_one(SlotTable).columns.values()]
        assert "recent" not in keys  # no room below 140 columns
