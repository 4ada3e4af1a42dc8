"""What the headless log says about the core: one line per failed attempt, no idle line on the way out."""

from __future__ import annotations

import asyncio
import logging

from app.headless import run_headless
from backend import events as ev
from backend.sdnotify import Notifier
from backend.worker import Worker
from tests.helpers import free_port
from tests.integration.harness import job_settings, make_config, mock_web, wait_registered


def lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_a_failed_registration_is_one_line_per_attempt(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    worker = Worker(make_config(tmp_path, [dead]))
    failures = []
    third = asyncio.Event()

    def count(event: ev.Event) -> None:
        if isinstance(event, ev.ConnectionChanged) and event.state.value == "failed":
            failures.append(event)
            if len(failures) >= 3:
                third.set()

    worker.bus.add_listener(count)
    run = asyncio.create_task(worker.run())
    face = asyncio.create_task(run_headless(worker, notifier=Notifier({})))
    try:
        await asyncio.wait_for(third.wait(), 30)
    finally:
        worker.quit()
        await asyncio.wait_for(run, 30)
        await asyncio.wait_for(face, 10)
    visible = [r for r in caplog.records if r.levelno >= logging.INFO and "Failed to register" in r.getMessage()]
    assert 3 <= len(visible) <= len(failures)  # one line per attempt, not two


async def test_drain_says_stopping_once_and_never_idle_afterwards(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with mock_web(tmp_path) as web:
        worker = Worker(make_config(tmp_path, [web.url]))
        run = asyncio.create_task(worker.run())
        face = asyncio.create_task(run_headless(worker, notifier=Notifier({})))
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="0.5"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        worker.drain()
        assert await asyncio.wait_for(run, 60) == 0
        await asyncio.wait_for(face, 10)
        assert web.jobs[job_id].result == "passed"
    messages = [r.getMessage() for r in caplog.records]
    stopping = [i for i, m in enumerate(messages) if "stopping" in m and "after the current jobs" in m]
    assert len(stopping) == 1, messages
    after = messages[stopping[0]:]
    assert not [m for m in after if "idle, waiting for jobs" in m], after
    assert any(f"job {job_id}" in m and "finished: passed" in m for m in after)
