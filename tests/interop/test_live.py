"""Live log and developer session through the real web UI's handlers (PROTOCOL.md §17, §25), with Perl."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import free_instance
from tests.interop.conftest import PERL_CLASS, record_comparison
from tests.interop.pairs import own_class

pytestmark = pytest.mark.interop


@pytest.fixture
def ours(webui, qaworker, perl_worker):
    instance = free_instance(40, 400)
    worker = qaworker(instance=instance, worker_class=own_class(instance))
    webui.wait_idle(worker.host, worker.instance)
    return worker


async def _hold_stream(url: str) -> None:
    """Keep the live view's SSE stream open like a browser tab (the web UI then sends livelog_start)."""
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", url) as response:
        async for _ in response.aiter_bytes():
            pass


async def _livelog_text(url: str, timeout: float = 15) -> str:
    """Data lines of /tests/<id>/livelog (SSE tail of the worker's `log` status field) until text appears."""
    seen: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=None) as client, \
                client.stream("GET", url) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    seen.extend(json.loads(line[5:]))
                    if any(text.strip() for text in seen):
                        break
    return "".join(seen)


async def _live_log(webui, job_id: int) -> str:
    await asyncio.to_thread(webui.wait_state, job_id, "running", 90)
    viewer = asyncio.create_task(_hold_stream(f"{webui.url}/tests/{job_id}/streaming"))
    try:
        return await _livelog_text(f"{webui.url}/tests/{job_id}/livelog")
    finally:
        viewer.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await viewer


async def test_live_log_via_streaming_endpoint(webui, ours):
    settings = {"REALSTACK_SLEEP": "8"}
    perl_id = webui.schedule(WORKER_CLASS=PERL_CLASS, **settings)
    our_id = webui.schedule(WORKER_CLASS=ours.worker_class, **settings)
    ours_text, perl_text = await asyncio.gather(_live_log(webui, our_id), _live_log(webui, perl_id))
    record_comparison("live log (streaming -> livelog)", f"{len(perl_text)} chars", f"{len(ours_text)} chars",
                      "yes" if bool(perl_text.strip()) == bool(ours_text.strip()) else "NO")
    assert ours_text.strip(), ours.log()[-3000:]
    assert "isotovideo" in ours_text or "realstack" in ours_text, ours_text[:500]
    for job_id in (our_id, perl_id):
        job = await asyncio.to_thread(webui.wait_job, job_id)
        assert job["result"] == "passed", job


async def _developer_session(webui, job_id: int, seconds: float = 20) -> list[dict]:
    """Log in with the Fake auth, open the developer ws-proxy of the live view handler, collect messages."""
    await asyncio.to_thread(webui.wait_state, job_id, "running", 90)
    async with httpx.AsyncClient(follow_redirects=True) as client:
        await client.get(f"{webui.url}/login")
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    port = int(webui.url.rsplit(":", 1)[1]) + 2
    messages: list[dict] = []
    url = f"ws://127.0.0.1:{port}/liveviewhandler/tests/{job_id}/developer/ws-proxy"
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(seconds), connect(url, additional_headers={"Cookie": cookie}, proxy=None) as ws:
            async for raw in ws:
                messages.append(json.loads(raw))
    return messages


def _progress(messages: list[dict]) -> list[dict]:
    return [m.get("data") for m in messages if m.get("type") == "info" and m.get("what") == "upload progress"]


async def test_developer_session_upload_progress(webui, ours):
    """The live view handler sends developer_session_start; our upload_progress posts must be accepted.
    On this stack the handler then fails to reach the command server ("unable to upgrade ws to command
    server") for the Perl worker and qaworker alike, so no progress is broadcast back to the proxy socket:
    acceptance is checked on our side (no "Failed to post upload progress" warning)."""
    settings = {"REALSTACK_SLEEP": "12"}
    perl_id = webui.schedule(WORKER_CLASS=PERL_CLASS, **settings)
    our_id = webui.schedule(WORKER_CLASS=ours.worker_class, **settings)
    mine, perl = await asyncio.gather(_developer_session(webui, our_id), _developer_session(webui, perl_id))
    summary = [m.get("what") for m in mine if m.get("type") in ("info", "error")][:3]
    record_comparison("developer session", f"{len(_progress(perl))} progress broadcasts",
                      f"{len(_progress(mine))} progress broadcasts", "yes" if bool(_progress(perl)) ==
                      bool(_progress(mine)) else "NO")
    assert any("connecting to os-autoinst command server" in str(what) for what in summary), summary
    for job_id in (our_id, perl_id):
        job = await asyncio.to_thread(webui.wait_job, job_id)
        assert job["result"] == "passed", job
    log = ours.log()
    assert f"job {our_id} developer session started" in log, log[-2000:]
    assert "Failed to post upload progress" not in log, log[-2000:]
