"""`qaworker` with its dashboard in a terminal; the terminal goes away; the worker goes on headless with
its job, and the control socket gives a dashboard back (what `qaworker attach` shows)."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from backend.control.client import ControlConnection
from backend.control.codec import decode
from backend.state import WorkerView
from tests.e2e.pty_helpers import start_dashboard
from tests.helpers import free_instance
from tests.integration.harness import job_settings, mock_web, wait_registered

pytestmark = pytest.mark.timeout(120)


async def snapshot(path) -> WorkerView:
    conn = await ControlConnection.open(path)
    try:
        message = await asyncio.wait_for(conn.read(), 10)
        assert message is not None and message["type"] == "snapshot"
        return decode(WorkerView, message["view"])
    finally:
        await conn.close()


async def test_the_worker_outlives_its_terminal_and_can_be_attached_again(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        instance = free_instance()
        socket = tmp_path / "control.sock"
        session = start_dashboard(tmp_path, web.url, instance)
        try:
            await wait_registered(web, timeout=30)
            await asyncio.sleep(1)
            assert "qaworker" in session.text()  # the dashboard is on the terminal
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot,a,b,c,shutdown", SIM_MODULE_SECONDS="1.5"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 20)

            session.hang_up()  # the SSH connection drops
            await asyncio.sleep(3)
            assert session.proc.poll() is None, "the worker died with its terminal"
            view = await snapshot(socket)  # what `qaworker attach` starts from
            assert view.slots[instance].job is not None and view.slots[instance].job.job_id == job_id

            await web.wait_for(lambda: web.jobs[job_id].result == "passed", 30)
            await asyncio.sleep(1)
            assert session.proc.poll() is None, "the worker stopped after its job instead of serving on"
            view = await snapshot(socket)
            assert view.slots[instance].last_finished.job_id == job_id and not view.stopping

            conn = await ControlConnection.open(socket)
            conn.send({"type": "command", "id": 1, "cmd": "quit"})
            await asyncio.wait_for(asyncio.to_thread(session.proc.wait), 30)
            await conn.close()
            assert session.proc.returncode == 0
            assert not socket.exists()
        finally:
            if session.proc.poll() is None:
                psutil.Process(session.proc.pid).kill()
            session.close()
