"""Issue 12 row 8: HTTP_PROXY/HTTPS_PROXY/NO_PROXY are honoured for the web UI (REST and websocket) and for
asset downloads; a loopback web UI is never proxied.

A real forwarding proxy on 127.0.0.1 (absolute-form requests and CONNECT, bytes piped both ways). The web
UI is configured as ``http://webui.test:<port>``: only the proxy knows that name (it maps it to 127.0.0.1),
so the worker can only reach it through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest

from backend.config.proxy import ProxySettings
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered

NAME = "webui.test"
REQUEST_LINE = re.compile(rb"(GET|POST|HEAD|PUT|DELETE|CONNECT) (\S+) HTTP/1\.1\r\n")


class ForwardingProxy:
    """Maps every host to 127.0.0.1 and records the request lines it forwarded."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            match = REQUEST_LINE.match(head)
            if match is None:
                return
            method, target = match.group(1).decode(), match.group(2).decode()
            port = int(target.split("://")[-1].split("/")[0].rsplit(":", 1)[1])
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            self.requests.append(f"{method} {target}")
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
                return
            back = asyncio.create_task(self._pipe(up_reader, writer))
            try:
                while True:
                    await self._forward(head, reader, up_writer)
                    head = await reader.readuntil(b"\r\n\r\n")
                    match = REQUEST_LINE.match(head)
                    if match is None:
                        return
                    self.requests.append(f"{match.group(1).decode()} {match.group(2).decode()}")
            finally:
                back.cancel()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            if up_writer is not None:
                up_writer.close()

    @staticmethod
    async def _forward(head: bytes, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        """One request, its absolute-form target made origin-form (as a proxy forwards it)."""
        line, rest = head.split(b"\r\n", 1)
        method, target, version = line.split(b" ")
        path = b"/" + target.split(b"://", 1)[1].split(b"/", 1)[1] if b"://" in target else target
        up.write(b" ".join((method, path, version)) + b"\r\n" + rest)
        headers = rest.lower()
        length = re.search(rb"\r?\ncontent-length: *(\d+)", b"\n" + headers)
        if length:
            up.write(await reader.readexactly(int(length.group(1))))
        elif b"transfer-encoding: chunked" in headers:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                up.write(size_line + await reader.readexactly(size + 2))
                if size == 0:
                    break
        await up.drain()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardingProxy]:
    p = ForwardingProxy()
    await p.start()
    yield p
    await p.stop()


async def test_web_ui_rest_websocket_and_assets_go_through_http_proxy(tmp_path, proxy):
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", "disk.qcow2", size=100_000)
        remote = web.url.replace("127.0.0.1", NAME)
        config = make_config(tmp_path, [remote], cache=True, env={"HTTP_PROXY": proxy.url, "NO_PROXY": "other.test"})
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot", HDD_1="disk.qcow2")), 60)
            assert job.result == "passed", job.reason
    seen = proxy.requests
    base = f"http://{NAME}:{web.url.rsplit(':', 1)[1]}"
    assert any(r.startswith(f"POST {base}/api/v1/workers") for r in seen), seen  # registration
    assert f"CONNECT {NAME}:{web.url.rsplit(':', 1)[1]}" in seen  # the websocket
    assert any(r.startswith("GET ") and "disk.qcow2" in r for r in seen), seen  # the asset
    assert any(r.startswith(f"POST {base}/api/v1/jobs/{job.id}/status") for r in seen), seen  # status/uploads
    assert (tmp_path / "cache" / NAME / "disk.qcow2").stat().st_size == 100_000


async def test_loopback_web_ui_is_never_proxied(tmp_path, proxy):
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", "disk.qcow2", size=50_000)
        config = make_config(tmp_path, [web.url], cache=True,
                             env={"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "HTTPS_PROXY": proxy.url})
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot", HDD_1="disk.qcow2")), 60)
            assert job.result == "passed", job.reason
    assert proxy.connections == 0


def test_which_urls_are_proxied():
    s = ProxySettings.from_env({"http_proxy": "http://p:3128", "HTTPS_PROXY": "http://sp:3128",
                                "NO_PROXY": "internal.example, .corp.test,10.1.2.3, *.lab"})
    assert s.proxy_for("http://openqa.example/api") == "http://p:3128"
    assert s.proxy_for("wss://openqa.example/ws") == "http://sp:3128"
    for direct in ("http://localhost:9526", "http://127.0.0.5", "https://[::1]:443", "http://internal.example",
                   "https://a.internal.example", "http://corp.test", "http://x.corp.test", "http://10.1.2.3",
                   "http://lab", "http://box.lab"):
        assert s.proxy_for(direct) is None, direct
    assert s.proxy_for("http://notinternal.example") == "http://p:3128"
    assert ProxySettings.from_env({"HTTP_PROXY": "http://p", "NO_PROXY": "*"}).proxy_for("http://x.y") is None
    assert ProxySettings.from_env({"HTTP_PROXY": "http://up", "http_proxy": "http://low"}).http == "http://up"
