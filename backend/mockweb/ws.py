"""Worker registration (`/api/v1/workers`, §5) and the worker websocket (`/api/v1/ws/<id>`, §6)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from backend.mockweb.context import json_error, ui_of
from backend.mockweb.model import ASSIGNED, MockWorker, RequestRecord

if TYPE_CHECKING:
    from backend.mockweb.server import MockWebUI

log = logging.getLogger(__name__)

REQUIRED_PARAMS = ("host", "instance", "cpu_arch", "mem_max", "worker_class")
MAX_MESSAGE = 10 * 1024 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/workers", register)
    app.router.add_get("/api/v1/workers", list_workers)  # aiohttp answers HEAD for GET routes
    app.router.add_get(r"/api/v1/ws/{id:\d+}", websocket)
    app.router.add_get(r"/ws/{id:\d+}", websocket)


async def register(request: web.Request) -> web.Response:
    ui = ui_of(request)
    query = request.query
    missing = [p for p in REQUIRED_PARAMS if not query.get(p)]
    if missing:
        return json_error("Erroneous parameters (" + ", ".join(f"{p} missing" for p in missing) + ")", 400)
    if query.get("websocket_api_version") != "1":
        return json_error("Incompatible websocket API version", 426)
    try:
        instance = int(query["instance"])
        job_ids = {int(j) for j in query.getall("job_id", [])}
    except ValueError:
        return json_error("Erroneous parameters (instance or job_id invalid)", 400)
    worker = ui.state.worker_by_name(query["host"], instance)
    worker.t_seen = time.time()
    if ui.flavour == "new":
        worker.error = None
    for key in set(query.keys()) - {"job_id"}:
        worker.properties[key.upper()] = query[key]
    ui.state.drop_jobs_not_listed(worker, job_ids)
    worker.registrations += 1
    body: dict[str, Any] = {"id": worker.id}
    if ui.flavour == "new":
        body["service_port_delta"] = 0  # the live view handler routes are served on this port
    return web.json_response(body)


async def list_workers(request: web.Request) -> web.Response:
    ui = ui_of(request)
    listing = [{
        "id": w.id, "host": w.host, "instance": w.instance, "name": w.name,
        "status": ui.state.status_of(w), "error": w.error, "properties": dict(w.properties),
        "websocket": 1 if w.connected else 0, "jobid": w.job_id, "alive": 1 if ui.state.online(w) else 0,
    } for w in sorted(ui.workers.values(), key=lambda w: w.id)]
    return web.json_response({"workers": listing})


async def websocket(request: web.Request) -> web.StreamResponse:
    ui = ui_of(request)
    worker_id = int(request.match_info["id"])
    if request.path.startswith("/api/v1/ws/") and ui.ws_redirect:
        # The 2023 web UI port redirects the handshake to the websocket server with an http: URL (§25).
        raise web.HTTPFound(f"http://127.0.0.1:{ui.port}/ws/{worker_id}")
    worker = ui.workers.get(worker_id)
    if worker is None:
        return web.Response(status=400, text="Unknown worker")
    if ui.require_auth and "X-API-Key" in request.headers:
        # Localhost connections need no auth at the real ws server; a wrong signature is still a bug.
        denied = ui.auth_error(request)
        if denied is not None:
            return denied
    sock = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=None, timeout=2.0)
    await sock.prepare(request)
    ui.requests.append(RequestRecord(request.method, request.path, 101, time.time()))
    old = ui.sockets.get(worker_id)
    if old is not None and not old.closed:
        ui.spawn(old.close(code=1008, message=b"only one connection per worker allowed, finishing old one"))
    ui.sockets[worker_id] = sock
    worker.connected = True
    ui.notify()
    try:
        async for msg in sock:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                await sock.close(code=1003, message=b"Received unexpected data from worker, forcing close")
                break
            await handle_message(ui, worker, sock, data)
            ui.notify()
    finally:
        if ui.sockets.get(worker_id) is sock:
            del ui.sockets[worker_id]
            worker.connected = False
        ui.notify()
    return sock


async def handle_message(ui: MockWebUI, worker: MockWorker, sock: web.WebSocketResponse,
                         data: dict[str, Any]) -> None:
    worker.status_messages.append(data)
    if worker.properties.get("WEBSOCKET_API_VERSION") != "1":
        await sock.send_json({"type": "incompatible"})
        await sock.close(code=1008, message=b"incompatible websocket API version")
        return
    kind = data.get("type")
    now = time.time()
    if kind == "worker_status":
        await _worker_status(ui, worker, sock, data, now)
    elif kind == "accepted":
        worker.t_seen = now
        try:
            ui.state.accept(worker, int(data.get("jobid", 0)))
        except (TypeError, ValueError):
            log.info("worker %d accepted an invalid job id %r", worker.id, data.get("jobid"))
    elif kind == "rejected":
        worker.t_seen = now
        _rejected(ui, worker, data, now)
    elif kind == "quit":
        worker.t_seen = None
        worker.error = f"graceful disconnect at {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}"
        for job in ui.state.unfinished_of(worker.id):
            if job.state == ASSIGNED:
                ui.state.reschedule(job)
    else:
        log.info("worker %d sent unknown message type %r", worker.id, kind)


async def _worker_status(ui: MockWebUI, worker: MockWorker, sock: web.WebSocketResponse,
                         data: dict[str, Any], now: float) -> None:
    status = data.get("status")
    worker.t_seen = now
    worker.error = str(data.get("reason") or "broken") if status == "broken" else None
    job = data.get("job")
    has_job = isinstance(job, dict) and job.get("id") is not None
    assigned = [j for j in ui.state.unfinished_of(worker.id) if j.state == ASSIGNED]
    if status != "broken" and not has_job and ui.state.unfinished_of(worker.id):
        # Second idle report in a row despite an assignment: the worker lost the job (§6.2).
        if worker.idle_despite_job:
            for stale in assigned:
                ui.state.reschedule(stale)
            worker.idle_despite_job = False
        else:
            worker.idle_despite_job = True
    else:
        worker.idle_despite_job = False
    info: dict[str, Any] = {"type": "info", "seen": 1} if ui.flavour == "new" else {
        "type": "info", "population": len(ui.workers)}
    if not sock.closed:
        await sock.send_json(info)


def _rejected(ui: MockWebUI, worker: MockWorker, data: dict[str, Any], now: float) -> None:
    worker.rejections.append(dict(data))
    ids = data.get("job_ids") or []
    for raw in ids if isinstance(ids, list) else []:
        try:
            job = ui.jobs.get(int(raw))
        except (TypeError, ValueError):
            continue
        if job is not None and job.assigned_worker_id == worker.id and job.state == ASSIGNED:
            ui.state.reschedule(job)
    # Do not offer the same jobs straight back; retry after a short pause (the scheduler's cadence).
    worker.rejected_until = now + ui.reject_backoff
    ui.spawn(_wake_later(ui, ui.reject_backoff))


async def _wake_later(ui: MockWebUI, delay: float) -> None:
    await asyncio.sleep(delay + 0.01)
    ui.notify()
