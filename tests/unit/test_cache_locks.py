"""The cross-process flock helpers: waiting never blocks the loop, a cancelled waiter never leaks."""

from __future__ import annotations

import asyncio
import time

from backend.cache import locks


async def test_waiter_gets_the_lock_when_released_and_loop_stays_free(tmp_path):
    path = tmp_path / "a.lock"
    held = locks.try_lock(path)
    assert held is not None and locks.try_lock(path) is None
    waiter = asyncio.create_task(locks.acquire(path))
    ticks = 0
    for _ in range(5):  # the loop keeps running while the waiter blocks in its thread
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 5 and not waiter.done()
    locks.release(held)
    fd = await asyncio.wait_for(waiter, 5)
    assert locks.is_locked(path)
    locks.release(fd)
    assert not locks.is_locked(path)


async def test_cancelled_waiter_does_not_keep_the_lock(tmp_path):
    path = tmp_path / "b.lock"
    held = locks.try_lock(path)
    waiter = asyncio.create_task(locks.acquire(path))
    await asyncio.sleep(0.05)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    locks.release(held)
    deadline = time.monotonic() + 5
    while locks.is_locked(path):  # the abandoned thread takes the lock and drops it at once
        assert time.monotonic() < deadline, "a cancelled waiter leaked the lock"
        await asyncio.sleep(0.01)


async def test_shared_locks_coexist_but_exclude_exclusive(tmp_path):
    path = tmp_path / "c.pin"
    one = locks.try_lock(path, shared=True)
    two = locks.try_lock(path, shared=True)
    assert one is not None and two is not None
    assert locks.try_lock(path) is None
    locks.release(one)
    locks.release(two)
    assert not locks.is_locked(path)
