"""One slot (worker instance): its web UI connections, its pool directory, its current job and queue.

The slot turns web UI messages into decisions (PROTOCOL.md §6.3, §8): accept or reject jobs, run
sequences in order with the skip rules, forward stop and live commands to the current job, and
report ``free`` / ``working`` / ``broken``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend import events as ev
from backend.config import HostConfig, SlotConfig
from backend.engine.procs import reap_orphan_zombies
from backend.events import HostState, SlotState
from backend.health import Availability, check_availability
from backend.job import outcome as oc
from backend.job.capabilities import capabilities
from backend.job.job import Job, JobContext, JobOutcome, JobState
from backend.job.pool import PoolDir
from backend.job.sequence import JobQueue, QueuedJob, SequenceError, all_ids, flatten_sequence
from backend.webui.client import ApiClient, ApiError, RetryPolicy
from backend.webui.connection import WebUIConnection
from backend.webui.messages import (
    GrabJob,
    GrabJobs,
    Incompatible,
    JobInfo,
    LiveCommand,
    StopCommand,
    parse_job,
)

if TYPE_CHECKING:
    from backend.worker import Worker

log = logging.getLogger(__name__)

BROKEN_RECHECK_INTERVAL = 10.0
PRESERVED_KEEP = 5


class Slot:
    def __init__(self, worker: Worker, config: SlotConfig) -> None:
        self.worker = worker
        self.config = config
        self.instance = config.instance
        self.pool = PoolDir(config.pool_dir)
        self.clients: dict[str, ApiClient] = {}
        self.connections: dict[str, WebUIConnection] = {}
        reconnect = _float(worker.config.env.get("OPENQA_WORKER_CONNECT_INTERVAL"), 10.0)
        low = _float(worker.config.env.get("OPENQA_WORKER_STATUS_MIN_INTERVAL") or
                     config.settings.get("STATUS_MIN_INTERVAL"), 60.0)
        high = _float(worker.config.env.get("OPENQA_WORKER_STATUS_MAX_INTERVAL") or
                      config.settings.get("STATUS_MAX_INTERVAL"), 300.0)
        for host in config.hosts:
            host_retry = RetryPolicy.from_settings({**config.settings, **host.settings}, worker.config.env)
            client = ApiClient(host, retry=host_retry, observer=worker.request_observer(host.base_url))
            self.clients[host.configured] = client
            self.connections[host.configured] = WebUIConnection(
                host, self.instance, client, worker.bus,
                capabilities=self._capabilities, held_job_ids=self._held_job_ids,
                status_message=lambda c=host.configured: self._status_message(c),
                on_message=self._on_message, reconnect_delay=reconnect,
                status_interval=(min(low, high), max(low, high)))
        self.job: Job | None = None
        self.job_host: str | None = None
        self.queue: JobQueue | None = None
        self.queue_data: dict[int, JobInfo] = {}
        self.availability = Availability(None)
        self.viewers = 0
        self._caps: dict[str, str] | None = None
        self._queue_task: asyncio.Task | None = None
        self._finished = asyncio.Event()
        self._state: SlotState | None = None
        self._current_id: int | None = None  # the job being accepted/run (set before the Job exists)
        self._early_stop: str | None = None
        self._grab_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.recheck_availability()
        conn_tasks = [asyncio.create_task(c.run(), name=f"conn-{self.instance}-{c.name}")
                      for c in self.connections.values()]
        watch = asyncio.create_task(self._watch_connections(conn_tasks))
        recheck = asyncio.create_task(self._recheck_while_broken())
        try:
            await self._finished.wait()
        finally:
            watch.cancel()
            recheck.cancel()
            if self._queue_task is not None and not self._queue_task.done():
                self._queue_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._queue_task
            await asyncio.gather(*(c.close(send_quit=True) for c in self.connections.values()),
                                 return_exceptions=True)
            for task in conn_tasks:
                task.cancel()
            await asyncio.gather(*conn_tasks, return_exceptions=True)
            await asyncio.gather(*(c.aclose() for c in self.clients.values()), return_exceptions=True)
            with contextlib.suppress(Exception):
                self.pool.unlock()
            self._publish_state(SlotState.OFFLINE, "stopped")

    @property
    def busy(self) -> bool:
        """From taking a job (or sequence) until the slot has tidied up after the last one.

        Not ``self.job``/``self.queue``: both are empty while a job is being accepted or wound
        down, and a grab in that window would start a second queue task on the slot.
        """
        return self._queue_task is not None and not self._queue_task.done()

    def finish_when_idle(self) -> None:
        """Drain/quit: end the slot as soon as it has no job."""
        if not self.busy:
            self._finished.set()

    def quit(self) -> None:
        if self.job is not None:
            self.job.request_stop(oc.QUIT)
        self.finish_when_idle()

    def abort(self) -> bool:
        if self.job is None:
            return False
        self.job.request_stop(oc.ABORT)
        return True

    async def _watch_connections(self, tasks: list[asyncio.Task]) -> None:
        """When every web UI has disabled this slot and it has no job, the slot is done."""
        await asyncio.gather(*(c.gone.wait() for c in self.connections.values()))
        if all(c.state is HostState.DISABLED for c in self.connections.values()):
            self.all_disabled = True
            log.error("[slot %d] every web UI refused this worker; stopping when idle", self.instance)
            self.worker.slot_disabled(self)
            self.finish_when_idle()

    all_disabled = False

    # -- availability ----------------------------------------------------------------------------

    async def recheck_availability(self) -> Availability:
        previous = self.availability.reason
        extra = [self.worker.cache.health] if self.worker.cache is not None else []
        try:
            self.availability = await check_availability(
                self.config, self.pool, worker_hostname=self.worker.worker_hostname,
                no_cleanup=self.worker.config.no_cleanup, extra_checks=extra,
                loadavg_file=Path(self.config.settings.get("QAWORKER_LOADAVG_FILE") or "/proc/loadavg"))
        except Exception as exc:  # a failing check is itself a broken worker, not a crash
            log.exception("[slot %d] availability check failed", self.instance)
            self.availability = Availability(f"availability check failed: {exc}")
        if self.availability.reason != previous:
            # the faces report the state change (SlotStateChanged); this is for --verbose
            log.debug("[slot %d] availability: %s", self.instance, self.availability.reason or "available")
            if not self.busy:
                self._publish_idle_state()
            for conn in self.connections.values():
                conn.send_status_soon()
        return self.availability

    async def _recheck_while_broken(self) -> None:
        while True:
            healthy_interval = self.config.get_float("QAWORKER_HEALTH_INTERVAL", 10.0)
            await asyncio.sleep(BROKEN_RECHECK_INTERVAL if self.availability.reason else healthy_interval)
            if not self.busy:
                await self.recheck_availability()

    # -- registration data ------------------------------------------------------------------------

    async def _capabilities(self) -> dict[str, str]:
        if self._caps is None:
            self._caps = await capabilities(self.config.settings, self.worker.interface_version)
        return {**self._caps, "instance": str(self.instance)}

    def _held_job_ids(self) -> list[int]:
        ids = []
        if self.job is not None and self.job.state not in (JobState.NEW, JobState.STOPPED):
            ids.append(self.job.id)
        elif self.job is None and self._current_id is not None:
            ids.append(self._current_id)  # accepted, being set up
        if self.queue:
            ids += self.queue.pending_ids
        return ids

    async def _status_message(self, conn_name: str) -> dict[str, Any]:
        if self.busy:
            message: dict[str, Any] = {"type": "worker_status", "status": "working",
                                       "current_webui_host": self.job_host}
            if self.job is not None and self.job_host == conn_name:
                message["job"] = self.job.status_info()
            if self.queue:
                message["pending_job_ids"] = {str(i): 1 for i in self.queue.pending_ids}
            return message
        availability = await self.recheck_availability()
        if availability.reason:
            return {"type": "worker_status", "status": "broken", "reason": availability.reason}
        return {"type": "worker_status", "status": "free"}

    # -- messages from the web UI ------------------------------------------------------------------

    def _on_message(self, conn: WebUIConnection, message: Any) -> None:
        match message:
            case GrabJob() | GrabJobs():
                self._spawn(self._on_grab(conn, message))
            case StopCommand():
                self._on_stop_command(conn, message)
            case LiveCommand():
                self._on_live_command(conn, message)
            case Incompatible():
                log.error("[slot %d] %s says this worker is incompatible; stopping", self.instance, conn.name)
                self.worker.quit()

    async def _on_grab(self, conn: WebUIConnection, message: GrabJob | GrabJobs) -> None:
        """One offer at a time: availability is checked afresh before accepting (§7)."""
        async with self._grab_lock:
            task = self._queue_task
            if task is not None and not task.done() and self._current_id is None and not self.queue:
                # The slot is tidying up after its last job: decide once that is done.
                await asyncio.wait({task}, timeout=60)
            if not self.busy and not self.worker.stopping:
                await self.recheck_availability()
            if isinstance(message, GrabJob):
                self._on_grab_job(conn, message)
            else:
                self._on_grab_jobs(conn, message)

    def _on_grab_job(self, conn: WebUIConnection, message: GrabJob) -> None:
        job = parse_job(message.job)
        if isinstance(job, str):
            job_id = message.job.get("id") if isinstance(message.job, dict) else None
            self._reject(conn, [job_id] if isinstance(job_id, int) else [], job)
            return
        if self._refuse(conn, [job.id]):
            return
        self._start_queue(conn, [QueuedJob(job.id, None)], {job.id: job}, single=True)

    def _on_grab_jobs(self, conn: WebUIConnection, message: GrabJobs) -> None:
        info = message.job_info
        data = info.get("data")
        if not isinstance(data, dict):
            log.warning("[slot %d] grab_jobs without job data, ignored", self.instance)
            return
        sequence = info.get("sequence")
        raw_ids = [int(k) for k in data if str(k).isdigit()]
        if not isinstance(sequence, list):
            self._reject(conn, raw_ids, "job info lacks execution sequence")
            return
        jobs: dict[int, JobInfo] = {}
        for key, raw in data.items():
            job = parse_job(raw)
            if isinstance(job, str) or str(job.id) != str(key):
                log.warning("[slot %d] grab_jobs with inconsistent job data, ignored", self.instance)
                return
            jobs[job.id] = job
        try:
            order = flatten_sequence(sequence)
        except SequenceError as exc:
            self._reject(conn, raw_ids, str(exc))
            return
        for queued in order:
            if queued.job_id not in jobs:
                self._reject(conn, raw_ids, f"job data for job {queued.job_id} is missing")
                return
        if self._refuse(conn, all_ids(sequence)):
            return
        self._start_queue(conn, order, jobs, single=False)

    def _refuse(self, conn: WebUIConnection, ids: list[int]) -> bool:
        """True when the offered jobs must not be taken (and reject them where the protocol says so)."""
        if self.worker.stopping:
            self._reject(conn, ids, "currently stopping")
            return True
        if self.busy:
            if self.job_host != conn.name:
                self._reject(conn, ids, f"already busy with a job from {self.job_host}")
                return True
            known = set(self._held_job_ids()) | ({self.job.id} if self.job else set())
            if not set(ids) <= known:
                self._reject(conn, ids, f"already busy with job(s) {', '.join(map(str, sorted(known)))}")
            return True  # all known: a duplicate delivery, ignore silently
        if self.availability.reason:
            self._reject(conn, ids, self.availability.reason)
            return True
        return False

    def _reject(self, conn: WebUIConnection, ids: list[int], reason: str) -> None:
        log.warning("[slot %d] rejecting job(s) %s from %s: %s", self.instance, ids, conn.name, reason)
        self._spawn(conn.send({"type": "rejected", "job_ids": ids, "reason": reason}))

    def _spawn(self, coro: Any) -> None:
        """A fire-and-forget task that is kept referenced until done (the loop only holds weak refs)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_stop_command(self, conn: WebUIConnection, message: StopCommand) -> None:
        if conn.name != self.job_host:
            log.info("[slot %d] ignoring %s for job %s from %s: not working for it", self.instance, message.type,
                     message.jobid, conn.name)
            return
        if self.job is not None and message.jobid == self.job.id:
            self.job.request_stop(message.type)
        elif message.jobid == self._current_id:  # accepted, Job object not created yet
            self._early_stop = message.type
        elif self.queue and message.jobid in self.queue.pending_ids:
            self.queue.marked[int(message.jobid)] = message.type
            log.info("[slot %d] queued job %s will be skipped (%s)", self.instance, message.jobid, message.type)
        else:
            log.info("[slot %d] ignoring %s for unknown job %s", self.instance, message.type, message.jobid)

    def _on_live_command(self, conn: WebUIConnection, message: LiveCommand) -> None:
        job = self.job
        if job is None or message.jobid != job.id or conn.name != self.job_host:
            log.info("[slot %d] ignoring %s for job %s (not the current job)", self.instance, message.type,
                     message.jobid)
            return
        if message.type == "developer_session_start":
            job.enable_developer_session()
            return
        self.viewers = self.viewers + 1 if message.type == "livelog_start" else max(0, self.viewers - 1)
        job.set_live_viewers(self.viewers)

    # -- running the queue -------------------------------------------------------------------------

    def _start_queue(self, conn: WebUIConnection, order: list[QueuedJob], jobs: dict[int, JobInfo],
                     single: bool) -> None:
        self.queue = JobQueue(order)
        self.queue_data = jobs
        self.job_host = conn.name
        self._queue_task = asyncio.get_running_loop().create_task(self._process_queue(conn, single),
                                                                  name=f"queue-{self.instance}")

    async def _process_queue(self, conn: WebUIConnection, single: bool) -> None:
        assert self.queue is not None
        try:
            while (item := self.queue.pop()) is not None:
                queued, skip = item
                info = self.queue_data[queued.job_id]
                if self.worker.quitting:
                    skip = "quit: worker has been stopped or restarted"
                elif self.availability.fatal:
                    skip = f"worker broken: {self.availability.reason}"
                if skip is not None:
                    await self._skip(conn, info, skip)
                    continue
                self._current_id, self._early_stop = info.id, None
                if not await self._accept(conn, info, single):
                    self.queue.record(info.id, False)
                    continue
                outcome = await self._run_job(conn, info)
                self._current_id = None  # set_done is answered: the web UI may offer the next job now
                self.queue.record(info.id, outcome.ok)
                if outcome.stop_reason == oc.API_FAILURE:
                    conn.request_reregistration()
        finally:
            self._current_id = None
            self.queue = None
            self.queue_data = {}
            self.job_host = None
            self.viewers = 0
            if not self.worker.quitting:
                await self.recheck_availability()
            self._publish_idle_state()
            for c in self.connections.values():
                c.send_status_soon()
            if self.worker.stopping or self.all_disabled:
                self._finished.set()

    async def _accept(self, conn: WebUIConnection, info: JobInfo, single: bool) -> bool:
        """Send ``accepted``; queued jobs may wait for a lost websocket (§6.5)."""
        if not conn.connected.is_set() and not single:
            attempts = int(_float(self.worker.config.env.get("OPENQA_WORKER_ACCEPT_ATTEMPTS"), 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.connected.wait(), attempts * conn.reconnect_delay)
        if not await conn.send({"type": "accepted", "jobid": info.id}):
            log.error("[slot %d] Unable to accept job %d because the websocket connection to %s has been lost.",
                      self.instance, info.id, conn.name)
            return False
        return True

    async def _run_job(self, conn: WebUIConnection, info: JobInfo) -> JobOutcome:
        assert conn.worker_id is not None
        if not self.worker.config.no_cleanup:
            await self._clean_pool()
        ctx = JobContext(slot=self.config, host=conn.host, client=conn.client, worker_id=conn.worker_id,
                         livehandler_base=conn.livehandler_base, bus=self.worker.bus, prjdir=self.worker.config.prjdir,
                         isotovideo=self.worker.config.isotovideo, worker_hostname=self.worker.worker_hostname or "",
                         image_pool=self.worker.image_pool, assets=self.worker.asset_provider(conn, info.id),
                         tests_dir_provider=self.worker.tests_dir_provider(conn),
                         stop_grace=self.config.get_float("QAWORKER_STOP_GRACE", 30.0),
                         on_state=self._job_state_changed)
        job = Job(info, ctx)
        self.job = job
        if self._early_stop is not None:
            job.request_stop(self._early_stop)
        self.worker.bus.publish(ev.JobAccepted(instance=self.instance, job_id=info.id, name=info.name or
                                               info.settings_str.get("NAME", ""), host=conn.name,
                                               max_job_time=job.max_job_time,
                                               pending_job_ids=tuple(self.queue.pending_ids if self.queue else ())))
        started = time.monotonic()
        try:
            outcome = await job.run()
        finally:
            self.job = None
            self.viewers = 0
            await asyncio.to_thread(reap_orphan_zombies)
            if self.worker.cache is not None:
                self.worker.cache.unpin_job(info.id)
        log.debug("[slot %d] job %d finished: %s%s", self.instance, info.id, outcome.result,
                 f" ({outcome.reason})" if outcome.reason else "")
        self.worker.bus.publish(ev.JobFinished(instance=self.instance, job_id=info.id, result=outcome.result,
                                               reason=outcome.reason, stop_reason=outcome.stop_reason,
                                               duration=time.monotonic() - started))
        if outcome.stop_reason == oc.API_FAILURE:
            await self._preserve_results(info.id)
        return outcome

    async def _skip(self, conn: WebUIConnection, info: JobInfo, reason: str) -> None:
        params: list[tuple[str, object]] = [("result", "skipped")]
        if reason and reason not in ("skipped", "cancel"):  # like the classic worker: no reason for these
            params.append(("reason", reason))
        params.append(("worker_id", conn.worker_id))
        log.info("[slot %d] skipping job %d (%s)", self.instance, info.id, reason)
        with contextlib.suppress(ApiError):
            await conn.client.request("POST", f"/api/v1/jobs/{info.id}/set_done", params=params, attempts=1)
        assert self.queue is not None
        self.queue.record(info.id, False)
        self.worker.bus.publish(ev.JobSkipped(instance=self.instance, job_id=info.id, reason=reason))

    def _job_state_changed(self, job: Job) -> None:
        mapping = {JobState.SETUP: SlotState.SETUP, JobState.RUNNING: SlotState.RUNNING,
                   JobState.STOPPING: SlotState.STOPPING}
        if job.state in mapping:
            self._publish_state(mapping[job.state], job_id=job.id)
        if job.state is JobState.RUNNING and self.job_host in self.connections:
            self.connections[self.job_host].send_status_soon()

    # -- pool directory ------------------------------------------------------------------------------

    async def _clean_pool(self) -> None:
        from backend.engine.isotovideo import qemu_still_running

        keep = await asyncio.to_thread(qemu_still_running, self.config.pool_dir) is not None
        try:
            await self.pool.clean(keep_qemu_pid=keep)
        except OSError as exc:
            log.warning("[slot %d] pool cleanup failed: %s", self.instance, exc)

    async def _preserve_results(self, job_id: int) -> None:
        """Results the web UI never confirmed survive the next cleanup in <pool>/.preserved/<job>."""
        def move() -> None:
            pool = self.config.pool_dir
            target = pool / ".preserved" / str(job_id)
            target.mkdir(parents=True, exist_ok=True)
            for entry in pool.iterdir():
                if entry.name.startswith(".") or entry.name in ("worker_packages.txt",):
                    continue
                if entry.is_symlink():
                    continue
                shutil.move(str(entry), str(target / entry.name))
            kept = sorted((pool / ".preserved").iterdir(), key=lambda p: p.stat().st_mtime)
            for old in kept[:-PRESERVED_KEEP]:
                shutil.rmtree(old, ignore_errors=True)
        try:
            await asyncio.to_thread(move)
            log.warning("[slot %d] results of job %d were not all delivered; kept in %s", self.instance, job_id,
                        self.config.pool_dir / ".preserved" / str(job_id))
        except OSError as exc:
            log.error("[slot %d] could not preserve the results of job %d: %s", self.instance, job_id, exc)

    # -- events ------------------------------------------------------------------------------------

    def _publish_idle_state(self) -> None:
        if self.availability.reason:
            self._publish_state(SlotState.BROKEN, self.availability.reason)
        else:
            self._publish_state(SlotState.IDLE)

    def _publish_state(self, state: SlotState, reason: str = "", job_id: int | None = None) -> None:
        self._state = state
        self.worker.bus.publish(ev.SlotStateChanged(instance=self.instance, state=state, reason=reason,
                                                    job_id=job_id))

    def host(self, name: str) -> HostConfig:
        return self.connections[name].host


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default
