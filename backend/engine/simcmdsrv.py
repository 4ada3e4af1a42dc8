"""The simulator's command server: the os-autoinst subset the worker and live view handler use."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from typing import TYPE_CHECKING, Any

from backend.engine.simsupport import INTERFACE_VERSION, _log

if TYPE_CHECKING:
    from backend.engine.simulator import Simulator


class CommandServer:
    """The os-autoinst command server subset the worker and live view handler use."""

    def __init__(self, sim: Simulator, port: int, token: str) -> None:
        self.sim = sim
        self.port = port
        self.token = token
        self.clients: set[Any] = set()
        self._runner: Any = None

    async def start(self) -> None:
        # aiohttp takes ~0.4 s to import: do it in a thread while the tests already run.
        web = await asyncio.to_thread(importlib.import_module, "aiohttp.web")
        app = web.Application()
        prefix = f"/{self.token}" if self.token else ""
        app.router.add_get(f"{prefix}/isotovideo/version", self._version)
        app.router.add_get(f"{prefix}/vars", self._vars)
        app.router.add_post(f"{prefix}/broadcast", self._broadcast)
        app.router.add_get(f"{prefix}/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        _log(f"cmdsrv: listening on http://127.0.0.1:{self.port}{prefix}")

    async def stop(self) -> None:
        for ws in list(self.clients):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def send_all(self, msg: dict[str, Any]) -> None:
        for ws in list(self.clients):
            with contextlib.suppress(Exception):
                await ws.send_json(msg)

    async def _version(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"version": INTERFACE_VERSION, "test_git_hash": "simulator",
                                  "needles_git_hash": "simulator"})

    async def _vars(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.sim.vars)

    async def _broadcast(self, request: Any) -> Any:
        from aiohttp import web

        try:
            msg = await request.json()
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            return web.json_response({"error": "No JSON object provided"}, status=400)
        _log(f"cmdsrv: broadcasting message from API call to all ws clients: {json.dumps(msg)}")
        await self.send_all(msg)
        return web.json_response({"status": "boradcast done"})

    async def _ws(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.clients.add(ws)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    cmd = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(cmd, dict):
                    await self.sim.handle_ws_command(cmd)
        finally:
            self.clients.discard(ws)
        return ws


