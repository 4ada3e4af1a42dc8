"""Signals to the real `qaworker --no-ui` process at awkward moments; SIGKILL and a restart."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.faults.conftest import (
    SECRET,
    assert_healthy,
    assert_no_leftovers,
    job_settings,
    mock_web,
    process_pool,
    start_worker_process,
    stop_process,
    wait_registered,
)
from tests.helpers import free_instance

pytestmark = pytest.mark.faults

QUIT_REASON = "quit: worker has been stopped or restarted"
ASSET = "slow.qcow2"


def in_pool_or_uploaded(web, job_id: int, pool: Path, name: str) -> bool:
    return (name in web.jobs[job_id].uploaded_files() or (pool / name).exists()
            or (pool / ".preserved" / str(job_id) / name).exists())


@pytest.mark.parametrize("phase", ["setup", "run", "final-upload"])
async def test_sigterm_at_every_phase(tmp_path, phase):
    instance = free_instance()
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", ASSET, size=1024 * 1024)
        extra = f"CACHEDIRECTORY = {tmp_path / 'cache'}\n" if phase == "setup" else ""
        settings = job_settings(SIM_MODULE_SECONDS="0.3" if phase == "final-upload" else "5")
        if phase == "setup":
            web.faults.delay(r"^/assets/", 8.0, times=None)
            settings["HDD_1"] = ASSET
        if phase == "final-upload":
            web.faults.delay(r"/artefact$", 3.0, times=None)
        proc = await start_worker_process(tmp_path, web.url, instance, extra)
        try:
            await wait_registered(web, timeout=30)
            job_id = web.schedule_job(settings)
            wanted = {"setup": ("setup",), "run": ("running",), "final-upload": ("uploading",)}[phase]
            await web.wait_for(lambda: web.jobs[job_id].state in wanted, 30)
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            await stop_process(proc)
        web.faults.clear()
        job = web.jobs[job_id]
        assert job.finished, job.state  # never left stuck in setup/running/uploading
        # also in the final upload: the uploads are abandoned (files stay in the pool), the job is
        # duplicated and ends with the quit reason rather than holding the worker for minutes
        assert (job.result, job.reason) == ("incomplete", QUIT_REASON)
        assert job.duplicated_as is not None
        pool = process_pool(tmp_path, instance)
        if phase != "setup":
            assert in_pool_or_uploaded(web, job_id, pool, "autoinst-log.txt")
        await assert_no_leftovers(proc.pid)
        assert SECRET not in (tmp_path / "worker.log").read_text()
        # the next start of the worker serves again
        proc = await start_worker_process(tmp_path, web.url, instance, extra)
        try:
            await assert_healthy(web, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
            await stop_process(proc)


async def test_sighup_with_a_queued_sequence_finishes_it_all(tmp_path):
    instance = free_instance()
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, instance)
        try:
            await wait_registered(web, timeout=30)
            ids = web.schedule_chain([job_settings(SIM_MODULE_SECONDS="1") for _ in range(3)])
            await web.wait_for(lambda: web.jobs[ids[0]].state == "running", 30)
            proc.send_signal(signal.SIGHUP)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            await stop_process(proc)
        assert [web.jobs[i].result for i in ids] == ["passed"] * 3
        await assert_no_leftovers(proc.pid)


async def test_sigkill_and_restart_reports_the_job_its_monitor_saw_finish(tmp_path):
    # live restore (issue 11): the job ran on under its monitor, ended while no worker was there,
    # and the next worker on the slot reports its real result instead of leaving it abandoned
    instance = free_instance()
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, instance)
        try:
            await wait_registered(web, timeout=30)
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login", SIM_MODULE_SECONDS="2"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            await stop_process(proc)
        # the orphaned simulator finishes on its own; nothing may outlive it for long
        await assert_no_leftovers(proc.pid, timeout=20)
        second = await start_worker_process(tmp_path, web.url, instance)
        try:
            job = await web.wait_job_done(job_id, 30)
            assert (job.result, job.reason) == ("passed", None), job.reason
            assert job.duplicated_as is None  # the web UI did not give it up and clone it
            await assert_healthy(web, second.pid)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
            await stop_process(second)
