"""The web UI misbehaves while a job runs: outages, dropped websockets, error storms, slowness, resets."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.faults.conftest import (
    assert_accounted,
    assert_healthy,
    job_settings,
    make_config,
    mock_web,
    pool_of,
    running_worker,
    serving,
    wait_registered,
)

pytestmark = pytest.mark.faults

OUTAGE = 10.0  # the 2-minute outage, scaled down (README)
PATIENT = {"RETRIES": "40", "RETRY_DELAY": "0.5", "RETRY_DELAY_IF_WEBUI_BUSY": "1"}
SKEW_BODY = {"error": "timestamp mismatch - check whether clocks on the local host and the web UI host are "
                      "in sync", "error_status": 403}


def posts(web, suffix: str, job_id: int) -> list:
    return [r for r in web.requests if r.method == "POST" and r.path == f"/api/v1/jobs/{job_id}/{suffix}"]


async def test_web_ui_gone_mid_job_and_back(tmp_path):
    async with serving(tmp_path, settings=PATIENT) as (web, worker):
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,console,shutdown", SIM_MODULE_SECONDS="2"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        await web.stop()
        await asyncio.sleep(OUTAGE)
        await web.start()  # same object, same port: the web UI "restarted" with its database intact
        job = await web.wait_job_done(job_id, 60)
        assert (job.result, job.reason) == ("passed", None), job.reason
        assert_accounted(web, job_id, pool_of(worker))
        await assert_healthy(web)


async def test_websocket_dropped_every_few_seconds(tmp_path):
    async with serving(tmp_path) as (web, worker):
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,console,shutdown", SIM_MODULE_SECONDS="1.5"))

        async def dropper() -> None:
            while True:
                await asyncio.sleep(1.5)
                await web.drop_websockets()

        task = asyncio.create_task(dropper())
        try:
            job = await web.wait_job_done(job_id, 60)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert (job.result, job.reason) == ("passed", None), job.reason
        assert web.workers[job.assigned_worker_id].registrations >= 2  # it really lost the ws and came back
        assert_accounted(web, job_id, pool_of(worker))
        await wait_registered(web)
        await assert_healthy(web)


@pytest.mark.parametrize("status", [502, 503, 429])
async def test_error_storm_with_retry_after(tmp_path, status):
    async with serving(tmp_path) as (web, _worker):
        web.faults.fail(r"/status$", status, times=4, retry_after=1)
        web.faults.fail(r"/artefact$", status, times=4, retry_after=1)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login"))
        job = await web.wait_job_done(job_id, 60)
        assert (job.result, job.reason) == ("passed", None), job.reason
        assert {"autoinst-log.txt", "vars.json", "worker-log.txt"} <= job.uploaded_files()
        failed = [r for r in posts(web, "status", job_id) if r.status == status]
        assert len(failed) == 4
        # Retry-After: 1 was honoured (RETRY_DELAY is 0.2 s, so a hammering client would be back sooner)
        ok = [r for r in posts(web, "status", job_id) if r.status == 200]
        assert ok[0].t - failed[0].t >= 0.95
        assert len([r for r in failed if r.t - failed[0].t < 0.9]) <= 2  # at most two posts in flight
        await assert_healthy(web)


async def test_slow_status_responses(tmp_path):
    async with serving(tmp_path) as (web, worker):
        web.faults.delay(r"/status$", 5.0, times=None)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login"))
        job = await web.wait_job_done(job_id, 90)
        web.faults.clear()
        assert (job.result, job.reason) == ("passed", None), job.reason
        assert set(job.modules) >= {"boot", "login"}
        assert_accounted(web, job_id, pool_of(worker), {"autoinst-log.txt", "vars.json", "worker-log.txt"})
        await assert_healthy(web)


@pytest.mark.quick  # also in `make test`
async def test_connection_reset_mid_upload(tmp_path):
    async with serving(tmp_path) as (web, _worker):
        web.faults.reset(r"/artefact$", times=4)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login"))
        job = await web.wait_job_done(job_id, 60)
        assert (job.result, job.reason) == ("passed", None), job.reason
        assert sum(1 for r in web.requests if r.path.endswith("/artefact") and r.status == 0) == 4
        assert {"autoinst-log.txt", "vars.json", "worker-log.txt"} <= job.uploaded_files()
        await assert_healthy(web)


async def test_clock_skew_on_registration_is_retried(tmp_path):
    async with mock_web(tmp_path) as web:
        web.faults.fail(r"^/api/v1/workers$", 403, times=3, body=SKEW_BODY)
        started = time.monotonic()
        async with running_worker(make_config(tmp_path, [web.url])):
            await wait_registered(web, timeout=20)
            regs = [r.status for r in web.requests if r.method == "POST" and r.path == "/api/v1/workers"]
            # (a HEAD probe of the same path may take one of the three faults)
            assert regs.count(403) >= 2 and regs[-1] == 200 and regs.index(200) == len(regs) - 1, regs
            assert time.monotonic() - started < 20
            await assert_healthy(web)
