"""The dashboard on the REAL backend: Worker + MockWebUI + simulator in this process, no scripted runtime."""

from __future__ import annotations

import asyncio

import pytest

from app.tui import QaworkerApp
from backend.events import SlotState
from backend.worker import Worker
from tests.integration.harness import (
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    quit_in_process_worker,
    wait_registered,
)
from tests.tui.pilot_helpers import cell, text, until
from widgets.connection import ConnectionBar
from widgets.job import JobSummary
from widgets.slots import SlotTable

pytestmark = pytest.mark.timeout(60)

SIZE = (140, 40)


async def test_a_real_job_goes_from_running_to_passed_on_screen(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        worker = Worker(config)
        task = asyncio.create_task(worker.run())
        app = QaworkerApp(worker)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await wait_registered(web)
                table = app.screen.query_one(SlotTable)
                await until(pilot, lambda: cell(table, instance, "state") == "idle", 10, "slot idle")
                await until(pilot, lambda: "connected" in text(app, ConnectionBar), 5, "connected header")

                job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,console,shutdown",
                                                       SIM_MODULE_SECONDS="0.8", TEST="e2e-dashboard"))
                await until(pilot, lambda: cell(table, instance, "state") == "running", 15, "running state")
                assert f"#{job_id}" in cell(table, instance, "job")
                assert "e2e-dashboard" in cell(table, instance, "job")
                await until(pilot, lambda: cell(table, instance, "module") in ("login", "console"), 10,
                            "a later module in the module column")
                assert "/4" in cell(table, instance, "progress")
                summary = text(app, JobSummary)
                assert f"#{job_id} " in summary and "e2e-dashboard" in summary and web.url in summary
                modules = text(app, "#modules-text")
                assert "✔ boot passed" in modules

                await until(pilot, lambda: f"last #{job_id} passed" in cell(table, instance, "job"), 30,
                            "the finished job in the slot table")
                await until(pilot, lambda: cell(table, instance, "state") == "idle", 10, "idle after the job")
                summary = text(app, JobSummary)
                assert f"last job #{job_id}: ✔ passed" in summary
                assert "jobs done since start: 1" in summary
                assert web.jobs[job_id].result == "passed"
                assert worker.view.slots[instance].state is SlotState.IDLE
                await pilot.press("q")  # no job runs: quit without asking
                await until(pilot, lambda: worker.stopping, 5, "quit reached the worker")
        finally:
            await quit_in_process_worker(worker, task)
        assert task.done() and task.result() == 0
        await assert_no_leftovers()
