"""Benchmark (issue 13 item 2): the worker's own time per job, phase by phase, against a baseline worker.

Runs two real ``python -m app.cli --no-ui`` processes (one slot each, the simulator as isotovideo) against
the mock web UI in this process: this checkout, and a baseline checkout (``git archive <--baseline-ref>``,
default ``main``; ``--baseline-ref none`` runs this checkout alone). Jobs alternate between the two, one at a
time, so both see the same machine load. Timestamps are taken from outside the workers:

* grab_job sent        - the mock web UI writes the grab_job websocket message
* accepted             - the mock web UI handles the worker's ``accepted`` message
* isotovideo spawned   - fork time of the simulator process (/proc starttime, 10 ms resolution)
* first status         - the mock web UI stores the first REST status post (the web UI's ``running``)
* isotovideo exited    - pidfd of the simulator becomes readable
* set_done answered    - the mock web UI handled POST /jobs/N/set_done

and the worker process's own CPU seconds (children excluded) per job. Prints medians and the ratio
this/baseline; never asserts. ``--profile DIR`` attaches py-spy to this checkout's worker after the warm-up job
(collapsed stacks of its threads in DIR/pyspy.txt; summarise with ``bench/profile_summary.py``).

    .venv/bin/python bench/job_overhead.py [--runs 20] [--module-seconds 0.5] [--baseline-ref main]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.engine.simulator import simulator_command
from bench.common import ROOT, cpu_seconds, exit_time, is_job_process, median, ratio, start_wallclock
from tests.helpers import free_instance
from tests.integration.harness import KEY, SECRET, job_settings, mock_web

NAN = float("nan")


@dataclass
class Run:
    job_id: int
    result: str
    grab: float
    accepted: float
    spawned: float
    first_status: float
    exited: float
    done: float
    cpu: float
    status_posts: int
    uploads: int

    @property
    def grab_to_accepted(self) -> float:
        return self.accepted - self.grab

    @property
    def accepted_to_spawned(self) -> float:
        return self.spawned - self.accepted

    @property
    def spawned_to_status(self) -> float:
        return self.first_status - self.spawned

    @property
    def exit_to_done(self) -> float:
        return self.done - self.exited

    @property
    def total(self) -> float:
        return self.done - self.grab


METRICS = (("grab_job sent -> accepted", "grab_to_accepted"),
           ("accepted -> isotovideo spawned", "accepted_to_spawned"),
           ("isotovideo spawned -> first status post (running)", "spawned_to_status"),
           ("isotovideo exited -> set_done answered", "exit_to_done"),
           ("grab_job -> set_done (whole job)", "total"),
           ("worker CPU per job (own process)", "cpu"),
           ("REST status posts per job", "status_posts"),
           ("artefact uploads per job", "uploads"))


class Recorder:
    """Wraps the mock web UI so grab_job sends and accepted messages carry their time.time()."""

    def __init__(self, web) -> None:
        self.grabs: dict[int, float] = {}
        self.accepts: dict[int, float] = {}
        send_ws, accept = web.send_ws, web.state.accept

        async def timed_send_ws(worker_id: int, message: dict) -> bool:
            if message.get("type") == "grab_job":
                self.grabs[int(message["job"]["id"])] = time.time()
            return await send_ws(worker_id, message)

        def timed_accept(worker, job_id: int) -> bool:
            self.accepts.setdefault(job_id, time.time())
            return accept(worker, job_id)

        web.send_ws = timed_send_ws
        web.state.accept = timed_accept


@dataclass
class Contender:
    name: str
    root: Path
    worker_class: str
    proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


async def start_worker(tmp: Path, url: str, who: Contender) -> None:
    """The real ``python -m app.cli --no-ui`` of ``who.root``, one slot, configured like the tests' harness."""
    home = tmp / who.name
    conf = home / "conf"
    conf.mkdir(parents=True)
    instance = free_instance()
    (conf / "workers.ini").write_text(
        f"[global]\nHOST = {url}\nWORKER_HOSTNAME = 127.0.0.1\nRETRY_DELAY = 0.2\nRETRY_DELAY_IF_WEBUI_BUSY = 0.5\n"
        f"QAWORKER_STOP_GRACE = 3\nQAWORKER_POOL_MIN_FREE_MB = 0\nCRITICAL_LOAD_AVG_THRESHOLD = 0\n"
        f"[{instance}]\nWORKER_CLASS = {who.worker_class}\n")
    (conf / "client.conf").write_text(f"[127.0.0.1]\nkey = {KEY}\nsecret = {SECRET}\n")
    (home / "base" / "openqa" / "share" / "tests" / "sim").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPENQA_CONFIG": str(conf), "OPENQA_BASEDIR": str(home / "base"),
           "OPENQA_WORKER_CONNECT_INTERVAL": "0.3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(who.root)}
    argv = [sys.executable, "-m", "app.cli", "--no-ui", "--instance", str(instance),
            "--isotovideo", simulator_command()]
    with (home / "worker.log").open("ab") as out:
        who.proc = await asyncio.create_subprocess_exec(*argv, cwd=who.root, env=env, stdout=out,
                                                        stderr=asyncio.subprocess.STDOUT)


