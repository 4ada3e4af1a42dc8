"""Shared helpers for the upload tests: a recording web UI on 127.0.0.1, PNG and pool builders.

The fake web UI checks the HMAC signature, records every status post, artefact, upload_state
and upload_progress request, reassembles chunked assets with an independent Storable decoder and
can inject faults. (No tests in this module.)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from backend.config import HostConfig
from backend.events import EventBus
from backend.job.status import JobReporter, ReporterContext
from backend.webui.auth import verify
from backend.webui.client import ApiClient, RetryPolicy

API_KEY = "ABCDEF0123456789"
API_SECRET = "0123456789ABCDEF"


# -- Storable: an independent decoder (hash of scalars, as nfreeze writes it) ---------------------
def thaw(data: bytes) -> dict[str, bytes]:
    assert data[0] == 0x05, "not network order Storable"
    assert data[1] in (0x07, 0x0B), "unexpected minor version"
    assert data[2] == 0x03, "not a hash"
    (count,) = struct.unpack_from(">I", data, 3)
    pos, out = 7, {}
    for _ in range(count):
        kind = data[pos]
        if kind == 0x0A:
            length, pos = data[pos + 1], pos + 2
        elif kind == 0x01:
            (length,) = struct.unpack_from(">I", data, pos + 1)
            pos += 5
        else:
            raise AssertionError(f"unexpected Storable type {kind:#x}")
        value, pos = data[pos:pos + length], pos + length
        (klen,) = struct.unpack_from(">I", data, pos)
        key = data[pos + 4:pos + 4 + klen].decode()
        pos += 4 + klen
        out[key] = value
    assert pos == len(data), "trailing bytes"
    return out


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode().rstrip("=")


# -- PNG files --------------------------------------------------------------------------------------
def make_png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A valid, deliberately badly compressed RGB PNG (optipng can shrink it)."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            v = (x * 7 + y * 3 + seed * 31) % 256
            row += bytes((v, (v + seed) % 256, (x + y) % 256))
        rows.append(bytes(row))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 0))
            + chunk(b"IEND", b""))


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# -- pool directory builder -------------------------------------------------------------------------
@dataclass
class Module:
    name: str
    result: str = "ok"
    screenshots: int = 1
    texts: int = 0
    category: str = "tests"


class PoolBuilder:
    def __init__(self, pool: Path, png_size: tuple[int, int] = (64, 48)) -> None:
        self.pool = pool
        self.results = pool / "testresults"
        (self.results / ".thumbs").mkdir(parents=True, exist_ok=True)
        self.png_size = png_size
        self._seed = 0

    def order(self, modules: list[Module]) -> None:
        order = [{"name": m.name, "category": m.category, "flags": {}, "script": f"tests/{m.name}.pm"}
                 for m in modules]
        (self.results / "test_order.json").write_text(json.dumps(order))

    def status(self, status: str = "running", current: str = "", paused: Any = 0) -> None:
        tmp = self.pool / "autoinst-status.json.tmp"
        body = {"status": status, "current_test": current, "test_execution_paused": paused}
        tmp.write_text(json.dumps(body))
        tmp.replace(self.pool / "autoinst-status.json")

    def result(self, module: Module, thumbs: bool = True) -> list[str]:
        """Write result-<module>.json with its screenshots/texts; returns the screenshot names."""
        details, shots = [], []
        for i in range(1, module.screenshots + 1):
            name = f"{module.name}-{i}.png"
            self._seed += 1
            (self.results / name).write_bytes(make_png(*self.png_size, seed=self._seed))
            if thumbs:
                (self.results / ".thumbs" / name).write_bytes(make_png(16, 12, seed=self._seed))
            details.append({"screenshot": name, "result": "ok", "title": f"step {i}"})
            shots.append(name)
        for i in range(1, module.texts + 1):
            name = f"{module.name}-{module.screenshots + i}.txt"
            (self.results / name).write_text(f"text result {i} of {module.name}\n")
            details.append({"text": name, "result": "ok", "title": "text"})
        body = {"details": details, "result": module.result, "dents": 0, "execution_time": 1}
        (self.results / f"result-{module.name}.json").write_text(json.dumps(body))
        return shots


# -- the recording web UI ---------------------------------------------------------------------------
@dataclass
class Artefact:
    fields: dict[str, str]
    filename: str
    content: bytes


@dataclass
class FakeWebUI:
    job_id: int = 42
    status_posts: list[dict[str, Any]] = field(default_factory=list)
    artefacts: list[Artefact] = field(default_factory=list)
    upload_states: list[dict[str, str]] = field(default_factory=list)
    progress_posts: list[dict[str, Any]] = field(default_factory=list)
    known_images: set[str] = field(default_factory=set)
    assets: dict[tuple[str, str], bytearray] = field(default_factory=dict)
    fail_every: int = 0  # every n-th artefact request answers 503
    fail_names: dict[str, int] = field(default_factory=dict)  # filename -> status (forever)
    fail_once: dict[str, int] = field(default_factory=dict)  # filename -> status (one time)
    fail_chunks: dict[int, int] = field(default_factory=dict)  # chunk index -> times to answer 500
    status_error: tuple[int, str] | None = None
    artefact_delay: float = 0.0  # seconds each artefact request takes (to see uploads overlap)
    in_flight: int = 0
    max_in_flight: int = 0  # most artefact requests answered at the same time
    auth_failures: int = 0
    url: str = ""
    _artefact_requests: int = 0
    _runner: web.AppRunner | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v1/jobs/{id}/status", self._status)
        app.router.add_post("/api/v1/jobs/{id}/artefact", self._artefact)
        app.router.add_post("/api/v1/jobs/{id}/upload_state", self._upload_state)
        app.router.add_post("/liveviewhandler/api/v1/jobs/{id}/upload_progress", self._progress)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _check(self, request: web.Request) -> None:
        error = verify({API_KEY: API_SECRET}, request.headers, request.raw_path)
        if error:
            self.auth_failures += 1
            raise web.HTTPForbidden(text=json.dumps({"error": error}), content_type="application/json")

    def _touch(self) -> None:
        self.changed.set()

    async def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds: woken by requests, re-checked every 20 ms for worker state."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 0.02)
                except TimeoutError:
                    pass

    async def _status(self, request: web.Request) -> web.Response:
        self._check(request)
        body = await request.json()
        self.status_posts.append(body["status"])
        self._touch()
        if self.status_error is not None:
            code, text = self.status_error
            return web.json_response({"error": text}, status=code)
        if "uploading" in body["status"]:
            return web.json_response({"result": 1})
        return web.json_response({"result": 1, "known_images": sorted(self.known_images), "known_files": [],
                                  "job_result": "none"})

    async def _artefact(self, request: web.Request) -> web.Response:
        self._check(request)
        self._artefact_requests += 1
        fields: dict[str, str] = {}
        filename, content = "", b""
        async for part in await request.multipart():
            if part.filename is not None:
                filename, content = part.filename, await part.read()
            else:
                fields[part.name or ""] = (await part.read()).decode()
        if self.artefact_delay:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.artefact_delay)
            finally:
                self.in_flight -= 1
        if self.fail_every and self._artefact_requests % self.fail_every == 0:
            return web.json_response({"error": "busy"}, status=503)
        if filename in self.fail_names:
            return web.json_response({"error": "No worker assigned"}, status=self.fail_names[filename])
        if filename in self.fail_once:
            return web.json_response({"error": "Specified job does not exist"},
                                     status=self.fail_once.pop(filename))
        if "asset" in fields and "local" not in fields:
            return self._chunk(fields["asset"], filename, content)
        self.artefacts.append(Artefact(fields, filename, content))
        self._touch()
        return web.Response(text="OK")

    def _chunk(self, scope: str, filename: str, content: bytes) -> web.Response:
        chunk = thaw(content)
        index = int(chunk["index"])
        if self.fail_chunks.get(index, 0) > 0:
            self.fail_chunks[index] -= 1
            return web.json_response({"error": "Failed receiving asset: simulated"}, status=500)
        data = bytes.fromhex(chunk["content"].decode())
        assert b64(hashlib.sha1(data).digest()) == chunk["cksum"].decode()
        buf = self.assets.setdefault((scope, filename), bytearray())
        start, end = int(chunk["start"]), int(chunk["end"])
        assert end - start == len(data)
        if len(buf) < end:
            buf.extend(b"\0" * (end - len(buf)))
        buf[start:end] = data
        if index == int(chunk["total"]):
            assert b64(hashlib.sha256(bytes(buf)).digest()) == chunk["total_cksum"].decode()
            self.artefacts.append(Artefact({"asset": scope}, filename, bytes(buf)))
        self._touch()
        return web.json_response({"status": "ok"})

    async def _upload_state(self, request: web.Request) -> web.Response:
        self._check(request)
        self.upload_states.append(dict(await request.post()))  # type: ignore[arg-type]
        self._touch()
        return web.Response(text="OK")

    async def _progress(self, request: web.Request) -> web.Response:
        self._check(request)
        self.progress_posts.append(await request.json())
        self._touch()
        return web.json_response({"broadcast_count": 1})

    # -- queries ----------------------------------------------------------------------------------
    def uploads(self, **fields: str) -> list[Artefact]:
        return [a for a in self.artefacts if all(a.fields.get(k) == v for k, v in fields.items())]

    def names(self, **fields: str) -> list[str]:
        return sorted(a.filename for a in self.uploads(**fields))


@dataclass
class Harness:
    web: FakeWebUI
    reporter: JobReporter
    client: ApiClient
    bus: EventBus
    stops: list[tuple[str, str]]
    pool: Path
    builder: PoolBuilder


def make_reporter(web: FakeWebUI, pool: Path, image_pool: Any, settings: dict[str, str] | None = None,
                  attempts: int = 5) -> Harness:
    host = HostConfig(configured=web.url, base_url=web.url, api_key=API_KEY, api_secret=API_SECRET)
    client = ApiClient(host, retry=RetryPolicy(attempts=attempts, delay=0.01, busy_delay=0.01), timeout=30)
    bus = EventBus()
    stops: list[tuple[str, str]] = []
    ctx = ReporterContext(client=client, job_id=web.job_id, worker_id=7, instance=3, pool_dir=pool,
                          settings=dict(settings or {}), cmd_srv_url="http://localhost:20033/tok",
                          worker_hostname="worker.test", livehandler_base=web.url, bus=bus,
                          image_pool=image_pool, request_stop=lambda r, d: stops.append((r, d)))
    reporter = JobReporter(ctx)
    return Harness(web, reporter, client, bus, stops, pool, PoolBuilder(pool))
