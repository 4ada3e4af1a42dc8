"""One job from acceptance to ``set_done`` (PROTOCOL.md §8.4, §9-§11, §14).

A ``Job`` is owned by exactly one task (``run()``). Everything that wants it to end — the web UI
(cancel/abort/obsolete/quit), the worker (quit), a timeout, a dead isotovideo, a failed upload —
calls ``request_stop()``, and ``run()`` carries out the one stop sequence of §14.2. The final
result and reason are decided in ``backend.job.outcome.decide``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from backend.config import HostConfig, SlotConfig
from backend.engine import cmdsrv
from backend.engine.cgroup import Cgroups
from backend.engine.cgroup_usage import report_usage
from backend.engine.isotovideo import IsotovideoProcess
from backend.engine.watch import PoolWatcher
from backend.events import EventBus
from backend.job import outcome as oc
from backend.job.hooks import sync_assets_step
from backend.job.imageopt import ImagePool
from backend.job.joblog import JobLog
from backend.job.record import JobRecorder
from backend.job.setup import (
    SetupError,
    SetupInput,
    SetupResult,
    job_timeouts,
    needs_synced_tests,
    ports_for,
    setup_job,
)
from backend.job.spawn import SpawnError, SpawnRequest, spawn_isotovideo
from backend.job.status import JobReporter, ReporterContext
from backend.ports import AssetProvider, TestsProvider
from backend.tasks import PhaseEnd, beside, run_phase
from backend.webui.client import ApiClient, ApiError
from backend.webui.messages import JobInfo

log = logging.getLogger(__name__)

SETUP_HEARTBEAT_INTERVAL = 5.0


class JobState(StrEnum):
    NEW = "new"
    SETUP = "setup"
    RUNNING = "running"
    STOPPING = "stopping"
    UPLOADING = "uploading"
    STOPPED = "stopped"


@dataclass
class JobContext:
    slot: SlotConfig
    host: HostConfig
    client: ApiClient
    worker_id: int
    livehandler_base: str
    bus: EventBus
    prjdir: Path
    isotovideo: str
    worker_hostname: str
    image_pool: ImagePool
    assets: AssetProvider | None = None
    tests: TestsProvider | None = None  # synced tests from TESTPOOLSERVER (through the cache)
    stop_grace: float = 30.0
    cgroups: Cgroups | None = None  # per-job cgroups v2 (backend/engine/cgroup.py), when the worker has them
    on_state: Callable[[Job], None] | None = None  # the slot re-publishes slot state / worker_status
    on_reported: Callable[[Job], None] | None = None  # set_done was answered (or given up)


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    stop_reason: str
    result: str
    reason: str
    ok: bool


class Job:
    def __init__(self, info: JobInfo, ctx: JobContext) -> None:
        self.info = info
        self.ctx = ctx
        self.id = info.id
        self.state = JobState.NEW
        self.stop_request: oc.StopRequest | None = None
        self._stop_event = asyncio.Event()
        self.pool_dir = ctx.slot.pool_dir
        self.settings = info.settings_str
        self.max_setup_time, self.max_job_time = job_timeouts(self.settings)
        self.process: IsotovideoProcess | None = None
        self.log = JobLog(self.pool_dir, ctx.slot.instance, self.id)
        self.marker = f"qaworker-{os.getpid()}-{ctx.slot.instance}-{self.id}-{time.monotonic_ns()}"
        qemuport, _vnc = ports_for(ctx.slot.instance)
        jobtoken = self.settings.get("JOBTOKEN", "")
        self.cmd_srv_url = cmdsrv.cmd_srv_url(qemuport, jobtoken)
        self._cmd_srv_ws = cmdsrv.ws_url(qemuport, jobtoken)
        self.reporter = JobReporter(ReporterContext(
            client=ctx.client, job_id=self.id, worker_id=ctx.worker_id, instance=ctx.slot.instance,
            pool_dir=self.pool_dir, settings=dict(self.settings), cmd_srv_url=self.cmd_srv_url,
            worker_hostname=ctx.worker_hostname, livehandler_base=ctx.livehandler_base, bus=ctx.bus,
            image_pool=ctx.image_pool, request_stop=self.request_stop, tuning=ctx.slot.tuning))
        self._started_at = time.monotonic()
        self._upload_task: asyncio.Task | None = None
        self._quit_during_upload = False
        self.recorder: JobRecorder | None = None  # the job record a later worker adopts from (runner)

    # -- commands from outside ---------------------------------------------------------------------

    def request_stop(self, reason: oc.StopReason | str, detail: str = "") -> None:
        """Ask the job to stop; the first request wins (later ones are logged)."""
        reason = oc.StopReason(reason)
        if self.stop_request is not None:
            if reason == oc.QUIT and self._upload_task is not None and not self._upload_task.done():
                # The worker is quitting: don't keep it waiting for the final uploads (the job is
                # duplicated and its files stay in the pool).
                self.log.note("Worker quits: final uploads abandoned, the job ends with reason quit")
                self._quit_during_upload = True
                self._upload_task.cancel()
                return
            log.debug("[job %d] already stopping (%s), ignoring %s", self.id, self.stop_request.reason, reason)
            return
        self.stop_request = oc.StopRequest(reason, detail)
        if reason is not oc.DONE:  # a normal end is told by "Isotovideo exit status: 0"
            self.log.note(f"Stopping job {self.id}: {reason}{': ' + detail if detail else ''}")
        self._stop_event.set()

    def set_live_viewers(self, count: int) -> None:
        self.reporter.set_live_viewers(count)

    def enable_developer_session(self) -> None:
        self.reporter.enable_developer_session()

    def status_info(self) -> dict[str, Any]:
        """The job object for worker_status (§6.2): as received, plus the command server URL."""
        data = self.info.model_dump()
        data["URL"] = self.cmd_srv_url
        return data

    # -- the owner task ------------------------------------------------------------------------------

    async def run(self) -> JobOutcome:
        try:
            try:
                await self._run_phases()
            except Exception as exc:  # an unexpected bug must still end the job cleanly
                log.exception("[job %d] unexpected error", self.id)
                self.request_stop(oc.EXCEPTION, str(exc))
            return await self._stop_sequence()
        except asyncio.CancelledError:
            # The worker gave up waiting (quit deadline): at least leave no process behind.
            self.request_stop(oc.QUIT)
            if self.process is not None:
                try:
                    await asyncio.shield(self.process.stop(min(self.ctx.stop_grace, 5.0)))
                except Exception:
                    log.exception("[job %d] stopping isotovideo after cancellation failed", self.id)
            raise

    async def _run_phases(self) -> None:
        self._set_state(JobState.SETUP)
        self.log.autoinst(f"[{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}] +++ setup notes +++\n"
                          f"Running on {os.uname().nodename}:{self.ctx.slot.instance} "
                          f"({' '.join(os.uname()[i] for i in (0, 2, 3, 4))})")
        try:
            setup = await run_phase(self._setup(), stop=self._stop_event, timeout=self.max_setup_time,
                                    companions=[self._setup_heartbeats()])
        except SetupError as exc:
            self.request_stop(oc.SETUP_FAILURE, exc.reason)
            return
        if setup.end is PhaseEnd.TIMED_OUT:
            self.request_stop(oc.TIMEOUT, "timeout: setup exceeded MAX_SETUP_TIME")
        if setup.value is None:
            return
        self.reporter.ctx.settings = {k: str(v) for k, v in setup.value.vars.items()}
        if not await self._start_isotovideo(setup.value.env):
            return
        await self._watch_isotovideo(self.max_job_time)

    async def _watch_isotovideo(self, timeout: float) -> None:
        """RUNNING: live status and upload rounds until isotovideo ends, a stop or ``timeout``."""
        self._set_state(JobState.RUNNING)
        self.reporter.start()
        assert self.process is not None
        # the pool watcher and the command server's websocket feed the live status while it runs
        watcher = PoolWatcher(self.pool_dir, self.reporter.trigger)
        monitor = cmdsrv.CommandServerMonitor(self._cmd_srv_ws, lambda _s: self.reporter.trigger())
        usage = ([report_usage(self.process.cgroup, self.ctx.bus, self.ctx.slot.instance, self.id)]
                 if self.process.cgroup is not None else [])
        run = await run_phase(self.process.wait(), stop=self._stop_event, timeout=timeout,
                              companions=[watcher.run(), monitor.run(), *usage])
        if run.end is PhaseEnd.TIMED_OUT:
            self.request_stop(oc.TIMEOUT, "timeout: test execution exceeded MAX_JOB_TIME")
        elif run.end is PhaseEnd.FINISHED and self.stop_request is None:
            exit_code = run.value
            self.log.autoinst(f"Isotovideo exit status: {exit_code}")
            self.request_stop(oc.DONE if exit_code == 0 else oc.DIED)

    async def _setup(self) -> SetupResult:
        tests_dir = None
        if self.ctx.tests is not None and needs_synced_tests(self.settings):
            tests_dir = await self.ctx.tests.provide(self.settings)
        inp = SetupInput(job=self.info.model_dump(), slot=self.ctx.slot, host=self.ctx.host,
                         worker_id=self.ctx.worker_id, pool_dir=self.pool_dir, prjdir=self.ctx.prjdir,
                         worker_hostname=self.ctx.worker_hostname, assets=self.ctx.assets, tests_dir=tests_dir,
                         before_assets=sync_assets_step(self.ctx.slot.tuning.sync_assets_hook, self.pool_dir,
                                                        self.log.note))
        return await setup_job(inp)

    async def _setup_heartbeats(self) -> None:
        """Tell the web UI the job is alive while setup waits on downloads (§10.2 step 11)."""
        while True:
            await asyncio.sleep(SETUP_HEARTBEAT_INTERVAL)
            if self.stop_request is not None:
                return
            with contextlib.suppress(ApiError):
                await self.ctx.client.request("POST", f"/api/v1/jobs/{self.id}/status", attempts=1,
                                              json={"status": {"setup": 1, "worker_id": self.ctx.worker_id}})

    async def _start_isotovideo(self, env: dict[str, str]) -> bool:
        ctx = self.ctx
        request = SpawnRequest(ctx.isotovideo, self.settings, self.pool_dir, ctx.prjdir, ctx.host.share_dir,
                               ctx.slot.settings.get("CACHEDIRECTORY"), ctx.slot.instance, self.id, self.marker,
                               env, ctx.cgroups)
        try:
            # The first status post (it makes the job "running") goes out as soon as the process exists,
            # as upstream's goes out right after its fork, not once isotovideo has been exec'd.
            self.process = await spawn_isotovideo(request, self.log.note, on_spawned=self.reporter.start)
        except SpawnError as exc:
            self.log.note(str(exc), logging.ERROR)
            self.request_stop(oc.SETUP_FAILURE, exc.detail)
            return False
        monitored = self.process.monitored
        self.log.note(f"isotovideo has been started (PID: {monitored.isotovideo_pid}) under monitor {self.process.pid}"
                      if monitored else f"isotovideo has been started (PID: {self.process.pid})")
        if self.recorder is not None and self.process.monitored is not None:
            self.recorder.update(vars=dict(self.reporter.ctx.settings))
            self.recorder.set_monitor(self.process.monitored, self.process.cgroup and self.process.cgroup.path)
        if self.stop_request is not None:  # stopped while starting: the stop sequence kills it
            return False
        return True

    # -- stopping (§14.2) ----------------------------------------------------------------------------

    async def _stop_sequence(self) -> JobOutcome:
        stop = self.stop_request or oc.StopRequest(oc.EXCEPTION, "stopped without a reason")
        was_active = self.state in (JobState.SETUP, JobState.RUNNING)
        self._set_state(JobState.STOPPING)
        if self.recorder is not None:
            self.recorder.update(state="stopping", stop_reason=str(stop.reason), stop_detail=stop.detail)
        quitting = stop.reason == oc.QUIT
        attempts = 3 if quitting else None
        try:
            stop = await self._announce_and_end(stop) if was_active else await self._end_isotovideo(stop)
            self.log.autoinst(f"+++ worker notes +++\nEnd time: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}"
                              f"\nResult: {stop.reason}")
            await self.log.flush()
            final_posted = False
            if was_active and stop.reason not in oc.SKIP_UPLOADS:
                self._set_state(JobState.UPLOADING)
                if quitting:
                    stop = await self._final_uploads(stop)
                else:
                    stop = await self._uploads_beside_final_status(stop)
                    final_posted = True
                quitting = quitting or stop.reason == oc.QUIT
            await self.reporter.stop_periodic()
            if quitting and was_active:
                stop = await self._duplicate(stop, attempts)
            if was_active and stop.reason != oc.API_FAILURE and not final_posted:
                await self.reporter.final_status()
            decision = await self._decide(stop)
            result = await self._set_done(decision) if was_active or stop.reason != oc.QUIT else "incomplete"
        finally:
            if self.ctx.on_reported is not None:
                self.ctx.on_reported(self)
            await self.reporter.aclose()  # its screenshot watcher and any preparation still running
            await self.log.close()
        self._set_state(JobState.STOPPED)
        final = result or decision.result or "none"
        ok = stop.reason == oc.DONE and final in oc.OK_RESULTS
        return JobOutcome(self.id, stop.reason, final, decision.reason or "", ok)

    async def _announce_and_end(self, stop: oc.StopRequest) -> oc.StopRequest:
        """§14.2 steps 2-4. A running isotovideo is told and stopped only after the "uploading" post, as
        upstream orders it (a job cancelled mid-run must stay ``cancelled``); one that has ended by itself
        has nothing left to kill, so its sweep runs beside the post."""
        process = self.process
        if process is None or process.returncode is None:
            await self.reporter.post_uploading()
            return await self._end_isotovideo(stop)
        return await beside(self._end_isotovideo(stop), self.reporter.post_uploading())

    async def _uploads_beside_final_status(self, stop: oc.StopRequest) -> oc.StopRequest:
        """§14.2 steps 6-8 overlapped: the logs go up while the last result round finishes and the final
        status is posted; neither needs the other, and set_done waits for both (upstream's logs go up in a
        forked process too). A failed log upload still ends the job ``api-failure``; the results the web
        UI already has then do no harm. Not while quitting: there the duplicate comes before the status."""
        async def last_round() -> None:
            await self.reporter.stop_periodic()
            await self.reporter.final_status()

        return await beside(self._final_uploads(stop), last_round())

    async def _final_uploads(self, stop: oc.StopRequest) -> oc.StopRequest:
        self._upload_task = asyncio.create_task(self.reporter.final_uploads(stop.reason))
        try:
            error = await self._upload_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._quit_during_upload or (current is not None and current.cancelling()):
                raise  # not (only) our own abandoning of the uploads: a cancellation of the job
            return oc.StopRequest(oc.QUIT)
        if error:
            self.log.note(f"Upload failed: {error}", logging.ERROR)
            return oc.StopRequest(oc.API_FAILURE, error.removeprefix("api failure: "))
        return stop

    async def _end_isotovideo(self, stop: oc.StopRequest) -> oc.StopRequest:
        process = self.process
        if process is None:
            return stop
        if process.returncode is None:
            await cmdsrv.broadcast(self.cmd_srv_url, {"stopping_test_execution": stop.reason})
        await process.stop(self.ctx.stop_grace)
        return stop

    async def _duplicate(self, stop: oc.StopRequest, attempts: int | None) -> oc.StopRequest:
        try:
            await self.ctx.client.request("POST", f"/api/v1/jobs/{self.id}/duplicate",
                                          params={"dup_type_auto": 1}, attempts=attempts)
        except ApiError as exc:
            return oc.StopRequest(oc.API_FAILURE, f"{exc} on duplication after quit")
        return stop

    async def _decide(self, stop: oc.StopRequest) -> oc.SetDone:
        base = await asyncio.to_thread(oc.read_base_state, self.pool_dir)
        tail = await asyncio.to_thread(_read_tail, self.pool_dir / "autoinst-log.txt")
        upload_error = self.reporter.upload_error if stop.reason == oc.DONE else None
        return oc.decide(stop, base, upload_error=upload_error, log_tail=tail,
                         no_space="No space left on device" in tail)

    async def _set_done(self, decision: oc.SetDone) -> str | None:
        """set_done without retries, errors only logged (§16). Returns the web UI's final result."""
        try:
            response = await self.ctx.client.request(
                "POST", f"/api/v1/jobs/{self.id}/set_done", params=decision.params(self.ctx.worker_id),
                attempts=1)
        except ApiError as exc:
            self.log.note(f"Unable to set the job done: {exc}", logging.WARNING)
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        result = body.get("result") if isinstance(body, dict) else None
        return result if isinstance(result, str) else None

    def _set_state(self, state: JobState) -> None:
        self.state = state
        if self.ctx.on_state is not None:
            self.ctx.on_state(self)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started_at


def _read_tail(path: Path, size: int = 65536) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
