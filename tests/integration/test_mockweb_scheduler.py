"""The mock web UI's scheduler stays responsive when a worker's websocket is closing (after a SIGKILL)."""

from __future__ import annotations

import asyncio

import pytest

from backend.mockweb.probe import Probe
from backend.mockweb.server import MockWebUI

pytestmark = pytest.mark.timeout(20)


class ClosingSocket:
    """The server side of a websocket whose transport is already closing but not marked closed yet: aiohttp
    fails every send at once, without suspending (a state a real socket holds only for moments)."""

    closed = False

    def __init__(self, real: object) -> None:
        self.real = real
        self.sends = 0

    async def send_json(self, message: object) -> None:
        self.sends += 1
        raise ConnectionResetError("Cannot write to closing transport")

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


async def test_a_send_to_a_closing_websocket_neither_spins_nor_loses_the_job(ui: MockWebUI, probe: Probe) -> None:
    assert (await probe.register()).status_code == 200
    await probe.connect()
    await probe.send({"type": "worker_status", "status": "free"})
    await ui.wait_for(lambda: bool(ui.workers[probe.worker_id].status_messages))
    real = ui.sockets[probe.worker_id]
    closing = ClosingSocket(real)
    ui.sockets[probe.worker_id] = closing  # type: ignore[assignment]
    job_id = ui.schedule_job({"TEST": "t"})
    await asyncio.sleep(0.5)  # returns only while the scheduler lets the loop run
    assert 1 <= closing.sends <= 20  # it retried, paced, instead of thousands of times in one callback
    assert ui.jobs[job_id].state == "scheduled"  # the job went back to the queue
    ui.sockets[probe.worker_id] = real  # the worker's connection is good again
    ui.notify()
    grab = await probe.receive()
    assert grab["type"] == "grab_job" and grab["job"]["id"] == job_id
