"""The host-wide throttle of job starts (``LOCK_NAME`` / ``LOCK_LIMIT`` / ``LOCK_EXPIRATION``, issue 12 row 2).

Upstream keeps a Minion lock in ``<CACHEDIRECTORY>/worker-locks.sqlite``; this module uses the very same
table (``minion_locks``: ``id``, ``name``, ``expires``, as Minion::Backend::SQLite creates it) with the
same semantics - expired rows are deleted first, then, inside an exclusive transaction, a new row is
only added while fewer than ``limit`` rows carry the name - so Perl workers and qaworker slots on one
host share one lock. A slot takes the lock for an hour when it is offered a job, cuts it to
``LOCK_EXPIRATION`` seconds once isotovideo runs, and deletes its row when the job is over. A slot that
gets no lock rejects the offer with ``Limited by configured lock '<name>'`` and reports itself
unavailable with that reason until a re-check (every ``OPENQA_WORKER_EPHEMERAL_RECHECK_INTERVAL`` s)
finds a free place. Every sqlite call runs in a thread: a busy lock file never stalls the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from backend.config.tuning import SlotTuning

log = logging.getLogger(__name__)

LOCK_FILE = "worker-locks.sqlite"
HOLD_UNTIL_STARTED = 3600  # seconds the lock is held between the offer and isotovideo's start
BUSY_TIMEOUT = 30.0  # seconds sqlite waits for another process's transaction on the file

_SCHEMA = (
    "create table if not exists minion_locks ("
    " id integer not null primary key autoincrement, name text not null, expires text not null)",
    "create index if not exists minion_locks_name_expires on minion_locks (name, expires)",
)


def limited_reason(name: str) -> str:
    return f"Limited by configured lock '{name}'"


class LockStore:
    """The ``minion_locks`` table of one sqlite file. Blocking: call the methods in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)  # explicit transactions
        for statement in _SCHEMA:
            db.execute(statement)
        return db

    def acquire(self, name: str, duration: float, limit: int) -> int | None:
        """Minion's ``lock``: the new row's id, or None when ``limit`` rows of ``name`` are not expired."""
        with contextlib.closing(self._connect()) as db:
            db.execute("delete from minion_locks where expires < datetime('now')")
            db.execute("begin exclusive")
            try:
                (count,) = db.execute("select count(*) from minion_locks where name = ?", (name,)).fetchone()
                if count >= limit:
                    db.execute("rollback")
                    return None
                cursor = db.execute("insert into minion_locks (name, expires) values (?, datetime('now', ? || "
                                    "' seconds'))", (name, f"{int(duration)}"))
                db.execute("commit")
                return cursor.lastrowid
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("rollback")
                raise

    def available(self, name: str, limit: int) -> bool:
        """Whether ``acquire`` would succeed now (nothing is taken)."""
        with contextlib.closing(self._connect()) as db:
            (count,) = db.execute("select count(*) from minion_locks where name = ? and expires >= datetime('now')",
                                  (name,)).fetchone()
            return count < limit

    def shorten(self, lock_id: int, seconds: float) -> None:
        """Let our row expire ``seconds`` from now (never later than it would have)."""
        with contextlib.closing(self._connect()) as db:
            db.execute("update minion_locks set expires = min(expires, datetime('now', ? || ' seconds')) where id = ?",
                       (f"{int(seconds)}", lock_id))

    def release(self, lock_id: int) -> None:
        with contextlib.closing(self._connect()) as db:
            db.execute("delete from minion_locks where id = ?", (lock_id,))

    def holders(self, name: str) -> int:
        """Unexpired rows of ``name`` (for logs and tests)."""
        with contextlib.closing(self._connect()) as db:
            (count,) = db.execute("select count(*) from minion_locks where name = ? and expires >= datetime('now')",
                                  (name,)).fetchone()
            return count


class StartThrottle:
    """One slot's use of the lock: take it for an offer, cut it when isotovideo runs, give it back."""

    def __init__(self, store: LockStore, name: str, *, limit: int, expiration: float, recheck_interval: float,
                 instance: int) -> None:
        self.store = store
        self.name = name
        self.limit = limit
        self.expiration = expiration
        self.recheck_interval = recheck_interval
        self.instance = instance
        self.held: int | None = None
        self.reason: str | None = None  # set while the lock was not available; cleared by ``wait_until_free``

    async def take(self) -> bool:
        """Take a place for an offered job; False (and ``reason`` set) when the limit is reached."""
        if self.held is not None:
            return True
        try:
            self.held = await asyncio.to_thread(self.store.acquire, self.name, HOLD_UNTIL_STARTED, self.limit)
        except sqlite3.Error as exc:  # a broken lock file must not stop every job on the host silently
            self.reason = f"{limited_reason(self.name)}: {self.store.path}: {exc}"
            log.error("[slot %d] %s", self.instance, self.reason)
            return False
        if self.held is None:
            self.reason = limited_reason(self.name)
            log.info("[slot %d] %s (%d of %d places taken)", self.instance, self.reason, self.limit, self.limit)
            return False
        self.reason = None
        log.debug("[slot %d] took lock '%s' (row %d)", self.instance, self.name, self.held)
        return True

    async def job_started(self) -> None:
        """isotovideo runs: the lock only throttles the start, so it now expires after LOCK_EXPIRATION."""
        if self.held is not None:
            await self._quietly(self.store.shorten, self.held, self.expiration)

    async def release(self) -> None:
        lock_id, self.held = self.held, None
        if lock_id is not None:
            await self._quietly(self.store.release, lock_id)

    async def wait_until_free(self) -> None:
        """Re-check every ``recheck_interval`` s until a place is free, then clear ``reason``."""
        while self.reason is not None:
            await asyncio.sleep(self.recheck_interval)
            try:
                free = await asyncio.to_thread(self.store.available, self.name, self.limit)
            except sqlite3.Error as exc:
                log.warning("[slot %d] re-checking lock '%s' failed: %s", self.instance, self.name, exc)
                continue
            if free:
                log.info("[slot %d] lock '%s' has a free place again", self.instance, self.name)
                self.reason = None

    async def _quietly(self, func: Callable[..., object], *args: object) -> None:
        try:
            await asyncio.to_thread(func, *args)
        except sqlite3.Error as exc:  # the row expires by itself; the job goes on
            log.warning("[slot %d] lock '%s': %s", self.instance, self.name, exc)


def lock_file(cache_dir: Path | None, pool_dir: Path) -> Path:
    """``<CACHEDIRECTORY>/worker-locks.sqlite`` (upstream's place); without a cache, next to the pools."""
    return (cache_dir if cache_dir is not None else pool_dir.parent) / LOCK_FILE


def make_throttle(instance: int, tuning: SlotTuning, pool_dir: Path, cache_dir: Path | None) -> StartThrottle | None:
    """The slot's throttle when ``LOCK_NAME`` is set, else None."""
    if not tuning.lock_name:
        return None
    path = lock_file(cache_dir, pool_dir)
    if cache_dir is None:
        log.warning("[slot %d] LOCK_NAME without CACHEDIRECTORY: the lock file is %s (the Perl worker only "
                    "shares it with CACHEDIRECTORY set)", instance, path)
    return StartThrottle(LockStore(path), tuning.lock_name, limit=tuning.lock_limit,
                         expiration=tuning.lock_expiration, recheck_interval=tuning.ephemeral_recheck_interval,
                         instance=instance)
