"""Asset downloads as the cache service sees them (PROTOCOL.md §18.4, §25).

`GET /tests/<id>/asset/<type>/<name>` checks that the job has the asset and redirects (302, relative
Location) to `/assets/<type>/<name>`, which streams the file with Content-Length and a stable ETag
and answers a matching If-None-Match with 304.
"""

from __future__ import annotations

import os

from aiohttp import web

from backend.mockweb.context import json_error, ui_of

# the `private` prefix of assets uploaded by a job belongs to the name, so names are plain segments
_ASSET = r"{type:[A-Za-z0-9_]+}/{name:[^/]+}"


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/tests/{id:\d+}/asset/" + _ASSET, job_asset)
    app.router.add_get("/assets/" + _ASSET, serve_asset)


def _job_has_asset(inputs: dict[str, list[str]], uploaded: list[str], asset_type: str, name: str) -> bool:
    return name in inputs.get(asset_type, []) or name in uploaded


async def job_asset(request: web.Request) -> web.Response:
    ui = ui_of(request)
    job = ui.jobs.get(int(request.match_info["id"]))
    asset_type, name = request.match_info["type"], request.match_info["name"]
    if job is None or not _job_has_asset(job.input_assets, job.assets, asset_type, name):
        return json_error("Asset not found", 404)
    raise web.HTTPFound(f"/assets/{asset_type}/{name}")


def etag_of(stat: os.stat_result) -> str:
    """Stable for unchanged content: derived from mtime and size like a static file server's ETag."""
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


async def serve_asset(request: web.Request) -> web.StreamResponse:
    ui = ui_of(request)
    asset_type, name = request.match_info["type"], request.match_info["name"]
    if name in (".", ".."):
        return json_error("Asset not found", 404)
    path = ui.asset_path(asset_type, name)
    try:
        stat = path.stat()
    except OSError:
        return json_error("Asset not found", 404)
    if not path.is_file():
        return json_error("Asset not found", 404)
    etag = etag_of(stat)
    wanted = [t.strip() for t in request.headers.get("If-None-Match", "").split(",") if t.strip()]
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers={"ETag": etag})
    if request.method == "GET" and "Range" not in request.headers:
        ui.count_download(asset_type, name)
    # FileResponse streams the file (sendfile) and sets Content-Length; we pin our own ETag.
    return web.FileResponse(path, headers={"ETag": etag})
