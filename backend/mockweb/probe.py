"""A minimal signed worker-side client for tests of the mock web UI (independent of backend/webui).

It signs exactly like PROTOCOL.md §3 (via ``backend.webui.auth``), registers, opens the websocket
(following a 2023-style http: redirect itself, §25) and builds Storable chunks (§15.3).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidURI

from backend.mockweb import storable
from backend.webui.auth import QueryParams, auth_headers, request_target
from backend.webui.client import new_http_client


class Probe:
    def __init__(self, url: str, key: str | None = "1234567890ABCDEF",
                 secret: str | None = "1234567890ABCDEF") -> None:
        self.url = url
        self.key = key
        self.secret = secret
        self.http: httpx.AsyncClient | None = None  # made by the first call: the TLS context is built off the loop
        self.worker_id: int | None = None
        self.ws: ClientConnection | None = None

    async def aclose(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.aclose()

    async def __aenter__(self) -> Probe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, method: str, path: str, params: QueryParams = None, *, sign: bool = True,
                   base: str | None = None, **kwargs: Any) -> httpx.Response:
        target = request_target(path, params)
        headers = auth_headers(self.key, self.secret, target) if sign else {}
        headers.update(kwargs.pop("headers", {}))
        if self.http is None:
            self.http = await new_http_client(timeout=10.0)
        return await self.http.request(method, (base or self.url) + target, headers=headers, **kwargs)

    async def register(self, host: str = "probehost", instance: int = 1, worker_class: str = "qemu_x86_64",
                       job_ids: list[int] | None = None, **extra: Any) -> httpx.Response:
        params: dict[str, Any] = {"cpu_arch": "x86_64", "host": host, "instance": instance, "mem_max": 4096,
                                  "websocket_api_version": 1, "worker_class": worker_class, **extra}
        if job_ids:
            params["job_id"] = job_ids
        response = await self.call("POST", "/api/v1/workers", params)
        if response.status_code == 200:
            self.worker_id = int(response.json()["id"])
        return response

    async def connect(self, path: str | None = None) -> ClientConnection:
        """Open the worker websocket; an http: redirect is followed by hand like the real worker must."""
        path = path or f"/api/v1/ws/{self.worker_id}"
        base = self.url.replace("http://", "ws://", 1)
        for _ in range(3):
            target = request_target(path)
            try:
                self.ws = await connect(base + target, additional_headers=auth_headers(
                    self.key, self.secret, target), max_size=10 * 1024 * 1024)
                return self.ws
            except InvalidURI as exc:  # websockets refuses to follow a redirect to an http: URL
                location = exc.uri
                url = httpx.URL(location)
                base = f"ws://{url.host}:{url.port}"
                path = url.path
        raise RuntimeError("too many redirects")

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """Next message that is not an `info` reply."""
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if message.get("type") != "info":
                    return message


def chunk_blob(name: str, data: bytes, start: int, end: int, index: int, total: int,
               perl_ints: bool = False) -> bytes:
    """One chunk of an asset upload as openQA's client serialises it."""
    part = data[start:end]
    sha1 = base64.b64encode(hashlib.sha1(part).digest()).decode().rstrip("=")
    sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    numbers: dict[str, Any] = {"start": start, "end": end, "index": index, "total": total}
    if not perl_ints:
        numbers = {k: str(v) for k, v in numbers.items()}
    return storable.dumps({"file": f"/pool/1/assets_public/{name}", **numbers, "cksum": sha1,
                           "total_cksum": sha256, "content": part.hex()})


def chunks(name: str, data: bytes, chunk_size: int) -> list[bytes]:
    total = -(-len(data) // chunk_size)
    return [chunk_blob(name, data, i * chunk_size, min(len(data), (i + 1) * chunk_size), i + 1, total)
            for i in range(total)]
