"""Issue 15 item 5 on the REAL backend: a slot whose web UI cannot be reached says so instead of `idle —`."""

from __future__ import annotations

import asyncio
import socket

import pytest

from app.tui import QaworkerApp
from backend.worker import Worker
from tests.integration.harness import assert_no_leftovers, make_config, quit_in_process_worker
from tests.tui.pilot_helpers import cell, text, until
from widgets.connection import ConnectionBar
from widgets.job import JobSummary
from widgets.slots import SlotTable

pytestmark = pytest.mark.timeout(60)


def closed_port_url() -> str:
    with socket.socket() as sock:  # bound and closed again: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_an_unreachable_web_ui_is_not_shown_as_idle(tmp_path) -> None:
    config = make_config(tmp_path, [closed_port_url(), closed_port_url()])
    instance = config.slots[0].instance
    worker = Worker(config)
    task = asyncio.create_task(worker.run())
    app = QaworkerApp(worker)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.screen.query_one(SlotTable)
            await until(pilot, lambda: "0/2 connections up" in text(app, ConnectionBar)
                        and "failed" in text(app, ConnectionBar), 20, "both web UIs failed in the top bar")
            await until(pilot, lambda: cell(table, instance, "state") == "disconnected", 5,
                        "the slot table saying 'disconnected'")
            assert cell(table, instance, "job").startswith("Connection error")  # why, not `—`
            summary = text(app, JobSummary)
            assert f"Slot {instance} disconnected" in summary
            assert "no web UI up: Connection error" in summary
            assert "gets no jobs until a web UI connects" in summary
            assert worker.view.slots[instance].state.value == "idle"  # the backend's word, told better
    finally:
        await quit_in_process_worker(worker, task)
    assert task.done()
    await assert_no_leftovers()
