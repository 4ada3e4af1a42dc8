"""Issue 15 item 1 on the REAL backend: an abort dialog left open while its job ends must not abort the next job."""

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
from tests.tui.pilot_helpers import until
from widgets.dialogs import ConfirmScreen

pytestmark = pytest.mark.timeout(90)


async def test_stale_abort_dialog_leaves_the_next_job_alone(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        worker = Worker(config)
        task = asyncio.create_task(worker.run())
        app = QaworkerApp(worker)

        def running() -> int | None:
            job = worker.view.slots[instance].job if instance in worker.view.slots else None
            return job.job_id if job is not None else None

        try:
            async with app.run_test(size=(140, 40)) as pilot:
                await wait_registered(web)
                first = web.schedule_job(job_settings(SIM_MODULES="boot,login,console", SIM_MODULE_SECONDS="1",
                                                      TEST="asked-about"))
                await until(pilot, lambda: running() == first, 20, "the first job running")
                await pilot.press("a")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the abort dialog")
                assert f"#{first}" in str(app.screen.query_one(".dialog-text").render())
                # the dialog stays open while the job it asked about ends and the next one starts
                await web.wait_job_done(first, 30)
                second = web.schedule_job(job_settings(SIM_MODULES="boot,login,console,shutdown",
                                                       SIM_MODULE_SECONDS="0.6", TEST="innocent"))
                await until(pilot, lambda: running() == second, 20, "the second job running")
                await pilot.press("y")
                await until(pilot, lambda: any(f"#{first} no longer runs" in n.message
                                               for n in app._notifications), 5, "the 'nothing aborted' notice")
                done = await web.wait_job_done(second, 30)
                assert web.jobs[first].result == "passed"
                assert done.result == "passed", f"the job nobody asked about ended {done.result}"
        finally:
            await quit_in_process_worker(worker, task)
        assert task.done() and task.result() == 0
        await assert_no_leftovers()
