"""Issue 11 item 1 end to end: a SIGKILLed worker's job tree does not survive into the next job.

A real worker process runs a simulator job that leaves the usual debris (a double-forked orphan in
its own session, a QEMU named in qemu.pid) and is SIGKILLed. The web UI gives the job up and clones
it; the restarted worker, in the same pool, kills the old tree *before* it accepts the clone, which
then passes. Afterwards not one process of the old worker is left (its image pool included).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil

from tests.helpers import free_instance, job_processes_of, living, until_in_thread
from tests.integration.harness import end_worker_process, job_settings, mock_web, start_worker_process, wait_registered


async def test_sigkilled_workers_job_tree_is_killed_before_the_next_job(tmp_path: Path) -> None:
    instance = free_instance()
    async with mock_web(tmp_path) as web:
        old = await start_worker_process(tmp_path, web.url, instance)
        new = None
        leftovers: list[psutil.Process] = []
        try:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(SIM_HANG="login", SIM_ORPHAN="1", SIM_QEMU_PID="1",
                                                   OPTIMIZE_IMAGES="1", SIM_SCREENSHOTS="3"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            await until_in_thread(lambda: len(job_processes_of(old.pid)) >= 3, 15, "simulator, orphan and qemu")
            old_worker = await asyncio.to_thread(psutil.Process, old.pid)

            def image_pool() -> list[psutil.Process]:  # the optimiser helpers (idle for 60 s after work)
                return [p for p in old_worker.children(recursive=True) if "pngworker" in " ".join(p.cmdline())]

            pngworkers = await until_in_thread(image_pool, 30, "the image pool")
            leftovers = await asyncio.to_thread(job_processes_of, old.pid)
            everything_old = await asyncio.to_thread(old_worker.children, recursive=True) + leftovers
            assert set(pngworkers) <= set(everything_old)
            pool = Path(await asyncio.to_thread(  # the simulator's cwd
                lambda: next(p.cwd() for p in leftovers if p.ppid() == old.pid)))
            os.kill(old.pid, signal.SIGKILL)
            await old.wait()
            # the crash left the job tree running, as in the issue
            assert len(await asyncio.to_thread(living, leftovers)) >= 3

            # The web UI gives the job up (as it does for a worker that vanished) and clones it.
            web.state.abandon(web.jobs[job_id], "abandoned: associated worker has gone")
            clone_id = web.jobs[job_id].duplicated_as
            assert clone_id is not None
            web.jobs[clone_id].settings.update(SIM_HANG="", SIM_ORPHAN="0", SIM_QEMU_PID="0")
            web.notify()

            old_log = (tmp_path / "worker.log").read_text(errors="replace")
            new = await start_worker_process(tmp_path, web.url, instance)
            # The slot sweeps at its start and before every setup (live restore, where present, ends the
            # abandoned job's tree too): once the clone is being set up, nothing of the old life is left.
            await web.wait_for(lambda: web.jobs[clone_id].state not in ("scheduled", "assigned"), 60)
            left = await asyncio.to_thread(living, everything_old)  # psutil reads /proc: never on the loop
            assert left == [], [(p.pid, p.cmdline()) for p in left]
            done = await web.wait_job_done(clone_id, 60)
            assert (done.state, done.result) == ("done", "passed")

            log = (tmp_path / "worker.log").read_text(errors="replace")
            new_part = log[len(old_log):]
            sweep_at = new_part.find(f"[slot {instance}] at start: killing")
            assert sweep_at >= 0, "no sweep line at the restarted worker's start"
            sweep_line = new_part[sweep_at:].splitlines()[0]
            assert str(pool) in sweep_line
            named = [p.pid for p in leftovers if f" {p.pid} (" in sweep_line or f": {p.pid} (" in sweep_line]
            assert named, sweep_line  # the line names the pids it kills
            accepted_at = new_part.find(f"[slot {instance}] job {clone_id} (")
            assert accepted_at > sweep_at and "accepted" in new_part[accepted_at:].splitlines()[0]
        finally:
            if old.returncode is None:
                old.kill()
                await old.wait()
            if new is not None:
                await end_worker_process(new)
            for proc in living(leftovers):  # only on failure: ours, ended by pid
                proc.kill()
