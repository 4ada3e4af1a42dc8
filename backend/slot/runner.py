"""The job side of a slot: the queue of one offer (a job or a sequence), run one job at a time.

``JobRunner.start`` takes an accepted offer; its queue task runs the jobs in order with the skip
rules (PROTOCOL.md §8.3), accepts each (``accepted``), runs it to ``set_done`` and tidies up. The
queue task is a child of the slot's TaskGroup and never raises: a bug in it ends the current job
``incomplete`` with a reason, is logged with its traceback, and the slot keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from backend import events as ev
from backend.config import SlotConfig
from backend.engine.procs import reap_orphan_zombies
from backend.engine.sweep import sweep_pool
from backend.job import outcome as oc
from backend.job.job import Job, JobContext, JobOutcome, JobState
from backend.job.pool import PoolDir
from backend.job.preserve import preserve_results
from backend.job.sequence import JobQueue, QueuedJob
from backend.slot.adopt import Adoption, make_recorder
from backend.slot.services import SlotServices
from backend.webui.client import ApiError
from backend.webui.connection import WebUIConnection
from backend.webui.messages import JobInfo

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task]


@dataclass
class Offer:
    """One accepted offer: where it came from and the jobs in the order they run."""

    conn: WebUIConnection
    order: list[QueuedJob]
    jobs: dict[int, JobInfo]
    single: bool  # grab_job (True) or grab_jobs (False)


class JobRunner:
    def __init__(self, config: SlotConfig, pool: PoolDir, services: SlotServices, *,
                 fatal_reason: Callable[[], str | None],
                 on_state: Callable[[ev.SlotState, int | None], None],
                 on_idle: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.config = config
        self.instance = config.instance
        self.pool = pool
        self.services = services
        self._fatal_reason = fatal_reason  # a fatal availability problem: queued jobs are skipped
        self._on_state = on_state
        self._on_idle = on_idle  # after the last job of an offer (re-check availability, report free)
        self.job: Job | None = None
        self.job_host: str | None = None
        self.queue: JobQueue | None = None
        self.viewers = 0
        self._current_id: int | None = None  # accepted and not yet reported done
        self._early_stop: oc.StopReason | None = None  # a stop for the accepted job before it exists
        self._task: asyncio.Task | None = None
        self._adoption: Adoption | None = None  # a job of an earlier life, held until the web UI confirms
        self._quitting = asyncio.Event()  # ends the wait of an adoption for the web UI

    # -- state seen by the slot -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """From taking an offer until the slot has tidied up after its last job.

        Not ``self.job``: it is empty while a job is being accepted or wound down, and an offer in
        that window must not start a second queue task on the slot.
        """
        return self._task is not None and not self._task.done()

    @property
    def winding_down(self) -> bool:
        """Busy, but every job of the offer is reported done: a new offer can wait for the end."""
        return self.busy and self._current_id is None and not self.queue

    def held_job_ids(self) -> list[int]:
        """The jobs this slot holds for the web UI (re-registration sends them, §4)."""
        ids = [self._current_id] if self._current_id is not None else []
        if self.queue:
            ids += self.queue.pending_ids
        return list(dict.fromkeys(ids))  # an adopted job is both current and not yet popped from its queue

    def status_fields(self, conn_name: str) -> dict[str, Any]:
        """The ``worker_status`` of a busy slot (§6.2)."""
        message: dict[str, Any] = {"type": "worker_status", "status": "working", "current_webui_host": self.job_host}
        if self.job is not None and self.job_host == conn_name:
            message["job"] = self.job.status_info()
        if self.queue:
            message["pending_job_ids"] = {str(i): 1 for i in self.queue.pending_ids}
        return message

    async def wait_idle(self, timeout: float) -> None:
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)

    # -- commands ---------------------------------------------------------------------------------

    def start(self, offer: Offer, spawn: Spawn) -> None:
        assert not self.busy
        self.queue = JobQueue(offer.order)
        self.job_host = offer.conn.name
        self._task = spawn(self._run_offer(offer), f"queue-{self.instance}")

    def adopt(self, adoption: Adoption, spawn: Spawn) -> None:
        """Hold a job of an earlier life (registration names it, §4) and resume it once confirmed."""
        self._adoption = adoption
        self.start(Offer(adoption.conn, [QueuedJob(adoption.job_id, None)], {adoption.job_id: adoption.info}, True),
                   spawn)
        self._current_id = adoption.job_id

    def stop_job(self, job_id: int, reason: oc.StopReason) -> bool:
        """A stop command for one of our jobs (current, being accepted, or queued)."""
        if self.job is not None and job_id == self.job.id:
            self.job.request_stop(reason)
        elif job_id == self._current_id:  # accepted, Job object not created yet
            self._early_stop = reason
        elif self.queue and job_id in self.queue.pending_ids:
            self.queue.marked[job_id] = reason
            log.info("[slot %d] queued job %s will be skipped (%s)", self.instance, job_id, reason)
        else:
            return False
        return True

    def quit(self) -> None:
        self._quitting.set()
        if self.job is not None:
            self.job.request_stop(oc.QUIT)
        elif self._current_id is not None:
            self._early_stop = oc.QUIT

    def abort(self, job_id: int | None = None) -> bool:
        """Abort the running job (only if it is ``job_id``, when given)."""
        job = self.job
        if job is None or (job_id is not None and job.id != job_id) or job.state is JobState.STOPPED:
            return False
        job.request_stop(oc.ABORT)
        return True

    def live_command(self, kind: str) -> None:
        job = self.job
        assert job is not None
        if kind == "developer_session_start":
            job.enable_developer_session()
            return
        self.viewers = self.viewers + 1 if kind == "livelog_start" else max(0, self.viewers - 1)
        job.set_live_viewers(self.viewers)

    async def cancel(self) -> None:
        """The slot is going away: end the queue task now (the job inside kills its processes)."""
        from backend.tasks import cancel_and_wait

        if self._task is not None:
            await cancel_and_wait(self._task)

    # -- the queue task ---------------------------------------------------------------------------

    async def _run_offer(self, offer: Offer) -> None:
        try:
            await self._process_queue(offer)
        except Exception as exc:  # a bug in the runner: end the job honestly, keep the slot serving
            log.exception("[slot %d] unexpected error while running jobs", self.instance)
            await self._report_bug(offer.conn, exc)
        finally:
            self._current_id = None
            self.queue = None
            self.job = None
            self.job_host = None
            self.viewers = 0
        with contextlib.suppress(Exception):  # reported by _on_idle itself; the slot must go on
            await self._on_idle()

    async def _process_queue(self, offer: Offer) -> None:
        assert self.queue is not None
        conn = offer.conn
        while (item := self.queue.pop()) is not None:
            queued, skip = item
            info = offer.jobs[queued.job_id]
            if (adoption := self._adoption) is not None and adoption.job_id == info.id:
                self._adoption, self._current_id = None, info.id
                if not await adoption.confirm(self._quitting):
                    self._current_id = None
                    self.queue.record(info.id, False)
                    continue
                outcome = await self._run_job(conn, info, adoption)
                self.queue.record(info.id, outcome.ok)
                continue
            if self.services.flags.quitting:
                skip = "quit: worker has been stopped or restarted"
            elif (fatal := self._fatal_reason()) is not None:
                skip = f"worker broken: {fatal}"
            if skip is not None:
                await self._skip(conn, info, skip)
                continue
            self._current_id, self._early_stop = info.id, None
            if not await self._accept(conn, info, offer.single):
                self._current_id = None
                self.queue.record(info.id, False)
                continue
            outcome = await self._run_job(conn, info)
            self.queue.record(info.id, outcome.ok)
            if outcome.stop_reason == oc.API_FAILURE:
                conn.request_reregistration()

    async def _accept(self, conn: WebUIConnection, info: JobInfo, single: bool) -> bool:
        """Send ``accepted``; queued jobs may wait for a lost websocket (§6.5)."""
        if not conn.connected.is_set() and not single:
            attempts = self.config.tuning.accept_attempts
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(attempts * conn.reconnect_delay):
                    await conn.connected.wait()
        if not await conn.send({"type": "accepted", "jobid": info.id}):
            log.error("[slot %d] Unable to accept job %d because the websocket connection to %s has been lost.",
                      self.instance, info.id, conn.name)
            return False
        return True

    async def _run_job(self, conn: WebUIConnection, info: JobInfo, adoption: Adoption | None = None) -> JobOutcome:
        assert conn.worker_id is not None
        adopted = adoption is not None and adoption.process is not None  # its tree runs on: no sweep, no cleanup
        if not adopted:
            await sweep_pool(self.config.pool_dir, f"[slot {self.instance}] before job {info.id}:",
                             cgroups=self.services.cgroups, instance=self.instance)
        if not self.services.no_cleanup and not adopted:
            await self._clean_pool()
        ctx = self._job_context(conn, info)
        job = adoption.make_job(ctx) if adoption is not None else Job(info, ctx)
        recorder = make_recorder(job, conn, adoption)
        self.job = job
        if self.services.flags.quitting and self._early_stop is None:
            self._early_stop = oc.QUIT
        if self._early_stop is not None:
            job.request_stop(self._early_stop)
        self.services.bus.publish(ev.JobAccepted(
            instance=self.instance, job_id=info.id, name=info.name or info.settings_str.get("NAME", ""),
            host=conn.name, max_job_time=job.max_job_time,
            pending_job_ids=tuple(self.queue.pending_ids if self.queue else ())))
        started = time.monotonic()
        try:
            outcome = await job.run()
        finally:
            await recorder.finish()
            self.job = None
            self.viewers = 0
            if self.services.cache is not None:
                self.services.cache.unpin_job(info.id)
        log.debug("[slot %d] job %d finished: %s%s", self.instance, info.id, outcome.result,
                  f" ({outcome.reason})" if outcome.reason else "")
        self.services.bus.publish(ev.JobFinished(
            instance=self.instance, job_id=info.id, result=outcome.result, reason=outcome.reason,
            stop_reason=outcome.stop_reason, duration=time.monotonic() - started))
        await asyncio.to_thread(reap_orphan_zombies)
        if outcome.stop_reason == oc.API_FAILURE:
            await preserve_results(self.config.pool_dir, info.id, self.instance)
        return outcome

    def _job_context(self, conn: WebUIConnection, info: JobInfo) -> JobContext:
        assert conn.worker_id is not None
        services = self.services
        return JobContext(
            slot=self.config, host=conn.host, client=conn.client, worker_id=conn.worker_id,
            livehandler_base=conn.livehandler_base, bus=services.bus, prjdir=services.prjdir,
            isotovideo=services.isotovideo, worker_hostname=services.worker_hostname or "",
            image_pool=services.image_pool, assets=services.asset_provider(conn.client, conn.host, info.id),
            tests=services.tests_provider(conn.host),
            stop_grace=self.config.tuning.stop_grace, cgroups=services.cgroups,
            on_state=self._job_state_changed, on_reported=self._job_reported)

    def _job_reported(self, job: Job) -> None:
        """set_done is answered: the web UI may offer the next job now (it waits behind us)."""
        if self._current_id == job.id:
            self._current_id = None

    def _job_state_changed(self, job: Job) -> None:
        mapping = {JobState.SETUP: ev.SlotState.SETUP, JobState.RUNNING: ev.SlotState.RUNNING,
                   JobState.UPLOADING: ev.SlotState.UPLOADING, JobState.STOPPING: ev.SlotState.STOPPING}
        if job.state in mapping:
            self._on_state(mapping[job.state], job.id)

    async def _skip(self, conn: WebUIConnection, info: JobInfo, reason: str) -> None:
        params: list[tuple[str, object]] = [("result", "skipped")]
        if reason and reason not in ("skipped", oc.CANCEL):  # like the classic worker: no reason for these
            params.append(("reason", reason))
        params.append(("worker_id", conn.worker_id))
        log.info("[slot %d] skipping job %d (%s)", self.instance, info.id, reason)
        with contextlib.suppress(ApiError):
            await conn.client.request("POST", f"/api/v1/jobs/{info.id}/set_done", params=params, attempts=1)
        assert self.queue is not None
        self.queue.record(info.id, False)
        self.services.bus.publish(ev.JobSkipped(instance=self.instance, job_id=info.id, reason=reason))

    async def _report_bug(self, conn: WebUIConnection, exc: Exception) -> None:
        """The runner itself failed: a job it accepted must still end (incomplete, with the reason)."""
        job_id = self._current_id
        if job_id is None or conn.worker_id is None:
            return
        if self.job is not None and self.job.process is not None:
            with contextlib.suppress(Exception):
                await self.job.process.stop(min(self.job.ctx.stop_grace, 5.0))
        reason = f"{oc.EXCEPTION}: qaworker bug: {type(exc).__name__}: {exc}"[:500]
        params = oc.SetDone("incomplete", reason).params(conn.worker_id)
        try:
            await conn.client.request("POST", f"/api/v1/jobs/{job_id}/set_done", params=params, attempts=3)
        except ApiError as err:
            log.error("[slot %d] could not report job %d as incomplete: %s", self.instance, job_id, err)
        self.services.bus.publish(ev.JobFinished(instance=self.instance, job_id=job_id, result="incomplete",
                                                 reason=reason, stop_reason=oc.EXCEPTION, duration=0.0))

    async def _clean_pool(self) -> None:
        from backend.engine.isotovideo import qemu_still_running

        keep = await asyncio.to_thread(qemu_still_running, self.config.pool_dir) is not None
        try:
            await self.pool.clean(keep_qemu_pid=keep)
        except OSError as exc:
            log.warning("[slot %d] pool cleanup failed: %s", self.instance, exc)

