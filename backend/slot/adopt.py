"""Live restore: a slot that starts and finds a job of its own still running in its pool picks it up.

Docker's live-restore / podman's conmon are the anchors. At slot start ``find_adoption`` reads the
job record (``backend.job.record``) and decides, before the slot registers:

* no record → nothing to do;
* corrupt, of another slot / pool / web UI, or its monitor pid now belongs to another program (start
  time or job marker differ) → never trusted: the record is set aside as ``job.json.rejected``, nothing
  is killed on its word (leftovers of ours are the sweep's, which kills only marker-carrying processes);
* otherwise an ``Adoption``: the slot holds the job id (registration sends it, PROTOCOL.md §4/§5.2),
  and once registered ``confirm`` asks the web UI whether the job is still ours and running.

Confirmed, the job goes on as an ``AdoptedJob``: no setup, the live monitor is waited for through a
pidfd (``AdoptedProcess``), its cgroup is re-attached when still ours (``reattach_cgroup``:
stop = ``cgroup.kill``, memory/CPU figures as for a fresh job), status posts and upload rounds resume
from the recorded state, and the stop sequence is the one of any job — so the result and reason are
those it would have had anyway.
A record written during setup re-runs the setup under the same job id; one written while stopping
resumes the stop sequence with the recorded reason. Given up by the web UI: the old tree is killed
(by pid, identity checked), the results go to ``.preserved/``, the slot takes new work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from backend.engine.cgroup import JobCgroup
from backend.engine.child import wait_pid_exit
from backend.engine.isotovideo import sweep_job_processes
from backend.engine.monitored import Monitored, process_matches, read_exit_record
from backend.job.job import Job, JobContext, JobState
from backend.job.preserve import preserve_results
from backend.job.record import (
    JobRecord,
    JobRecorder,
    cgroup_problem,
    clear_record,
    exit_path,
    load_record,
    monitor_problem,
    new_record,
    record_path,
)
from backend.webui.client import ApiError
from backend.webui.connection import WebUIConnection
from backend.webui.messages import JobInfo, parse_job

log = logging.getLogger(__name__)

WEBUI_KEEPS = frozenset({"assigned", "setup", "running", "uploading"})  # web UI states that are still ours


class AdoptedProcess:
    """A monitor (and its isotovideo) started by an earlier life of the worker: same surface as
    ``IsotovideoProcess`` for the ``Job``. Not our child: waited for through a pidfd."""

    def __init__(self, monitored: Monitored, marker: str, pool_dir: Path, alive: bool,
                 cgroup: JobCgroup | None = None) -> None:
        self.monitored = monitored
        self.pid = monitored.monitor_pid
        self.marker = marker
        self.pool_dir = pool_dir
        self.cgroup = cgroup  # the job's own cgroup, re-attached from the record (``reattach_cgroup``)
        self._returncode: int | None = None if alive else self._recorded_returncode()
        self._stop_task: asyncio.Task[None] | None = None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _recorded_returncode(self) -> int:
        record = read_exit_record(self.monitored.exit_file)
        if record is not None and record["monitor_pid"] == self.pid:
            return int(record["returncode"])
        log.warning("monitor %d ended without an exit record; isotovideo counts as killed", self.pid)
        return -signal.SIGKILL

    async def wait(self) -> int:
        if self._returncode is None:
            await wait_pid_exit(self.pid)
            self._returncode = await asyncio.to_thread(self._recorded_returncode)
        return self._returncode

    async def stop(self, grace: float = 30.0) -> None:
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self._stop(grace))
        await asyncio.shield(self._stop_task)

    async def _stop(self, grace: float) -> None:
        if self._returncode is None and await self._still_ours():
            log.info("stopping adopted isotovideo (monitor pid %d) with SIGTERM to its process group", self.pid)
            _killpg(self.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await self.wait()
            except TimeoutError:
                log.warning("adopted isotovideo (monitor pid %d) still running after %.0f s, SIGKILL", self.pid, grace)
        if self.cgroup is not None:  # whatever is left of the job goes at once, double-forked daemons included
            killed = await asyncio.to_thread(self.cgroup.kill)
            if killed:
                log.info("cgroup.kill of %s: %s", self.cgroup.path, killed)
        if await self._still_ours():
            _killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self.wait()
        if self._returncode is None:
            self._returncode = -signal.SIGKILL
        await sweep_job_processes(self.marker, self.pool_dir, grace=min(grace, 5.0))
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.remove)

    async def _still_ours(self) -> bool:
        m = self.monitored
        return await asyncio.to_thread(process_matches, m.monitor_pid, m.monitor_start, self.marker) is None


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class AdoptedJob(Job):
    """A running job taken over from an earlier life: no setup, the recorded monitor is waited for."""

    def __init__(self, info: JobInfo, ctx: JobContext, record: JobRecord, process: AdoptedProcess) -> None:
        super().__init__(info, ctx)
        self.marker = record.marker
        self.process = process  # type: ignore[assignment]  # the same surface as IsotovideoProcess
        self.record = record
        if record.vars:
            self.reporter.ctx.settings = dict(record.vars)
        up = record.upload
        self.reporter.restore_upload_state(up.current_module, up.known_images, up.sent_files)

    async def _run_phases(self) -> None:
        self.log.note(f"qaworker (pid {os.getpid()}) took over job {self.id} from pid {self.record.worker_pid}: "
                      f"monitor pid {self.process.pid if self.process else '?'}")
        if self.record.state == "stopping" and self.record.stop_reason:
            self._set_state(JobState.RUNNING)
            self.request_stop(self.record.stop_reason, self.record.stop_detail)
            return
        ran = time.time() - (self.record.running_since or self.record.accepted_at)
        await self._watch_isotovideo(max(1.0, self.max_job_time - ran))


@dataclass
class Adoption:
    """A job of an earlier life that this slot holds until the web UI confirmed (or gave it up)."""

    record: JobRecord
    info: JobInfo
    conn: WebUIConnection
    process: AdoptedProcess | None  # None: the record was written during setup

    @property
    def job_id(self) -> int:
        return self.info.id

    def make_job(self, ctx: JobContext) -> Job:
        if self.process is None:
            return Job(self.info, ctx)  # the setup is simply done again, under the same job id
        return AdoptedJob(self.info, ctx, self.record, self.process)

    async def confirm(self, quit: asyncio.Event) -> bool:
        """Once registered: is the job still ours and running? If not, end the old tree (§ docstring).

        A quit before the web UI could be asked ends the old tree as well (SIGTERM means: jobs end).
        """
        conn = self.conn
        if not conn.connected.is_set():
            waits = {asyncio.ensure_future(conn.connected.wait()), asyncio.ensure_future(quit.wait())}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
        why = "the worker is quitting" if quit.is_set() else await self._why_not_ours(conn)
        if why is None and self.process is None:
            # setup is done again: whatever of it (or of an isotovideo started in the last moment before
            # the record named it) still runs with the job's marker goes first
            await sweep_job_processes(self.record.marker, Path(self.record.pool_dir))
        if why is None:
            log.info("[slot %d] adopting job %d (monitor pid %s) from pid %d", self.record.instance, self.job_id,
                     self.process.pid if self.process else "-", self.record.worker_pid)
            return True
        log.warning("[slot %d] not adopting job %d: %s; ending its processes", self.record.instance, self.job_id, why)
        await self.give_up()
        return False

    async def _why_not_ours(self, conn: WebUIConnection) -> str | None:
        if conn.worker_id != self.record.worker_id:
            return f"the record is of worker {self.record.worker_id}, the web UI knows this slot as {conn.worker_id}"
        try:
            response = await conn.client.request("GET", f"/api/v1/jobs/{self.job_id}", attempts=3)
            body = response.json()
        except (ApiError, ValueError) as exc:
            return f"the web UI does not show the job ({exc})"
        job = body.get("job") if isinstance(body, dict) else None
        if not isinstance(job, dict):
            return "the web UI answered without the job"
        state, assigned = job.get("state"), job.get("assigned_worker_id", conn.worker_id)
        if state not in WEBUI_KEEPS:
            return f"the web UI has it {state} ({job.get('result')})"
        if assigned != conn.worker_id:
            return f"the web UI has it assigned to worker {assigned}"
        return None

    async def give_up(self) -> None:
        pool = Path(self.record.pool_dir)
        if self.process is not None:
            await self.process.stop(5.0)
        else:
            await sweep_job_processes(self.record.marker, pool)
        await preserve_results(pool, self.job_id, self.record.instance)
        await asyncio.to_thread(clear_record, pool)

    def recorder(self, pool_dir: Path) -> JobRecorder:
        self.record.worker_pid = os.getpid()
        return JobRecorder(pool_dir, self.record)


def make_recorder(job: Job, conn: WebUIConnection, adoption: Adoption | None) -> JobRecorder:
    """The job's record keeper, written at once; the reporter tells it what the web UI has."""
    pool = job.pool_dir
    if adoption is not None:
        recorder = adoption.recorder(pool)
    else:
        assert conn.worker_id is not None
        recorder = JobRecorder(pool, new_record(webui=conn.name, base_url=conn.client.base_url,
                                                instance=job.ctx.slot.instance, pool_dir=pool,
                                                worker_id=conn.worker_id, job=job.info.model_dump(),
                                                marker=job.marker))
    job.recorder = recorder

    def upload_changed() -> None:
        module, images, files = job.reporter.upload_state()
        recorder.record.upload.current_module = module
        recorder.record.upload.known_images = images
        recorder.record.upload.sent_files = files
        recorder.update()

    job.reporter.on_change = upload_changed
    recorder.update(state=recorder.record.state)
    return recorder


