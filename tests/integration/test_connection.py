"""Registration and the websocket channel over real sockets against the mock web UI (issue 2)."""

from __future__ import annotations

import asyncio
import time

from backend.events import HostState, SlotState
from tests.integration.harness import (
    KEY,
    SECRET,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    wait_registered,
)


async def test_registers_connects_and_reports_free(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])) as worker:
        await wait_registered(web)
        mock_worker = next(iter(web.workers.values()))
        await web.wait_for(lambda: any(m.get("type") == "worker_status" for m in mock_worker.status_messages))
        status = next(m for m in mock_worker.status_messages if m.get("type") == "worker_status")
        assert status["status"] == "free"
        assert mock_worker.properties["WORKER_CLASS"] == "qemu_x86_64,test"
        assert mock_worker.properties["WEBSOCKET_API_VERSION"] in ("1", 1)
        slot = worker.slots[0]
        assert worker.view.slots[slot.instance].state is SlotState.IDLE
        host_view = worker.view.hosts[(web.url, slot.instance)]
        assert host_view.state is HostState.CONNECTED and host_view.worker_id == mock_worker.id


async def test_reconnects_after_server_drops_socket(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        mock_worker = next(iter(web.workers.values()))
        registrations = mock_worker.registrations
        await web.drop_websockets()
        await web.wait_for(lambda: mock_worker.registrations > registrations and mock_worker.connected, 15)


async def test_reregisters_after_server_restart(tmp_path):
    async with mock_web(tmp_path) as web:
        port = web.port
        config = make_config(tmp_path, [web.url])
        async with running_worker(config) as worker:
            await wait_registered(web)
            await web.stop()
            slot = worker.slots[0]
            await _wait(lambda: worker.view.hosts[(web.url, slot.instance)].state is HostState.FAILED)
            from backend.mockweb.server import MockWebUI

            again = MockWebUI(tmp_path / "webui2", api_key=KEY, api_secret=SECRET, port=port)
            await again.start()
            try:
                await wait_registered(again, timeout=20)
                await _wait(lambda: worker.view.hosts[(web.url, slot.instance)].state is HostState.CONNECTED)
            finally:
                await again.stop()
            await web.start()  # so the context manager's stop() has something to stop


async def test_wrong_secret_disables_host_and_worker_exits(tmp_path):
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], secret="WRONGWRONGWRONG0")
        async with running_worker(config) as worker:
            code = await asyncio.wait_for(worker.wait_stopped(), 15)
        assert code == 1
        slot = worker.slots[0]
        host_view = worker.view.hosts[(web.url, slot.instance)]
        assert host_view.state is HostState.DISABLED
        assert "403" in host_view.reason and "wrong secret" in host_view.reason


async def test_503_with_retry_after_is_retried_after_that_delay(tmp_path):
    async with mock_web(tmp_path) as web:
        # times=2: the redirect probe (HEAD) takes the first failure, the registration the second
        web.faults.fail(r"^/api/v1/workers$", 503, times=2, retry_after=1.5)
        started = time.monotonic()
        async with running_worker(make_config(tmp_path, [web.url])):
            await wait_registered(web, timeout=15)
        registered_after = time.monotonic() - started
        posts = [r for r in web.requests if r.method == "POST" and r.path == "/api/v1/workers"]
        assert [r.status for r in posts][:2] == [503, 200]
        assert posts[1].t - posts[0].t >= 1.4
        assert registered_after >= 1.4


async def test_two_hosts_one_down(tmp_path):
    async with mock_web(tmp_path) as web:
        dead = "http://127.0.0.1:9"  # discard port: nothing listens there
        config = make_config(tmp_path, [web.url, dead])
        async with running_worker(config) as worker:
            await wait_registered(web)
            slot = worker.slots[0]
            await _wait(lambda: worker.view.hosts[(dead, slot.instance)].state is HostState.FAILED)
            await _wait(lambda: worker.view.hosts[(web.url, slot.instance)].state is HostState.CONNECTED)
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot"))
            job = await web.wait_job_done(job_id, 30)
            assert job.result == "passed"


async def _wait(predicate, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)
