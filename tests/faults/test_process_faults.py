"""isotovideo misbehaves: crash, hang, ignores SIGTERM, leaves orphans; stale and live qemu.pid files."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from tests.faults.conftest import (
    assert_accounted,
    assert_healthy,
    collected_loop_errors,
    job_settings,
    make_config,
    mock_web,
    pool_of,
    running_worker,
    serving,
    wait_registered,
)

pytestmark = pytest.mark.faults

QEMU_REASON = "A QEMU instance using the current pool directory is still running (PID: {pid})"


@pytest.mark.quick  # also in `make test`
async def test_isotovideo_crash(tmp_path):
    async with serving(tmp_path) as (web, worker):
        job = await web.wait_job_done(web.schedule_job(job_settings(SIM_CRASH="login")), 60)
        assert (job.result, job.reason) == ("incomplete", "backend died: QEMU exited unexpectedly")
        assert_accounted(web, job.id, pool_of(worker))
        await assert_healthy(web)


async def test_isotovideo_hang_hits_max_job_time(tmp_path):
    async with serving(tmp_path) as (web, worker):
        job = await web.wait_job_done(web.schedule_job(job_settings(SIM_HANG="login", MAX_JOB_TIME="3")), 60)
        assert (job.result, job.reason) == ("timeout_exceeded", "timeout: test execution exceeded MAX_JOB_TIME")
        assert_accounted(web, job.id, pool_of(worker))
        await assert_healthy(web)


async def test_isotovideo_ignoring_sigterm_is_killed_on_cancel(tmp_path):
    async with serving(tmp_path) as (web, worker):
        job_id = web.schedule_job(job_settings(SIM_IGNORE_SIGTERM="1", SIM_MODULE_SECONDS="10"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        await asyncio.sleep(1)
        web.cancel_job(job_id)
        job = await web.wait_job_done(job_id, 40)
        assert job.result == "user_cancelled"
        assert_accounted(web, job_id, pool_of(worker))
        await assert_healthy(web)


@pytest.mark.quick  # also in `make test`
async def test_double_forked_orphans_are_reaped(tmp_path):
    async with serving(tmp_path) as (web, _worker):
        job = await web.wait_job_done(web.schedule_job(job_settings(SIM_ORPHAN="1")), 60)
        assert (job.result, job.reason) == ("passed", None)
        await assert_healthy(web)  # includes: the sleeping grandchild in its own session is gone


@pytest.mark.parametrize("kind", ["dead", "live-non-qemu"])
async def test_stale_qemu_pid_does_not_break_the_worker(tmp_path, kind):
    other = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220
    try:
        if kind == "dead":
            other.kill()
            other.wait()
        config = make_config(tmp_path, ["http://placeholder"])
        pool = config.slots[0].pool_dir
        pool.mkdir(parents=True, exist_ok=True)
        (pool / "qemu.pid").write_text(f"{other.pid}\n")
        async with mock_web(tmp_path) as web:
            config = make_config(tmp_path, [web.url], instances=[config.slots[0].instance])
            async with running_worker(config):
                await wait_registered(web)
                wid = next(iter(web.workers))
                assert web.workers[wid].error is None
                await assert_healthy(web)
        if kind == "live-non-qemu":
            assert other.poll() is None  # the worker never touches a process that is not its own QEMU
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


async def test_live_qemu_breaks_the_worker_until_it_exits(tmp_path):
    fake = tmp_path / "bin" / "qemu-system-x86_64"
    fake.parent.mkdir()
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    qemu = subprocess.Popen([str(fake), "120"])  # noqa: ASYNC220
    try:
        async with mock_web(tmp_path) as web:
            config = make_config(tmp_path, [web.url])
            pool = config.slots[0].pool_dir
            pool.mkdir(parents=True, exist_ok=True)
            (pool / "qemu.pid").write_text(f"{qemu.pid}\n")
            async with running_worker(config):
                await wait_registered(web)
                wid = next(iter(web.workers))
                reason = QEMU_REASON.format(pid=qemu.pid)
                await web.wait_for(lambda: web.workers[wid].error == reason, 15)
                job_id = web.schedule_job(job_settings(SIM_MODULES="boot"))
                await asyncio.sleep(2)
                assert web.jobs[job_id].state in ("scheduled", "assigned")  # not run while QEMU lives
                qemu.kill()
                qemu.wait()
                job = await web.wait_job_done(job_id, 40)  # recovers on the next re-check (≤ 10 s)
                assert (job.result, job.reason) == ("passed", None)
                assert web.workers[wid].error is None
                await assert_healthy(web)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()


async def test_cancel_of_a_job_grabbed_right_after_the_previous_one(tmp_path, loop_errors):
    """Back to back: the second job arrives while the slot still cleans up after the first."""
    async with serving(tmp_path) as (web, _worker):
        first = web.schedule_job(job_settings(SIM_MODULES="boot"))
        second = web.schedule_job(job_settings(SIM_MODULES="boot,login,console,shutdown", SIM_MODULE_SECONDS="3"))
        await web.wait_for(lambda: web.jobs[second].state == "running", 60)
        await asyncio.sleep(1)
        web.cancel_job(second)
        job = await web.wait_job_done(second, 30)
        assert web.jobs[first].result == "passed"
        assert job.result == "user_cancelled", (job.result, job.reason)
        await assert_healthy(web)
    del _worker
    assert collected_loop_errors(loop_errors) == []  # no queue task died on the slot's shared state
