"""Support for the cache tests and bench (no tests here): a counting asset server and a helper process.

The server speaks the two routes the cache uses: GET /tests/<job>/asset/<type>/<name> (302 to
/assets/<type>/<name>, like the real web UI) and the asset itself with ETag / If-None-Match / 304.
Faults: a status answered N times, a body cut short (wrong Content-Length) N times, slow chunks.

Run as a module it is the helper process of the two-process test:
    python -m tests.integration.cache_support <cache_dir> <url> <host_dir> <type> <name>
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from backend.cache import AssetCache
from backend.config import HostConfig
from backend.events import EventBus
from backend.webui.client import ApiClient, RetryPolicy

BLOCK = 1024 * 1024


@dataclass
class ServedAsset:
    content: bytes | None
    size: int
    etag: str
    requests: int = 0
    downloads: int = 0  # 200 answers
    not_modified: int = 0  # 304 answers
    faults: list[tuple[int, int]] = field(default_factory=list)  # (status or -1 for truncation, times)


def pattern_block(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def new_cache(tmp_path: Path, bus: EventBus, **kwargs: object) -> AssetCache:
    """An AssetCache in ``<tmp>/cache`` (1 GiB, no free-space floor, quick retries), not opened yet."""
    options: dict = {"limit_bytes": 1 << 30, "min_free_percentage": None, "retry_delay": 0.05}
    options.update(kwargs)
    return AssetCache(tmp_path / "cache", bus=bus, **options)


class AssetServer:
    def __init__(self, *, chunk_delay: float = 0.0, chunk_size: int = 64 * 1024) -> None:
        self.assets: dict[tuple[str, str], ServedAsset] = {}
        self.chunk_delay = chunk_delay
        self.chunk_size = chunk_size
        self.redirects = 0
        self.serving = 0  # bodies being sent right now
        self._runner: web.AppRunner | None = None
        self.url = ""

    def add(self, asset_type: str, name: str, content: bytes | None = None, size: int | None = None) -> None:
        if content is not None:
            etag = f'"{hashlib.md5(content).hexdigest()}"'
            self.assets[(asset_type, name)] = ServedAsset(content, len(content), etag)
        else:
            assert size is not None
            self.assets[(asset_type, name)] = ServedAsset(None, size, f'"size-{size}"')

    def asset(self, asset_type: str, name: str) -> ServedAsset:
        return self.assets[(asset_type, name)]

    def downloads(self, asset_type: str, name: str) -> int:
        return self.asset(asset_type, name).downloads

    def fail(self, asset_type: str, name: str, status: int, times: int = 1) -> None:
        self.asset(asset_type, name).faults.append((status, times))

    def truncate(self, asset_type: str, name: str, times: int = 1) -> None:
        self.asset(asset_type, name).faults.append((-1, times))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/tests/{job}/asset/{type}/{name}", self._redirect)
        app.router.add_get("/assets/{type}/{name}", self._serve)
        app.router.add_get("/_stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({f"{t}/{n}": {"requests": a.requests, "downloads": a.downloads,
                                               "not_modified": a.not_modified}
                                  for (t, n), a in self.assets.items()})

    async def _redirect(self, request: web.Request) -> web.Response:
        self.redirects += 1
        if (request.match_info["type"], request.match_info["name"]) not in self.assets:
            return web.json_response({"error": "Asset not found"}, status=404)
        raise web.HTTPFound(f"/assets/{request.match_info['type']}/{request.match_info['name']}")

    def _take_fault(self, asset: ServedAsset) -> int | None:
        if not asset.faults:
            return None
        status, times = asset.faults[0]
        if times <= 1:
            asset.faults.pop(0)
        else:
            asset.faults[0] = (status, times - 1)
        return status

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        asset = self.assets.get((request.match_info["type"], request.match_info["name"]))
        if asset is None:
            return web.Response(status=404, text="Not found")
        asset.requests += 1
        fault = self._take_fault(asset)
        if fault is not None and fault > 0:
            return web.Response(status=fault, text="fault injected")
        if request.headers.get("If-None-Match") == asset.etag:
            asset.not_modified += 1
            return web.Response(status=304, headers={"ETag": asset.etag})
        asset.downloads += 1
        headers = {"ETag": asset.etag, "Content-Type": "application/octet-stream"}
        response = web.StreamResponse(headers=headers)
        response.content_length = asset.size
        await response.prepare(request)
        self.serving += 1
        try:
            return await self._send_body(request, response, asset, fault)
        finally:
            self.serving -= 1

    async def _send_body(self, request: web.Request, response: web.StreamResponse, asset: ServedAsset,
                         fault: int | None) -> web.StreamResponse:
        sent_limit = asset.size // 2 if fault == -1 else asset.size
        sent = 0
        block = asset.content if asset.content is not None else pattern_block(BLOCK)
        while sent < sent_limit:
            if asset.content is not None:
                piece = block[sent:min(sent + self.chunk_size, sent_limit)]
            else:
                piece = block[: min(len(block), sent_limit - sent)]
            await response.write(piece)
            sent += len(piece)
            if self.chunk_delay and sent < sent_limit:  # not after the last piece: the body is out
                await asyncio.sleep(self.chunk_delay)
        if fault == -1:
            assert request.transport is not None
            request.transport.close()  # the client sees fewer bytes than Content-Length
            return response
        await response.write_eof()
        return response


def make_client(url: str, **kwargs: object) -> ApiClient:
    host = HostConfig(configured=url, base_url=url, api_key="1234567890ABCDEF", api_secret="1234567890ABCDEF")
    return ApiClient(host, retry=RetryPolicy(attempts=1, delay=0.1), **kwargs)  # type: ignore[arg-type]


async def _helper(cache_dir: str, url: str, host_dir: str, asset_type: str, name: str) -> None:
    from backend.cache import AssetCache, CacheError
    from backend.events import EventBus

    cache = AssetCache(Path(cache_dir), limit_bytes=1 << 30, min_free_percentage=None, bus=EventBus(),
                       retry_delay=0.1)
    await cache.open()
    client = make_client(url)
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # wait for "go"
    try:
        path = await cache.get_asset(client, host_dir, 1, asset_type, name)
        out = {"path": str(path), "hits": cache.stats.hits, "misses": cache.stats.misses}
    except CacheError as exc:
        out = {"error": str(exc), "category": exc.category}
    finally:
        await client.aclose()
        await cache.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(_helper(*sys.argv[1:6]))
