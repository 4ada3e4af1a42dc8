"""SYNC_ASSETS_HOOK and PACKAGES_CMD from workers.ini (issue 12 rows 3 and 6): real shell commands, real
mock web UI, real simulator."""

from __future__ import annotations

import asyncio

import psutil

from backend.job.hooks import write_worker_packages
from tests.integration.harness import (
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    wait_registered,
)


async def test_sync_assets_hook_runs_in_the_pool_before_the_assets(tmp_path):
    # the hook creates the asset the job needs: it must run before the assets are looked up
    share = tmp_path / "openqa/share/factory/hdd"
    hook = f"pwd > hook-cwd.txt && mkdir -p {share} && echo disk > {share}/made-by-hook.qcow2"
    config = None
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"SYNC_ASSETS_HOOK": hook})
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(HDD_1="made-by-hook.qcow2")), 60)
    assert job.result == "passed", job.reason
    pool = config.slots[0].pool_dir
    assert (pool / "hook-cwd.txt").read_text().strip() == str(pool)
    assert (pool / "made-by-hook.qcow2").read_text() == "disk\n"
    log = (job.results_dir / "worker-log.txt").read_text()
    assert "Running SYNC_ASSETS_HOOK" in log


async def test_failing_sync_assets_hook_is_a_setup_failure(tmp_path):
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"SYNC_ASSETS_HOOK": "echo no mirror >&2; exit 3"})
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings()), 60)
            assert job.result == "incomplete"
            assert job.reason == "setup failure: SYNC_ASSETS_HOOK exited with 3: no mirror"
            # the slot keeps serving: the next job without the problem would pass (here: same hook, same end)
            second = await web.wait_job_done(web.schedule_job(job_settings()), 60)
            assert second.reason == job.reason


async def test_hanging_sync_assets_hook_is_cut_by_max_setup_time(tmp_path):
    marker = f"upa-hook-{tmp_path.name}"
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"SYNC_ASSETS_HOOK": f"sleep 300 # {marker}"})
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(MAX_SETUP_TIME="2")), 60)
            assert job.result == "timeout_exceeded"
            assert job.reason == "timeout: setup exceeded MAX_SETUP_TIME"
    await asyncio.sleep(0.2)
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not left, "the hook's shell survived the setup timeout"
    await assert_no_leftovers()


async def test_packages_cmd_output_is_uploaded_with_every_job(tmp_path):
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"PACKAGES_CMD": "echo os-autoinst-4.6; echo qemu-8.0"})
        async with running_worker(config):
            await wait_registered(web)
            first = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 60)
            second = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 60)
    for job in (first, second):
        assert job.result == "passed"
        assert (job.results_dir / "worker_packages.txt").read_text() == "os-autoinst-4.6\nqemu-8.0\n"


async def test_a_start_without_packages_cmd_uploads_no_stale_list(tmp_path):
    """The admin drops PACKAGES_CMD: the list the last start wrote into the pool must not go out with
    the next jobs as if it were current."""
    async with mock_web(tmp_path) as web:
        with_cmd = make_config(tmp_path, [web.url], settings={"PACKAGES_CMD": "echo qemu-8.0"})
        async with running_worker(with_cmd):
            await wait_registered(web)
            first = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 60)
        without = make_config(tmp_path, [web.url], instances=[with_cmd.slots[0].instance])  # the same pool
        async with running_worker(without):
            await wait_registered(web)
            second = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), 60)
    assert (first.results_dir / "worker_packages.txt").read_text() == "qemu-8.0\n"
    assert second.result == "passed"
    assert not (second.results_dir / "worker_packages.txt").exists()
    assert not (without.slots[0].pool_dir / "worker_packages.txt").exists()


async def test_packages_cmd_output_is_kept_whole(tmp_path):
    # a real package list is long: the file must hold all of it, not the first pipe read
    pool = tmp_path / "pool" / "1"
    assert await write_worker_packages("seq 1 50000", pool, 1)
    assert (pool / "worker_packages.txt").read_text() == "".join(f"{n}\n" for n in range(1, 50001))


async def test_failing_packages_cmd_keeps_its_output_and_the_slot(tmp_path):
    pool = tmp_path / "pool" / "1"
    assert not await write_worker_packages("echo partial; exit 2", pool, 1)
    assert (pool / "worker_packages.txt").read_text() == "partial\n"
