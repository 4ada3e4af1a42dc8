"""The conmon-style monitor and the job record: exit status on disk, pid identity, reaping only what is ours."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import psutil

from backend.engine.cgroup import Cgroups
from backend.engine.isotovideo import IsotovideoProcess
from backend.engine.monitor import STATE_DIR
from backend.job.record import JobRecorder, load_record, new_record, protected_pids
from backend.slot.adoptreap import reap_pool
from tests.helpers import alive


def pool(tmp_path: Path) -> Path:
    path = tmp_path / "pool" / "7"
    path.mkdir(parents=True)
    return path


async def start(pool_dir: Path, code: str, marker: str = "qaworker-test-1") -> IsotovideoProcess:
    return await IsotovideoProcess.start([sys.executable, "-c", code], pool_dir=pool_dir, env={},
                                         log_path=pool_dir / "autoinst-log.txt", marker=marker,
                                         monitor_dir=pool_dir / STATE_DIR)


async def test_monitor_writes_isotovideos_exit_status_and_end_time(tmp_path):
    pool_dir = pool(tmp_path)
    before = time.time()
    proc = await start(pool_dir, "import sys; print('hello from isotovideo'); sys.exit(3)")
    assert proc.monitored is not None and proc.monitored.isotovideo_pid != proc.pid
    assert await proc.wait() == 3
    record = json.loads((pool_dir / STATE_DIR / "exit.json").read_text())
    assert record["returncode"] == 3 and record["monitor_pid"] == proc.pid
    assert record["isotovideo_pid"] == proc.monitored.isotovideo_pid
    assert before <= record["ended_at"] <= time.time()
    assert "hello from isotovideo" in (pool_dir / "autoinst-log.txt").read_text()


async def test_group_sigterm_reaches_isotovideo_and_the_monitor_records_it(tmp_path):
    pool_dir = pool(tmp_path)
    proc = await start(pool_dir, "import time; time.sleep(60)")
    await proc.stop(grace=5)
    assert proc.returncode is not None
    assert json.loads((pool_dir / STATE_DIR / "exit.json").read_text())["returncode"] == -15


async def test_reaping_a_record_ends_only_our_monitor_never_a_reused_pid(tmp_path):
    pool_dir = pool(tmp_path)
    ours = await start(pool_dir, "import time; time.sleep(60)", marker="qaworker-reap-ours")
    recorder = JobRecorder(pool_dir, new_record(webui="http://127.0.0.1:1", base_url="http://127.0.0.1:1",
                                                instance=7, pool_dir=pool_dir, worker_id=3,
                                                job={"id": 11, "settings": {}}, marker="qaworker-reap-ours"))
    assert ours.monitored is not None
    recorder.set_monitor(ours.monitored)
    await recorder.flush()
    assert protected_pids(pool_dir) == {ours.pid, ours.monitored.isotovideo_pid}
    killed = await asyncio.to_thread(reap_pool, pool_dir)
    assert ours.pid in killed
    assert await asyncio.wait_for(ours.wait(), 10) == -15  # ended through its monitor, status recorded

    # the same record now naming an unrelated program's pid: protected_pids and the reaper leave it alone
    other = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)",
                                                 start_new_session=True)
    try:
        record, _ = load_record(pool_dir)
        assert record is not None and record.monitor is not None
        record.monitor.monitor_pid = other.pid
        (pool_dir / STATE_DIR / "job.json").write_text(record.model_dump_json())
        assert protected_pids(pool_dir) == set()
        assert other.pid not in await asyncio.to_thread(reap_pool, pool_dir)
        assert psutil.Process(other.pid).status() != psutil.STATUS_ZOMBIE
    finally:
        other.kill()
        await other.wait()


# isotovideo double-forks a helper that leaves the job: own session, no job environment, cwd outside the pool
ESCAPING_HELPER = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.chdir("/")
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)"], {})
    os._exit(0)
os.wait()
time.sleep(120)
"""


async def test_reaping_kills_the_jobs_cgroup_with_a_helper_that_dropped_the_marker(tmp_path, cgroup_root):
    pool_dir = pool(tmp_path)
    cgroups = Cgroups.setup(str(cgroup_root) if cgroup_root is not None else "off")
    cgroup = cgroups.create(7, 12)
    ours = await IsotovideoProcess.start([sys.executable, "-c", ESCAPING_HELPER], pool_dir=pool_dir, env={},
                                         log_path=pool_dir / "autoinst-log.txt", marker="qaworker-reap-cg",
                                         monitor_dir=pool_dir / STATE_DIR, cgroup=cgroup)
    recorder = JobRecorder(pool_dir, new_record(webui="http://127.0.0.1:1", base_url="http://127.0.0.1:1",
                                                instance=7, pool_dir=pool_dir, worker_id=3,
                                                job={"id": 12, "settings": {}}, marker="qaworker-reap-cg"))
    assert ours.monitored is not None
    recorder.set_monitor(ours.monitored, cgroup.path if cgroup else None)
    await recorder.flush()
    if cgroup is None:  # no writable cgroup v2 here: the record names none, the monitor's group still goes
        assert load_record(pool_dir)[0].cgroup is None  # type: ignore[union-attr]
        assert ours.pid in await asyncio.to_thread(reap_pool, pool_dir)
        await asyncio.wait_for(ours.wait(), 10)
        return
    try:
        for _ in range(200):  # monitor, isotovideo and the helper are in the cgroup
            if len(await asyncio.to_thread(cgroup.pids)) >= 3:
                break
            await asyncio.sleep(0.05)
        helper = next(p for p in cgroup.pids() if p not in (ours.pid, ours.monitored.isotovideo_pid))
        assert "QAWORKER_JOB_MARKER" not in psutil.Process(helper).environ()  # the marker sweep cannot see it
        killed = await asyncio.to_thread(reap_pool, pool_dir)
        assert helper in killed and not alive(helper)
        assert not cgroup.path.exists()
        await asyncio.wait_for(ours.wait(), 10)
    finally:
        await asyncio.to_thread(cgroup.kill)
        await asyncio.to_thread(cgroup.remove)
