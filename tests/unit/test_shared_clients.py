"""HTTP clients that cost nothing on the event loop: one TLS context built once in a thread, web UI clients
made with their first request, one command-server client per loop (issue 10: ~50 ms per client before)."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from backend.config import HostConfig
from backend.engine import cmdsrv
from backend.webui import client as client_module
from backend.webui.client import ApiClient, RetryPolicy, tls_context


async def serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_the_tls_context_is_built_once_off_the_loop(monkeypatch) -> None:
    monkeypatch.setattr(client_module, "_tls", None)
    builders: list[str] = []
    build = client_module._build_tls_context

    def counting_build():
        builders.append(threading.current_thread().name)
        return build()

    monkeypatch.setattr(client_module, "_build_tls_context", counting_build)
    first, second = await asyncio.gather(tls_context(), tls_context())
    assert first is second is await tls_context()
    assert builders and threading.main_thread().name not in builders  # in a worker thread, never the loop's


async def test_api_clients_are_cheap_to_make_and_share_the_context() -> None:
    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"ok": 1})

    runner, url = await serve(ok)
    try:
        host = HostConfig(configured=url, base_url=url, api_key="KEY", api_secret="SECRET")
        clients = [ApiClient(host, retry=RetryPolicy(attempts=1)) for _ in range(20)]
        assert all(c._client is None for c in clients)  # no httpx client (and TLS set-up) until one is used
        assert await clients[0].json("GET", "/api/v1/workers") == {"ok": 1}
        assert await clients[1].json("GET", "/api/v1/workers") == {"ok": 1}
        shared = await tls_context()
        for made in clients[:2]:
            pool = made._client._transport._pool  # type: ignore[union-attr]
            assert pool._ssl_context is shared
        for made in clients:
            await made.aclose()
    finally:
        await runner.cleanup()


async def test_broadcasts_share_one_client_per_loop() -> None:
    received: list[dict] = []

    async def broadcast(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    runner, url = await serve(broadcast)
    try:
        first = cmdsrv.shared_client()
        assert await cmdsrv.broadcast(f"{url}/token", {"stopping_test_execution": "cancel"})
        assert await cmdsrv.broadcast(f"{url}/token", {"stopping_test_execution": "done"})
        assert cmdsrv.shared_client() is first and first._client is not None
        assert received == [{"stopping_test_execution": "cancel"}, {"stopping_test_execution": "done"}]
    finally:
        await runner.cleanup()
