"""Issue 12 row 12: the rsync and test-sync environment variables are read and acted on (real worker
process; a fake ``rsync`` on PATH that fails with exit 23, "partial transfer", which rsync retries)."""

from __future__ import annotations

from tests.fakebin import fakebin  # noqa: F401 (fixture)
from tests.helpers import free_instance
from tests.integration.harness import end_worker_process, job_settings, mock_web, start_worker_process, wait_registered


async def test_rsync_timeout_retries_period_and_sync_attempts_come_from_the_environment(
        tmp_path, fakebin, monkeypatch):  # noqa: F811
    stamps = tmp_path / "rsync-times"
    fakebin.add("rsync", f"date +%s.%N >> {stamps}\necho 'rsync: connection unexpectedly closed' >&2\nexit 23\n")
    for variable, value in {"OPENQA_RSYNC_TIMEOUT": "7", "OPENQA_RSYNC_RETRIES": "2",
                            "OPENQA_RSYNC_RETRY_PERIOD": "1.5", "OPENQA_CACHE_SERVICE_TEST_SYNC_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(variable, value)
    async with mock_web(tmp_path) as web:
        extra = f"CACHEDIRECTORY = {tmp_path / 'cache'}\n[{web.url}]\nTESTPOOLSERVER = rsync://127.0.0.1/tests\n"
        proc = await start_worker_process(tmp_path, web.url, free_instance(), extra=extra)
        try:
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 60)
        finally:
            await end_worker_process(proc)
    assert job.result == "incomplete"
    assert "Failed to rsync tests: exit code 23" in job.reason
    calls = fakebin.calls("rsync")
    assert len(calls) == 4  # 2 test-sync attempts x 2 rsync tries (defaults: 3 x 3)
    assert all(call[:3] == ["-avHP", "--timeout", "7"] for call in calls)  # default 1800
    times = [float(line) for line in stamps.read_text().split()]
    assert times[1] - times[0] >= 1.4  # OPENQA_RSYNC_RETRY_PERIOD (default 3 s) between tries of one sync
