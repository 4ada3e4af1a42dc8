"""Issue 12 row 5: an idle slot powers its IPMI SUT off every IPMI_AUTOSHUTDOWN_INTERVAL, never while a job
runs, and IPMI_PASSWORD never appears in the worker's log. No BMC here: a fake ``ipmitool`` on PATH."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from tests.fakebin import FakeBin, fakebin  # noqa: F401 (fixture)
from tests.helpers import free_instance
from tests.integration.harness import end_worker_process, job_settings, mock_web, start_worker_process, wait_registered

PASSWORD = "Ipmi-Pass-7731"
IPMI = (f"IPMI_HOSTNAME = bmc.example.test\nIPMI_USER = admin\nIPMI_PASSWORD = {PASSWORD}\n"
        "IPMI_OPTIONS = -I lanplus -C 17\nIPMI_AUTOSHUTDOWN_INTERVAL = 0.4\n")


async def wait_calls(fake: FakeBin, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(fake.calls("ipmitool")) < count:
        assert time.monotonic() < deadline, f"ipmitool ran {len(fake.calls('ipmitool'))} times, expected {count}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def worker(tmp: Path, url: str, extra: str):
    proc = await start_worker_process(tmp, url, free_instance(), extra=extra, args=("--verbose",))
    try:
        yield proc
    finally:
        await end_worker_process(proc)


async def test_idle_slot_powers_the_sut_off_but_not_while_a_job_runs(tmp_path, fakebin):  # noqa: F811
    # the BMC refuses and echoes the password back: the worker must mask it in what it logs
    fakebin.add("ipmitool", f'echo "Error: Unable to establish IPMI v2 session (password {PASSWORD})" >&2\n'
                            "exit 1\n")
    async with mock_web(tmp_path) as web, worker(tmp_path, web.url, IPMI):
        await wait_registered(web)
        await wait_calls(fakebin, 2)
        assert fakebin.calls("ipmitool")[0] == ["-I", "lanplus", "-C", "17", "-H", "bmc.example.test", "-U", "admin",
                                                "-P", PASSWORD, "chassis", "power", "off"]
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,shutdown", SIM_MODULE_SECONDS="1"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        during = len(fakebin.calls("ipmitool"))
        job = await web.wait_job_done(job_id, 60)
        assert job.result == "passed", job.reason
        # at most one command was already under way when the job started (4+ intervals went by)
        assert len(fakebin.calls("ipmitool")) <= during + 1
        after = len(fakebin.calls("ipmitool"))
        await wait_calls(fakebin, after + 2)  # idle again: powering off again
    log = (tmp_path / "worker.log").read_text()
    assert PASSWORD not in log
    assert "-P [masked] chassis power off: Error: Unable to establish IPMI v2 session (password [masked])" in log


async def test_interval_zero_or_missing_credentials_never_run_ipmitool(tmp_path, fakebin):  # noqa: F811
    fakebin.add("ipmitool", "exit 0\n")
    async with mock_web(tmp_path) as web:
        for extra in (IPMI.replace("INTERVAL = 0.4", "INTERVAL = 0"),
                      IPMI.replace(f"IPMI_PASSWORD = {PASSWORD}\n", "")):
            async with worker(tmp_path, web.url, extra):
                await wait_registered(web)
                job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 30)
                assert job.result == "passed", job.reason
                await asyncio.sleep(1.0)  # 2.5 intervals of an enabled power-off
            assert fakebin.calls("ipmitool") == []
