"""Soak: many simulator jobs back to back across 4 slots; RSS and open fds of the worker stay flat."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest

from tests.faults.conftest import job_settings, mock_web, start_worker_process, stop_process, wait_registered
from tests.helpers import free_instance

pytestmark = pytest.mark.faults

JOBS = int(os.environ.get("QAWORKER_SOAK_JOBS", "200"))
SLOTS = 4
WARMUP = 8  # jobs before the baseline is taken (imports, caches, pools filled)


@pytest.mark.timeout(max(600, JOBS * 6))
async def test_soak_rss_and_fds_stay_flat(tmp_path):
    instances = sorted({free_instance() for _ in range(20)})[:SLOTS]
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, instances)
        ps = psutil.Process(proc.pid)
        try:
            await wait_registered(web, count=SLOTS, timeout=30)
            await run_batch(web, WARMUP)
            rss0, fds0 = ps.memory_info().rss, ps.num_fds()
            started = time.monotonic()
            await run_batch(web, JOBS)
            rss1, fds1 = ps.memory_info().rss, ps.num_fds()
            print(f"soak {JOBS} jobs in {time.monotonic() - started:.0f} s: RSS {rss0 / 2**20:.1f} → "
                  f"{rss1 / 2**20:.1f} MiB, fds {fds0} → {fds1}")
            assert rss1 - rss0 < 30 * 2**20
            assert fds1 - fds0 < 20
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            await stop_process(proc)


async def run_batch(web, count: int) -> None:
    ids = [web.schedule_job(job_settings(SIM_MODULES="boot", SIM_MODULE_SECONDS="0.1")) for _ in range(count)]
    for job_id in ids:
        job = await web.wait_job_done(job_id, 120)
        assert job.result == "passed", (job_id, job.result, job.reason)
