"""A live view of the whole worker, folded from the event stream.

The faces (dashboard, headless STATUS line, metrics) read this instead of reaching into the
backend's internals. ``WorkerView.apply`` is the only place that interprets events.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from backend import events as ev
from backend.events import HostState, ModuleStatus, SlotState


@dataclass
class HostView:
    host: str
    instance: int
    state: HostState = HostState.NEW
    worker_id: int | None = None
    reason: str = ""
    next_retry_at: float | None = None


@dataclass
class UploadView:
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    current_file: str = ""
    optipng_queue: int = 0
    last_error: str = ""


@dataclass
class JobView:
    job_id: int
    name: str
    host: str
    started_at: float
    max_job_time: float
    pending_job_ids: tuple[int, ...] = ()
    current_module: str = ""
    modules: tuple[ModuleStatus, ...] = ()
    paused: str = ""
    upload: UploadView = field(default_factory=UploadView)
    live_viewers: int = 0
    developer_session: bool = False
    memory_bytes: int | None = None  # from the job's cgroup (None: no per-job cgroup)
    cpu_seconds: float | None = None
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=500))
    log_lines_total: int = 0  # every line ever added: a face that shows the tail knows what it missed

    @property
    def modules_done(self) -> int:
        return sum(1 for m in self.modules if m.result not in ("pending", "running"))


@dataclass
class FinishedJob:
    job_id: int
    result: str
    reason: str
    finished_at: float


@dataclass
class SlotView:
    instance: int
    state: SlotState = SlotState.IDLE
    reason: str = ""
    job: JobView | None = None
    last_finished: FinishedJob | None = None
    jobs_done: int = 0


@dataclass
class DownloadView:
    key: str
    bytes_done: int = 0
    bytes_total: int = 0
    rate: float = 0.0
    waiting_jobs: tuple[int, ...] = ()
    error: str = ""


@dataclass
class CacheView:
    enabled: bool = False
    used_bytes: int = 0
    limit_bytes: int = 0
    assets: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    downloads: dict[str, DownloadView] = field(default_factory=dict)


@dataclass
class WorkerView:
    version: str = ""
    started_at: float = field(default_factory=time.time)
    hosts: dict[tuple[str, int], HostView] = field(default_factory=dict)
    slots: dict[int, SlotView] = field(default_factory=dict)
    cache: CacheView = field(default_factory=CacheView)
    stopping: str = ""  # "", "drain" or "quit"
    notices: deque[ev.Notice] = field(default_factory=lambda: deque(maxlen=200))
    results: dict[str, int] = field(default_factory=dict)

    def slot(self, instance: int) -> SlotView:
        if instance not in self.slots:
            self.slots[instance] = SlotView(instance)
        return self.slots[instance]

    def job(self, instance: int, job_id: int) -> JobView | None:
        job = self.slot(instance).job
        return job if job is not None and job.job_id == job_id else None

    @property
    def running_jobs(self) -> int:
        return sum(1 for s in self.slots.values() if s.job is not None)

    def summary(self) -> str:
        """One line for sd_notify STATUS= and the headless log."""
        states: dict[str, int] = {}
        for s in self.slots.values():
            states[s.state.value] = states.get(s.state.value, 0) + 1
        slot_part = ", ".join(f"{n} {st}" for st, n in sorted(states.items())) or "no slots"
        connected = sum(1 for h in self.hosts.values() if h.state is HostState.CONNECTED)
        prefix = f"{self.stopping} – " if self.stopping else ""
        return f"{prefix}{slot_part}; {connected}/{len(self.hosts)} web UI connections up"

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.WorkerStarted():
                self.version = event.version
                self.started_at = event.ts
                for i in event.instances:
                    self.slot(i)
                    for h in event.hosts:
                        self.hosts.setdefault((h, i), HostView(h, i))
            case ev.WorkerStopping():
                self.stopping = event.mode
            case ev.ConnectionChanged():
                view = self.hosts.setdefault((event.host, event.instance), HostView(event.host, event.instance))
                view.state = event.state
                view.reason = event.reason
                if event.worker_id is not None:
                    view.worker_id = event.worker_id
                view.next_retry_at = event.ts + event.next_retry_in if event.next_retry_in else None
            case ev.SlotStateChanged():
                slot = self.slot(event.instance)
                slot.state = event.state
                slot.reason = event.reason
            case ev.JobAccepted():
                slot = self.slot(event.instance)
                slot.job = JobView(event.job_id, event.name, event.host, event.ts, event.max_job_time,
                                   event.pending_job_ids)
            case ev.JobProgress():
                if job := self.job(event.instance, event.job_id):
                    job.current_module = event.current_module
                    job.modules = event.modules
                    job.paused = event.paused
            case ev.JobFinished():
                slot = self.slot(event.instance)
                if slot.job is not None and slot.job.job_id == event.job_id:
                    slot.job = None
                slot.last_finished = FinishedJob(event.job_id, event.result, event.reason, event.ts)
                slot.jobs_done += 1
                self.results[event.result] = self.results.get(event.result, 0) + 1
            case ev.LogLines():
                if job := self.job(event.instance, event.job_id):
                    job.log_tail.extend(event.lines)
                    job.log_lines_total += len(event.lines)
            case ev.JobResources():
                if job := self.job(event.instance, event.job_id):
                    job.memory_bytes, job.cpu_seconds = event.memory_bytes, event.cpu_seconds
            case ev.UploadProgress():
                if job := self.job(event.instance, event.job_id):
                    job.upload = UploadView(event.files_done, event.files_total, event.bytes_done,
                                            event.bytes_total, event.current_file, event.optipng_queue,
                                            event.last_error)
            case ev.LiveViewers():
                if job := self.job(event.instance, event.job_id):
                    job.live_viewers = event.viewers
            case ev.DeveloperSession():
                if job := self.job(event.instance, event.job_id):
                    job.developer_session = event.active
            case ev.CacheProgress():
                self.cache.enabled = True
                if event.done:
                    self.cache.downloads.pop(event.key, None)
                else:
                    self.cache.downloads[event.key] = DownloadView(event.key, event.bytes_done, event.bytes_total,
                                                                   event.rate, event.waiting_jobs, event.error)
            case ev.CacheTotals():
                c = self.cache
                c.enabled = True
                c.used_bytes, c.limit_bytes, c.assets = event.used_bytes, event.limit_bytes, event.assets
                c.hits, c.misses, c.evictions = event.hits, event.misses, event.evictions
            case ev.Notice():
                self.notices.append(event)
            case _:
                pass
