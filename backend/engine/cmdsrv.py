"""Client side of os-autoinst's command server (PROTOCOL.md §12.2, §12.3).

``broadcast`` is what the worker sends right before killing isotovideo (§14.2 step 3).
``CommandServerMonitor`` follows the developer-mode websocket for a richer live status than
``autoinst-status.json`` (current API function, pause reasons as they happen).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
from websockets.asyncio.client import connect as ws_connect  # not websockets.connect: lazily imported on the loop
from websockets.exceptions import WebSocketException

from backend.webui.client import new_http_client

log = logging.getLogger(__name__)


def cmd_srv_url(qemuport: int, jobtoken: str, host: str = "localhost") -> str:
    """The URL the worker reports as ``cmd_srv_url`` (§13.2)."""
    return f"http://{host}:{qemuport + 1}/{jobtoken}"


def ws_url(qemuport: int, jobtoken: str) -> str:
    return f"ws://127.0.0.1:{qemuport + 1}/{jobtoken}/ws"


class CommandServerClient:
    """One HTTP client for the command servers of every job (made once, with the shared TLS context).

    No keep-alive: each command server lives only as long as its job, so a pooled connection would
    mostly be a dead one, and the client holds no socket between broadcasts.
    """

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def _http(self) -> httpx.AsyncClient:
        async with self._lock:
            if self._client is None:
                self._client = await new_http_client(limits=httpx.Limits(max_keepalive_connections=0))
            return self._client

    async def broadcast(self, url: str, payload: dict[str, Any], timeout: float = 10) -> bool:
        """POST ``payload`` to ``<url>/broadcast``. True when accepted; errors are only logged."""
        http = await self._http()
        try:
            resp = await http.post(f"{url.rstrip('/')}/broadcast", json=payload, timeout=timeout)
        except httpx.HTTPError as exc:
            log.info("command server broadcast to %s failed: %s", url, exc or type(exc).__name__)
            return False
        if resp.is_success:
            return True
        log.info("command server broadcast to %s answered %d: %s", url, resp.status_code, resp.text[:200])
        return False

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CommandServerClient] = weakref.WeakKeyDictionary()


def shared_client() -> CommandServerClient:
    """The command-server client of the running loop (an httpx client belongs to one loop)."""
    loop = asyncio.get_running_loop()
    client = _shared.get(loop)
    if client is None:
        client = _shared[loop] = CommandServerClient()
    return client


async def broadcast(url: str, payload: dict[str, Any], timeout: float = 10) -> bool:
    """POST ``payload`` to ``<url>/broadcast`` with the shared client. True when accepted; errors are only
    logged."""
    return await shared_client().broadcast(url, payload, timeout)


@dataclass(frozen=True)
class CommandServerStatus:
    connected: bool = False
    running: str = ""  # the running test module ("" between modules / before the first one)
    current_test_full_name: str = ""  # "<category>-<name>"
    current_api_function: str = ""
    test_execution_paused: str = ""  # pause reason, "" when running
    stopping_test_execution: str = ""  # reason isotovideo/the worker announced for stopping


def apply_message(state: CommandServerStatus, msg: dict[str, Any]) -> CommandServerStatus:
    """Fold one status reply or broadcast (§12.3) into the state."""
    changes: dict[str, Any] = {}
    if "running" in msg:
        changes["running"] = str(msg["running"] or "")
    if "set_current_test" in msg:
        changes["running"] = str(msg["set_current_test"] or "")
    if "current_test_full_name" in msg:
        changes["current_test_full_name"] = str(msg["current_test_full_name"] or "")
    if "current_api_function" in msg:
        changes["current_api_function"] = str(msg["current_api_function"] or "")
    if "test_execution_paused" in msg:
        paused = msg["test_execution_paused"]
        changes["test_execution_paused"] = str(paused) if paused not in (None, 0, "0", False, "") else ""
    if msg.get("paused"):
        changes["test_execution_paused"] = str(msg.get("reason") or "paused")
    if "resume_test_execution" in msg:
        changes["test_execution_paused"] = ""
    if msg.get("stopping_test_execution"):
        changes["stopping_test_execution"] = str(msg["stopping_test_execution"])
    return replace(state, **changes) if changes else state


class CommandServerMonitor:
    """Follows ``ws://127.0.0.1:<QEMUPORT+1>/<JOBTOKEN>/ws`` until cancelled; never raises."""

    def __init__(self, url_ws: str, on_update: Callable[[CommandServerStatus], None], *,
                 retry_delay: float = 0.2, max_retry_delay: float = 3.0) -> None:
        self.url_ws = url_ws
        self.on_update = on_update
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.state = CommandServerStatus()

    async def run(self) -> None:
        delay = self.retry_delay
        while True:
            try:
                await self._session()
                delay = self.retry_delay  # it was up: reconnect quickly
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.debug("command server %s not reachable: %s", self.url_ws, exc)
            except Exception:
                log.exception("command server monitor for %s failed", self.url_ws)
            if self.state.connected:
                self._set(replace(self.state, connected=False))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_delay)

    async def _session(self) -> None:
        async with ws_connect(self.url_ws, open_timeout=5, proxy=None, max_size=2**24) as ws:
            self._set(replace(self.state, connected=True))
            await ws.send(json.dumps({"cmd": "status"}))
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    log.debug("ignoring non-JSON command server message: %.100r", raw)
                    continue
                if isinstance(msg, dict):
                    self._set(apply_message(self.state, msg))

    def _set(self, state: CommandServerStatus) -> None:
        if state == self.state:
            return
        self.state = state
        try:
            self.on_update(state)
        except Exception:
            log.exception("CommandServerMonitor on_update callback failed")
