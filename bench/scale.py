"""Benchmark: 100 simulator slots in one qaworker process against the mock web UI.

The worker runs in this process (a 10 ms TimedLagProbe in its event loop); the mock web UI runs as its own
process (``python -m backend.mockweb``) so its work does not show up as worker lag. Phases:

1. idle: 100 slots registered, no jobs (the baseline of the same run);
2. load: short simulator jobs (1 module, 1 small screenshot) posted at --rate jobs/s for --duration s, spread
   over the slots by the mock's scheduler; 2 cores cannot run 100 simulators at once, so the job rate is
   scaled down, never the slot count.

Prints loop lag p50/p99/max, RSS (worker process) and CPU (worker process only, simulators excluded) per
phase. Never asserts.

    .venv/bin/python bench/scale.py [--slots 100] [--rate 1] [--duration 40] [--idle 10] [--blame]
        [--loop asyncio|uvloop] [--gc default|freeze|freeze-tuned] [--profile FILE]

The loop gets the worker's default thread pool with every thread started before the loop runs
(``app.threads.started_pool``, as ``app.run`` does), so a ``to_thread`` never starts a thread on the loop.
``--profile FILE`` runs cProfile on the loop's thread during the load phase (pstats file + top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.threads import started_pool
from backend.webui.auth import auth_headers, request_target
from backend.worker import Worker
from bench.common import ROOT, TimedLagProbe, fmt_lag, lag_window, mib, stop_process
from bench.gcpolicy import GC_POLICIES, apply_gc_policy
from bench.loopblame import LoopAccounting
from tests.helpers import free_port, port_is_free
from tests.integration.harness import KEY, SECRET, job_settings, make_config


def free_block(count: int) -> list[int]:
    for base in range(500, 4000, count):
        numbers = list(range(base, base + count))
        if all(port_is_free(20003 + 10 * n) for n in numbers):
            return numbers
    raise RuntimeError(f"no {count} free slot numbers")


class MockProcess:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.mockweb", "--port", str(self.port), "--data-dir", str(tmp / "webui"),
             "--api-key", KEY, "--api-secret", SECRET], cwd=ROOT,
            stdout=(tmp / "mockweb.log").open("wb"), stderr=subprocess.STDOUT)
        self.http = httpx.AsyncClient(timeout=30)

    async def api(self, method: str, path: str, params: dict | None = None) -> dict:
        target = request_target(path, params)
        response = await self.http.request(method, self.url + target, headers=auth_headers(KEY, SECRET, target))
        response.raise_for_status()
        return response.json()

    async def wait_up(self) -> None:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                await self.api("GET", "/api/v1/workers")
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("mock web UI did not start")

    async def wait_workers(self, count: int, status: str = "idle", timeout: float = 120) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            workers = (await self.api("GET", "/api/v1/workers"))["workers"]
            if sum(1 for w in workers if w["status"] == status and w["websocket"]) >= count:
                return time.monotonic() - t0
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{count} workers not {status} after {timeout} s")

    async def close(self) -> None:
        await self.http.aclose()
        stop_process(self.proc, 10)


class Sampler:
    """RSS and CPU of this process, sampled once a second (cheap: two /proc reads)."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.rss: list[tuple[float, int]] = []
        self.task: asyncio.Task | None = None

    def cpu(self) -> float:
        t = self.me.cpu_times()
        return t.user + t.system

    async def run(self) -> None:
        while True:
            self.rss.append((time.time(), self.me.memory_info().rss))
            await asyncio.sleep(1)

    def peak(self, t0: float, t1: float) -> int:
        return max((r for t, r in self.rss if t0 <= t <= t1), default=0)


