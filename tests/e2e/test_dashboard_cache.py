"""Issue 15 item 9 on the REAL backend: a cache hit shows in the dashboard at once, and `c` shows the cache."""

from __future__ import annotations

import asyncio

import pytest

from app.tui import QaworkerApp
from backend.worker import Worker
from tests.integration.harness import (
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    quit_in_process_worker,
    wait_registered,
)
from tests.tui.pilot_helpers import text, until

pytestmark = pytest.mark.timeout(90)

ASSET = "e2e-disk.qcow2"


def running_modules(worker: Worker) -> int | None:
    """The id of the job that runs its modules (its setup, with the cache, is over), if any."""
    job = next(iter(worker.view.slots.values())).job
    return job.job_id if job is not None and job.modules else None


async def test_a_fresh_cache_hit_shows_at_once_in_the_cache_view(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", ASSET, size=2 * 1024 * 1024)
        worker = Worker(make_config(tmp_path, [web.url], cache=True))
        task = asyncio.create_task(worker.run())
        app = QaworkerApp(worker)
        try:
            async with app.run_test(size=(100, 30)) as pilot:
                await wait_registered(web)
                first = await web.wait_job_done(web.schedule_job(job_settings(HDD_1=ASSET, SIM_MODULES="boot")), 60)
                assert first.result == "passed", first.reason
                await pilot.press("c")
                await until(pilot, lambda: "misses 1" in text(app, "#cache-overview"), 10, "the first download")
                assert "hits 0" in text(app, "#cache-overview") and "1 asset " in text(app, "#cache-overview")
                # the second job uses the copy confirmed seconds ago: no request, and the counter moves now
                second = web.schedule_job(job_settings(HDD_1=ASSET, SIM_MODULES="boot,login",
                                                       SIM_MODULE_SECONDS="2"))
                await until(pilot, lambda: running_modules(worker) == second, 30, "the second job past its setup")
                await until(pilot, lambda: "hits 1" in text(app, "#cache-overview"), 2,
                            "the hit in the cache view while the job still runs")
                assert "hit rate 50%" in text(app, "#cache-overview")
                assert "Downloads in flight (0)" in text(app, "#cache-text")
                assert web.download_count("hdd", ASSET) == 1
                assert (await web.wait_job_done(second, 60)).result == "passed"
        finally:
            await quit_in_process_worker(worker, task)
        assert task.done() and task.result() == 0
        await assert_no_leftovers()
