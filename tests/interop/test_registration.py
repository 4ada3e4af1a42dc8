"""qaworker registers with Debian's real openQA web UI and stays idle there (issue 2)."""

from __future__ import annotations

import pytest

from tests.interop.conftest import wait_until

pytestmark = pytest.mark.interop


def test_registers_and_is_listed_idle(webui, qaworker):
    worker = qaworker()
    listed = wait_until(lambda: (w := webui.worker(worker.host, worker.instance)) and w["status"] == "idle" and w,
                        message="worker listed idle")
    assert listed["properties"]["WORKER_CLASS"] == worker.worker_class
    assert int(listed["instance"]) == worker.instance
    assert listed["host"] == worker.host


def test_still_idle_after_websocket_drop(webui, qaworker):
    worker = qaworker()
    wait_until(lambda: (w := webui.worker(worker.host, worker.instance)) and w["status"] == "idle",
               message="worker idle")
    # the web UI lists the worker before our log line about it is written: wait for the line
    wait_until(lambda: "registered as worker" in worker.log(), timeout=10, message="registration logged")
    # Drop the websocket from the web UI side: a second connection for the same worker id makes the
    # real websocket server close the first one (1008), which qaworker must survive.
    import asyncio

    from websockets.asyncio.client import connect

    from backend.webui.auth import auth_headers

    worker_id = webui.worker(worker.host, worker.instance)["id"]

    async def steal() -> None:
        path = f"/ws/{worker_id}"
        async with connect(f"ws://127.0.0.1:{int(webui.url.rsplit(':', 1)[1]) + 1}{path}",
                           additional_headers=auth_headers(webui.key, webui.secret, path), proxy=None):
            await asyncio.sleep(0.5)

    asyncio.run(steal())
    wait_until(lambda: worker.log().count("registered as worker") >= 2, timeout=30, message="re-registration")
    wait_until(lambda: (w := webui.worker(worker.host, worker.instance)) and w["status"] == "idle",
               message="worker idle again")