def find_adoption(pool_dir: Path, instance: int, connections: dict[str, WebUIConnection]) -> Adoption | None:
    """Blocking (reads the pool and /proc): the job this slot should pick up, or None (see docstring)."""
    record, why = load_record(pool_dir)
    if record is None:
        if why != "no job record":
            _reject(pool_dir, why)
        return None
    problem = _foreign(record, pool_dir, instance, connections)
    info = parse_job(record.job)
    if problem is None and isinstance(info, str):
        problem = f"its job object is invalid ({info})"
    if problem is not None:
        _reject(pool_dir, f"job record of job {record.job_id} is not ours: {problem}")
        return None
    assert isinstance(info, JobInfo)
    process = None
    if record.monitor is not None:
        process = _attach(record, pool_dir)
        if process is None:
            return None
    log.info("[slot %d] found job %d of pid %d in %s (%s); holding it for the web UI", instance, record.job_id,
             record.worker_pid, pool_dir, record.state)
    return Adoption(record, info, connections[record.webui], process)


def _attach(record: JobRecord, pool_dir: Path) -> AdoptedProcess | None:
    m = record.monitor
    assert m is not None
    monitored = Monitored(m.monitor_pid, m.monitor_start, m.isotovideo_pid, m.isotovideo_start, exit_path(pool_dir))
    problem = monitor_problem(record)
    if problem is None:
        return AdoptedProcess(monitored, record.marker, pool_dir, alive=True, cgroup=reattach_cgroup(record, True))
    ended = read_exit_record(exit_path(pool_dir))
    if ended is not None and ended["monitor_pid"] == m.monitor_pid and ended.get("monitor_start") == m.monitor_start:
        return AdoptedProcess(monitored, record.marker, pool_dir, alive=False,  # it ended while we were away
                              cgroup=reattach_cgroup(record, False))
    _reject(pool_dir, f"job {record.job_id}'s monitor is not ours any more: {problem}; nothing killed")
    return None


