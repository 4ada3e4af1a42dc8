"""The signed API client's retry policy over a real socket (PROTOCOL.md §5.3, §15.2)."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

from backend.config import HostConfig
from backend.webui.client import ApiClient, ApiError, RetryPolicy, endpoint_label


@pytest.fixture
async def server():
    answers: list[tuple[int, dict]] = []
    seen: list[tuple[float, str, dict]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((time.monotonic(), request.path_qs, dict(request.headers)))
        status, headers = answers.pop(0) if answers else (200, {})
        if status in (301, 302):
            return web.Response(status=status, headers=headers)
        return web.json_response({"error": f"status {status}"} if status >= 400 else {"ok": 1}, status=status,
                                 headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", answers, seen
    await runner.cleanup()


def client_for(url: str, **policy) -> ApiClient:
    host = HostConfig(configured=url, base_url=url, api_key="KEY", api_secret="SECRET")
    return ApiClient(host, retry=RetryPolicy(**{"attempts": 5, "delay": 0.05, "busy_delay": 0.1, **policy}))


async def test_signed_and_successful(server):
    url, _answers, seen = server
    client = client_for(url)
    response = await client.request("POST", "/api/v1/jobs/1/status", params={"a": "b c"}, json={"x": 1})
    assert response.json() == {"ok": 1}
    _, path, headers = seen[0]
    assert path == "/api/v1/jobs/1/status?a=b+c"
    assert headers["X-API-Key"] == "KEY" and len(headers["X-API-Hash"]) == 40
    await client.aclose()


async def test_retries_5xx_and_490_then_succeeds(server):
    url, answers, seen = server
    answers += [(503, {}), (490, {}), (500, {})]
    client = client_for(url)
    await client.request("POST", "/x")
    assert len(seen) == 4
    await client.aclose()


async def test_retry_after_is_honoured(server):
    url, answers, seen = server
    answers.append((429, {"Retry-After": "0.6"}))
    client = client_for(url)
    await client.request("GET", "/x")
    assert seen[1][0] - seen[0][0] >= 0.55
    await client.aclose()


async def test_other_4xx_is_final_with_openqa_text(server):
    url, answers, seen = server
    answers.append((404, {}))
    client = client_for(url)
    with pytest.raises(ApiError) as err:
        await client.request("POST", "/api/v1/jobs/9/artefact")
    assert str(err.value) == "404 response: status 404"
    assert err.value.is_client_error and len(seen) == 1
    assert client.last_error == "404 response: status 404"
    await client.aclose()


async def test_exhausted_attempts(server):
    url, answers, seen = server
    answers += [(502, {})] * 3
    client = client_for(url, attempts=3)
    with pytest.raises(ApiError) as err:
        await client.request("GET", "/x")
    assert err.value.status == 502 and len(seen) == 3
    await client.aclose()


async def test_connection_error_text():
    client = client_for("http://127.0.0.1:9", attempts=2)
    with pytest.raises(ApiError) as err:
        await client.request("GET", "/x")
    assert str(err.value).startswith("Connection error:")
    await client.aclose()


async def test_redirect_probe_adopts_new_base(server):
    url, answers, _seen = server
    answers.append((302, {"Location": "http://localhost:1234/api/v1/workers?limit=0"}))
    client = client_for(url)
    await client.probe_redirect()
    assert client.base_url == "http://localhost:1234"
    await client.aclose()


def test_endpoint_label():
    assert endpoint_label("/api/v1/jobs/42/status") == "/api/v1/jobs/:id/status"
