"""LOCK_NAME / LOCK_LIMIT / LOCK_EXPIRATION (issue 12 row 2): a host-wide throttle of job starts in
``<CACHEDIRECTORY>/worker-locks.sqlite`` (Minion's ``minion_locks`` table), real sqlite, real worker,
real mock web UI. The test itself holds places like another worker process on the host would."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

from backend.slot.joblock import LOCK_FILE, LockStore
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered

LOCK = {"LOCK_NAME": "bigmachines", "LOCK_LIMIT": "1", "LOCK_EXPIRATION": "30"}
FAST_RECHECK = {"OPENQA_WORKER_EPHEMERAL_RECHECK_INTERVAL": "0.5"}


def _rows(path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("select id, name, expires from minion_locks order by id").fetchall()


def _seconds_left(expires: str) -> float:
    when = datetime.strptime(expires, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


async def test_lock_store_has_minions_semantics(tmp_path):
    store = LockStore(tmp_path / LOCK_FILE)
    first = await asyncio.to_thread(store.acquire, "x", 3600, 2)
    second = await asyncio.to_thread(store.acquire, "x", 3600, 2)
    assert first is not None and second is not None
    assert await asyncio.to_thread(store.acquire, "x", 3600, 2) is None  # limit reached
    assert await asyncio.to_thread(store.acquire, "other", 3600, 2) is not None  # names are independent
    await asyncio.to_thread(store.release, first)
    assert await asyncio.to_thread(store.acquire, "x", 3600, 2) is not None
    # an expired row does not count (a crashed holder frees its place by itself)
    with sqlite3.connect(tmp_path / LOCK_FILE) as db:
        db.execute("update minion_locks set expires = datetime('now', '-1 seconds') where name = 'x'")
    assert await asyncio.to_thread(store.holders, "x") == 0
    assert await asyncio.to_thread(store.acquire, "x", 3600, 1) is not None
    assert [name for _id, name, _exp in _rows(tmp_path / LOCK_FILE)].count("x") == 1  # expired rows deleted


async def test_job_is_rejected_while_the_lock_is_full_and_runs_once_it_is_free(tmp_path):
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings=LOCK, cache=True, env=FAST_RECHECK)
        lock_path = tmp_path / "cache" / LOCK_FILE
        other = LockStore(lock_path)  # another worker on this host holds the only place
        held = await asyncio.to_thread(other.acquire, "bigmachines", 3600, 1)
        assert held is not None
        async with running_worker(config):
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="1"))
            worker = next(iter(web.workers.values()))
            await web.wait_for(lambda: worker.rejections, 30)
            assert worker.rejections[0]["reason"] == "Limited by configured lock 'bigmachines'"
            assert worker.rejections[0]["job_ids"] == [job_id]
            await web.wait_for(lambda: worker.error == "Limited by configured lock 'bigmachines'", 10)
            assert web.jobs[job_id].state == "scheduled"
            await asyncio.to_thread(other.release, held)  # the other worker's job started long ago
            # the re-check finds the free place, the slot is free again and takes the job
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            rows = _rows(lock_path)
            assert len(rows) == 1 and rows[0][1] == "bigmachines"
            await web.wait_for(lambda: _seconds_left(_rows(lock_path)[0][2]) <= 31, 10)  # cut to LOCK_EXPIRATION
            job = await web.wait_job_done(job_id, 60)
            assert job.result == "passed"
            await web.wait_for(lambda: _rows(lock_path) == [], 10)  # released at the job's end


async def test_two_slots_share_one_place(tmp_path):
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings=LOCK, cache=True, env=FAST_RECHECK)
        second = make_config(tmp_path, [web.url], settings=LOCK).slots[0]
        config.slots.append(second)
        async with running_worker(config):
            await wait_registered(web, count=2)
            ids = [web.schedule_job(job_settings(SIM_MODULE_SECONDS="1")) for _ in range(2)]
            for job_id in ids:
                assert (await web.wait_job_done(job_id, 90)).result == "passed"
        rejections = [r for w in web.workers.values() for r in w.rejections]
        assert rejections and all(r["reason"] == "Limited by configured lock 'bigmachines'" for r in rejections)
        first, later = sorted(ids, key=lambda i: web.jobs[i].t_started)
        # the only place is given back at the first job's end: the second job cannot start before that
        assert web.jobs[later].t_started >= web.jobs[first].t_done
