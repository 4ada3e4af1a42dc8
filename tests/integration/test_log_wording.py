"""Issue 15 item 10, the log's part: what a real worker says in its headless log about one job's life.

Real Worker, the mock web UI on 127.0.0.1 and the simulator; the headless face writes the lines.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from app.headless import run_headless
from backend.sdnotify import Notifier
from backend.worker import Worker
from tests.integration.harness import job_settings, make_config, mock_web, wait_registered

pytestmark = pytest.mark.timeout(60)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and not r.name.startswith(
        ("backend.mockweb", "aiohttp", "httpx"))]


async def test_a_normal_job_and_a_drain_in_the_log(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        worker = Worker(config)
        run = asyncio.create_task(worker.run())
        face = asyncio.create_task(run_headless(worker, notifier=Notifier({})))
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,shutdown", SIM_PAUSE="login",
                                               SIM_PAUSE_SECONDS="0.5"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        worker.drain()
        assert await asyncio.wait_for(run, 60) == 0
        await asyncio.wait_for(face, 10)
        assert web.jobs[job_id].result == "passed"
    lines = messages(caplog)
    text = "\n".join(lines)
    assert re.search(rf"^\[slot {instance}\] job {job_id} set up in \S+ \(0 assets linked\)$", text, re.M), text
    assert f"Stopping job {job_id}" not in text  # a normal end is no "stopping"
    stopping = [m for m in lines if "stopping" in m.lower()]
    assert stopping == ["stopping after the current jobs (1 running); no new jobs"], stopping
    assert f"[slot {instance}] job {job_id} ending" in lines
    paused = [m for m in lines if "paused" in m]
    assert paused == [f"[slot {instance}] job {job_id} paused at needle mismatch"], paused
    assert not re.search(r"\b1 (files|assets)\b", text)


async def test_a_refused_worker_says_so_once(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with mock_web(tmp_path) as web:
        worker = Worker(make_config(tmp_path, [web.url], secret="WRONGWRONGWRONG1"))
        run = asyncio.create_task(worker.run())
        face = asyncio.create_task(run_headless(worker, notifier=Notifier({})))
        assert await asyncio.wait_for(run, 30) == 1
        await asyncio.wait_for(face, 10)
    lines = messages(caplog)
    refused = [m for m in lines if "Failed to register" in m]
    assert len(refused) == 1 and "disabled: " in refused[0], lines
    assert len([m for m in lines if "disabled" in m]) == 1, lines
