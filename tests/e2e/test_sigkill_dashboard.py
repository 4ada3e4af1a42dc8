"""Issue 11 item 1 with the dashboard face: `qaworker` on a terminal is SIGKILLed mid-job.

The dashboard process has the most helpers (the image pool's optimisers, multiprocessing's resource
tracker the dashboard starts): all of them must die with it at once, and the job tree it leaves must be
gone when the worker is started again in the same pool — 0 processes of the killed worker in the end.
"""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from tests.e2e.pty_helpers import start_dashboard
from tests.helpers import describe, free_instance, job_processes_of, living
from tests.integration.harness import job_settings, mock_web, start_worker_process, wait_registered

pytestmark = pytest.mark.timeout(120)


async def test_sigkill_of_the_dashboard_worker_leaves_nothing_after_the_restart(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        instance = free_instance()
        session = start_dashboard(tmp_path, web.url, instance)
        restarted = None
        everything: list[psutil.Process] = []
        try:
            await wait_registered(web, timeout=30)
            worker = psutil.Process(session.proc.pid)
            job_id = web.schedule_job(job_settings(SIM_HANG="login", SIM_ORPHAN="1", OPTIMIZE_IMAGES="1",
                                                   SIM_SCREENSHOTS="3"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)

            def helpers() -> list[psutil.Process]:
                return [p for p in worker.children(recursive=True) if "pngworker" in " ".join(p.cmdline())]

            for _ in range(300):  # /proc reads go to a thread: the loop guard watches the test's loop too
                if await asyncio.to_thread(helpers):
                    break
                await asyncio.sleep(0.1)
            job_tree = await asyncio.to_thread(job_processes_of, worker.pid)
            descendants = await asyncio.to_thread(worker.children, recursive=True)
            own = [p for p in descendants if p not in job_tree]  # image pool, resource tracker, ...
            everything = list({p.pid: p for p in descendants + job_tree}.values())
            assert own and len(job_tree) >= 2, describe(descendants)
            print("own helpers:", describe(own))

            os.kill(worker.pid, signal.SIGKILL)
            await asyncio.to_thread(session.proc.wait, 10)
            for _ in range(100):  # PR_SET_PDEATHSIG / EOF: at once, but let the kernel deliver it
                if not await asyncio.to_thread(living, own):
                    break
                await asyncio.sleep(0.05)
            left = await asyncio.to_thread(living, own)
            assert left == [], describe(left)

            web.state.abandon(web.jobs[job_id], "abandoned: associated worker has gone")
            web.notify()
            restarted = await start_worker_process(tmp_path, web.url, instance)
            await web.wait_for(lambda: sum(1 for w in web.workers.values() if w.connected) >= 1, 30)
            for _ in range(100):
                if not await asyncio.to_thread(living, everything):
                    break
                await asyncio.sleep(0.05)
            left = await asyncio.to_thread(living, everything)
            assert left == [], describe(left)
        finally:
            if session.proc.poll() is None:
                psutil.Process(session.proc.pid).kill()
            session.close()
            if restarted is not None and restarted.returncode is None:
                restarted.terminate()
                await restarted.wait()
            for proc in living(everything):  # only on failure: ours, by pid
                proc.kill()
