"""IsotovideoProcess + the sweep: after a job no process of it may remain (ANCHORS.md faults 27-28)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest

from backend.engine import procs
from backend.engine.isotovideo import (
    IsotovideoProcess,
    new_marker,
    qemu_still_running,
    set_child_subreaper,
    sweep_job_processes,
)

pytestmark = pytest.mark.timeout(30)

SLEEP = shutil.which("sleep") or "/bin/sleep"

# A fake isotovideo that leaves behind everything that escaped openQA workers in the past.
NASTY = r"""
import json, os, signal, subprocess, sys, time
sleep = sys.argv[1]
mode = sys.argv[2]
pids = {}
r, w = os.pipe()
pid = os.fork()
if pid == 0:                      # double fork: setsid + fork, the grandchild outlives its parent
    os.setsid()
    g = os.fork()
    if g == 0:
        os.execv(sleep, [sleep, "300"])
    os.write(w, str(g).encode())
    os._exit(0)
os.waitpid(pid, 0)
pids["double_fork"] = int(os.read(r, 64))
ign = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open('ign.ready', 'w').close(); time.sleep(300)"])
pids["ignores_term"] = ign.pid
pids["own_session"] = subprocess.Popen([sleep, "300"], start_new_session=True).pid
# no marker in its environment: found because its cwd is the pool dir
pids["no_marker"] = subprocess.Popen([sleep, "300"], env={}, start_new_session=True).pid
# neither marker nor cwd: found through qemu.pid (its cmdline names the pool dir)
q = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", os.getcwd()], env={}, cwd="/",
                     start_new_session=True)
open("qemu.pid", "w").write(str(q.pid))
pids["qemu_pid"] = q.pid
while not os.path.exists("ign.ready"):
    time.sleep(0.01)
json.dump(pids, open("pids.tmp", "w")); os.rename("pids.tmp", "pids.json")
print("all started", flush=True)
if mode == "exit":
    sys.exit(3)
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(300)
"""


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    assert set_child_subreaper()


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    p = tmp_path / "pool" / "7"
    p.mkdir(parents=True)
    return p


async def start_nasty(pool: Path, mode: str, marker: str) -> tuple[IsotovideoProcess, dict[str, int]]:
    proc = await IsotovideoProcess.start(
        [sys.executable, "-c", NASTY, SLEEP, mode], pool_dir=pool, env={"MOJO_MAX_MESSAGE_SIZE": "1"},
        log_path=pool / "autoinst-log.txt", marker=marker)
    deadline = time.monotonic() + 10
    while not (pool / "pids.json").exists():
        assert time.monotonic() < deadline, (pool / "autoinst-log.txt").read_text()
        await asyncio.sleep(0.02)
    return proc, json.loads((pool / "pids.json").read_text())


def assert_all_gone(pids: list[int]) -> None:
    for pid in pids:
        try:
            p = psutil.Process(pid)
            status = p.status()
        except psutil.NoSuchProcess:
            continue
        pytest.fail(f"process {pid} ({p.cmdline() if status != psutil.STATUS_ZOMBIE else ''}) left: {status}")


async def test_stop_kills_whole_tree_including_escaped_processes(pool: Path) -> None:
    marker = new_marker()
    proc, pids = await start_nasty(pool, "run", marker)
    assert all(psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids.values())
    t0 = time.monotonic()
    await proc.stop(grace=1.0)
    assert proc.returncode is not None and proc.returncode < 0  # killed by a signal
    assert_all_gone([proc.pid, *pids.values()])
    assert procs.find_job_processes(marker, pool) == []
    assert time.monotonic() - t0 < 8


async def test_stop_escalates_to_sigkill_when_isotovideo_ignores_sigterm(pool: Path) -> None:
    marker = new_marker()
    proc, pids = await start_nasty(pool, "ignore", marker)
    t0 = time.monotonic()
    await proc.stop(grace=0.5)
    assert proc.returncode == -9
    assert time.monotonic() - t0 >= 0.5
    assert_all_gone([proc.pid, *pids.values()])


async def test_natural_exit_then_sweep_leaves_nothing(pool: Path) -> None:
    marker = new_marker()
    proc, pids = await start_nasty(pool, "exit", marker)
    assert await proc.wait() == 3
    # the escaped processes are still alive after isotovideo exited ...
    assert all(psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids.values())
    killed = await sweep_job_processes(marker, pool, grace=0.5)
    # ... and the sweep finds every one of them
    assert set(pids.values()) <= set(killed)
    assert_all_gone(list(pids.values()))
    # stop() after a natural exit is safe and idempotent
    await proc.stop(grace=0.5)
    await proc.stop(grace=0.5)
    assert proc.returncode == 3


async def test_stop_after_a_natural_exit_never_kills_a_stranger_that_got_the_pid(pool: Path, tmp_path: Path) -> None:
    """The job's leader was reaped and its group is empty; the kernel then gives the number to a new
    process that leads a group of its own (pid_max 32768 wraps in minutes on a busy host). stop() must not
    SIGKILL that group: here the stranger's pid is put where the reused number would be."""
    proc = await IsotovideoProcess.start([sys.executable, "-c", "pass"], pool_dir=pool, env={},
                                         log_path=pool / "autoinst-log.txt", marker=new_marker())
    assert await proc.wait() == 0
    stranger = await asyncio.create_subprocess_exec(SLEEP, "300", cwd=tmp_path, start_new_session=True)
    try:
        proc.pid = stranger.pid  # what a reused pid looks like to the old job: a live group leader
        await proc.stop(grace=0.5)
        assert stranger.returncode is None and psutil.Process(stranger.pid).status() != psutil.STATUS_ZOMBIE
    finally:
        stranger.kill()
        await stranger.wait()


