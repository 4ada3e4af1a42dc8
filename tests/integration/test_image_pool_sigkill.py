"""Issue 11 item 1: the image pool's processes die with the worker, even when it is SIGKILLed mid-upload."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from tests.helpers import alive_pids, free_instance, is_job_process
from tests.integration.harness import job_settings, mock_web, start_worker_process, wait_registered


@pytest.mark.parametrize("optimizer", ["oxipng", "optipng"])
async def test_sigkill_of_the_worker_leaves_no_image_pool_process(tmp_path, optimizer) -> None:
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, free_instance(),
                                          extra=f"QAWORKER_PNG_OPTIMIZER = {optimizer}")
        job_tree: list[psutil.Process] = []
        try:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(
                OPTIMIZE_IMAGES="1", SIM_SCREENSHOT_SIZE="1024x768", SIM_SCREENSHOTS="30", SIM_MODULES="boot,login",
                SIM_MODULE_SECONDS="20"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            worker = psutil.Process(proc.pid)
            wanted = "optipng" if optimizer == "optipng" else "pngworker.py"

            def optimising() -> list[psutil.Process]:
                found = []
                for child in worker.children(recursive=True):
                    try:
                        if wanted in " ".join(child.cmdline()):
                            found.append(child)
                    except psutil.Error:
                        pass
                return found

            # It is optimising screenshots right now. Each optimiser run is short and the mock web UI's
            # wait_for only looks again when the mock's state changes: poll the process table instead.
            async with asyncio.timeout(60):
                while not await asyncio.to_thread(optimising):  # noqa: ASYNC110 - no event for a process table
                    await asyncio.sleep(0.02)
            descendants = worker.children(recursive=True)
            job_tree = [p for p in descendants if is_job_process(p)]  # isotovideo's: the sweep's business
            pool = [p.pid for p in descendants if p not in job_tree]
            assert pool, "no image pool process seen"
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            for _ in range(200):  # PR_SET_PDEATHSIG is immediate; give the kernel a moment to deliver it
                if not alive_pids(pool):
                    break
                await asyncio.sleep(0.05)
            assert alive_pids(pool) == [], [(p, psutil.Process(p).cmdline()) for p in alive_pids(pool)]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for p in job_tree:  # the orphaned simulator: ended by PID (adopting it is issue 11's other part)
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
