"""Typed backend events and the bus that carries them to the faces.

Every state change the faces may show is published as one immutable event. The bus never blocks
the publisher: each subscriber has a bounded queue, and when a slow subscriber falls behind its
oldest events are dropped (counted in ``Subscription.dropped``), so a frozen UI can never stall
the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum


class SlotState(StrEnum):
    IDLE = "idle"
    BROKEN = "broken"
    SETUP = "setup"
    RUNNING = "running"
    UPLOADING = "uploading"
    STOPPING = "stopping"
    OFFLINE = "offline"  # no web UI connection usable for this slot


class HostState(StrEnum):
    NEW = "new"
    REGISTERING = "registering"
    ESTABLISHING_WS = "establishing_ws"
    CONNECTED = "connected"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStarted(Event):
    version: str
    instances: tuple[int, ...]
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStopping(Event):
    mode: str  # "drain" (finish current jobs) or "quit" (stop now)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStopped(Event):
    exit_code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionChanged(Event):
    host: str
    instance: int
    state: HostState
    worker_id: int | None = None
    reason: str = ""
    next_retry_in: float | None = None  # seconds until the next attempt, for FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotStateChanged(Event):
    instance: int
    state: SlotState
    reason: str = ""  # broken reason, or what the slot waits for
    job_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAccepted(Event):
    instance: int
    job_id: int
    name: str
    host: str
    max_job_time: float  # seconds, TIMEOUT_SCALE applied
    pending_job_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ModuleStatus:
    name: str
    category: str = ""
    result: str = "pending"  # pending, running, passed, failed, softfailed, skipped, none


@dataclass(frozen=True, slots=True, kw_only=True)
class JobProgress(Event):
    instance: int
    job_id: int
    current_module: str = ""
    modules: tuple[ModuleStatus, ...] = ()
    paused: str = ""  # test_execution_paused reason, "" when not paused
    isotovideo_status: str = ""  # initial / running / finished


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFinished(Event):
    instance: int
    job_id: int
    result: str  # the result the web UI answered (or the one we asked for)
    reason: str = ""
    stop_reason: str = ""  # internal stop reason: done, died, cancel, ...
    duration: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResources(Event):
    """What the job's own cgroup uses now (only with per-job cgroups, backend/engine/cgroup.py)."""

    instance: int
    job_id: int
    memory_bytes: int
    cpu_seconds: float
    processes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSkipped(Event):
    instance: int
    job_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLines(Event):
    instance: int
    job_id: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadProgress(Event):
    instance: int
    job_id: int
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    current_file: str = ""
    optipng_queue: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveViewers(Event):
    instance: int
    job_id: int
    viewers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeveloperSession(Event):
    instance: int
    job_id: int
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheProgress(Event):
    """One asset download (or test sync) of the shared cache."""

    key: str  # "<host>/<basename>" or "<host>/tests"
    bytes_done: int = 0
    bytes_total: int = 0
    rate: float = 0.0  # bytes/s
    waiting_jobs: tuple[int, ...] = ()
    done: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheTotals(Event):
    used_bytes: int
    limit_bytes: int
    assets: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheQueue(Event):
    """The host's CACHEWORKERS slots as this process sees them (for /influxdb/minion)."""

    active: int  # downloads and test syncs running
    downloads: int  # of them asset downloads
    queued: int  # waiting for a slot
    failed: int  # ended with an error since start
    limit: int  # CACHEWORKERS
    download_rate: int | None = None  # bytes/s of the last download above OPENQA_METRICS_DOWNLOAD_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(Event):
    """A log-worthy message that is not a state change (warnings, errors, info)."""

    level: str  # debug, info, warning, error
    message: str
    instance: int | None = None
    job_id: int | None = None


class Subscription:
    """A bounded per-subscriber queue; iterate it with ``async for``."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: Event | None) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                # Drop the oldest so the newest state always gets through.
                self._queue.get_nowait()
                self.dropped += 1

    async def get(self) -> Event | None:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        return self._queue.get_nowait()

    def close(self) -> None:
        self._bus._unsubscribe(self)
        self._offer(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event


class EventBus:
    """Fan-out of events to any number of subscribers. ``publish`` never blocks or raises."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._sync_listeners: list = []

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subs.append(sub)
        return sub

    def add_listener(self, callback) -> None:
        """Call ``callback(event)`` synchronously on every publish (for state reducers, metrics)."""
        self._sync_listeners.append(callback)

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        for listener in list(self._sync_listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must never break the publisher
                import logging

                logging.getLogger(__name__).exception("event listener failed")
        for sub in list(self._subs):
            sub._offer(event)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.close()
