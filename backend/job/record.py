"""The job record ``<pool>/.qaworker/job.json``: what a later worker needs to pick a running job up.

Written atomically (temp file + rename, off the loop) whenever it changes: at the start of a job, when
isotovideo runs (monitor + isotovideo pids with their start times, the job's cgroup), after every status/upload round
(the module the web UI was last told about, the images and files it has) and when the job stops. It
is deleted once ``set_done`` is answered. ``load_record`` never trusts the file: anything that does
not parse into a ``JobRecord`` is reported as corrupt with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from backend.engine.cgroup import JOB_PREFIX, SLOT_PREFIX, JobCgroup
from backend.engine.monitor import EXIT_FILE, STATE_DIR, write_json_atomic
from backend.engine.monitored import Monitored, process_matches

log = logging.getLogger(__name__)

RECORD_FILE = "job.json"
RECORD_VERSION = 1


class MonitorPids(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitor_pid: int
    monitor_start: int
    isotovideo_pid: int
    isotovideo_start: int


class UploadState(BaseModel):
    """What the web UI already has, so a resumed job uploads nothing twice."""

    model_config = ConfigDict(extra="forbid")
    current_module: str = ""
    known_images: list[str] = []
    sent_files: list[str] = []


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = RECORD_VERSION
    webui: str  # the configured web UI host (the slot's connection name)
    base_url: str
    instance: int
    pool_dir: str
    worker_id: int
    worker_pid: int  # the qaworker process that wrote it (for the log only)
    job: dict[str, Any]
    marker: str
    state: Literal["setup", "running", "stopping"] = "setup"
    accepted_at: float
    running_since: float | None = None
    monitor: MonitorPids | None = None
    cgroup: str | None = None  # the job's own cgroup v2 directory, when it has one (``cgroup_problem``)
    vars: dict[str, str] = {}
    upload: UploadState = UploadState()
    stop_reason: str | None = None  # set once the stop sequence began (state "stopping")
    stop_detail: str = ""
    updated_at: float = 0.0

    @property
    def job_id(self) -> int:
        return int(self.job["id"])


def state_dir(pool_dir: Path) -> Path:
    return pool_dir / STATE_DIR


def record_path(pool_dir: Path) -> Path:
    return state_dir(pool_dir) / RECORD_FILE


def exit_path(pool_dir: Path) -> Path:
    return state_dir(pool_dir) / EXIT_FILE


def load_record(pool_dir: Path) -> tuple[JobRecord | None, str]:
    """(record, "") or (None, why there is none). Blocking."""
    path = record_path(pool_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "no job record"
    except OSError as exc:
        return None, f"job record {path} unreadable: {exc}"
    try:
        record = JobRecord.model_validate_json(raw)
        int(record.job.get("id"))  # type: ignore[arg-type]
    except (ValidationError, ValueError, TypeError) as exc:
        return None, f"job record {path} is corrupt: {str(exc).splitlines()[0]}"
    return record, ""


def clear_record(pool_dir: Path) -> None:
    """Remove job.json and exit.json (blocking): the job is over or was never ours."""
    for path in (record_path(pool_dir), exit_path(pool_dir)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def monitor_problem(record: JobRecord) -> str | None:
    """None when the record's monitor is alive and provably the one we started, else why not. Blocking."""
    if record.monitor is None:
        return "the record names no monitor"
    return process_matches(record.monitor.monitor_pid, record.monitor.monitor_start, record.marker)


def cgroup_problem(record: JobRecord, monitor_alive: bool) -> str | None:
    """None when the record's cgroup is provably the job's, else why not. Blocking (cgroupfs).

    Provably = named the way ``Cgroups.create`` names it for this slot and job, still a cgroup v2
    directory and, while the monitor lives, holding the (identity-checked) monitor pid.
    """
    if record.cgroup is None:
        return "the record names no cgroup"
    path = Path(record.cgroup)
    if (path.name, path.parent.name) != (f"{JOB_PREFIX}{record.job_id}", f"{SLOT_PREFIX}{record.instance}"):
        return "it is not named like this slot's cgroup of the job"
    if not (path / "cgroup.procs").is_file():
        return "it does not exist any more" if not path.exists() else "it is not a cgroup v2 directory"
    if monitor_alive and record.monitor is not None and record.monitor.monitor_pid not in JobCgroup(path).pids():
        return f"the job's monitor (pid {record.monitor.monitor_pid}) is not in it"
    return None


def protected_pids(pool_dir: Path) -> set[int]:
    """Pids a sweep must spare: the live, provably-ours monitor and isotovideo of the pool's record,
    and everything in the job's own cgroup (double-forked helpers that left the monitor's tree).

    (Their descendants belong to the job as well; a sweep that kills by marker must skip the whole
    job while an adoption is possible.) Blocking.
    """
    record, _why = load_record(pool_dir)
    if record is None or record.monitor is None or monitor_problem(record) is not None:
        return set()
    pids = {record.monitor.monitor_pid}
    m = record.monitor
    if process_matches(m.isotovideo_pid, m.isotovideo_start, record.marker) is None:
        pids.add(m.isotovideo_pid)
    if record.cgroup is not None and cgroup_problem(record, monitor_alive=True) is None:
        pids.update(JobCgroup(Path(record.cgroup)).pids())
    return pids


class JobRecorder:
    """Keeps one job's record on disk; ``update`` is cheap, the writes run in a thread, coalesced."""

    def __init__(self, pool_dir: Path, record: JobRecord) -> None:
        self.pool_dir = pool_dir
        self.record = record
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def update(self, **fields: Any) -> None:
        if self._closed:
            return
        for name, value in fields.items():
            setattr(self.record, name, value)
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="job-record")

    def set_monitor(self, monitored: Monitored, cgroup: Path | None = None) -> None:
        self.update(state="running", running_since=time.time(), cgroup=str(cgroup) if cgroup else None,
                    monitor=MonitorPids(monitor_pid=monitored.monitor_pid, monitor_start=monitored.monitor_start,
                                        isotovideo_pid=monitored.isotovideo_pid,
                                        isotovideo_start=monitored.isotovideo_start))

    async def flush(self) -> None:
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    def write_now(self) -> None:
        """Blocking: the record as it is, on disk now (the hand-over's last act before exiting)."""
        if not self._closed:
            self.record.updated_at = time.time()
            write_json_atomic(record_path(self.pool_dir), self.record.model_dump(mode="json"))

    async def finish(self) -> None:
        """The job is reported done: no later worker may pick it up."""
        self._closed = True
        await self.flush()
        await asyncio.to_thread(clear_record, self.pool_dir)

    async def _write_loop(self) -> None:
        while self._dirty and not self._closed:
            self._dirty = False
            self.record.updated_at = time.time()
            data = self.record.model_dump(mode="json")
            try:
                await asyncio.to_thread(write_json_atomic, record_path(self.pool_dir), data)
            except OSError as exc:  # a full disk must not end the job; a restart then cannot adopt it
                log.warning("cannot write the job record %s: %s", record_path(self.pool_dir), exc)
                return


def new_record(*, webui: str, base_url: str, instance: int, pool_dir: Path, worker_id: int,
               job: dict[str, Any], marker: str) -> JobRecord:
    return JobRecord(webui=webui, base_url=base_url, instance=instance, pool_dir=str(pool_dir),
                     worker_id=worker_id, worker_pid=os.getpid(), job=job, marker=marker,
                     accepted_at=time.time())
