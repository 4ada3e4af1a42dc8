"""Job REST routes: create/show/cancel, status (§13), duplicate, set_done (§16), upload progress (§17.2)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from backend.mockweb.context import json_error, ui_of
from backend.mockweb.model import (
    ASSIGNED,
    CANCELLED,
    EXECUTION_STATES,
    RUNNING,
    SETUP,
    UPLOADING,
    MockJob,
)
from backend.mockweb.store import compute_result

if TYPE_CHECKING:
    from backend.mockweb.server import MockWebUI

RESULTS = frozenset({"none", "passed", "softfailed", "failed", "incomplete", "skipped", "obsoleted",
                     "parallel_failed", "parallel_restarted", "user_cancelled", "user_restarted",
                     "timeout_exceeded"})
# os-autoinst module results → web UI module results
MODULE_RESULTS = {"ok": "passed", "fail": "failed", "softfail": "softfailed", "unk": "none", "na": "none",
                  "skip": "skipped"}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/jobs", create_job)
    app.router.add_get("/api/v1/jobs", list_jobs)
    app.router.add_get(r"/api/v1/jobs/{id:\d+}", show_job)
    app.router.add_get(r"/api/v1/jobs/{id:\d+}/details", job_details)
    app.router.add_post(r"/api/v1/jobs/{id:\d+}/cancel", cancel_job)
    app.router.add_post(r"/api/v1/jobs/{id:\d+}/status", post_status)
    app.router.add_post(r"/api/v1/jobs/{id:\d+}/duplicate", duplicate)
    app.router.add_post(r"/api/v1/jobs/{id:\d+}/set_done", set_done)


def add_liveview_routes(app: web.Application) -> None:
    app.router.add_post(r"/liveviewhandler/api/v1/jobs/{id:\d+}/upload_progress", upload_progress)


def job_of(request: web.Request) -> MockJob | None:
    return ui_of(request).jobs.get(int(request.match_info["id"]))


async def create_job(request: web.Request) -> web.Response:
    ui = ui_of(request)
    settings = {k: v for k, v in request.query.items()}
    form = await request.post()
    settings.update({k: str(v) for k, v in form.items()})
    return web.json_response({"id": ui.schedule_job(settings)})


async def list_jobs(request: web.Request) -> web.Response:
    ui = ui_of(request)
    ordered = sorted(ui.jobs.values(), key=lambda j: j.id)
    return web.json_response({"jobs": [ui.state.job_object(j) for j in ordered]})


async def show_job(request: web.Request) -> web.Response:
    job = job_of(request)
    if job is None:
        return json_error("Job does not exist", 404)
    return web.json_response({"job": ui_of(request).state.job_object(job)})


async def job_details(request: web.Request) -> web.Response:
    job = job_of(request)
    if job is None:
        return json_error("Job does not exist", 404)
    obj = ui_of(request).state.job_object(job)
    order = [m.get("name") for m in job.test_order if isinstance(m, dict)]
    order += [name for name in job.modules if name not in order]
    testresults = []
    for name in order:
        meta = next((m for m in job.test_order if isinstance(m, dict) and m.get("name") == name), {})
        module = job.modules.get(str(name), {})
        raw = str(module.get("result", "none"))
        testresults.append({"name": name, "category": meta.get("category"), "flags": meta.get("flags", {}),
                            "script": meta.get("script"), "result": MODULE_RESULTS.get(raw, raw),
                            "details": module.get("details", [])})
    obj["testresults"] = testresults
    return web.json_response({"job": obj})


async def cancel_job(request: web.Request) -> web.Response:
    job = job_of(request)
    if job is None:
        return json_error("Job does not exist", 404)
    ui_of(request).cancel_job(job.id)
    return web.json_response({"result": 1})


def _status_error(job_id: int, job: MockJob | None, worker_id: Any) -> str | None:
    """The 400 texts of §13.4 (None when the post may proceed)."""
    if job is None:
        return f"Got status update for non-existing job: {job_id}"
    if worker_id in (None, ""):
        return f"Got status update for job {job_id} that does not contain a worker id!"
    if job.assigned_worker_id is None:
        return (f"Got status update for job {job_id} but there is not even a worker assigned to this job "
                f"(job is {job.state})")
    if str(job.assigned_worker_id) != str(worker_id):
        return (f"Got status update for job {job_id} with unexpected worker ID {worker_id} "
                f"(expected {job.assigned_worker_id}, job is {job.state})")
    return None


async def post_status(request: web.Request) -> web.Response:
    ui = ui_of(request)
    job_id = int(request.match_info["id"])
    try:
        body = await request.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, dict):
        return json_error("No status information provided", 400)
    job = ui.jobs.get(job_id)
    error = _status_error(job_id, job, status.get("worker_id"))
    if error is not None or job is None:
        return json_error(error or "", 400)
    job.status_posts.append((time.time(), status))
    worker = ui.workers.get(job.assigned_worker_id or 0)
    if worker is not None:
        worker.t_seen = time.time()
    if status.get("uploading"):
        if job.state in EXECUTION_STATES:
            job.state = UPLOADING
        return web.json_response({"result": 1 if job.state == UPLOADING else 0})
    if job.state in (ASSIGNED, SETUP):
        job.state = RUNNING
        job.t_started = time.time()
    if status.get("setup"):
        return web.json_response({"result": 1})
    accepted_states = {RUNNING, UPLOADING} | ({CANCELLED} if ui.flavour == "new" else set())
    if job.state not in accepted_states:
        return web.json_response({"result": 0})
    _store_status(job, status)
    # stat() per screenshot and file: in a thread, like the worker's own file checks
    known_images, known_files = await asyncio.to_thread(lambda: (_known_images(ui, status), _known_files(job, status)))
    return web.json_response({"result": 1, "known_images": known_images, "known_files": known_files,
                              "job_result": compute_result(job)})


def _store_status(job: MockJob, status: dict[str, Any]) -> None:
    order = status.get("test_order")
    if isinstance(order, list):
        names = {m.get("name") for m in job.test_order if isinstance(m, dict)}
        job.test_order.extend(m for m in order if isinstance(m, dict) and m.get("name") not in names)
    results = status.get("result")
    if isinstance(results, dict):
        for name, module in results.items():
            if isinstance(module, dict):
                job.modules[str(name)] = module
    live = status.get("log")
    if isinstance(live, dict) and isinstance(live.get("data"), str):
        job.live_log += live["data"]


def _details(status: dict[str, Any]) -> list[dict[str, Any]]:
    results = status.get("result")
    found: list[dict[str, Any]] = []
    for module in results.values() if isinstance(results, dict) else []:
        details = module.get("details") if isinstance(module, dict) else None
        found.extend(d for d in details or [] if isinstance(d, dict))
    return found


def image_path(images_dir: Path, md5: str, thumb: bool = False) -> Path:
    """The md5-addressed images store of openQA: images/<md5[0:3]>/<md5[3:6]>/[.thumbs/]<md5[6:]>.png."""
    base = images_dir / md5[:3] / md5[3:6]
    return (base / ".thumbs" if thumb else base) / f"{md5[6:]}.png"


def _known_images(ui: MockWebUI, status: dict[str, Any]) -> list[str]:
    known = []
    for detail in _details(status):
        shot = detail.get("screenshot")
        md5 = shot.get("md5") if isinstance(shot, dict) else None
        if isinstance(md5, str) and len(md5) == 32 and image_path(ui.data_dir / "images", md5).exists():
            known.append(md5)
    return sorted(set(known))


def _known_files(job: MockJob, status: dict[str, Any]) -> list[str]:
    names = {str(d.get(k)) for d in _details(status) for k in ("text", "audio") if d.get(k)}
    return sorted(n for n in names if job.results_dir is not None and (job.results_dir / n).is_file())


async def duplicate(request: web.Request) -> web.Response:
    ui = ui_of(request)
    job = job_of(request)
    if job is None:
        return json_error("Job does not exist", 404)
    clone = ui.state.duplicate(job)
    ui.notify()
    return web.json_response({"result": [{str(job.id): clone.id}],
                              "test_url": [{str(job.id): f"/tests/{clone.id}"}], "id": clone.id})


async def set_done(request: web.Request) -> web.Response:
    ui = ui_of(request)
    job = job_of(request)
    if job is None:
        return json_error("Job does not exist", 404)
    params = dict(request.query)
    worker_id = params.get("worker_id")
    if worker_id:
        if job.assigned_worker_id is None:
            return json_error("Refusing to set result because job has already been re-scheduled.", 400)
        if str(job.assigned_worker_id) != worker_id:
            return json_error("Refusing to set result because job is currently assigned to worker "
                              f"{job.assigned_worker_id}).", 400)
    result = params.get("result") or None
    if result is not None and result not in RESULTS:
        return json_error(f"Erroneous parameters (result invalid: {result})", 400)
    if params.get("newbuild"):
        result = "obsoleted"
    if result is None and job.result == "none":
        result = compute_result(job)
    job.set_done_params = params
    ui.state.finish(job, result, params.get("reason") or None)
    ui.notify()
    return web.json_response({"result": job.result, "reason": job.reason})


async def upload_progress(request: web.Request) -> web.Response:
    ui = ui_of(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return json_error("No progress information provided", 400)
    job = ui.jobs.get(int(request.match_info["id"]))
    if job is None or job.state not in EXECUTION_STATES:
        return json_error("The job ID does not refer to a running job", 400)
    if job.state not in (RUNNING, UPLOADING):
        return json_error("The job as no assigned worker", 400)  # sic, as openQA says it
    job.progress_posts.append(body)
    return web.json_response({"broadcast_count": 0})