async def bench(slots: int, rate: float, duration: float, idle: float, blame: LoopAccounting | None,
                gc_policy: str, profile: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        mock = MockProcess(tmp)
        worker: Worker | None = None
        task = None
        probe = TimedLagProbe(0.01)
        sampler = Sampler()
        try:
            await mock.wait_up()
            config = make_config(tmp, [mock.url], instances=free_block(slots),
                                 settings={"WORKER_CLASS": "scale", "RETRY_DELAY": "1"})
            probe.start()
            sampler.task = asyncio.create_task(sampler.run())
            rss0 = sampler.me.memory_info().rss
            t_start = time.time()
            worker = Worker(config)
            task = asyncio.create_task(worker.run())
            reg = await mock.wait_workers(slots)
            print(f"{slots} slots registered and idle after {reg:.1f} s", flush=True)
            await asyncio.sleep(2)
            apply_gc_policy(gc_policy)
            t_idle0, cpu_idle0 = time.time(), sampler.cpu()
            await asyncio.sleep(idle)
            t_idle1, cpu_idle1 = time.time(), sampler.cpu()
            if blame is not None:
                blame.reset()  # book the load phase only
            profiler = cProfile.Profile() if profile is not None else None
            if profiler is not None:
                profiler.enable()  # this thread only: what the loop runs
            ids = await load(mock, rate, duration)
            done = await wait_done(mock, ids, timeout=duration + 120)
            t_load1, cpu_load1 = time.time(), sampler.cpu()
            if profiler is not None:
                profiler.disable()
            jobs = (await mock.api("GET", "/api/v1/jobs"))["jobs"]
            results: dict[str, int] = {}
            for job in jobs:
                results[job.get("result", "?")] = results.get(job.get("result", "?"), 0) + 1
            print(f"\n{slots} slots in one process, mock web UI in another; 2 cores")
            print(f"startup: RSS {mib(rss0):.1f} MiB before the Worker; all {slots} registered {reg:.1f} s "
                  f"after start (CPU {cpu_idle0:.2f} s incl. imports)")
            print("| phase | loop lag | worker RSS peak | worker CPU |")
            print("| --- | --- | --- | --- |")
            print(f"| idle {idle:.0f} s (baseline) | {fmt_lag(lag_window(probe.timed, t_idle0, t_idle1))} | "
                  f"{mib(sampler.peak(t_idle0, t_idle1)):.1f} MiB | "
                  f"{(cpu_idle1 - cpu_idle0) / idle * 100:.1f}% of a core |")
            span = t_load1 - t_idle1
            print(f"| load: {len(ids)} jobs at {rate}/s, {span:.0f} s until all done | "
                  f"{fmt_lag(lag_window(probe.timed, t_idle1, t_load1))} | "
                  f"{mib(sampler.peak(t_idle1, t_load1)):.1f} MiB | "
                  f"{(cpu_load1 - cpu_idle1) / span * 100:.1f}% of a core, "
                  f"{(cpu_load1 - cpu_idle1) / max(1, len(ids)):.3f} s per job |")
            print(f"jobs done {done}/{len(ids)}, results {results}; whole run from Worker start "
                  f"{time.time() - t_start:.0f} s; loop {type(asyncio.get_running_loop()).__module__}, "
                  f"gc policy {gc_policy}")
            if blame is not None:
                print("\nwhat the loop ran during the load phase (bench/loopblame.py):")
                print(blame.report(span))
            if profiler is not None and profile is not None:
                print_profile(profiler, profile)
        finally:
            if worker is not None and task is not None:
                worker.quit()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 60)
            await probe.stop()
            if sampler.task:
                sampler.task.cancel()
            await mock.close()


def print_profile(profiler: cProfile.Profile, into: Path) -> None:
    profiler.dump_stats(str(into))
    print(f"\ncProfile of the loop thread during the load phase (inflated by the profiler; {into}):")
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


async def with_default_pool(pool: ThreadPoolExecutor, coro: Coroutine[Any, Any, None]) -> None:
    asyncio.get_running_loop().set_default_executor(pool)
    await coro


async def load(mock: MockProcess, rate: float, duration: float) -> list[int]:
    settings = job_settings(WORKER_CLASS="scale", SIM_MODULES="boot", SIM_MODULE_SECONDS="1",
                            SIM_SCREENSHOTS="1", SIM_SCREENSHOT_SIZE="64x48")
    ids: list[int] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    n = 0
    while loop.time() - t0 < duration:
        ids.append(int((await mock.api("POST", "/api/v1/jobs", params=settings))["id"]))
        n += 1
        await asyncio.sleep(max(0.0, t0 + n / rate - loop.time()))
    return ids


async def wait_done(mock: MockProcess, ids: list[int], timeout: float) -> int:
    t0 = time.monotonic()
    wanted = set(ids)
    while time.monotonic() - t0 < timeout:
        jobs = (await mock.api("GET", "/api/v1/jobs"))["jobs"]
        done = sum(1 for j in jobs if j["id"] in wanted and j["state"] in ("done", "cancelled"))
        if done == len(wanted):
            return done
        await asyncio.sleep(1)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.0, help="jobs per second during the load phase")
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop implementation (uvloop: pip install .[uvloop])")
    parser.add_argument("--gc", choices=GC_POLICIES, default="default", dest="gc_policy",
                        help="garbage-collector policy applied once the slots are up (bench/gcpolicy.py)")
    parser.add_argument("--blame", action="store_true", help="per-callback accounting of the loop (load phase)")
    parser.add_argument("--profile", type=Path, help="cProfile of the loop thread during the load phase into FILE")
    args = parser.parse_args()
    blame = LoopAccounting() if args.blame else None
    if blame is not None:
        blame.install()
    pool = started_pool()  # before the loop runs, as app.threads.run does for the worker
    coro = with_default_pool(pool, bench(args.slots, args.rate, args.duration, args.idle, blame, args.gc_policy,
                                   args.profile))
    try:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(coro)
        else:
            asyncio.run(coro)
    finally:
        pool.shutdown(wait=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
