"""Setup through the shared asset cache, driven by the worker against the mock web UI (issue 5)."""

from __future__ import annotations

import time

from tests.helpers import free_instance
from tests.integration.harness import (
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    wait_registered,
)

ASSET = "disk.qcow2"


async def test_asset_through_cache_then_reused(tmp_path):
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", ASSET, size=3 * 1024 * 1024)
        async with running_worker(make_config(tmp_path, [web.url], cache=True)):
            await wait_registered(web)
            first = await web.wait_job_done(web.schedule_job(job_settings(HDD_1=ASSET)), 60)
            assert first.result == "passed", first.reason
            second = await web.wait_job_done(web.schedule_job(job_settings(HDD_1=ASSET)), 60)
            assert second.result == "passed", second.reason
        assert web.download_count("hdd", ASSET) == 1
        cached = tmp_path / "cache" / "127.0.0.1" / ASSET
        assert cached.stat().st_size == 3 * 1024 * 1024


async def test_eight_slots_one_download(tmp_path):
    instances = sorted({free_instance() for _ in range(20)})[:8]
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", ASSET, size=8 * 1024 * 1024)
        web.faults.delay(r"^/assets/", 1.0, times=1)  # keep the first download in flight while the rest ask
        web.scheduling_enabled = False
        async with running_worker(make_config(tmp_path, [web.url], instances=instances, cache=True)):
            await wait_registered(web, count=8)
            ids = [web.schedule_job(job_settings(HDD_1=ASSET, SIM_MODULES="boot")) for _ in range(8)]
            web.scheduling_enabled = True
            for job_id in ids:
                job = await web.wait_job_done(job_id, 90)
                assert job.result == "passed", job.reason
        assert web.download_count("hdd", ASSET) == 1
        await assert_no_leftovers()


async def test_missing_asset_fails_at_once_with_asset_failure(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url], cache=True)):
        await wait_registered(web)
        started = time.monotonic()
        job = await web.wait_job_done(web.schedule_job(job_settings(HDD_1="nope.qcow2", MAX_SETUP_TIME="600")), 30)
        assert job.result == "incomplete"
        assert job.reason.startswith("asset failure: Failed to download nope.qcow2"), job.reason
        assert time.monotonic() - started < 20


async def test_setup_timeout_while_downloading(tmp_path):
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", ASSET, size=1024 * 1024)
        web.faults.delay(r"^/tests/\d+/asset/", 30, times=5)
        async with running_worker(make_config(tmp_path, [web.url], cache=True)):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(HDD_1=ASSET, MAX_SETUP_TIME="2")), 30)
            assert job.result == "timeout_exceeded"
            assert job.reason == "timeout: setup exceeded MAX_SETUP_TIME"


async def test_cancel_during_download(tmp_path):
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", ASSET, size=1024 * 1024)
        web.faults.delay(r"^/tests/\d+/asset/", 30, times=5)
        async with running_worker(make_config(tmp_path, [web.url], cache=True)):
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(HDD_1=ASSET))
            await web.wait_for(lambda: any("/asset/" in r.path for r in web.requests) or
                               web.jobs[job_id].state == "setup", 20)
            started = time.monotonic()
            web.cancel_job(job_id)
            job = await web.wait_job_done(job_id, 20)
            assert job.result == "user_cancelled"
            assert time.monotonic() - started < 10
