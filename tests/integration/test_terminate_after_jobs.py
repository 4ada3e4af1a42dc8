"""TERMINATE_AFTER_JOBS_DONE (issue 12 row 1): the real worker process runs its job, then exits 0 once its
queue is empty and tells the web UI it goes (ws ``quit``) - with ``Restart=always`` that is how the
auto-restart unit picks up updates."""

from __future__ import annotations

import asyncio
import signal

from tests.helpers import free_instance
from tests.integration.harness import job_settings, mock_web, start_worker_process, wait_registered


async def test_worker_exits_after_its_job_when_asked_to(tmp_path):
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, free_instance(), extra="TERMINATE_AFTER_JOBS_DONE = 1")
        try:
            await wait_registered(web)
            await asyncio.sleep(1.0)
            assert proc.returncode is None, "an idle worker must wait for a job first"
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot"))
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        job = web.jobs[job_id]
        assert (job.state, job.result) == ("done", "passed")
        worker = web.workers[job.assigned_worker_id]
        assert any(m.get("type") == "quit" for m in worker.status_messages)
        assert "TERMINATE_AFTER_JOBS_DONE" in (tmp_path / "worker.log").read_text()


async def test_a_sequence_runs_to_its_end_before_the_exit(tmp_path):
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, free_instance(), extra="TERMINATE_AFTER_JOBS_DONE = 1")
        try:
            await wait_registered(web)
            ids = web.schedule_chain([job_settings(SIM_MODULES="boot"), job_settings(SIM_MODULES="boot")])
            assert await asyncio.wait_for(proc.wait(), 90) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert [web.jobs[i].result for i in ids] == ["passed", "passed"]


async def test_reload_of_an_idle_worker_exits_at_once(tmp_path):
    # what the .path unit does on a workers.ini change: systemctl reload = SIGHUP = drain
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, free_instance(), extra="TERMINATE_AFTER_JOBS_DONE = 1")
        try:
            await wait_registered(web)
            proc.send_signal(signal.SIGHUP)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        worker = next(iter(web.workers.values()))
        assert any(m.get("type") == "quit" for m in worker.status_messages)
