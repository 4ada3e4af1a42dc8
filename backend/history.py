"""The job history: every job a slot finished, kept in a small sqlite file next to the pool.

``HistoryRecorder`` listens on the bus (JobAccepted gives name, web UI and start; JobFinished or
JobSkipped the end), keeps the newest ``KEEP`` entries in memory for the faces, and writes each one
to a ``HistoryStore`` — all sqlite work on one thread of its own, never on the event loop. The file
survives restarts and may be shared by several qaworker processes of one host (WAL, busy timeout);
``qaworker history`` reads it without a running worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import events as ev
from backend.tasks import cancel_and_wait

log = logging.getLogger("qaworker.history")

KEEP = 1000
FILE_NAME = "qaworker-history.sqlite"
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    job_id: int
    name: str
    host: str  # the web UI as configured
    url: str  # <web UI>/tests/<id>
    instance: int
    result: str
    reason: str = ""
    stop_reason: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    duration: float = 0.0


def job_url(base_url: str, job_id: int) -> str:
    return f"{base_url.rstrip('/')}/tests/{job_id}"


def history_path(pool_dir: Path) -> Path:
    """Next to the pool: ``/var/lib/openqa/pool/N`` → ``/var/lib/openqa/pool/qaworker-history.sqlite``."""
    return pool_dir.parent / FILE_NAME


_COLUMNS = ("job_id", "name", "host", "url", "instance", "result", "reason", "stop_reason", "started_at",
            "finished_at", "duration")


class HistoryStore:
    """The sqlite file. Every method is blocking except the ``a*`` ones, which run it on the store's thread."""

    def __init__(self, path: Path, keep: int = KEEP) -> None:
        self.path = path
        self.keep = keep
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-sqlite")

    # -- blocking, on the store's thread ------------------------------------------------------------

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"{self.path} was written by a newer qaworker (schema {version})")
            db.execute("""CREATE TABLE IF NOT EXISTS jobs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, name TEXT NOT NULL,
                host TEXT NOT NULL, url TEXT NOT NULL, instance INTEGER NOT NULL, result TEXT NOT NULL,
                reason TEXT NOT NULL, stop_reason TEXT NOT NULL, started_at REAL NOT NULL,
                finished_at REAL NOT NULL, duration REAL NOT NULL)""")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.commit()
        except BaseException:
            db.close()
            raise
        self._db = db

    def add(self, entry: HistoryEntry) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                             tuple(getattr(entry, c) for c in _COLUMNS))
            self._db.execute("DELETE FROM jobs WHERE seq <= (SELECT seq FROM jobs ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                             (self.keep,))

    def recent(self, limit: int = KEEP, *, instance: int | None = None, result: str | None = None
               ) -> list[HistoryEntry]:
        """Newest first."""
        assert self._db is not None
        where, args = [], []
        if instance is not None:
            where.append("instance = ?")
            args.append(instance)
        if result is not None:
            where.append("result = ?")
            args.append(result)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs {clause} ORDER BY seq DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [HistoryEntry(*row) for row in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- async wrappers ---------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def aopen(self) -> None:
        # The first submit starts the store's thread, and Thread.start() waits until the new thread
        # runs: tens of ms on a busy machine. So that first submit happens on a helper thread.
        await asyncio.to_thread(lambda: self._thread.submit(self.open).result())

    async def aadd(self, entry: HistoryEntry) -> None:
        await self._run(self.add, entry)

    async def arecent(self, limit: int = KEEP, **filters: Any) -> list[HistoryEntry]:
        return await self._run(lambda: self.recent(limit, **filters))

    async def aclose(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self._run(self.close)
        self._thread.shutdown(wait=False)


@dataclass
class _Started:
    name: str
    host: str
    ts: float


class HistoryRecorder:
    """Bus listener → in-memory history (newest last) + the store. ``entries()`` is what the faces read."""

    def __init__(self, bus: ev.EventBus, store: HistoryStore | None, base_urls: dict[str, str],
                 keep: int = KEEP) -> None:
        self.store = store
        self.base_urls = base_urls
        self._entries: deque[HistoryEntry] = deque(maxlen=keep)
        self._started: dict[tuple[int, int], _Started] = {}
        self._listeners: list[Callable[[HistoryEntry], None]] = []
        self._pending: asyncio.Queue[HistoryEntry | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None
        bus.add_listener(self._on_event)

    def entries(self) -> list[HistoryEntry]:
        return list(self._entries)

    def add_listener(self, callback: Callable[[HistoryEntry], None]) -> None:
        self._listeners.append(callback)

    async def start(self) -> None:
        """Load the stored history, then write new entries as they come (a broken file costs only the file)."""
        if self.store is not None:
            try:
                await self.store.aopen()
                stored = await self.store.arecent(self._entries.maxlen or KEEP)
            except (sqlite3.Error, OSError) as exc:
                log.warning("job history %s unusable (%s); keeping it in memory only", self.store.path, exc)
                await self.store.aclose()
                self.store = None
            else:
                known = {(e.host, e.job_id) for e in self._entries}
                older = [e for e in reversed(stored) if (e.host, e.job_id) not in known]
                self._entries.extendleft(reversed(older))
        self._writer = asyncio.create_task(self._write_loop(), name="history-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._pending.put_nowait(None)
            await asyncio.wait([self._writer], timeout=10)
            await cancel_and_wait(self._writer)  # a write stuck for 10 s is given up; a failed one is logged
        if self.store is not None:
            await self.store.aclose()

    async def _write_loop(self) -> None:
        while (entry := await self._pending.get()) is not None:
            if self.store is None:
                continue
            try:
                await self.store.aadd(entry)
            except (sqlite3.Error, OSError) as exc:
                log.warning("could not write job %d to the history %s: %s", entry.job_id, self.store.path, exc)

    def _on_event(self, event: ev.Event) -> None:
        match event:
            case ev.JobAccepted():
                self._started[(event.instance, event.job_id)] = _Started(event.name, event.host, event.ts)
            case ev.JobFinished():
                started = self._started.pop((event.instance, event.job_id), None)
                self._add(event.instance, event.job_id, started, event.result, event.reason, event.stop_reason,
                          event.ts, event.duration)
            case ev.JobSkipped():
                started = self._started.pop((event.instance, event.job_id), None)
                self._add(event.instance, event.job_id, started, "skipped", event.reason, "skip", event.ts, 0.0)

    def _add(self, instance: int, job_id: int, started: _Started | None, result: str, reason: str,
             stop_reason: str, finished_at: float, duration: float) -> None:
        host = started.host if started else (next(iter(self.base_urls), "") if len(self.base_urls) == 1 else "")
        base = self.base_urls.get(host, host)
        entry = HistoryEntry(job_id=job_id, name=started.name if started else "", host=host,
                             url=job_url(base, job_id) if base else "", instance=instance, result=result,
                             reason=reason, stop_reason=stop_reason,
                             started_at=started.ts if started else finished_at - duration,
                             finished_at=finished_at, duration=duration)
        self._entries.append(entry)
        self._pending.put_nowait(entry)
        for listener in list(self._listeners):
            try:
                listener(entry)
            except Exception:
                log.exception("history listener failed")


def select(entries: Iterable[HistoryEntry], *, instance: int | None = None, result: str | None = None,
           limit: int | None = None) -> list[HistoryEntry]:
    """Newest first, filtered (what the table and ``qaworker history`` show)."""
    picked = [e for e in reversed(list(entries)) if (instance is None or e.instance == instance)
              and (result is None or e.result == result)]
    return picked if limit is None else picked[:limit]

