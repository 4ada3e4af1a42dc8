"""SIGUSR2 = hand-over with the dashboard on a terminal (README, systemd section): the dashboard gives the
terminal back, the worker exits 75 at once and its job runs on; the next start adopts and finishes it."""

from __future__ import annotations

import asyncio
import signal

import pytest

from backend.slot.adopthandover import HANDOVER_EXIT
from tests.e2e.pty_helpers import start_dashboard
from tests.helpers import free_instance
from tests.integration.adopt_support import (
    assert_passed_without_clone,
    gone,
    pool_of,
    recorded_monitor,
    registered,
)
from tests.integration.harness import job_settings, mock_web, start_worker_process

pytestmark = pytest.mark.timeout(120)

ALT_SCREEN_ON, ALT_SCREEN_OFF = "\x1b[?1049h", "\x1b[?1049l"


async def test_sigusr2_in_dashboard_mode_hands_the_job_over(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        instance = free_instance()
        session = start_dashboard(tmp_path, web.url, instance)
        restarted = None
        try:
            await registered(web, instance)
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,work,shutdown", SIM_MODULE_SECONDS="1.5"))
            job = web.jobs[job_id]
            await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)
            monitor = await recorded_monitor(web, pool_of(tmp_path, instance))
            assert ALT_SCREEN_ON in session.text()  # the dashboard is on the terminal

            session.proc.send_signal(signal.SIGUSR2)
            assert await asyncio.to_thread(session.proc.wait, 20) == HANDOVER_EXIT
            assert not gone(monitor) and job.state == "running"  # nothing stopped, nothing reported
            screen = session.text()
            assert screen.rfind(ALT_SCREEN_OFF) > screen.rfind(ALT_SCREEN_ON)  # the terminal is given back
            assert "hand-over (SIGUSR2)" in (tmp_path / "qaworker.log").read_text()

            restarted = await start_worker_process(tmp_path, web.url, instance)
            await registered(web, instance, after=1)
            await web.wait_job_done(job_id, 60)
            assert_passed_without_clone(web, job_id, 4)
            assert f"adopting job {job_id}" in (tmp_path / "worker.log").read_text()
            assert gone(monitor)
        finally:
            session.close()
            if restarted is not None and restarted.returncode is None:
                restarted.terminate()
                await restarted.wait()
