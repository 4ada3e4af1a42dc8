"""Issue 12 row 13: ``GET /influxdb/minion`` on the metrics server of the real worker process, in the line
protocol the classic cache service speaks, with the figures of the host's shared cache."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from tests.helpers import free_instance, free_port
from tests.integration.harness import end_worker_process, job_settings, mock_web, start_worker_process, wait_registered


async def scrape(client: httpx.AsyncClient, port: int) -> str:
    response = await client.get(f"http://127.0.0.1:{port}/influxdb/minion", timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


async def wait_text(client: httpx.AsyncClient, port: int, wanted: str, timeout: float = 30) -> str:
    text = ""
    for _ in range(int(timeout / 0.1)):
        with contextlib.suppress(httpx.TransportError):
            text = await scrape(client, port)
            if wanted in text:
                return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{wanted!r} never appeared in:\n{text}")


async def test_influxdb_minion_reports_active_queued_failed_and_cache_size(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENQA_METRICS_DOWNLOAD_SIZE", "250000")  # a.qcow2 counts for the rate, b.qcow2 not
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = await asyncio.to_thread(httpx.AsyncClient, trust_env=False)  # an SSL context: not on the loop
    async with mock_web(tmp_path) as web, client:
        web.add_asset("hdd", "a.qcow2", size=300_000)
        web.add_asset("hdd", "b.qcow2", size=200_000)
        web.faults.delay(r"a\.qcow2", 5.0)  # the first download holds the host's only CACHEWORKERS slot
        extra = f"CACHEDIRECTORY = {tmp_path / 'cache'}\nCACHEWORKERS = 1\n"
        proc = await start_worker_process(tmp_path, web.url, [free_instance(), free_instance()], extra=extra,
                                          args=("--metrics-port", str(port)))
        try:
            await wait_registered(web, count=2)
            text = await wait_text(client, port, "openqa_minion_workers")
            assert f"openqa_minion_jobs,url={url} active=0i,delayed=0i,failed=0i,inactive=0i\n" in text
            assert f"openqa_minion_workers,url={url} active=0i,inactive=1i,registered=1i\n" in text
            first = web.schedule_job(job_settings(SIM_MODULES="boot", HDD_1="a.qcow2"))
            await wait_text(client, port, f"openqa_download_count,url={url} count=1i\n")
            second = web.schedule_job(job_settings(SIM_MODULES="boot", HDD_1="b.qcow2"))
            text = await wait_text(client, port, "failed=0i,inactive=1i\n")  # the second one waits for the slot
            assert f"openqa_minion_jobs,url={url} active=1i,delayed=0i,failed=0i,inactive=1i\n" in text
            assert f"openqa_minion_workers,url={url} active=1i,inactive=0i,registered=1i\n" in text
            for job_id in (first, second):
                job = await web.wait_job_done(job_id, 60)
                assert job.result == "passed", job.reason
            missing = web.schedule_job(job_settings(SIM_MODULES="boot", HDD_1="missing.qcow2"))
            assert (await web.wait_job_done(missing, 60)).result == "incomplete"
            text = await wait_text(client, port, "failed=1i")
            assert f"openqa_minion_jobs,url={url} active=0i,delayed=0i,failed=1i,inactive=0i\n" in text
            assert f"openqa_download_count,url={url} count=0i\n" in text
            assert f"qaworker_cache,url={url} assets=2i,bytes=500000i," in text
            rate = [line for line in text.splitlines() if line.startswith(f"openqa_download_rate,url={url} bytes=")]
            assert len(rate) == 1 and int(rate[0].rsplit("=", 1)[1].rstrip("i")) > 0
            metrics = await client.get(f"{url}/metrics", timeout=5)
            assert "qaworker_cache_bytes 500000.0" in metrics.text  # next to the Prometheus endpoint
        finally:
            await end_worker_process(proc)