async def test_environment_and_log_redirection(pool: Path) -> None:
    marker = new_marker()
    (pool / "autoinst-log.txt").write_text("worker line before start\n")
    script = ("import os, sys; print('out', os.environ['TMPDIR'], os.environ['PERL5OPT'] == '', "
              "'MOJO_MAX_MESSAGE_SIZE' in os.environ, os.environ['QAWORKER_JOB_MARKER'], os.getcwd()); "
              "print('err line', file=sys.stderr); sys.exit(0 if sys.stdin.read() == '' else 5)")
    os.environ["MOJO_MAX_MESSAGE_SIZE"] = "99"
    try:
        proc = await IsotovideoProcess.start([sys.executable, "-c", script], pool_dir=pool, env={"A": "1"},
                                             log_path=pool / "autoinst-log.txt", marker=marker)
    finally:
        del os.environ["MOJO_MAX_MESSAGE_SIZE"]
    assert await proc.wait() == 0
    assert os.getsid(0) != proc.pid  # it had its own session: the worker's terminal signals can't hit it
    text = (pool / "autoinst-log.txt").read_text()
    assert text.startswith("worker line before start\n")  # appended, not truncated
    assert f"out {pool}/tmp True False {marker} {pool}" in text
    assert "err line" in text
    assert (pool / "tmp").is_dir()


async def test_stop_is_idempotent_and_concurrent_calls_share_one_stop(pool: Path) -> None:
    proc = await IsotovideoProcess.start([SLEEP, "300"], pool_dir=pool, env={},
                                         log_path=pool / "autoinst-log.txt", marker=new_marker())
    await asyncio.gather(proc.stop(grace=1), proc.stop(grace=1), proc.stop(grace=1))
    assert proc.returncode == -15
    assert_all_gone([proc.pid])


def test_qemu_still_running_recognises_qemu_and_ignores_stale_pid_files(pool: Path, tmp_path: Path) -> None:
    assert qemu_still_running(pool) is None  # no pid file
    (pool / "qemu.pid").write_text("999999999\n")
    assert qemu_still_running(pool) is None  # stale
    sleeper = psutil.Popen([SLEEP, "30"])
    try:
        (pool / "qemu.pid").write_text(f"{sleeper.pid}\n")
        assert qemu_still_running(pool) is None  # alive, but not a QEMU (pid reuse)
    finally:
        sleeper.kill()
        sleeper.wait()
    link = tmp_path / "qemu-system-x86_64"
    link.symlink_to(SLEEP)
    qemu = psutil.Popen([str(link), "30"])
    try:
        (pool / "qemu.pid").write_text(f"{qemu.pid}\n")
        assert qemu_still_running(pool) == qemu.pid
    finally:
        qemu.kill()
        qemu.wait()
    assert qemu_still_running(pool) is None


