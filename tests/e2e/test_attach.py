"""`qaworker attach` driven by the Pilot against a real Worker + mock web UI + simulator behind a real socket.

The worker and the attached dashboard share this test's event loop but nothing else: the dashboard
only has the socket (a RemoteRuntime with its own bus and read model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets.data_table import CellDoesNotExist

from app.attach_tui import AttachApp
from backend.control.client import CommandRefused, RemoteRuntime
from backend.control.services import Services, start_services
from backend.worker import Worker
from tests.integration.harness import job_settings, make_config, mock_web, wait_registered
from tests.tui.pilot_helpers import until
from widgets.attachbar import AttachBar
from widgets.screen import ScreenPanel
from widgets.slots import SlotTable

pytestmark = pytest.mark.timeout(90)

SIZE = (140, 40)


@dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task
    services: Services

    async def stop(self) -> int:
        self.worker.quit()
        code = await asyncio.wait_for(self.task, 30)
        await self.services.close()
        return code


async def start_worker(config, socket: Path) -> RunningWorker:
    worker = Worker(config)
    services = await start_services(worker, socket=socket)
    return RunningWorker(worker, asyncio.create_task(worker.run()), services)


@contextlib.asynccontextmanager
async def attached(socket: Path, **kwargs) -> AsyncIterator[tuple[AttachApp, RemoteRuntime]]:
    runtime = RemoteRuntime(socket, retry_delay=0.2, max_retry_delay=0.5, **kwargs)
    link = asyncio.create_task(runtime.run())
    app = AttachApp(runtime)
    try:
        yield app, runtime
    finally:
        await runtime.close()
        link.cancel()
        with contextlib.suppress(BaseException):
            await link


def cell(app: AttachApp, instance: int, column: str) -> str:
    try:
        return str(app.screen.query_one(SlotTable).get_cell(str(instance), column))
    except (CellDoesNotExist, Exception):
        return ""


def bar(app: AttachApp) -> str:
    return str(app.screen.query_one(AttachBar).render())


async def test_the_attached_dashboard_follows_a_job_and_detaching_leaves_the_worker_running(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="qaworker.control")
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        worker = await start_worker(config, tmp_path / "c.sock")
        try:
            await wait_registered(web)
            async with attached(tmp_path / "c.sock") as (app, _runtime), app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "attached to qaworker pid" in bar(app), 10, "attached bar")
                await until(pilot, lambda: cell(app, instance, "state") == "idle", 10, "the slot, idle")
                job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,console,shutdown",
                                                       SIM_MODULE_SECONDS="2.5", SIM_SCREENSHOTS="2",
                                                       TEST="attached-job"))
                await until(pilot, lambda: cell(app, instance, "state") == "running", 15, "running")
                assert f"#{job_id}" in cell(app, instance, "job")
                panel = app.screen.query_one(ScreenPanel)
                await until(pilot, lambda: ".png" in str(panel.query_one("#screen-caption").render()), 15,
                            "the test's screen, sent over the socket")
                # the caption comes first; the PNG is decoded in a thread and lands a moment later
                await until(pilot, lambda: panel.query_one(".screen-image").image is not None, 5,
                            "the screen image, decoded")
                await pilot.press("q")
                await until(pilot, lambda: not app.is_running, 5, "the dashboard closed")
            assert "detached" in caplog.text
            assert not worker.worker.stopping, "detaching stopped the worker"
            await web.wait_for(lambda: web.jobs[job_id].result == "passed", 30)  # the job went on without us
        finally:
            assert await worker.stop() == 0


async def test_read_only_refuses_commands(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        worker = await start_worker(config, tmp_path / "c.sock")
        try:
            await wait_registered(web)
            async with attached(tmp_path / "c.sock", read_only=True) as (app, runtime), \
                    app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "read-only" in bar(app), 10, "read-only in the bar")
                await until(pilot, lambda: cell(app, instance, "state") == "idle", 10, "the slot")
                await pilot.press("d")  # drain: the dialog asks …
                await pilot.press("y")  # … and the answer is refused, with a word why
                await pilot.pause(0.5)
                assert any("drain refused: attached read-only" in str(n.message) for n in app._notifications)
                with pytest.raises(CommandRefused, match="attached read-only; 'quit' refused"):
                    await runtime.command("quit")  # the worker refuses too, not just this client
                await pilot.press("Q")
                await pilot.press("y")
                await pilot.pause(0.5)
                assert not worker.worker.stopping
                await pilot.press("q")
        finally:
            assert await worker.stop() == 0


async def test_the_dashboard_says_the_worker_went_away_and_reattaches_when_it_is_back(tmp_path) -> None:
    socket = tmp_path / "c.sock"
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        first = await start_worker(config, socket)
        await wait_registered(web)
        second = None
        try:
            async with attached(socket) as (app, _runtime), app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: cell(app, instance, "state") == "idle", 10, "the slot")
                assert await first.stop() == 0  # systemctl restart: stop …
                await until(pilot, lambda: "worker gone" in bar(app), 10, "the worker-gone bar")
                assert app.is_running, "the dashboard must wait for the worker, not exit"
                second = await start_worker(config, socket)  # … and start
                await until(pilot, lambda: "attached to qaworker" in bar(app), 15, "attached again")
                job_id = web.schedule_job(job_settings(TEST="after-restart"))
                await until(pilot, lambda: f"last #{job_id} passed" in cell(app, instance, "job"), 20,
                            "the new worker's job, done")
                await pilot.press("Q")  # stop the worker: it asks first
                await pilot.press("y")
                await until(pilot, lambda: not app.is_running, 30, "the dashboard closed after the worker stopped")
            assert second.worker.quitting
        finally:
            if second is not None:
                await second.stop()
