"""Benchmark (issue 3): the worker's own time per job, around isotovideo, and its CPU per job.

Runs the real ``python -m app.cli --no-ui`` process (one slot, the simulator as isotovideo) against the
mock web UI in this process, one simulator job at a time, and takes timestamps from outside the worker:

* grab_job sent        - the mock web UI writes the grab_job websocket message
* isotovideo spawned   - fork time of the simulator process (/proc starttime, 10 ms resolution)
* isotovideo exited    - pidfd of the simulator becomes readable
* set_done answered    - the mock web UI handled POST /jobs/N/set_done

and the worker process's own CPU seconds (children excluded) per job. Prints medians; never asserts.

    .venv/bin/python bench/job_overhead.py [--runs 20] [--module-seconds 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, exit_time, is_job_process, median, start_wallclock
from tests.helpers import free_instance
from tests.integration.harness import job_settings, mock_web, wait_registered
from tests.integration.harness import start_worker_process as start_worker


@dataclass
class Run:
    job_id: int
    result: str
    grab: float
    spawned: float
    exited: float
    done: float
    cpu: float

    @property
    def to_start(self) -> float:
        return self.spawned - self.grab

    @property
    def to_done(self) -> float:
        return self.done - self.exited

    @property
    def total(self) -> float:
        return self.done - self.grab


def record_grabs(web) -> dict[int, float]:
    """Wrap the mock's send_ws so every grab_job's send time is kept (job id -> time.time())."""
    grabs: dict[int, float] = {}
    original = web.send_ws

    async def send_ws(worker_id: int, message: dict) -> bool:
        if message.get("type") == "grab_job":
            grabs[int(message["job"]["id"])] = time.time()
        return await original(worker_id, message)

    web.send_ws = send_ws
    return grabs


async def find_job_process(worker_pid: int, timeout: float = 30) -> psutil.Process:
    """The first job process (simulator) under the worker; polled every 5 ms, its fork time is exact."""
    worker = psutil.Process(worker_pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in worker.children(recursive=True):
            if is_job_process(child):
                return child
        await asyncio.sleep(0.005)
    raise TimeoutError("no isotovideo process appeared")


async def one_job(web, grabs: dict[int, float], worker_pid: int, settings: dict[str, str]) -> Run:
    cpu0 = cpu_seconds(worker_pid)
    job_id = web.schedule_job(settings)
    proc = await find_job_process(worker_pid)
    spawned = start_wallclock(proc.pid)
    exited = await exit_time(proc.pid)
    job = await web.wait_job_done(job_id, 60)
    await asyncio.sleep(0.5)  # the worker's post-job bookkeeping belongs to this job
    return Run(job_id, job.result, grabs.get(job_id, float("nan")), spawned, exited, job.t_done or float("nan"),
               cpu_seconds(worker_pid) - cpu0)


async def bench(runs: int, module_seconds: float) -> None:
    settings = job_settings(SIM_MODULES="boot,shutdown", SIM_MODULE_SECONDS=str(module_seconds),
                            SIM_SCREENSHOTS="1", SIM_SCREENSHOT_SIZE="64x48")
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        async with mock_web(tmp) as web:
            grabs = record_grabs(web)
            proc = await start_worker(tmp, web.url, free_instance())
            try:
                await wait_registered(web, timeout=30)
                await asyncio.sleep(1)
                idle0 = cpu_seconds(proc.pid)
                await asyncio.sleep(5)
                idle_cpu = (cpu_seconds(proc.pid) - idle0) / 5
                await one_job(web, grabs, proc.pid, settings)  # warm-up: imports, first connections
                results = []
                for _ in range(runs):
                    r = await one_job(web, grabs, proc.pid, settings)
                    results.append(r)
                    print(f"job {r.job_id} {r.result}: grab->spawn {r.to_start * 1000:.0f} ms, "
                          f"exit->set_done {r.to_done * 1000:.0f} ms, total {r.total:.2f} s, "
                          f"worker CPU {r.cpu:.3f} s", flush=True)
                rss = psutil.Process(proc.pid).memory_info().rss
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proc.wait(), 30)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    report(results, module_seconds, idle_cpu, rss)


def report(results: list[Run], module_seconds: float, idle_cpu: float, rss: int) -> None:
    sim_run = median(r.exited - r.spawned for r in results)
    start, done, total = (median(getattr(r, k) for r in results) for k in ("to_start", "to_done", "total"))
    cpu = median(r.cpu for r in results)
    passed = sum(r.result == "passed" for r in results)
    print(f"\nMEDIAN of {len(results)} simulator jobs ({passed} passed; 2 modules x {module_seconds} s, "
          "1 screenshot 64x48 each)")
    print("| metric | median | range |")
    print("| --- | --- | --- |")
    for name, key, scale, unit in (("grab_job sent -> isotovideo spawned", "to_start", 1000, "ms"),
                                   ("isotovideo exited -> set_done answered", "to_done", 1000, "ms"),
                                   ("grab_job -> set_done (whole job)", "total", 1, "s"),
                                   ("worker CPU per job (own process, 0.5 s after set_done)", "cpu", 1, "s")):
        vals = [getattr(r, key) * scale for r in results]
        print(f"| {name} | {median(vals):.3f} {unit} | {min(vals):.3f}-{max(vals):.3f} |")
    print(f"| isotovideo (simulator) run time | {sim_run:.3f} s | |")
    overhead = start + done
    print(f"\nworker overhead (before + after isotovideo) {overhead * 1000:.0f} ms = "
          f"{overhead / total * 100:.0f}% of the job; baseline (the simulator's own run) {sim_run:.2f} s")
    print(f"worker CPU per job {cpu:.3f} s vs Perl worker 0.04 s (realstack README, null backend job); "
          f"idle CPU {idle_cpu * 60:.3f} s per 60 s; worker RSS after the jobs {rss / 2**20:.1f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--module-seconds", type=float, default=0.5)
    args = parser.parse_args()
    asyncio.run(bench(args.runs, args.module_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
