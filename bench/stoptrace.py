"""Where a null job's time goes inside the worker: each step of the start and the stop sequence, traced.

Runs one in-process worker (one slot, the simulator as isotovideo) against the mock web UI and wraps the
coroutines of the job path with timers (the code is not changed; the wrappers only record monotonic start
and end times). For each job the steps are printed relative to isotovideo's exit (stop side) and to the
``accepted`` message (start side); medians over the jobs at the end. Both run in one loop here, so the
figures include the mock web UI's own time; use them to compare steps, not as absolute numbers.

    .venv/bin/python bench/stoptrace.py [--runs 10] [--module-seconds 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.engine import cmdsrv, isotovideo, sweep
from backend.job import job as jobmod
from backend.job import joblog, pool, setup, status
from backend.slot import runner
from bench.common import median
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered

SPANS: list[tuple[str, float, float]] = []

TRACED: list[tuple[Any, str]] = [
    (runner.JobRunner, "_accept"), (runner.JobRunner, "_clean_pool"), (runner, "sweep_pool"),
    (jobmod.Job, "_setup"), (jobmod.Job, "_start_isotovideo"), (isotovideo.IsotovideoProcess, "start"),
    (setup, "setup_job"), (pool.PoolDir, "clean"), (sweep, "sweep_pool"),
    (status.JobReporter, "_round"), (status.JobReporter, "_post_status"), (status.JobReporter, "_upload_round"),
    (jobmod.Job, "_stop_sequence"), (status.JobReporter, "post_uploading"), (jobmod.Job, "_end_isotovideo"),
    (cmdsrv, "broadcast"), (isotovideo.IsotovideoProcess, "_stop"), (isotovideo, "sweep_job_processes"),
    (joblog.JobLog, "flush"), (status.JobReporter, "final_uploads"), (status.JobReporter, "stop_periodic"),
    (status.JobReporter, "final_status"), (jobmod.Job, "_duplicate"), (jobmod.Job, "_decide"),
    (jobmod.Job, "_set_done"), (status.JobReporter, "aclose"), (joblog.JobLog, "close"),
]


def _wrap(owner: Any, name: str) -> None:
    original = getattr(owner, name)
    label = f"{getattr(owner, '__name__', owner)}.{name}".split(".")[-2:]
    label_text = ".".join(label)
    is_classmethod = isinstance(owner, type) and isinstance(owner.__dict__.get(name), classmethod)
    func = original.__func__ if is_classmethod else original

    @functools.wraps(func)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return await func(*args, **kwargs)
        finally:
            SPANS.append((label_text, start, time.monotonic()))

    setattr(owner, name, classmethod(timed) if is_classmethod else timed)
    if owner is sweep and name == "sweep_pool":
        runner.sweep_pool = timed  # imported by name there


def _exit_times() -> list[float]:
    return [end for label, _s, end in SPANS if label == "IsotovideoProcess.wait"]


async def run(runs: int, module_seconds: float) -> None:
    for owner, name in TRACED:
        _wrap(owner, name)
    wait_orig = isotovideo.IsotovideoProcess.wait

    async def wait(self: isotovideo.IsotovideoProcess) -> int:
        rc = await wait_orig(self)
        SPANS.append(("IsotovideoProcess.wait", time.monotonic(), time.monotonic()))
        return rc

    isotovideo.IsotovideoProcess.wait = wait  # type: ignore[method-assign]
    per_step: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="stoptrace-") as tmp:
        async with mock_web(Path(tmp)) as web:
            config = make_config(Path(tmp), [web.url])
            async with running_worker(config):
                await wait_registered(web)
                for n in range(runs + 1):
                    SPANS.clear()
                    t0 = time.monotonic()
                    job_id = web.schedule_job(job_settings(SIM_MODULES="boot", SIM_MODULE_SECONDS=str(module_seconds)))
                    job = await web.wait_job_done(job_id, 60)
                    await asyncio.sleep(0.3)
                    if n == 0:
                        continue  # warm-up
                    exits = _exit_times()
                    zero = exits[0] if exits else t0
                    print(f"job {job_id} {job.result}: steps relative to isotovideo's exit (ms)")
                    seen: set[str] = set()
                    for label, start, end in sorted(SPANS, key=lambda s: s[1]):
                        print(f"  {label:34s} {1000 * (start - zero):8.1f} .. {1000 * (end - zero):8.1f}"
                              f"  ({1000 * (end - start):6.1f})")
                        key = label if label not in seen else f"{label} #2"
                        seen.add(label)
                        per_step[key].append(1000 * (end - start))
                    stop = [s for s in SPANS if s[0] == "Job._stop_sequence"]
                    if stop:
                        per_step["exit -> stop sequence done"].append(1000 * (stop[0][2] - zero))
    print(f"\nmedians over {runs} jobs (ms)")
    for label, values in per_step.items():
        print(f"  {label:34s} {median(values):7.1f}   (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--module-seconds", type=float, default=0.3)
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.module_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