async def start_profiler(who: Contender, into: Path) -> asyncio.subprocess.Process:
    """py-spy attached to the warmed-up worker (its own threads only, not the simulators)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = await asyncio.create_subprocess_exec(
        py_spy, "record", "--rate", "500", "--format", "raw", "--gil", "-o", str(into / "pyspy.txt"),
        "--pid", str(who.proc.pid), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(1)  # attached
    return proc


async def stop_profiler(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 30)


async def stop_worker(who: Contender) -> None:
    proc = who.proc
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 60)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


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


async def one_job(web, rec: Recorder, who: Contender, settings: dict[str, str]) -> Run:
    cpu0 = cpu_seconds(who.pid)
    job_id = web.schedule_job({**settings, "WORKER_CLASS": who.worker_class})
    proc = await find_job_process(who.pid)
    spawned = start_wallclock(proc.pid)
    exited = await exit_time(proc.pid)
    job = await web.wait_job_done(job_id, 60)
    await asyncio.sleep(0.5)  # the worker's post-job bookkeeping belongs to this job
    first = job.status_posts[0][0] if job.status_posts else NAN
    return Run(job_id, job.result, rec.grabs.get(job_id, NAN), rec.accepts.get(job_id, NAN), spawned, first,
               exited, job.t_done or NAN, cpu_seconds(who.pid) - cpu0, len(job.status_posts), len(job.artefacts))


def baseline_tree(ref: str, into: Path) -> Path:
    """This repository at ``ref`` (a plain file tree, no worktree metadata)."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def bench(runs: int, module_seconds: float, baseline_ref: str, profile: Path | None,
                workdir: Path | None) -> None:
    settings = job_settings(SIM_MODULES="boot,shutdown", SIM_MODULE_SECONDS=str(module_seconds),
                            SIM_SCREENSHOTS="1", SIM_SCREENSHOT_SIZE="64x48")
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-", dir=workdir) as tmp_name:
        tmp = Path(tmp_name)
        contenders = [Contender("this", ROOT, "bench_this")]
        if baseline_ref != "none":
            contenders.append(Contender(f"baseline ({baseline_ref})", baseline_tree(baseline_ref, tmp / "baseline"),
                                        "bench_base"))
        async with mock_web(tmp) as web:
            rec = Recorder(web)
            try:
                for who in contenders:
                    await start_worker(tmp, web.url, who)
                await web.wait_for(lambda: sum(w.connected for w in web.workers.values()) >= len(contenders), 60)
                await asyncio.sleep(1)
                for who in contenders:  # warm-up: imports, first connections
                    await one_job(web, rec, who, settings)
                profiler = await start_profiler(contenders[0], profile) if profile else None
                for i in range(runs):
                    for who in contenders if i % 2 == 0 else contenders[::-1]:
                        r = await one_job(web, rec, who, settings)
                        results.setdefault(who.name, []).append(r)
                        print(f"{who.name:>16} job {r.job_id} exited {r.exited:.4f} {r.result}: " + ", ".join(
                            f"{label.split(' (')[0]} {getattr(r, key) * 1000:.1f} ms" for label, key in METRICS[:4]),
                            f"CPU {r.cpu:.3f} s", flush=True)
                if profiler is not None:
                    await stop_profiler(profiler)
            finally:
                for who in contenders:
                    await stop_worker(who)
                    if profile is not None:  # keep the worker logs next to the profile
                        shutil.copy(tmp / who.name / "worker.log", profile / f"worker-{who.worker_class}.log")
    report(results, contenders, module_seconds)


def report(results: dict[str, list[Run]], contenders: list[Contender], module_seconds: float) -> None:
    names = [c.name for c in contenders]
    med = {n: {key: median(getattr(r, key) for r in results[n]) for _, key in METRICS} for n in names}
    print(f"\nMEDIAN of {len(results[names[0]])} simulator jobs each (2 modules x {module_seconds} s, "
          "1 screenshot 64x48 each); " + ", ".join(
              f"{n}: {sum(r.result == 'passed' for r in results[n])} passed" for n in names))
    head = " | ".join(names)
    print(f"| metric | {head} | ratio |" if len(names) > 1 else f"| metric | {head} |")
    print("| --- |" + " --- |" * (len(names) + (len(names) > 1)))
    for label, key in METRICS:
        scale, unit, digits = {"total": (1, " s", 3), "cpu": (1, " s", 3), "status_posts": (1, "", 0),
                               "uploads": (1, "", 0)}.get(key, (1000, " ms", 1))
        cells = " | ".join(f"{med[n][key] * scale:.{digits}f}{unit}" for n in names)
        tail = f" | {ratio(med[names[0]][key], med[names[1]][key]):.2f}x |" if len(names) > 1 else " |"
        print(f"| {label} | {cells}{tail}")
    for n in names:
        over = sum(med[n][k] for k in ("grab_to_accepted", "accepted_to_spawned", "exit_to_done"))
        print(f"{n}: worker time around isotovideo {over * 1000:.0f} ms "
              f"({over / med[n]['total'] * 100:.0f}% of the job)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--module-seconds", type=float, default=0.5)
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline worker, or 'none'")
    parser.add_argument("--profile", type=Path, help="run this checkout's worker under py-spy, output into DIR")
    parser.add_argument("--workdir", type=Path, help="make the (removed) run directory inside DIR")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    asyncio.run(bench(args.runs, args.module_seconds, args.baseline_ref, args.profile, args.workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
