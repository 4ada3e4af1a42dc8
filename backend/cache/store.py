"""The classic ``assets`` table (PROTOCOL.md §18.5) on a dedicated database thread.

All methods without ``async`` are blocking and only ever run on the store's own single thread
(``await store.run(store.method, ...)``); the one connection lives on that thread. WAL + busy_timeout
make it safe for several qaworker processes sharing one cache directory. Minion's tables of a classic
cache.sqlite are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from backend.cache import locks
from backend.cache.layout import Layout
from backend.cache.limits import disk_space, exceeds_free_space, exceeds_limit

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (etag TEXT, size INTEGER, last_use DATETIME NOT NULL,
    filename TEXT NOT NULL UNIQUE PRIMARY KEY, pending INTEGER DEFAULT 1);
CREATE INDEX IF NOT EXISTS assets_pending ON assets (pending);
-- qaworker only: when a file was last confirmed against the web UI (download or 304), so a second
-- process that waited for the download lock can use the fresh file without asking again.
CREATE TABLE IF NOT EXISTS qaworker_checks (filename TEXT PRIMARY KEY, checked REAL NOT NULL);
"""

CORRUPTION_HINTS = ("malformed", "not a database", "corrupt", "integrity check failed", "disk image")


@dataclass(frozen=True, slots=True)
class AssetRow:
    filename: str
    etag: str | None
    size: int | None
    last_use: float
    pending: bool


@dataclass(frozen=True, slots=True)
class Eviction:
    filename: str
    size: int
    last_use: float


class CorruptDatabase(Exception):
    pass