def test_sweep_refuses_to_match_by_cwd_for_a_too_broad_pool_dir() -> None:
    # Fault 29: an empty/root pool dir must never make every process "belong" to the job.
    assert procs.find_job_processes(new_marker(), Path("/")) == []
    assert procs.find_job_processes(new_marker(), Path("/tmp")) == []


async def test_orphans_that_die_on_their_own_are_reaped_not_left_as_zombies(pool: Path) -> None:
    script = ("import os, sys\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        os.execv(sys.argv[1], [sys.argv[1], '0.3'])\n"
              "    os._exit(0)\n"
              "os.wait()\n")
    proc = await IsotovideoProcess.start([sys.executable, "-c", script, SLEEP], pool_dir=pool, env={},
                                         log_path=pool / "autoinst-log.txt", marker=new_marker())
    assert await proc.wait() == 0
    # the grandchild re-parents to us (subreaper) and exits: a zombie nobody else will reap
    deadline = time.monotonic() + 5
    while not (zombies := [c for c in psutil.Process().children()
                           if c.status() == psutil.STATUS_ZOMBIE and c.pid != proc.pid]):
        assert time.monotonic() < deadline, "the orphan never became our zombie child"
        await asyncio.sleep(0.05)
    assert procs.reap_orphan_zombies(min_age=0.2) == []  # too young: could be asyncio's own child
    await asyncio.sleep(0.3)
    assert set(procs.reap_orphan_zombies(min_age=0.2)) >= {z.pid for z in zombies}
    assert_all_gone([z.pid for z in zombies])


async def test_isotovideo_is_forked_off_the_loop_thread_and_its_exit_is_seen_without_polling(
        pool: Path, monkeypatch) -> None:
    """The fork + exec (and its wait for the exec) never run on the loop: a loaded worker's loop stalled
    73-436 ms per spawn when they did (bench/scale.py --blame)."""
    import subprocess
    import threading

    forked_on: list[str] = []
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            forked_on.append(threading.current_thread().name)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    loop_thread = threading.current_thread().name
    started = time.monotonic()
    proc = await IsotovideoProcess.start([sys.executable, "-c", "import time; time.sleep(0.3)"], pool_dir=pool,
                                         env={}, log_path=pool / "autoinst-log.txt", marker=new_marker())
    monkeypatch.undo()
    assert forked_on and loop_thread not in forked_on
    assert proc.returncode is None
    assert await proc.wait() == 0 and await proc.wait() == 0  # awaited twice: the same status
    assert time.monotonic() - started < 5
    assert proc.pid not in procs._asyncio_children  # reaped by us: the zombie sweep may forget it


async def test_a_spawn_cancelled_while_forking_leaves_no_process(pool: Path, monkeypatch) -> None:
    """The job is stopped while the thread still forks: the child appears after the cancel and must not
    keep running unowned."""
    import subprocess
    import threading

    real_popen = subprocess.Popen
    created: list[int] = []
    release, forked = threading.Event(), threading.Event()

    class SlowPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            created.append(self.pid)
            forked.set()
            release.wait(10)  # the caller is cancelled meanwhile

    monkeypatch.setattr(subprocess, "Popen", SlowPopen)
    task = asyncio.create_task(IsotovideoProcess.start([SLEEP, "300"], pool_dir=pool, env={},
                                                       log_path=pool / "autoinst-log.txt", marker=new_marker()))
    assert await asyncio.to_thread(forked.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while True:
        try:
            if psutil.Process(created[0]).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        assert time.monotonic() < deadline, "the child of a cancelled spawn is still running"
        await asyncio.sleep(0.02)
    procs.reap_children(created)  # what the zombie sweep does: the child's exit status is nobody else's
    assert not psutil.pid_exists(created[0])


async def test_an_isotovideo_that_cannot_be_executed_raises_oserror_and_leaks_no_descriptor(pool: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        await IsotovideoProcess.start([str(pool / "no-such-isotovideo")], pool_dir=pool, env={},
                                      log_path=pool / "autoinst-log.txt", marker=new_marker())
    assert len(os.listdir("/proc/self/fd")) == before
