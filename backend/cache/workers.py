"""``CACHEWORKERS``: at most N asset downloads and test syncs at once on the whole host.

Upstream's cache service runs N Minion workers (``-j <CACHEWORKERS>``) for every worker process of the
host. Here each cache transfer takes one of N flock'ed slot files under ``<cache>/locks/cacheworkers/``:
the kernel keeps the count across qaworker processes (and ``AssetCache`` objects), and a process gives
its slots back by dying. Within a process a semaphore queues the waiters first, so only N of them ever
touch the lock files; when other processes hold every slot, one waiter blocks on one slot file in a
thread (``locks.acquire``): woken by the kernel, no polling (a slot freed meanwhile by a third process is
only seen by the next transfer that asks: rare, and never more than N at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from backend.cache import locks


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """What ``/influxdb/minion`` reports as Minion jobs and workers."""

    active: int  # transfers running in this process
    downloads: int  # of them asset downloads (the rest: test syncs)
    queued: int  # transfers waiting for a slot
    failed: int  # transfers that ended with an error since start
    limit: int  # CACHEWORKERS
    download_rate: int | None = None  # bytes/s of the last large download (OPENQA_METRICS_DOWNLOAD_SIZE)


class CacheWorkers:
    def __init__(self, lock_dir: Callable[[], Path], limit: int = 5, *,
                 on_change: Callable[[QueueCounts], None] = lambda _c: None) -> None:
        self.limit = max(1, limit)
        self._lock_dir = lock_dir  # the cache's real path is only known once it is opened
        self._local = asyncio.Semaphore(self.limit)
        self._on_change = on_change
        self._next = itertools.count()
        self.active = self.downloads = self.queued = self.failed = 0
        self.download_rate: int | None = None

    def counts(self) -> QueueCounts:
        return QueueCounts(self.active, self.downloads, self.queued, self.failed, self.limit, self.download_rate)

    def _changed(self) -> None:
        self._on_change(self.counts())

    def slot_files(self) -> list[Path]:
        directory = self._lock_dir() / "cacheworkers"
        return [directory / f"{index}.lock" for index in range(self.limit)]

    def _try_any(self) -> int | None:
        """A free slot's fd, or None when every slot is held (blocking file work: run in a thread)."""
        for path in self.slot_files():
            fd = locks.try_lock(path)
            if fd is not None:
                return fd
        return None

    async def _take(self) -> int:
        attempt = asyncio.ensure_future(asyncio.to_thread(self._try_any))
        try:
            fd = await asyncio.shield(attempt)
        except asyncio.CancelledError:  # the thread may still take a slot: give it back then
            attempt.add_done_callback(lambda t: t.cancelled() or t.exception() or locks.release(t.result()))
            raise
        if fd is not None:
            return fd
        files = self.slot_files()  # all held by other processes: wait for one of them
        return await locks.acquire(files[next(self._next) % len(files)])

    @contextlib.asynccontextmanager
    async def slot(self, *, download: bool = False) -> AsyncIterator[None]:
        """Hold one of the host's CACHEWORKERS slots; an exception inside counts as a failed transfer."""
        self.queued += 1
        self._changed()
        waiting = True
        try:
            async with self._local:
                fd = await self._take()
                waiting = False
                self.queued -= 1
                self.active += 1
                self.downloads += download
                self._changed()
                try:
                    yield
                except Exception:
                    self.failed += 1
                    raise
                finally:
                    locks.release(fd)
                    self.active -= 1
                    self.downloads -= download
                    self._changed()
        finally:
            if waiting:  # cancelled (or failed) before a slot was free
                self.queued -= 1
                self._changed()

    def record_download(self, size: int, rate: float, min_size: int) -> None:
        """Upstream only keeps the rate of downloads bigger than OPENQA_METRICS_DOWNLOAD_SIZE."""
        if size > min_size:
            self.download_rate = int(rate)
            self._changed()