class CacheStore:
    def __init__(self, layout: Layout, *, busy_timeout: float = 60.0) -> None:
        self.layout = layout
        self.busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-db")
        self._conn: sqlite3.Connection | None = None
        self.db_inode: int | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aclose(self) -> None:
        await self.run(self.disconnect)
        self._executor.shutdown(wait=False)

    # -- opening ------------------------------------------------------------------------------------
    def open(self) -> list[str]:
        """Connect, moving a corrupt db aside for a fresh one; returns notes for the log."""
        notes: list[str] = []
        try:
            self._connect()
        except CorruptDatabase as exc:
            self.disconnect()
            aside = self._move_aside()
            notes.append(f"cache database was corrupt ({exc}); moved to {aside.name}, rebuilding it")
            self._connect()  # tidy() then registers the files on disk: nothing is deleted
        return notes

    def _connect(self) -> None:
        path = self.layout.db
        conn = sqlite3.connect(path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            result = conn.execute("PRAGMA integrity_check").fetchone()
            if not result or result[0] != "ok":
                raise CorruptDatabase(f"integrity check failed: {result[0] if result else 'no answer'}")
            conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            if any(hint in str(exc).lower() for hint in CORRUPTION_HINTS):
                raise CorruptDatabase(str(exc)) from exc
            raise
        except CorruptDatabase:
            conn.close()
            raise
        self._conn = conn
        self.db_inode = path.stat().st_ino

    def _move_aside(self) -> Path:
        aside = self.layout.db.with_name(f"{self.layout.db.name}.corrupt-{time.strftime('%Y%m%d%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.layout.db}{suffix}")
            if src.exists():
                os.replace(src, f"{aside}{suffix}")
        log.warning("moved corrupt cache database aside to %s", aside)
        return aside

    def disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("cache database is not open")
        return self._conn

    # -- queries -------------------------------------------------------------------------------------
    def row(self, filename: str) -> AssetRow | None:
        r = self.conn.execute(
            "SELECT filename, etag, size, last_use, pending FROM assets WHERE filename = ?", (filename,)
        ).fetchone()
        return AssetRow(r[0], r[1], r[2], float(r[3] or 0), bool(r[4])) if r else None

    def checked_at(self, filename: str) -> float | None:
        sql = "SELECT checked FROM qaworker_checks WHERE filename = ?"
        r = self.conn.execute(sql, (filename,)).fetchone()
        return float(r[0]) if r else None

    def totals(self) -> tuple[int, int]:
        """(bytes, count) of every complete registered asset, whatever its type (fault 23)."""
        sql = "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM assets WHERE pending = 0"
        r = self.conn.execute(sql).fetchone()
        return int(r[0]), int(r[1])

    def ping(self) -> None:
        self.conn.execute("SELECT COUNT(*) FROM assets").fetchone()

    # -- updates -------------------------------------------------------------------------------------
    def mark_pending(self, filename: str) -> None:
        self.conn.execute(
            "INSERT INTO assets (filename, last_use, pending) VALUES (?, ?, 1) "
            "ON CONFLICT (filename) DO UPDATE SET pending = 1, last_use = excluded.last_use",
            (filename, time.time()))

    def complete(self, filename: str, etag: str | None, size: int) -> None:
        now = time.time()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO assets (filename, etag, size, last_use, pending) VALUES (?, ?, ?, ?, 0) "
                "ON CONFLICT (filename) DO UPDATE SET etag = excluded.etag, size = excluded.size, "
                "last_use = excluded.last_use, pending = 0", (filename, etag, size, now))
            self._checked(conn, filename, now)

    def confirm(self, filename: str, size: int) -> None:
        """304 Not Modified: the file is current; update its use and size (it may have been adopted)."""
        now = time.time()
        with self._transaction() as conn:
            conn.execute("UPDATE assets SET last_use = ?, pending = 0, size = ? WHERE filename = ?",
                         (now, size, filename))
            self._checked(conn, filename, now)

    def touch(self, filename: str) -> None:
        self.conn.execute("UPDATE assets SET last_use = ? WHERE filename = ?", (time.time(), filename))

    def forget(self, filename: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM assets WHERE filename = ?", (filename,))
            conn.execute("DELETE FROM qaworker_checks WHERE filename = ?", (filename,))

    def purge(self, filename: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(filename)
        self.forget(filename)

    def register_files(self, files: list[Path]) -> int:
        """Adopt files on disk that have no row (after a rebuild); keeps them, no etag, last use = mtime."""
        added = 0
        with self._transaction() as conn:
            for path in files:
                try:
                    st = path.stat()
                except OSError:
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO assets (filename, etag, size, last_use, pending) "
                    "VALUES (?, NULL, ?, ?, 0)",
                    (os.path.realpath(path), st.st_size, st.st_mtime))
                added += cur.rowcount
        return added

    def _checked(self, conn: sqlite3.Connection, filename: str, now: float) -> None:
        conn.execute("INSERT INTO qaworker_checks (filename, checked) VALUES (?, ?) "
                     "ON CONFLICT (filename) DO UPDATE SET checked = excluded.checked", (filename, now))

    @contextlib.contextmanager
    def _transaction(self):
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- maintenance ---------------------------------------------------------------------------------
    def tidy(self) -> list[str]:
        """Start-up clean-up: interrupted downloads, stray tmp files, rows without files, unknown files."""
        notes: list[str] = []
        for (filename,) in self.conn.execute("SELECT filename FROM assets WHERE pending = 1").fetchall():
            fd = locks.try_lock(self.layout.download_lock(Path(filename)))
            if fd is None:
                continue  # another process is downloading it right now
            try:
                self.purge(filename)
                notes.append(f"purged interrupted download {filename}")
            finally:
                locks.release(fd)
        for entry in self.layout.tmp.iterdir():
            fd = locks.try_lock(entry) if entry.is_file() else None
            if fd is None:
                continue  # a download in progress holds it
            try:
                entry.unlink(missing_ok=True)
                notes.append(f"removed stray temporary file {entry.name}")
            finally:
                locks.release(fd)
        for (filename,) in self.conn.execute("SELECT filename FROM assets WHERE pending = 0").fetchall():
            if not os.path.lexists(filename):
                self.forget(filename)
                notes.append(f"forgot {filename}: file is gone")
        added = self.register_files(self.layout.asset_files())
        if added:
            notes.append(f"registered {added} cached files that had no database row")
        return notes

    def enforce(self, limit: int, min_free: float | None, needed: int, preserve: frozenset[str],
                pinned: frozenset[str]) -> list[Eviction]:
        """Evict least recently used complete assets until ``needed`` more bytes fit (PROTOCOL.md §18.6).

        Never evicts a preserved (just downloaded) or pinned asset, nor one another process is
        downloading or has pinned (its lock files are held).
        """
        evicted: list[Eviction] = []
        candidates = self.conn.execute(
            "SELECT filename, size, last_use FROM assets WHERE pending = 0 ORDER BY last_use ASC").fetchall()
        for filename, size, last_use in candidates:
            if not self._exceeds(limit, min_free, needed):
                return evicted
            if filename in preserve or filename in pinned:
                continue
            if self._evict(filename):
                evicted.append(Eviction(filename, int(size or 0), float(last_use or 0)))
        if self._exceeds(limit, min_free, needed):
            log.warning("cache still over its limits after evicting what may go (%d more bytes needed)",
                        needed)
        return evicted

    def exceeds(self, limit: int, min_free: float | None, needed: int) -> bool:
        return self._exceeds(limit, min_free, needed)

    def _exceeds(self, limit: int, min_free: float | None, needed: int) -> bool:
        used, _ = self.totals()
        return exceeds_limit(used, needed, limit) or exceeds_free_space(
            disk_space(self.layout.root), needed, min_free)

    def _evict(self, filename: str) -> bool:
        asset = Path(filename)
        fds: list[int] = []
        try:
            for lock in (self.layout.download_lock(asset), self.layout.pin_lock(asset)):
                fd = locks.try_lock(lock)
                if fd is None:
                    return False  # busy in another process (or another cache object)
                fds.append(fd)
            row = self.row(filename)
            if row is None or row.pending:
                return False  # changed since we looked
            self.purge(filename)
            log.info("evicted %s from the cache (%s bytes, last used %s)", filename, row.size,
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.last_use)))
            return True
        finally:
            for fd in fds:
                locks.release(fd)
