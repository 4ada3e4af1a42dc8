"""AssetCache: the in-process replacement of the classic cache service (PROTOCOL.md §18).

Dedupe has two levels: in this process one shielded task per asset (all callers await it, a cancelled
caller never cancels it); across processes an flock per asset, so a second process waits and then
finds the file fresh (recently confirmed by the first) or asks with If-None-Match.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from backend.cache import locks
from backend.cache.download import DownloadFailed, Throttle, asset_path, download
from backend.cache.errors import ASSET_FAILURE, CACHE_FAILURE, CacheError
from backend.cache.layout import Layout
from backend.cache.limits import disk_space, exceeds_free_space, free_percentage
from backend.cache.rsync import rsync_argv, run_rsync
from backend.cache.store import CacheStore, Eviction
from backend.cache.workers import CacheWorkers, QueueCounts
from backend.events import CacheProgress, CacheQueue, CacheTotals, EventBus
from backend.tasks import cancel_and_wait
from backend.webui.client import ApiClient

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    used_bytes: int = 0
    assets: int = 0


class AssetCache:
    def __init__(self, cache_dir: Path, *, limit_bytes: int, min_free_percentage: float | None, bus: EventBus,
                 download_attempts: int = 5, retry_delay: float = 5.0, rsync: str = "rsync",
                 rsync_tries: int = 3, rsync_retry_delay: float = 3.0, rsync_timeout: int = 1800,
                 fresh_seconds: float = 60.0, workers: int = 5, metrics_download_size: int = 262_144_000) -> None:
        self.cache_dir = Path(cache_dir)
        self.limit_bytes = limit_bytes
        self.min_free_percentage = min_free_percentage
        self.bus = bus
        self.download_attempts = max(1, download_attempts)
        self.retry_delay = retry_delay
        self.rsync = rsync
        self.rsync_tries = max(1, rsync_tries)
        self.rsync_retry_delay = rsync_retry_delay
        self.rsync_timeout = rsync_timeout
        self.fresh_seconds = fresh_seconds  # a file another process confirmed this recently is used as is
        self.stats = CacheStats()
        self.layout = Layout(Path(os.path.abspath(self.cache_dir)))  # open() resolves it (realpath) off the loop
        self._store: CacheStore | None = None
        self._inflight: dict[str, asyncio.Task[Path]] = {}
        self._waiters: dict[str, set[int]] = {}
        self._pins: dict[int, set[str]] = {}  # job id -> filenames
        self._pin_fds: dict[str, int] = {}  # filename -> shared flock on its .pin file
        self.workers = CacheWorkers(lambda: self.layout.locks, workers, on_change=self._queue_changed)
        self.metrics_download_size = metrics_download_size

    # -- lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        self.layout = await asyncio.to_thread(self._make_dirs)
        store = CacheStore(self.layout)
        try:
            notes = await store.run(store.open)
            notes += await store.run(store.tidy)
        except BaseException:
            await store.aclose()
            raise
        self._store = store
        for note in notes:
            log.info("cache %s: %s", self.layout.root, note)
        await self._enforce(0, frozenset())
        await self._publish_totals()
        self._queue_changed(self.workers.counts())

    def _make_dirs(self) -> Layout:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        layout = Layout.of(self.cache_dir)
        layout.tmp.mkdir(exist_ok=True)
        layout.locks.mkdir(exist_ok=True)
        return layout

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        await cancel_and_wait(*tasks)
        for fd in self._pin_fds.values():
            locks.release(fd)
        self._pin_fds.clear()
        self._pins.clear()
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    @property
    def store(self) -> CacheStore:
        if self._store is None:
            raise CacheError(CACHE_FAILURE, "The asset cache is not open")
        return self._store

    async def _db(self, fn: Callable[..., T], *args: object) -> T:
        return await self.store.run(fn, *args)

    # -- assets --------------------------------------------------------------------------------------
    async def get_asset(self, client: ApiClient, host_dir: str, job_id: int, asset_type: str, name: str, *,
                        waiter: int | None = None) -> Path:
        """The cached file <cache>/<host_dir>/<basename>, downloaded if needed; pinned for the job.

        Raises CacheError ("asset failure" for HTTP 4xx, else "cache failure").
        """
        dest = self.layout.asset(host_dir, name)
        key = f"{host_dir}/{dest.name}"
        job = waiter if waiter is not None else job_id
        waiting = self._waiters.setdefault(key, set())
        waiting.add(job)
        task = self._inflight.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.create_task(self._fetch(client, key, dest, job_id, asset_type, name),
                                       name=f"cache {key}")
            self._inflight[key] = task
            task.add_done_callback(lambda _t, key=key: self._task_done(key))
        try:
            path = await asyncio.shield(task)
        finally:
            waiting.discard(job)
            if not waiting and key not in self._inflight:
                self._waiters.pop(key, None)
        if joined:
            self.stats.hits += 1  # the shared download served this caller too
            await self._publish_totals()
        await self.pin(path, job)
        return path

    def _task_done(self, key: str) -> None:
        self._inflight.pop(key, None)
        if not self._waiters.get(key):
            self._waiters.pop(key, None)

    async def _fetch(self, client: ApiClient, key: str, dest: Path, job_id: int, asset_type: str,
                     name: str) -> Path:
        failure = f"Failed to download {name} to {dest}"
        async with locks.locked(self.layout.download_lock(dest)):
            try:
                async with self.workers.slot(download=True):  # CACHEWORKERS
                    return await self._fetch_locked(client, key, dest, job_id, asset_type)
            except DownloadFailed as exc:
                category = ASSET_FAILURE if exc.is_client_error else CACHE_FAILURE
                await self._give_up(key, dest, str(exc))
                raise CacheError(category, failure, str(exc)) from exc
            except CacheError:
                raise
            except Exception as exc:  # disk full, database trouble: a clear failure, never a crash
                log.exception("caching %s failed", key)
                await self._give_up(key, dest, f"{type(exc).__name__}: {exc}")
                raise CacheError(CACHE_FAILURE, failure, str(exc)) from exc

    async def _give_up(self, key: str, dest: Path, detail: str) -> None:
        """Purge the asset (still under its lock): a stale copy must not be used (fault 21)."""
        log.error("Purging %s because of too many download errors: %s", dest, detail)
        self._progress(key, finished=True, error=detail)
        try:
            await self._db(self.store.purge, str(dest))
        except Exception:
            log.exception("could not purge %s", dest)
        await self._publish_totals()

    async def _fetch_locked(self, client: ApiClient, key: str, dest: Path, job_id: int,
                            asset_type: str) -> Path:
        filename = str(dest)
        row = await self._db(self.store.row, filename)
        exists = await asyncio.to_thread(dest.exists)
        if row is not None and exists and not row.pending and await self._recently_confirmed(filename):
            await self._db(self.store.touch, filename)
            self.stats.hits += 1
            log.info("%s was confirmed less than %.0f s ago, using it without asking the web UI again", dest,
                     self.fresh_seconds)
            self._progress(key, finished=True)
            await self._publish_totals()  # the dashboard's hit counter must not wait for the next download
            return dest
        etag = row.etag if row is not None and exists else None
        throttle = Throttle(lambda done, total, rate: self._progress(key, done, total, rate))

        async def make_room(needed: int) -> None:
            await self._enforce(needed, frozenset({filename}))

        fetched = await download(
            client, asset_path(job_id, asset_type, dest.name), dest, self.layout.tmp, etag=etag,
            attempts=self.download_attempts, retry_delay=self.retry_delay,
            before_attempt=lambda: self._db(self.store.mark_pending, filename), make_room=make_room,
            throttle=throttle)
        if fetched.modified:
            await self._db(self.store.complete, filename, fetched.etag, fetched.size)
            self.stats.misses += 1
            self.workers.record_download(fetched.size, throttle.rate, self.metrics_download_size)
            log.info("downloaded %s (%d bytes, %.1f MB/s)", dest, fetched.size, throttle.rate / 1e6)
        else:
            size = (await asyncio.to_thread(dest.stat)).st_size
            await self._db(self.store.confirm, filename, size)
            self.stats.hits += 1
            log.info('Content of "%s" has not changed, updating last use', dest)
        self._progress(key, throttle.done, throttle.total, throttle.rate, finished=True)
        await self._enforce(0, frozenset({filename}))
        await self._publish_totals()
        return dest

    async def _recently_confirmed(self, filename: str) -> bool:
        checked = await self._db(self.store.checked_at, filename)
        return checked is not None and time.time() - checked < self.fresh_seconds

    # -- pins ----------------------------------------------------------------------------------------
    async def pin(self, path: Path, job_id: int) -> None:
        """Keep ``path`` from eviction (in every process sharing the cache) until unpin_job(job_id)."""
        filename = await asyncio.to_thread(os.path.realpath, path)  # realpath, open, flock: off the loop
        self._pins.setdefault(job_id, set()).add(filename)
        if filename in self._pin_fds:
            return
        locking = asyncio.ensure_future(asyncio.to_thread(locks.try_lock, self.layout.pin_lock(Path(filename)),
                                                          shared=True))
        try:
            fd = await asyncio.shield(locking)
        except asyncio.CancelledError:  # the lock still arrives: drop it then
            locking.add_done_callback(lambda t: t.cancelled() or t.exception() or locks.release(t.result()))
            raise
        if fd is None:
            log.warning("could not pin %s for other processes (being evicted right now?)", filename)
        elif filename in self._pin_fds or not any(filename in files for files in self._pins.values()):
            locks.release(fd)  # pinned by another job, or unpinned, while we were locking
        else:
            self._pin_fds[filename] = fd

    def unpin_job(self, job_id: int) -> None:
        for filename in self._pins.pop(job_id, set()):
            if not any(filename in files for files in self._pins.values()):
                locks.release(self._pin_fds.pop(filename, None))

    def _pinned(self) -> frozenset[str]:
        return frozenset(f for files in self._pins.values() for f in files)

    # -- limits --------------------------------------------------------------------------------------
    async def _enforce(self, needed: int, preserve: frozenset[str]) -> list[Eviction]:
        evicted = await self._db(self.store.enforce, self.limit_bytes, self.min_free_percentage, needed,
                                 preserve, self._pinned())
        if evicted:
            self.stats.evictions += len(evicted)
            await self._publish_totals()
        return evicted

    async def _publish_totals(self) -> None:
        if self._store is None:
            return
        with contextlib.suppress(Exception):
            self.stats.used_bytes, self.stats.assets = await self._db(self.store.totals)
        self.bus.publish(CacheTotals(used_bytes=self.stats.used_bytes, limit_bytes=self.limit_bytes,
                                     assets=self.stats.assets, hits=self.stats.hits, misses=self.stats.misses,
                                     evictions=self.stats.evictions))

    def _queue_changed(self, counts: QueueCounts) -> None:
        self.bus.publish(CacheQueue(active=counts.active, downloads=counts.downloads, queued=counts.queued,
                                    failed=counts.failed, limit=counts.limit, download_rate=counts.download_rate))

    def _progress(self, key: str, bytes_done: int = 0, total: int = 0, rate: float = 0.0, *,
                  finished: bool = False, error: str = "") -> None:
        self.bus.publish(CacheProgress(key=key, bytes_done=bytes_done, bytes_total=total, rate=rate,
                                       waiting_jobs=tuple(sorted(self._waiters.get(key, ()))),
                                       done=finished, error=error))

    # -- tests ---------------------------------------------------------------------------------------
    async def sync_tests(self, host_dir: str, testpoolserver: str) -> Path:
        """rsync TESTPOOLSERVER into <cache>/<host_dir>/tests; one sync at a time per host."""
        key = f"{host_dir}/tests"
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._sync(key, host_dir, testpoolserver), name=f"cache {key}")
            self._inflight[key] = task
            task.add_done_callback(lambda _t, key=key: self._task_done(key))
        return await asyncio.shield(task)

    async def _sync(self, key: str, host_dir: str, source: str) -> Path:
        tests = self.layout.tests(host_dir)
        await asyncio.to_thread(tests.mkdir, parents=True, exist_ok=True)
        async with locks.locked(self.layout.tests_lock(host_dir)), self.workers.slot():  # CACHEWORKERS
            self._progress(key)
            result = await run_rsync(rsync_argv(self.rsync, source, tests, self.rsync_timeout),
                                     tries=self.rsync_tries, pause=self.rsync_retry_delay)
            log.debug("rsync output:\n%s", result.output)
            if result.exit_code != 0:  # raised inside: counts as a failed transfer
                message = f"Failed to rsync tests: exit code {result.exit_code}"
                self._progress(key, finished=True, error=message)
                tail = "\n".join(result.output.strip().splitlines()[-5:])
                raise CacheError(CACHE_FAILURE, message, tail)
        log.info("synced tests from %s to %s (%d tries)", source, tests, result.tries)
        self._progress(key, finished=True)
        return tests

    # -- health --------------------------------------------------------------------------------------
    async def health(self) -> str | None:
        """None when the cache is usable, else a one-line reason (re-evaluated on every call)."""
        reason = await asyncio.to_thread(self._check_dir)
        if reason:
            return reason
        if self.min_free_percentage is not None:
            reason = await self._check_free_space()
            if reason:
                return reason
        return await self._check_db()

    def _check_dir(self) -> str | None:
        path = self.cache_dir
        if not path.exists():
            return f"Cache directory {path} does not exist"
        if not path.is_dir():
            return f"Cache directory {path} is not a directory"
        try:
            (path / "tmp").mkdir(exist_ok=True)
            # A unique name: every slot of the process checks at the same time.
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path / "tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return f"Cache directory {path} is not writable: {exc.strerror or exc}"
        return None

    async def _check_free_space(self) -> str | None:
        minimum = self.min_free_percentage or 0.0
        space = await asyncio.to_thread(disk_space, self.cache_dir)
        if not exceeds_free_space(space, 0, minimum):
            return None
        if self._store is not None:
            with contextlib.suppress(Exception):
                await self._enforce(0, frozenset())  # make room first, then judge
                space = await asyncio.to_thread(disk_space, self.cache_dir)
        if exceeds_free_space(space, 0, minimum):
            return (f"Cache directory {self.cache_dir} has only {free_percentage(space):.1f}% free disk "
                    f"space (CACHE_MIN_FREE_PERCENTAGE is {minimum:g}%)")
        return None

    async def _check_db(self) -> str | None:
        try:
            if self._store is None or await self._db_replaced():
                await self._reopen()
            await self._db(self.store.ping)
        except Exception as exc:
            return f"Cache database {self.layout.db} is unusable: {exc}"
        return None

    async def _db_replaced(self) -> bool:
        """The db file was removed or swapped (cache dir recreated): reconnect to the one on disk."""
        def inode() -> int | None:
            try:
                return self.layout.db.stat().st_ino
            except OSError:
                return None
        return await asyncio.to_thread(inode) != self.store.db_inode

    async def _reopen(self) -> None:
        if self._store is not None:
            await self._store.aclose()
            self._store = None
        log.warning("re-opening the cache database %s", self.layout.db)
        await self.open()

