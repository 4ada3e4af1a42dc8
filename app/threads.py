"""The event loop's default thread pool, with every thread started before the loop runs.

``asyncio.to_thread`` starts a new pool thread when none is idle, on the loop's thread, and
``Thread.start()`` waits until the new thread runs: tens of milliseconds on a busy machine (CI saw
54 ms). A pool whose threads all exist already never does that while the loop runs.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def default_size() -> int:
    return min(32, (os.cpu_count() or 1) + 4)  # what asyncio's own default executor allows


def started_pool(workers: int | None = None) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads, all running and idle when this returns."""
    workers = workers or default_size()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asyncio")
    gate = threading.Barrier(workers + 1)
    for _ in range(workers):  # each task blocks at the gate, so each submit has to start a thread
        pool.submit(gate.wait)
    gate.wait()
    return pool


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` with a started default pool (asyncio.run shuts it down at the end)."""
    pool = started_pool()

    async def with_pool() -> T:
        asyncio.get_running_loop().set_default_executor(pool)
        return await main

    try:
        return asyncio.run(with_pool())
    finally:
        pool.shutdown(wait=False)
