"""Registration and the websocket channel to one web UI, for one slot (PROTOCOL.md §4-§6).

State machine per (web UI, slot): new → registering → establishing_ws → connected; errors go to
``failed`` (retried forever with backoff) or ``disabled`` (a 4xx answer other than clock skew).
A dropped websocket means re-registering (with the ids of the jobs we hold, so the web UI does not
abandon them) and reconnecting. ``worker_status`` is sent on connect and self-scheduled every
60–300 s, which keeps both the 2023 web UI (never acks) and today's (acks with ``seen``) happy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from backend import events as ev
from backend.config import HostConfig
from backend.events import EventBus, HostState
from backend.tasks import TaskOwner, cancel_and_wait
from backend.webui.ambiguous import ambiguous_localhost
from backend.webui.auth import auth_headers
from backend.webui.client import ApiClient, ApiError, parse_retry_after
from backend.webui.messages import MAX_MESSAGE_BYTES, Info, Invalid, parse_message

log = logging.getLogger(__name__)

TIMESTAMP_MISMATCH = "timestamp mismatch"
MAX_BACKOFF = 60.0


class WsUpgradeError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WebUIConnection:
    """Keeps one slot registered and connected at one web UI."""

    def __init__(self, host: HostConfig, instance: int, client: ApiClient, bus: EventBus, *,
                 capabilities: Callable[[], Awaitable[dict[str, str]]],
                 held_job_ids: Callable[[], list[int]],
                 status_message: Callable[[], Awaitable[dict[str, Any]]],
                 on_message: Callable[[WebUIConnection, Any], None],
                 reconnect_delay: float = 10.0,
                 status_interval: tuple[float, float] = (60.0, 300.0),
                 worker_hostname: str | None = None) -> None:
        self.host = host
        self.instance = instance
        self.client = client
        self.bus = bus
        self._capabilities = capabilities
        self._held_job_ids = held_job_ids
        self._status_message = status_message
        self._on_message = on_message
        self.reconnect_delay = reconnect_delay
        self.status_interval = status_interval
        self.worker_hostname = worker_hostname
        self.state = HostState.NEW
        self.worker_id: int | None = None
        self.service_port_delta: int | None = None
        self.last_error = ""
        self.connected = asyncio.Event()
        self.gone = asyncio.Event()  # set when disabled or closed for good
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._status_wakeup = asyncio.Event()
        self._closing = False
        self._probed = False
        self._failures = 0
        self._tasks = TaskOwner(f"connection {host.configured} #{instance}")

    @property
    def name(self) -> str:
        return self.host.configured

    @property
    def livehandler_base(self) -> str:
        """Where ``/liveviewhandler/...`` is served (§17.2): same URL, port + service_port_delta."""
        base = self.client.base_url
        scheme, rest = base.split("://", 1)
        if rest.startswith("["):
            hostpart, _, port = rest.rpartition(":") if "]:" in rest else (rest, "", "")
        else:
            hostpart, _, port = rest.partition(":")
        if not port:
            return base
        delta = 2 if self.service_port_delta is None else self.service_port_delta
        return f"{scheme}://{hostpart}:{int(port) + delta}"

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Register and stay connected until ``close()`` or the web UI disables us."""
        try:
            while not self._closing:
                delay = await self._one_session()
                if self.state is HostState.DISABLED or self._closing:
                    break
                await self._sleep_before_retry(delay)
        finally:
            self.connected.clear()
            await self._tasks.aclose()
            self.gone.set()

    async def close(self, send_quit: bool) -> None:
        """Stop reconnecting; optionally tell the web UI we go away on purpose (ws ``quit``)."""
        self._closing = True
        if send_quit and self._ws is not None and self.connected.is_set():
            await self.send({"type": "quit"})
        if self._ws is not None:
            try:
                async with asyncio.timeout(5):
                    await self._ws.close()
            except (TimeoutError, ConnectionClosed, OSError):
                pass
        self._status_wakeup.set()

    def request_reregistration(self) -> None:
        """After an api-failure: drop the websocket so the loop registers anew."""
        if self._ws is not None:
            self._tasks.spawn(self._ws.close(code=1000, reason="re-registering"), name="re-register")

    def send_status_soon(self) -> None:
        """Send a ``worker_status`` as soon as possible (state changed)."""
        self._status_wakeup.set()

    async def send(self, message: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None or not self.connected.is_set():
            return False
        try:
            async with self._send_lock:
                await ws.send(json.dumps(message))
            return True
        except (ConnectionClosed, OSError) as exc:
            log.warning("[%s #%d] unable to send %s: %s", self.name, self.instance, message.get("type"), exc)
            return False

    # -- one registration + websocket session ---------------------------------------------------

    async def _one_session(self) -> float:
        """Returns the delay before the next attempt."""
        self._set_state(HostState.REGISTERING)
        if refused := ambiguous_localhost(self.host, os.uname().nodename, self.worker_hostname):
            log.error("[%s #%d] %s", self.name, self.instance, refused)
            self.last_error = refused
            self._set_state(HostState.DISABLED, reason=refused)
            return 0.0
        if not self._probed:
            self._probed = True
            await self.client.probe_redirect()
        try:
            await self._register()
        except ApiError as exc:
            return self._registration_failed(exc)
        self._set_state(HostState.ESTABLISHING_WS)
        try:
            ws = await self._connect_ws()
        except WsUpgradeError as exc:
            delay = exc.retry_after if exc.retry_after is not None else self._backoff()
            self._failed(str(exc), delay)
            return delay
        self._ws = ws
        self._failures = 0
        self.connected.set()
        self._set_state(HostState.CONNECTED)
        reason = await self._serve(ws)
        self.connected.clear()
        self._ws = None
        if not self._closing:
            self._failed(reason, self.reconnect_delay)
        return self.reconnect_delay

    async def _register(self) -> None:
        params: list[tuple[str, object]] = list((await self._capabilities()).items())
        params += [("job_id", job_id) for job_id in self._held_job_ids()]
        response = await self.client.request("POST", "/api/v1/workers", params=params, attempts=1)
        body = response.json() if response.content else {}
        worker_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(worker_id, int):
            raise ApiError(f"{response.status_code} response: registration answer without worker id", 400)
        self.worker_id = worker_id
        delta = body.get("service_port_delta")
        self.service_port_delta = delta if isinstance(delta, int) else None
        log.info("[%s #%d] registered as worker %d", self.name, self.instance, worker_id)

    def _registration_failed(self, exc: ApiError) -> float:
        message = f"Failed to register at {self.name} - {exc}"
        if exc.is_client_error and exc.status not in (408, 425, 429) and TIMESTAMP_MISMATCH not in str(exc):
            self.last_error = str(exc)
            self._set_state(HostState.DISABLED, reason=message)
            return 0.0
        backoff = self._backoff()
        delay = min(exc.retry_after, MAX_BACKOFF * 5) if exc.retry_after is not None else backoff
        self._failed(message, delay)
        return delay

    async def _connect_ws(self) -> ClientConnection:
        scheme = "wss" if self.client.base_url.startswith("https") else "ws"
        url = f"{scheme}{self.client.base_url[self.client.base_url.index('://'):]}/api/v1/ws/{self.worker_id}"
        for _hop in range(4):
            try:
                return await connect(url, additional_headers=self._ws_headers(url), proxy=self.client.proxy_for(url),
                                     max_size=MAX_MESSAGE_BYTES, open_timeout=30, ping_interval=60,
                                     ping_timeout=60, close_timeout=5)
            except InvalidURI as exc:
                # websockets refuses to follow the web UI's redirect to an http: URL (PROTOCOL.md §25):
                # follow it ourselves, signing the new path.
                target = exc.uri
                if not target.startswith(("http://", "https://")):
                    raise WsUpgradeError(f"Unable to upgrade to ws connection via {url}: {exc}") from exc
                url = "ws" + target[4:]
            except InvalidStatus as exc:
                status = exc.response.status_code
                retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
                raise WsUpgradeError(f"Unable to upgrade to ws connection via {url}, code {status}",
                                     retry_after) from exc
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                raise WsUpgradeError(f"Unable to upgrade to ws connection via {url}: {exc}") from exc
        raise WsUpgradeError(f"Unable to upgrade to ws connection via {url}: too many redirects")

    def _ws_headers(self, url: str) -> dict[str, str]:
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        return auth_headers(self.host.api_key, self.host.api_secret, path)

    async def _serve(self, ws: ClientConnection) -> str:
        """Read messages and keep the status going until the socket closes; returns why it closed."""
        keepalive = asyncio.create_task(self._status_loop(), name=f"status-{self.name}-{self.instance}")
        try:
            async for raw in ws:
                self._dispatch(raw)
                # A burst of buffered messages is read without suspending: let the loop run between them.
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            await cancel_and_wait(keepalive)
        code = ws.close_code if ws.close_code is not None else 1006
        return (f"Websocket connection to {self.client.base_url}/api/v1/ws/{self.worker_id} finished by "
                f"remote side with code {code}, {ws.close_reason or 'no reason'}")

    def _dispatch(self, raw: str | bytes) -> None:
        message = parse_message(raw)
        if isinstance(message, Invalid):
            if not message.ignore_quietly:
                log.warning("[%s #%d] ignoring websocket message%s: %s", self.name, self.instance,
                            f" of type {message.type!r}" if message.type else "", message.reason)
            return
        if isinstance(message, Info):
            return  # 2023 sends population, today's web UI "seen"; our own timer keeps the cadence
        try:
            self._on_message(self, message)
        except Exception:
            log.exception("[%s #%d] handling %s failed", self.name, self.instance, getattr(message, "type", "?"))

    async def _status_loop(self) -> None:
        """worker_status now, then at a random 60–300 s, or sooner when asked."""
        while True:
            try:
                await self.send(await self._status_message())
            except Exception:
                log.exception("[%s #%d] building worker_status failed", self.name, self.instance)
            self._status_wakeup.clear()
            low, high = self.status_interval
            with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can swallow the cancel of a quit
                async with asyncio.timeout(random.uniform(low, high)):
                    await self._status_wakeup.wait()

    # -- helpers ---------------------------------------------------------------------------------

    def _backoff(self) -> float:
        self._failures += 1
        return min(self.reconnect_delay * (2 ** min(self._failures - 1, 3)), max(MAX_BACKOFF, self.reconnect_delay))

    async def _sleep_before_retry(self, delay: float) -> None:
        if delay <= 0:
            return
        self._status_wakeup.clear()
        # close() sets the wakeup, so a stopping worker does not wait out the backoff
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wait_closing()

    async def _wait_closing(self) -> None:
        while not self._closing:
            await self._status_wakeup.wait()
            self._status_wakeup.clear()

    def _failed(self, reason: str, retry_in: float) -> None:
        self.last_error = reason
        # the faces log the ConnectionChanged event (one line per attempt, with the retry delay)
        log.debug("[%s #%d] %s (retrying in %.1f s)", self.name, self.instance, reason, retry_in)
        self._set_state(HostState.FAILED, reason=reason, next_retry=retry_in)

    def _set_state(self, state: HostState, reason: str = "", next_retry: float | None = None) -> None:
        self.state = state
        self.bus.publish(ev.ConnectionChanged(host=self.name, instance=self.instance, state=state,
                                              worker_id=self.worker_id, reason=reason, next_retry_in=next_retry))
