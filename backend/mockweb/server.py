"""A mock openQA web UI on 127.0.0.1 that speaks the real worker protocol (PROTOCOL.md §3–§20, §25).

One aiohttp application serves the REST API, the worker websocket, the live view handler route and
asset downloads. State lives in ``MockState``; every change wakes ``wait_for`` callers and the
event-driven scheduler. Tests drive it through the public methods of ``MockWebUI``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from backend.mockweb import downloads, jobs, uploads, ws
from backend.mockweb.context import UI_KEY
from backend.mockweb.faults import FaultInjector
from backend.mockweb.model import EXECUTION_STATES, MockJob, MockWorker, RequestRecord
from backend.mockweb.scheduler import plan
from backend.mockweb.store import MockState
from backend.webui.auth import verify

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LIVEVIEW_PORT_OFFSET = 2  # 2023 workers always post upload progress to web UI port + 2
RESEND_DELAY = 0.05  # seconds before the scheduler tries again after a send to a worker failed


class MockWebUI:
    def __init__(self, data_dir: Path, *, api_key: str = "1234567890ABCDEF",
                 api_secret: str = "1234567890ABCDEF", port: int = 0, require_auth: bool = True,
                 flavour: str = "new", ws_redirect: bool = False, worker_timeout: float = 1800.0) -> None:
        if flavour not in ("new", "2023"):
            raise ValueError("flavour must be 'new' or '2023'")
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.api_secret = api_secret
        self.port = port
        self.require_auth = require_auth
        self.flavour = flavour
        self.ws_redirect = ws_redirect
        self.worker_timeout = worker_timeout
        self.reject_backoff = 1.0  # seconds before a worker that rejected gets offered jobs again
        self.state = MockState(self.data_dir / "results", worker_timeout)
        self.requests: list[RequestRecord] = []
        self.faults = FaultInjector()
        self.sockets: dict[int, web.WebSocketResponse] = {}
        self._downloads: dict[tuple[str, str], int] = {}
        self._scheduling_enabled = True
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._wake.set()  # run the scheduler once at start
        self._runners: list[web.AppRunner] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []

    # --- properties -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jobs(self) -> dict[int, MockJob]:
        return self.state.jobs

    @property
    def workers(self) -> dict[int, MockWorker]:
        return self.state.workers

    @property
    def scheduling_enabled(self) -> bool:
        return self._scheduling_enabled

    @scheduling_enabled.setter
    def scheduling_enabled(self, value: bool) -> None:
        self._scheduling_enabled = value
        self.notify()

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._make_data_dirs)
        main_sock, live_sock = self._bind_sockets()
        self._runners.append(await self._serve(self._main_app(), main_sock))
        if live_sock is not None:
            live_app = web.Application(middlewares=[self._middleware])
            live_app[UI_KEY] = self
            jobs.add_liveview_routes(live_app)
            self._runners.append(await self._serve(live_app, live_sock))
        self._loops = [asyncio.create_task(self._scheduler_loop(), name="mockweb-scheduler"),
                       asyncio.create_task(self._stale_loop(), name="mockweb-stale-jobs")]
        log.info("mock web UI listening on %s (flavour %s)", self.url, self.flavour)

    def _make_data_dirs(self) -> None:
        for sub in ("share/factory", "images", "results"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        tasks = [*self._loops, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # their ends; a cancel of stop() itself propagates
        self._loops.clear()
        await self.drop_websockets()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> MockWebUI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _bind_sockets(self) -> tuple[socket.socket, socket.socket | None]:
        """Bind the main port (and port+2 for flavour 2023) before serving, so nothing can race us."""
        need_live = self.flavour == "2023"
        for _ in range(50):
            main = _bind(self.port)
            port = main.getsockname()[1]
            if not need_live:
                self.port = port
                return main, None
            try:
                live = _bind(port + LIVEVIEW_PORT_OFFSET)
            except OSError:
                main.close()
                if self.port:
                    raise
                continue
            self.port = port
            return main, live
        raise OSError("no port p with p+2 free found")

    async def _serve(self, app: web.Application, sock: socket.socket) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner

    def _main_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024**3)
        app[UI_KEY] = self
        ws.add_routes(app)
        jobs.add_routes(app)
        jobs.add_liveview_routes(app)  # flavour "new": service_port_delta 0 → same port
        uploads.add_routes(app)
        downloads.add_routes(app)
        return app

    # --- request pipeline -------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        t = time.time()
        status = 500
        response: web.StreamResponse | None = None
        try:
            action = self.faults.action_for(request.path)
            if action is not None:
                if action.delay:
                    await asyncio.sleep(action.delay)
                if action.reset:
                    status = 0
                    _reset(request)
                    raise asyncio.CancelledError  # aiohttp drops the request without writing
                if action.status is not None:
                    status = action.status
                    return web.json_response(action.body, status=action.status, headers=action.headers)
            denied = self.check_auth(request)
            if denied is not None:
                status = denied.status
                return denied
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if not isinstance(response, web.WebSocketResponse):  # recorded at the handshake
                self.requests.append(RequestRecord(request.method, request.path, status, t))
            self.notify()

    def check_auth(self, request: web.Request) -> web.Response | None:
        """403 like openQA for unsigned/wrong writes; reads need no auth (§3)."""
        if not self.require_auth or request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        return self.auth_error(request)

    def auth_error(self, request: web.Request) -> web.Response | None:
        reason = verify({self.api_key: self.api_secret}, request.headers, request.raw_path)
        if reason is None:
            return None
        if self.flavour == "2023" and reason.startswith("timestamp mismatch"):
            reason = "timestamp mismatch"
        return web.json_response({"error": reason, "error_status": 403}, status=403)

    # --- change notification and background work -------------------------------------------
    def notify(self) -> None:
        """Something changed: wake wait_for() callers and the scheduler."""
        self._changed.set()
        self._changed = asyncio.Event()
        self._wake.set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scheduler_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._scheduling_enabled and not await self._schedule_once():
                # A send to a closing websocket fails without suspending, and the reschedule wakes us
                # again at once: without a pause this loop would spin and hold the event loop until the
                # socket's close is handled (seen after a worker's SIGKILL).
                await asyncio.sleep(RESEND_DELAY)

    async def _schedule_once(self) -> bool:
        """Send this round's assignments; False when one could not be sent (its jobs are rescheduled)."""
        connected = {wid for wid, sock in self.sockets.items() if not sock.closed}
        sent = True
        for assignment in plan(self.state, time.time(), connected):
            self.state.assign(assignment.jobs, assignment.worker, assignment.token)
            message = assignment.message(self.state)
            if not await self.send_ws(assignment.worker.id, message):
                log.info("could not send %s to worker %d; rescheduling", message["type"],
                         assignment.worker.id)
                for job in assignment.jobs:
                    self.state.reschedule(job)
                sent = False
            self.notify()
        return sent

    async def _stale_loop(self) -> None:
        """Protocol timer: jobs of workers not seen for worker_timeout are abandoned (§20)."""
        while True:
            changed = self._changed
            deadline = self._next_stale_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.time()) + 0.01
            # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that coincides with the event
            # being set (CPython gh-86296), and stop() then waits for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await changed.wait()
            if self.state.handle_stale(time.time()):
                self.notify()

    def _next_stale_deadline(self) -> float | None:
        seen = [w.t_seen or 0.0 for w in self.workers.values()
                if any(j.state in EXECUTION_STATES for j in self.state.unfinished_of(w.id))]
        return min(seen) + self.worker_timeout if seen else None

    # --- public API for tests and the demo --------------------------------------------------
    def schedule_job(self, settings: dict[str, str], *, assets: dict[str, list[str]] | None = None) -> int:
        job = self.state.add_job(settings, assets)
        self.notify()
        return job.id

    def schedule_chain(self, settings_list: list[dict[str, str]],
                       sequence: list[Any] | None = None) -> list[int]:
        """Jobs for one worker, sent as one grab_jobs. ``sequence`` nests indexes into settings_list."""
        chain = self.state.add_chain(settings_list, sequence)
        self.notify()
        return [j.id for j in chain]

    def cancel_job(self, job_id: int) -> None:
        job = self.jobs[job_id]
        worker_id = job.assigned_worker_id if job.state in EXECUTION_STATES else None
        self.state.mark_cancelled(job)
        if worker_id is not None:
            self.spawn(self.send_ws(worker_id, {"type": "cancel", "jobid": job_id}))
        self.notify()

    def abort_job(self, job_id: int, result: str = "user_restarted") -> None:
        job = self.jobs[job_id]
        if job.result == "none":
            job.result = result
        if job.assigned_worker_id is not None and job.state in EXECUTION_STATES:
            self.spawn(self.send_ws(job.assigned_worker_id, {"type": "abort", "jobid": job_id}))
        self.notify()

    async def send_ws(self, worker_id: int, message: dict[str, Any]) -> bool:
        sock = self.sockets.get(worker_id)
        if sock is None or sock.closed:
            return False
        try:
            await sock.send_json(message)
        except (ConnectionError, RuntimeError) as exc:
            log.info("sending to worker %d failed: %s", worker_id, exc)
            return False
        return True

    async def drop_websockets(self) -> None:
        sockets = list(self.sockets.values())
        for sock in sockets:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await sock.close(code=1001, message=b"server going away")
        self.notify()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):  # not wait_for: see _stale_loop
                    await changed.wait()

    async def wait_job_done(self, job_id: int, timeout: float = 30.0) -> MockJob:
        await self.wait_for(lambda: self.jobs[job_id].finished, timeout)
        return self.jobs[job_id]

    def asset_path(self, asset_type: str, name: str) -> Path:
        return self.data_dir / "share" / "factory" / asset_type / name

    def add_asset(self, asset_type: str, name: str, content: bytes | None = None,
                  size: int | None = None) -> Path:
        """Create a downloadable asset: ``content``, or ``size`` bytes of a name-seeded pattern.

        Synchronous on purpose (test setup); big sizes are written block by block.
        """
        path = self.asset_path(asset_type, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            if content is not None:
                fh.write(content)
            else:
                remaining = size if size is not None else 1024
                block = _pattern(1024 * 1024, name)
                while remaining > 0:
                    fh.write(block[:remaining])
                    remaining -= len(block)
        return path

    def download_count(self, asset_type: str, name: str) -> int:
        return self._downloads.get((asset_type, name), 0)

    def count_download(self, asset_type: str, name: str) -> None:
        key = (asset_type, name)
        self._downloads[key] = self._downloads.get(key, 0) + 1


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _reset(request: web.Request) -> None:
    """Close the TCP connection without an answer (RST thanks to SO_LINGER 0)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    transport.abort()


def _pattern(size: int, seed: str) -> bytes:
    block = (seed.encode() + bytes(range(256))) * 4
    return (block * (size // len(block) + 1))[:size]


async def serve_forever(port: int, data_dir: Path, *, api_key: str = "1234567890ABCDEF",
                        api_secret: str = "1234567890ABCDEF", flavour: str = "new",
                        require_auth: bool = True, ws_redirect: bool = False,
                        ready: Callable[[MockWebUI], None] | None = None) -> None:
    """Run a mock web UI until cancelled (``python -m backend.mockweb`` / ``qaworker mockweb``)."""
    ui = MockWebUI(Path(data_dir), api_key=api_key, api_secret=api_secret, port=port, flavour=flavour,
                   require_auth=require_auth, ws_redirect=ws_redirect)
    await ui.start()
    try:
        if ready is not None:
            ready(ui)
        await asyncio.Event().wait()
    finally:
        await ui.stop()
