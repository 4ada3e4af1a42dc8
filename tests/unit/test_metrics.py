"""Metrics over real HTTP on 127.0.0.1 after feeding events through a real EventBus."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from backend import __version__
from backend import events as ev
from backend.events import EventBus, HostState, SlotState
from backend.metrics import LagProbe, Metrics, loop_lag_probe, serve_metrics
from tests.helpers import free_port
from tests.metrics_support import value

HOST = "http://127.0.0.1:9526"


async def scrape(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(url, timeout=5)


@pytest.fixture
async def served():
    metrics = Metrics()
    bus = EventBus()
    bus.add_listener(metrics.observe_event)
    server = await serve_metrics(metrics, "127.0.0.1", free_port())
    yield metrics, bus, server
    await server.close()


async def test_jobs_slots_connections_over_http(served):
    _metrics, bus, server = served
    now = time.time()
    bus.publish(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.CONNECTED, worker_id=7, ts=now))
    bus.publish(ev.ConnectionChanged(host=HOST, instance=2, state=HostState.FAILED, reason="refused"))
    bus.publish(ev.SlotStateChanged(instance=1, state=SlotState.RUNNING, job_id=42))
    bus.publish(ev.SlotStateChanged(instance=2, state=SlotState.BROKEN, reason="qemu.pid"))
    bus.publish(ev.JobAccepted(instance=1, job_id=42, name="a", host=HOST, max_job_time=7200, ts=now - 90))
    bus.publish(ev.JobFinished(instance=1, job_id=42, result="passed", ts=now))  # duration from accept
    bus.publish(ev.JobFinished(instance=1, job_id=43, result="passed", duration=30))
    bus.publish(ev.JobFinished(instance=2, job_id=44, result="incomplete", duration=4000))

    response = await scrape(server.url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert value(text, "qaworker_jobs_total", result="passed") == 2
    assert value(text, "qaworker_jobs_total", result="incomplete") == 1
    assert value(text, "qaworker_job_duration_seconds_count") == 3
    assert value(text, "qaworker_job_duration_seconds_sum") == pytest.approx(4120, abs=1)
    assert value(text, "qaworker_job_duration_seconds_bucket", le="60.0") == 1
    assert value(text, "qaworker_job_duration_seconds_bucket", le="300.0") == 2
    assert value(text, "qaworker_slot_state", instance="1", state="running") == 1
    assert value(text, "qaworker_slot_state", instance="1", state="idle") == 0
    assert value(text, "qaworker_slot_state", instance="2", state="broken") == 1
    assert value(text, "qaworker_websocket_connected", host=HOST, instance="1") == 1
    assert value(text, "qaworker_websocket_connected", host=HOST, instance="2") == 0
    assert value(text, "qaworker_last_contact_timestamp_seconds", host=HOST) == pytest.approx(now)
    assert value(text, "qaworker_build_info", version=__version__) == 1
    assert value(text, "qaworker_jobs_running") == 0

    # A state change moves the 1 to the new state.
    bus.publish(ev.SlotStateChanged(instance=1, state=SlotState.IDLE))
    text = (await scrape(server.url)).text
    assert value(text, "qaworker_slot_state", instance="1", state="running") == 0
    assert value(text, "qaworker_slot_state", instance="1", state="idle") == 1


async def test_api_requests_retries_and_contact(served):
    metrics, _bus, server = served
    observer = metrics.request_observer(HOST)
    before = time.time()
    observer("POST", "/api/v1/jobs/:id/status", 200, False)
    observer("POST", "/api/v1/jobs/:id/status", 200, False)
    observer("POST", "/api/v1/jobs/:id/status", 503, True)
    metrics.observe_request("POST", "/api/v1/workers", None, True)  # connection error
    text = (await scrape(server.url)).text
    assert value(text, "qaworker_api_requests_total", method="POST", endpoint="/api/v1/jobs/:id/status",
                 status="200") == 2
    assert value(text, "qaworker_api_requests_total", method="POST", endpoint="/api/v1/jobs/:id/status",
                 status="503") == 1
    assert value(text, "qaworker_api_requests_total", method="POST", endpoint="/api/v1/workers",
                 status="error") == 1
    assert value(text, "qaworker_api_retries_total", endpoint="/api/v1/jobs/:id/status") == 1
    assert value(text, "qaworker_api_retries_total", endpoint="/api/v1/workers") == 1
    assert value(text, "qaworker_last_contact_timestamp_seconds", host=HOST) >= before


async def test_uploads_and_cache_totals(served):
    _metrics, bus, server = served
    for done in (100, 400, 1000):
        bus.publish(ev.UploadProgress(instance=1, job_id=5, bytes_done=done, bytes_total=1000))
    bus.publish(ev.UploadProgress(instance=1, job_id=5, bytes_done=1000, last_error="502 response: busy"))
    bus.publish(ev.UploadProgress(instance=1, job_id=5, bytes_done=1000, last_error="502 response: busy"))
    bus.publish(ev.UploadProgress(instance=1, job_id=5, bytes_done=200))  # a new round restarts the count
    bus.publish(ev.CacheTotals(used_bytes=5 << 30, limit_bytes=50 << 30, hits=3, misses=1, evictions=0))
    bus.publish(ev.CacheTotals(used_bytes=6 << 30, limit_bytes=50 << 30, hits=5, misses=2, evictions=1))
    bus.publish(ev.CacheTotals(used_bytes=6 << 30, limit_bytes=50 << 30, hits=2, misses=2, evictions=1))
    text = (await scrape(server.url)).text
    assert value(text, "qaworker_upload_bytes_total") == 1200
    assert value(text, "qaworker_upload_failures_total") == 1  # the same error reported twice
    assert value(text, "qaworker_cache_bytes") == 6 << 30
    assert value(text, "qaworker_cache_limit_bytes") == 50 << 30
    assert value(text, "qaworker_cache_hits_total") == 7  # 5, then a reset to 2
    assert value(text, "qaworker_cache_misses_total") == 2
    assert value(text, "qaworker_cache_evictions_total") == 1


async def test_registries_are_independent_and_server_closes():
    a, b = Metrics(), Metrics()  # no "Duplicated timeseries" with a global registry
    a.observe_event(ev.JobFinished(instance=1, job_id=1, result="failed", duration=1))
    assert value(a.render().decode(), "qaworker_jobs_total", result="failed") == 1
    assert value(b.render().decode(), "qaworker_jobs_total", result="failed") is None
    server = await serve_metrics(b, "127.0.0.1", 0)
    assert server.port > 0
    assert (await scrape(server.url)).status_code == 200
    assert (await scrape(server.url.replace("/metrics", "/other"))).status_code == 404
    await server.close()
    with pytest.raises(httpx.ConnectError):
        await scrape(server.url)


async def test_lag_probe_sees_a_blocked_loop():
    metrics = Metrics()
    probe = LagProbe(interval=0.02, metrics=metrics)
    probe.start()
    await asyncio.sleep(0.1)
    time.sleep(0.15)  # noqa: ASYNC251 - block the loop on purpose, like a slow synchronous call
    await asyncio.sleep(0.1)
    await probe.stop()
    assert len(probe.samples) >= 4
    assert probe.max >= 0.12
    assert probe.percentile(50) < 0.05  # most wake-ups were on time
    assert probe.percentile(100) == probe.max
    text = metrics.render().decode()
    assert value(text, "qaworker_event_loop_lag_observed_seconds_count") == len(probe.samples)
    assert value(text, "qaworker_event_loop_lag_observed_seconds_bucket", le="0.1") <= len(probe.samples) - 1
    assert value(text, "qaworker_event_loop_lag_seconds") is not None


async def test_loop_lag_probe_function_feeds_metrics():
    metrics = Metrics()
    task = asyncio.create_task(loop_lag_probe(metrics, interval=0.01))
    await asyncio.sleep(0.08)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert value(metrics.render().decode(), "qaworker_event_loop_lag_observed_seconds_count") >= 3
