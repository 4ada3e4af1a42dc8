"""The real `qaworker --no-ui --metrics-port N` process: /metrics after one job tells an operator what happened."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.helpers import free_instance, free_port
from tests.integration.harness import assert_no_leftovers, job_settings, mock_web, start_worker_process, wait_registered
from tests.metrics_support import scrape, value

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


async def start_worker(tmp: Path, url: str, instance: int, metrics_port: int) -> asyncio.subprocess.Process:
    (tmp / "cache").mkdir()
    return await start_worker_process(tmp, url, instance, f"CACHEDIRECTORY = {tmp / 'cache'}\nCACHELIMIT = 1\n",
                                      args=("--metrics-port", str(metrics_port)))


async def test_metrics_after_one_job_with_an_asset(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", "metrics-disk.qcow2", size=256 * 1024)
        instance, port = free_instance(), free_port()
        proc = await start_worker(tmp_path, web.url, instance, port)
        try:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(HDD_1="metrics-disk.qcow2", SIM_MODULE_SECONDS="0.3"),
                                      assets={"hdd": ["metrics-disk.qcow2"]})
            job = await web.wait_job_done(job_id, 40)
            assert job.result == "passed"
            await asyncio.sleep(0.6)  # the idle state and the loop-lag probe (every 0.25 s) land
            text = await scrape(port)
            (tmp_path / "metrics.txt").write_text(text)  # to read when an assertion fails
        finally:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        await assert_no_leftovers(proc.pid)

    slot = str(instance)
    assert value(text, "qaworker_jobs_total", result="passed") == 1
    assert value(text, "qaworker_job_duration_seconds_count") == 1
    assert 0 < value(text, "qaworker_job_duration_seconds_sum") < 40
    assert value(text, "qaworker_jobs_running") == 0
    assert value(text, "qaworker_slot_state", instance=slot, state="idle") == 1
    assert value(text, "qaworker_slot_state", instance=slot, state="running") == 0
    # the job's protocol, by endpoint and answer
    for endpoint in ("/api/v1/workers", "/api/v1/jobs/:id/status", "/api/v1/jobs/:id/artefact",
                     "/api/v1/jobs/:id/set_done"):
        assert value(text, "qaworker_api_requests_total", method="POST", endpoint=endpoint, status="200") >= 1, \
            endpoint
    assert value(text, "qaworker_upload_bytes_total") > 1000  # screenshots, logs, results
    assert value(text, "qaworker_upload_failures_total") == 0
    assert value(text, "qaworker_websocket_connected", host=web.url, instance=slot) == 1
    assert value(text, "qaworker_last_contact_timestamp_seconds", host=web.url) > 1.7e9
    # the asset went through the cache
    assert value(text, "qaworker_cache_misses_total") == 1
    assert value(text, "qaworker_cache_bytes") >= 256 * 1024
    assert value(text, "qaworker_cache_limit_bytes") == 1024 ** 3
    assert value(text, "qaworker_event_loop_lag_observed_seconds_count") >= 1
    assert 0 <= value(text, "qaworker_event_loop_lag_seconds") < 1
    assert value(text, "qaworker_build_info", version=re.search(r'version="([^"]+)"', text).group(1)) == 1
