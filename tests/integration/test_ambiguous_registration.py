"""A worker calling itself ``localhost`` does not register at a remote web UI (issue 12 row 10, upstream
39e7a69e2): clear reason, slot disabled there, no request sent; a local web UI still works."""

from __future__ import annotations

import asyncio

from backend import events as ev
from backend.events import HostState
from backend.worker import Worker
from tests.integration.harness import make_config, mock_web, running_worker, wait_registered


async def test_localhost_worker_is_refused_by_a_remote_webui(tmp_path):
    connections: list[str] = []

    async def remember(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.close()

    # 127.0.0.2 is not one of the local names (localhost, 127.0.0.1, ::1): a "remote" web UI on loopback
    server = await asyncio.start_server(remember, "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        config = make_config(tmp_path, [f"http://127.0.0.2:{port}"], settings={"WORKER_HOSTNAME": "localhost"})
        worker = Worker(config)
        seen: list[ev.ConnectionChanged] = []
        worker.bus.add_listener(lambda e: seen.append(e) if isinstance(e, ev.ConnectionChanged) else None)
        exit_code = await asyncio.wait_for(worker.run(), 30)
    finally:
        server.close()
        await server.wait_closed()
    assert exit_code == 1  # no web UI accepts this worker: it exits instead of idling for ever
    disabled = [e for e in seen if e.state is HostState.DISABLED]
    assert disabled, [e.state for e in seen]
    assert "ambiguous 'localhost'" in disabled[0].reason
    assert f"http://127.0.0.2:{port}" in disabled[0].reason
    assert connections == []  # nothing was sent to the remote web UI


async def test_localhost_worker_registers_at_a_local_webui(tmp_path):
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"WORKER_HOSTNAME": "localhost"})
        async with running_worker(config):
            await wait_registered(web)
