"""Disk trouble: a full pool file system, a missing / read-only cache directory, a corrupt cache.sqlite."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import (
    assert_accounted,
    assert_healthy,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    wait_registered,
)

pytestmark = pytest.mark.faults


@contextlib.contextmanager
def mounted(*args: str, target: Path) -> Iterator[None]:
    """mount(8) for the test (we run as root); skipped where mounting is not permitted."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mount not permitted here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


async def test_pool_disk_full_is_a_clear_incomplete(tmp_path):
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        pool = config.slots[0].pool_dir
        with mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=pool):
            async with running_worker(config):
                await wait_registered(web)
                settings = job_settings(SIM_MODULES="boot", PUBLISH_HDD_1="big.qcow2",
                                        SIM_ASSET_SIZE=str(8 * 1024 * 1024))
                job = await web.wait_job_done(web.schedule_job(settings), 60)
                assert job.result == "incomplete"
                assert job.reason, "an incomplete job must say why"
                print(f"disk full → {job.result}: {job.reason}")
                assert "No space left on device" in job.reason or "died" in job.reason, job.reason
                assert_accounted(web, job.id, pool, {"vars.json"})
                await assert_healthy(web)


async def test_cache_dir_gone_breaks_then_recovers(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url], cache=True)):
        await wait_registered(web)
        wid = next(iter(web.workers))
        cache, away = tmp_path / "cache", tmp_path / "cache-away"
        cache.rename(away)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot"))
        await web.wait_for(lambda: (web.workers[wid].error or "").startswith("Cache directory"), 20)
        assert "does not exist" in web.workers[wid].error
        assert web.jobs[job_id].state in ("scheduled", "assigned")  # rejected while broken
        away.rename(cache)
        # recovers at the next re-check (BROKEN_RECHECK_INTERVAL 10 s + the mock's reject back-off)
        job = await web.wait_job_done(job_id, 30)
        assert job.result == "passed", job.reason
        assert web.workers[wid].error is None
        await assert_healthy(web)


async def test_read_only_cache_dir_breaks_then_recovers(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url], cache=True)):
        await wait_registered(web)
        wid = next(iter(web.workers))
        cache = tmp_path / "cache"
        with mounted("--bind", "-o", "ro", str(cache), target=cache):
            subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=False)  # noqa: ASYNC221
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot"))
            await web.wait_for(lambda: bool(web.workers[wid].error), 20)
            print(f"read-only cache → broken: {web.workers[wid].error}")
            # §7: availability is evaluated before accepting a job, so it must not start while broken
            assert web.jobs[job_id].state in ("scheduled", "assigned")
        job = await web.wait_job_done(job_id, 30)
        assert job.result == "passed", job.reason
        await assert_healthy(web)


async def test_corrupt_cache_sqlite_is_rebuilt_and_files_kept(tmp_path):
    async with mock_web(tmp_path) as web:
        web.add_asset("hdd", "disk.qcow2", size=1024 * 1024)
        config = make_config(tmp_path, [web.url], cache=True)
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot", HDD_1="disk.qcow2")), 60)
            assert job.result == "passed", job.reason
        cached = tmp_path / "cache" / "127.0.0.1" / "disk.qcow2"
        assert cached.exists()
        (tmp_path / "cache" / "cache.sqlite").write_bytes(b"this is not a database" * 100)
        async with running_worker(config):
            await wait_registered(web)
            job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot", HDD_1="disk.qcow2")), 60)
            assert job.result == "passed", job.reason
            await assert_healthy(web)
        assert cached.exists()
        assert list((tmp_path / "cache").glob("cache.sqlite.corrupt-*"))
        print(f"downloads of disk.qcow2: {web.download_count('hdd', 'disk.qcow2')}")
