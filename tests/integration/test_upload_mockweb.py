"""The reporter against the project's mock web UI (backend/mockweb): status, images, a chunked asset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backend.config import HostConfig
from backend.events import EventBus
from backend.job.status import JobReporter, ReporterContext
from backend.mockweb.server import MockWebUI
from backend.webui.client import ApiClient, RetryPolicy
from tests.integration.upload_support import Module, PoolBuilder, md5_of

KEY = SECRET = "1234567890ABCDEF"


async def test_results_and_a_25_mb_asset_arrive_at_the_mock_web_ui(
        tmp_path: Path, image_pool: Any) -> None:
    ui = MockWebUI(tmp_path / "web", api_key=KEY, api_secret=SECRET)
    ui.scheduling_enabled = False
    await ui.start()
    host = HostConfig(configured=ui.url, base_url=ui.url, api_key=KEY, api_secret=SECRET)
    client = ApiClient(host, retry=RetryPolicy(attempts=3, delay=0.01, busy_delay=0.01), timeout=30)
    try:
        reply = await client.json("POST", "/api/v1/workers", params={
            "host": "uploadhost", "instance": 1, "cpu_arch": "x86_64", "mem_max": 4096,
            "worker_class": "qemu_x86_64", "websocket_api_version": 1, "isotovideo_interface_version": 59})
        worker_id = int(reply["id"])
        job = ui.state.add_job({"TEST": "upload", "DISTRI": "x"})
        ui.state.assign([job], ui.workers[worker_id], "tok")

        pool = tmp_path / "pool"
        builder = PoolBuilder(pool)
        mod = Module("boot", screenshots=2)
        builder.order([mod])
        shots = builder.result(mod)
        md5s = {md5_of(builder.results / n) for n in shots}
        builder.status("finished", "")
        (pool / "assets_public").mkdir()
        data = os.urandom(25 * 1024 * 1024)
        (pool / "assets_public" / "disk.qcow2").write_bytes(data)
        (pool / "autoinst-log.txt").write_text("log\n")
        stops: list[tuple[str, str]] = []
        reporter = JobReporter(ReporterContext(
            client=client, job_id=job.id, worker_id=worker_id, instance=1, pool_dir=pool,
            settings={"LOCAL_UPLOAD": "0", "QAWORKER_UPLOAD_DELAY": "0.01"},
            cmd_srv_url="http://localhost:20013/tok",
            worker_hostname="uploadhost", livehandler_base=ui.url, bus=EventBus(), image_pool=image_pool,
            request_stop=lambda r, d: stops.append((r, d))))

        reporter.start()
        await reporter.stop_periodic()
        await reporter.post_uploading()
        assert await reporter.final_uploads("done") is None
        await reporter.final_status()

        assert stops == [] and reporter.upload_error is None
        assert ui.asset_path("hdd", "disk.qcow2").read_bytes() == data
        images = {a.md5 for a in job.artefacts if a.kind == "image"}
        assert images == md5s
        assert {a.name for a in job.artefacts if a.kind == "thumb"} == set(shots)
        assert "autoinst-log.txt" in {a.name for a in job.artefacts}
        final = job.status_posts[-1][1]
        final = final.get("status", final)
        assert {d["screenshot"]["md5"] for d in final["result"]["boot"]["details"]} == md5s
    finally:
        await client.aclose()
        await ui.stop()
