"""The real `qaworker --no-ui` process: signals mid-job (issue 3 §8) and the headless face."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from tests.helpers import free_instance
from tests.integration.harness import (
    SECRET,
    assert_no_leftovers,
    job_settings,
    mock_web,
    start_worker_process,
    wait_registered,
)

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def worker_process(tmp: Path, url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """The real worker process; killed at the end if a test left it running."""
    proc = await start_worker_process(tmp, url, free_instance())
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_mid_job_quits_duplicates_and_exits_zero(tmp_path):
    async with mock_web(tmp_path) as web:
        async with worker_process(tmp_path, web.url) as proc:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="5"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        job = web.jobs[job_id]
        assert job.result == "incomplete"
        assert job.reason == "quit: worker has been stopped or restarted"
        assert job.duplicated_as is not None
        worker = web.workers[job.assigned_worker_id]
        assert any(m.get("type") == "quit" for m in worker.status_messages)
        await assert_no_leftovers(proc.pid)
        log = (tmp_path / "worker.log").read_text()
        assert SECRET not in log


async def test_sighup_finishes_the_job_then_exits(tmp_path):
    async with mock_web(tmp_path) as web:
        async with worker_process(tmp_path, web.url) as proc:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="1"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            proc.send_signal(signal.SIGHUP)
            proc.send_signal(signal.SIGHUP)  # a second SIGHUP changes nothing
            second = web.schedule_job(job_settings())
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        assert web.jobs[job_id].result == "passed"
        assert web.jobs[second].state == "scheduled"  # never taken by a draining worker
        await assert_no_leftovers(proc.pid)


async def test_sigterm_when_web_ui_is_gone_still_exits(tmp_path):
    async with mock_web(tmp_path) as web:
        async with worker_process(tmp_path, web.url) as proc:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="5"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            await web.stop()
            try:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 60) == 0
            finally:
                await web.start()
        await assert_no_leftovers(proc.pid)