def reattach_cgroup(record: JobRecord, monitor_alive: bool) -> JobCgroup | None:
    """The job's own cgroup back (stop = ``cgroup.kill``, memory/CPU figures) when the record names one
    that is provably the job's; else None, logged: the job runs on with process-group kill + sweep."""
    if record.cgroup is None:
        return None
    problem = cgroup_problem(record, monitor_alive)
    if problem is not None:
        log.warning("[slot %d] job %d runs on without its cgroup %s: %s", record.instance, record.job_id,
                    record.cgroup, problem)
        return None
    log.info("[slot %d] job %d: re-attached its cgroup %s", record.instance, record.job_id, record.cgroup)
    return JobCgroup(Path(record.cgroup))


def _foreign(record: JobRecord, pool_dir: Path, instance: int, connections: dict[str, WebUIConnection]) -> str | None:
    if record.instance != instance:
        return f"it is of slot {record.instance}"
    with contextlib.suppress(OSError):
        if Path(record.pool_dir).resolve() != pool_dir.resolve():
            return f"it names pool {record.pool_dir}"
    if record.webui not in connections:
        return f"its web UI {record.webui} is not configured for this slot"
    if record.monitor is not None and record.monitor.monitor_pid == os.getpid():
        return "it names this very process"
    return None


def _reject(pool_dir: Path, why: str) -> None:
    log.warning("not adopting anything in %s: %s", pool_dir, why)
    path = record_path(pool_dir)
    try:
        os.replace(path, path.with_name(path.name + ".rejected"))
    except OSError:
        pass
    with contextlib.suppress(OSError):
        exit_path(pool_dir).unlink()
