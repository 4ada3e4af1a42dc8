"""An adopted job gets its cgroup back (backend/slot/adopt.py reattach_cgroup): after a SIGKILL of the worker, the next
life reports the job's memory/CPU and a cancel ends it with ``cgroup.kill``, exactly as for a fresh job.

Real worker processes on a real cgroup v2 test root (the ``cgroup_root`` fixture); where this machine offers
none, the record names no cgroup and the adopted job is still ended by process-group kill + sweep.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from backend.engine.cgroup import Cgroups, JobCgroup
from backend.job.record import MonitorPids, new_record
from backend.slot.adopt import reattach_cgroup
from tests.helpers import free_port
from tests.integration.adopt_support import gone, job_record, lives, recorded_monitor
from tests.integration.harness import job_settings, mock_web
from tests.metrics_support import scrape, value


async def test_an_adopted_job_is_measured_and_killed_through_its_cgroup(tmp_path, cgroup_root) -> None:
    setting = str(cgroup_root) if cgroup_root is not None else "off"
    async with mock_web(tmp_path) as web, lives(tmp_path, web, f"QAWORKER_CGROUP = {setting}") as workers:
        await workers.start_registered()
        job_id = web.schedule_job(job_settings(SIM_HANG="login", SIM_ORPHAN="1"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        monitor = await recorded_monitor(web, workers.pool)
        job_dir = None if cgroup_root is None else cgroup_root / f"qaworker-slot{workers.instance}" / f"job-{job_id}"
        assert job_record(workers.pool)["cgroup"] == (str(job_dir) if job_dir else None)
        if job_dir is not None:  # monitor, simulator and its double-forked orphan in their own session
            await web.wait_for(lambda: len(JobCgroup(job_dir).pids()) >= 3, 15)
            tree = JobCgroup(job_dir).pids()
        else:
            tree = [monitor, *(p.pid for p in psutil.Process(monitor).children(recursive=True))]

        port = free_port()
        await workers.restart(args=("--metrics-port", str(port)))
        await web.wait_for(lambda: f"adopting job {job_id}" in workers.log(), 20)
        assert all(not gone(pid) for pid in tree)  # the restart kept the whole tree, cgroup included
        if job_dir is not None:
            slot = str(workers.instance)
            text = ""
            for _ in range(100):  # the first sample comes at once, /metrics is served a moment after start
                text = await _try_scrape(port)
                if value(text, "qaworker_job_memory_bytes", instance=slot) is not None:
                    break
                await asyncio.sleep(0.1)
            memory = value(text, "qaworker_job_memory_bytes", instance=slot)
            assert memory is not None and memory > 1_000_000, text  # two Python interpreters at least
            assert value(text, "qaworker_job_cpu_seconds", instance=slot) is not None

        web.cancel_job(job_id)
        assert (await web.wait_job_done(job_id, 30)).state == "done"
        await web.wait_for(lambda: all(gone(pid) for pid in tree), 15)
        if job_dir is not None:
            await web.wait_for(lambda: not job_dir.exists(), 10)  # removed after the stop, as for a fresh job
            assert f"job {job_id}: re-attached its cgroup {job_dir}" in workers.log()
            assert f"cgroup.kill of {job_dir}" in workers.log()


async def _try_scrape(port: int) -> str:
    try:
        return await scrape(port)
    except httpx.TransportError:  # not listening yet
        return ""


def _sleeper_in(cgroup: JobCgroup | None) -> subprocess.Popen:
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    return subprocess.Popen(cgroup.enter_argv(argv) if cgroup else argv, start_new_session=True)


def _record(tmp: Path, instance: int, job_id: int, cgroup: Path, monitor_pid: int):
    record = new_record(webui="127.0.0.1", base_url="http://127.0.0.1", instance=instance, pool_dir=tmp,
                        worker_id=1, job={"id": job_id}, marker="qaworker-test")
    record.monitor = MonitorPids(monitor_pid=monitor_pid, monitor_start=0, isotovideo_pid=monitor_pid,
                                 isotovideo_start=0)
    record.cgroup = str(cgroup)
    return record


def test_only_the_jobs_own_cgroup_is_reattached(tmp_path, cgroup_root, caplog) -> None:
    """A record naming a cgroup that is not the job's (another name, gone, without the monitor) gets none:
    its processes are never the job's to kill or measure."""
    if cgroup_root is None:  # no cgroup v2 here: a recorded path that is no cgroup is refused just the same
        record = _record(tmp_path, 3, 9, tmp_path / "qaworker-slot3" / "job-9", 1)
        assert reattach_cgroup(record, monitor_alive=True) is None
        return
    cgroups = Cgroups.setup(str(cgroup_root))
    own, other = cgroups.create(3, 9), cgroups.create(3, 10)
    assert own is not None and other is not None
    monitor, stranger = _sleeper_in(own), _sleeper_in(other)
    try:
        deadline = time.monotonic() + 5
        while not (monitor.pid in own.pids() and stranger.pid in other.pids()) and time.monotonic() < deadline:
            time.sleep(0.01)
        with caplog.at_level(logging.INFO, logger="backend.slot.adopt"):
            assert reattach_cgroup(_record(tmp_path, 3, 9, own.path, monitor.pid), True) == own
            assert reattach_cgroup(_record(tmp_path, 3, 9, other.path, stranger.pid), True) is None
            assert reattach_cgroup(_record(tmp_path, 4, 9, own.path, monitor.pid), True) is None  # another slot's
            assert reattach_cgroup(_record(tmp_path, 3, 10, other.path, monitor.pid), True) is None  # monitor not in it
            gone_dir = cgroup_root / "qaworker-slot3" / "job-11"
            assert reattach_cgroup(_record(tmp_path, 3, 11, gone_dir, monitor.pid), False) is None
        assert "not named like this slot's cgroup" in caplog.text
        assert f"the job's monitor (pid {monitor.pid}) is not in it" in caplog.text
        assert "does not exist any more" in caplog.text
        assert stranger.poll() is None and stranger.pid in other.pids()  # nothing was done to it
    finally:
        for proc in (monitor, stranger):
            proc.kill()
            proc.wait()
