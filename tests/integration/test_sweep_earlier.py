"""Issue 11 item 1: the sweep finds an earlier job's processes in a pool — and nothing else.

Real processes: an "earlier job" tree made of the things a crashed worker leaves behind (a process
with the job environment in its own session, one whose cwd is the pool, a QEMU named in qemu.pid,
one that ignores SIGTERM), next to processes the sweep must leave alone (unrelated, another pool's
job, one claimed by live restore, and that one's child).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from backend.engine.procs import MARKER_ENV
from backend.engine.sweep import CLAIMS, POOL_ENV, sweep_pool
from tests.helpers import alive

SLEEPER = "import signal, sys, time\n{extra}\nprint('ready', flush=True)\ntime.sleep(300)\n"


class Spawner:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.foreign: list[int] = []

    async def __call__(self, **kwargs) -> int:
        return await asyncio.to_thread(self.start, **kwargs)  # a process start is too slow for the loop

    def start(self, *, cwd: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 extra: str = "") -> int:
        proc = subprocess.Popen([sys.executable, "-c", SLEEPER.format(extra=extra), *args], cwd=cwd,
                                env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                start_new_session=True)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        self.procs.append(proc)
        return proc.pid

    def cleanup(self) -> None:
        for pid in self.foreign:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()  # a grandchild: its parent (ours, killed next) reaps it or init does
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def spawn():
    spawner = Spawner()
    yield spawner
    spawner.cleanup()


async def test_sweep_kills_an_earlier_jobs_processes_and_spares_the_rest(tmp_path, spawn, caplog) -> None:
    pool = tmp_path / "pool" / "9"
    other_pool = tmp_path / "pool" / "10"
    elsewhere = tmp_path / "elsewhere"
    for d in (pool, other_pool, elsewhere):
        d.mkdir(parents=True)
    job_env = {POOL_ENV: str(pool), MARKER_ENV: "qaworker-1-9-42-1"}
    by_env = await spawn(cwd=elsewhere, env=job_env)  # e.g. a double-forked helper that left the pool dir
    by_cwd = await spawn(cwd=pool)  # no marker at all (started by hand or by an old version)
    qemu = await spawn(cwd=elsewhere, args=(f"-drive=file={pool}/hdd.qcow2",))
    (pool / "qemu.pid").write_text(f"{qemu}\n")
    stubborn = await spawn(cwd=elsewhere, env=job_env, extra="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    unrelated = await spawn(cwd=elsewhere)
    other_job = await spawn(cwd=other_pool, env={POOL_ENV: str(other_pool), MARKER_ENV: "qaworker-1-10-43-1"})
    adopted = await spawn(cwd=pool, env=job_env, extra=(
        "import subprocess; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])"))
    adopted_child = psutil.Process(adopted).children()[0].pid
    spawn.foreign.append(adopted_child)
    CLAIMS.claim(pool, [adopted])
    try:
        with caplog.at_level(logging.INFO, logger="backend.engine"):
            killed = await sweep_pool(pool, "[slot 9] at start:", grace=0.5)
    finally:
        CLAIMS.release(pool)
    expected = {by_env, by_cwd, qemu, stubborn}
    assert set(killed) == expected
    assert [pid for pid in expected if alive(pid)] == []
    assert all(alive(pid) for pid in (unrelated, other_job, adopted, adopted_child))
    line = next(r.getMessage() for r in caplog.records if "process(es) of an earlier job" in r.getMessage())
    assert line.startswith("[slot 9] at start: killing 4 process(es) of an earlier job in")
    for pid, why in ((by_env, "job environment"), (by_cwd, "cwd in the pool"), (qemu, "qemu.pid")):
        assert f"{pid} (" in line and why in line.split(f"{pid} (", 1)[1].split(")", 1)[0]


async def test_claim_released_means_swept(tmp_path, spawn) -> None:
    pool = tmp_path / "pool" / "3"
    pool.mkdir(parents=True)
    pid = await spawn(cwd=pool, env={POOL_ENV: str(pool)})
    CLAIMS.claim(pool, markers=["qaworker-adopted"])  # a marker claim does not cover other markers
    try:
        assert await sweep_pool(pool, "[slot 3] before job 7:", grace=0.5) == [pid]
    finally:
        CLAIMS.release(pool)
    assert not alive(pid)
    assert await sweep_pool(pool, "[slot 3] before job 8:", grace=0.5) == []  # nothing left: no line


async def test_sweep_of_a_too_broad_pool_matches_nothing_by_cwd(tmp_path, spawn) -> None:
    """A pool of '/' (a misconfiguration) must not make every process with cwd '/' a target."""
    pid = await spawn(cwd=Path("/"))
    assert await sweep_pool(Path("/"), "[slot 1] at start:", grace=0.5) == []
    assert alive(pid)
