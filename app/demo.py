"""``qaworker demo``: the whole product on an embedded mock web UI, nothing to configure.

Starts the bundled mock web UI on a free 127.0.0.1 port, runs three slots with the simulator as
isotovideo and a small asset cache in a temporary directory, and keeps scheduling a realistic mix
of jobs: passing, failing, softfailed, a long one that gets cancelled, a chained sequence, one
with an asset download, a live-log viewer and a developer session coming and going, and a spell
of high load that makes the slots report ``broken`` until it passes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from app import threads
from app.demo_env import TerminalWatch, end_descendants, reserve_instances
from backend.config import HostConfig, SlotConfig, WorkerConfig
from backend.config.environment import read_environment
from backend.events import SlotState
from backend.metrics import LagProbe
from backend.mockweb.server import MockWebUI
from backend.worker import Worker

log = logging.getLogger("qaworker.demo")

DEMO_KEY = "DEMODEMODEMODEMO"
DEMO_SECRET = "0123456789ABCDEF"
FIRST_INSTANCE_ENV = "QAWORKER_DEMO_FIRST_INSTANCE"  # where to start looking for free slot numbers (tests)
LOW_LOAD = "0.10 0.10 0.10 1/100 1\n"
HIGH_LOAD = "95.00 60.00 30.00 9/300 1\n"


def write_load(path: Path, line: str) -> None:
    """Replace the fake /proc/loadavg atomically: the health check must never read a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(line)
    os.replace(tmp, path)


def simulator_command(workdir: Path) -> str:
    installed = Path(sys.executable).parent / "qaworker-simulator"
    if installed.exists():
        return str(installed)
    from backend.engine.simulator import simulator_command as source_command

    return source_command()


def demo_config(workdir: Path, url: str, instances: list[int]) -> WorkerConfig:
    """Everything in ``workdir``: pool, cache (and their locks), share; slot numbers of its own."""
    prjdir = workdir / "openqa"
    share = prjdir / "share"
    (share / "tests" / "demo").mkdir(parents=True, exist_ok=True)  # DISTRI=demo: the default CASEDIR
    loadavg = workdir / "loadavg"
    write_load(loadavg, LOW_LOAD)
    host = HostConfig(configured=url, base_url=url, api_key=DEMO_KEY, api_secret=DEMO_SECRET, share_dir=share)
    slot_configs = []
    for instance in instances:
        settings = {"WORKER_CLASS": "qemu_x86_64,demo", "WORKER_HOSTNAME": "127.0.0.1", "RETRY_DELAY": "1",
                    "RETRY_DELAY_IF_WEBUI_BUSY": "2", "CRITICAL_LOAD_AVG_THRESHOLD": "40",
                    "QAWORKER_LOADAVG_FILE": str(loadavg), "QAWORKER_STOP_GRACE": "5",
                    "QAWORKER_POOL_MIN_FREE_MB": "0", "QAWORKER_HEALTH_INTERVAL": "1"}
        slot_configs.append(SlotConfig(instance=instance, settings=settings, hosts=[host],
                                       pool_dir=prjdir / "pool" / str(instance)))
    return WorkerConfig(slots=slot_configs, isotovideo=simulator_command(workdir), prjdir=prjdir,
                        cache_dir=workdir / "cache", cache_limit_gib=1.0,
                        env={"OPENQA_WORKER_CONNECT_INTERVAL": "2"})


def _job(name: str, **settings: str) -> dict[str, str]:
    base = {"DISTRI": "demo", "VERSION": "1", "FLAVOR": "sim", "ARCH": "x86_64", "BUILD": "42",
            "TEST": name, "MACHINE": "sim64", "WORKER_CLASS": "demo", "SIM_SCREENSHOT_SIZE": "320x240",
            "SIM_MODULE_SECONDS": "1", "NAME": f"demo-{name}"}
    return {**base, **settings}


class DemoFeeder:
    """Keeps the mock web UI busy with a realistic mix of jobs.

    The first round shows every kind within about 45 s (``qaworker demo --duration 45`` is a test);
    later rounds repeat it with new names.
    """

    def __init__(self, web: MockWebUI, worker: Worker, loadavg: Path) -> None:
        self.web = web
        self.worker = worker
        self.loadavg = loadavg
        self.rng = random.Random(4)
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:  # the demo goes on without new jobs rather than dying silently
            log.exception("demo feeder failed")

    async def _run(self) -> None:
        # 8 MiB written: in a thread (27 ms on the loop under load, test_demo's slow-callback guard)
        await asyncio.to_thread(self.web.add_asset, "hdd", "demo-disk.qcow2", size=8 * 1024 * 1024)
        scenario = [self.passing, self.failing, self.cancelled, self.softfail, self.with_asset, self.chain,
                    self.live_viewer, self.developer, self.broken_spell, self.passing]
        round_no = 0
        while True:
            for step in scenario:
                await self._wait_for_capacity()
                await step(round_no)
                await asyncio.sleep(0.5)
            round_no += 1

    async def stop(self) -> None:
        """Cancel the viewers and cancellers still waiting for their job (it will never run now)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # keep a reference: the loop only holds weak ones
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_capacity(self) -> None:
        def queued() -> int:
            return sum(1 for j in self.web.jobs.values() if j.state == "scheduled")
        with contextlib.suppress(TimeoutError):
            await self.web.wait_for(lambda: queued() < 2, 3600)

    async def passing(self, n: int) -> None:
        self.web.schedule_job(_job(f"textmode-{n}", SIM_MODULES="boot,installer,partitioning,first_boot,console"))

    async def failing(self, n: int) -> None:
        self.web.schedule_job(_job(f"kde-{n}", SIM_MODULES="boot,desktop,firefox,shutdown",
                                   SIM_FAIL_MODULE="firefox"))

    async def softfail(self, n: int) -> None:
        self.web.schedule_job(_job(f"gnome-{n}", SIM_MODULES="boot,gnome,nautilus,shutdown",
                                   SIM_SOFTFAIL_MODULE="nautilus"))

    async def with_asset(self, n: int) -> None:
        self.web.schedule_job(_job(f"upgrade-{n}", HDD_1="demo-disk.qcow2", SIM_MODULES="boot,zypper_up,reboot"),
                              assets={"hdd": ["demo-disk.qcow2"]})

    async def chain(self, n: int) -> None:
        self.web.schedule_chain([_job(f"create_hdd-{n}", SIM_MODULES="boot,install"),
                                 _job(f"extra_tests-{n}", SIM_MODULES="boot,console"),
                                 _job(f"yast-{n}", SIM_MODULES="boot,yast2")])

    async def cancelled(self, n: int) -> None:
        job_id = self.web.schedule_job(_job(f"long-{n}", SIM_MODULES="boot,stress,memtest,shutdown",
                                            SIM_MODULE_SECONDS="8"))
        self._spawn(self._cancel_later(job_id, 6))

    async def _cancel_later(self, job_id: int, delay: float) -> None:
        with contextlib.suppress(Exception):
            await self.web.wait_for(lambda: self.web.jobs[job_id].state == "running", 120)
            await asyncio.sleep(delay)
            if self.web.jobs[job_id].state == "running":
                log.info("demo: cancelling job %d in the web UI", job_id)
                self.web.cancel_job(job_id)

    async def live_viewer(self, n: int) -> None:
        job_id = self.web.schedule_job(_job(f"livelog-{n}", SIM_MODULES="boot,welcome,login,console,logout",
                                            SIM_MODULE_SECONDS="2"))
        self._spawn(self._viewer(job_id))

    async def _viewer(self, job_id: int) -> None:
        with contextlib.suppress(Exception):
            worker_id = await self._running_on(job_id)
            await self.web.send_ws(worker_id, {"type": "livelog_start", "jobid": job_id})
            await asyncio.sleep(5)
            await self.web.send_ws(worker_id, {"type": "livelog_stop", "jobid": job_id})

    async def developer(self, n: int) -> None:
        job_id = self.web.schedule_job(_job(f"devmode-{n}", SIM_MODULES="boot,needle_check,console",
                                            SIM_PAUSE="needle_check", SIM_PAUSE_SECONDS="4", SIM_MODULE_SECONDS="1.5"))
        self._spawn(self._developer(job_id))

    async def _developer(self, job_id: int) -> None:
        with contextlib.suppress(Exception):
            worker_id = await self._running_on(job_id)
            await self.web.send_ws(worker_id, {"type": "developer_session_start", "jobid": job_id})
            await self.web.send_ws(worker_id, {"type": "livelog_start", "jobid": job_id})

    async def _running_on(self, job_id: int) -> int:
        """The mock's worker id once the job runs; a moment later the slot knows the job too."""
        await self.web.wait_for(lambda: self.web.jobs[job_id].state == "running", 120)
        await asyncio.sleep(0.5)
        worker_id = self.web.jobs[job_id].assigned_worker_id
        assert worker_id is not None
        return worker_id

    def _slot_states(self) -> list[SlotState]:
        return [s.state for s in self.worker.view.slots.values()]

    async def broken_spell(self, n: int) -> None:
        """High load for a while: idle slots report broken and come back by themselves."""
        with contextlib.suppress(TimeoutError):  # let the queued jobs start first: the spell must not starve them
            await self.web.wait_for(lambda: not any(j.state == "scheduled" for j in self.web.jobs.values()), 60)
        await self._until(lambda: SlotState.IDLE in self._slot_states(), 60)
        log.info("demo: the system load goes up")
        write_load(self.loadavg, HIGH_LOAD)  # 30 bytes: inline, so no thread outlives the demo's cleanup
        await self._until(lambda: SlotState.BROKEN in self._slot_states(), 15)
        await asyncio.sleep(3)
        write_load(self.loadavg, LOW_LOAD)
        log.info("demo: the system load is back to normal")

    async def _until(self, predicate, timeout: float) -> None:
        """Wait for a condition on the worker view (it changes with every event on the bus)."""
        sub = self.worker.bus.subscribe()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await sub.get()
        except TimeoutError:
            pass
        finally:
            sub.close()


async def run_demo(no_ui: bool, slots: int, duration: float | None, workdir: Path) -> int:
    from app.run import main_async

    reservation = reserve_instances(slots, read_environment().demo_first_instance)
    web = MockWebUI(workdir / "webui", api_key=DEMO_KEY, api_secret=DEMO_SECRET)
    await web.start()
    config = demo_config(workdir, web.url, reservation.instances)
    worker = Worker(config)
    feeder = DemoFeeder(web, worker, workdir / "loadavg")
    terminal = TerminalWatch(worker.quit)  # the demo belongs to its terminal: no headless afterlife
    lag = LagProbe(0.05)  # how late the loop woke up: the summary shows the worst
    tasks = [feeder.run(), terminal.run(), lag.run()]
    if duration:
        tasks.append(_stop_after(worker, duration))
    say(f"qaworker demo: mock web UI at {web.url} (key {DEMO_KEY}), slots "
        f"{reservation.first}-{reservation.instances[-1]}, data in {workdir}")
    try:
        return await main_async(config, no_ui=no_ui, worker=worker, extra_tasks=tuple(tasks),
                                on_hangup=terminal.hangup)
    finally:
        await feeder.stop()
        say(f"qaworker demo: {summary(web)}; event loop lag max {lag.max * 1000:.0f} ms")
        await web.stop()
        await _report_leftover_tasks()
        reservation.release()


async def _report_leftover_tasks(grace: float = 5.0) -> None:
    """asyncio.run waits for every task it cancels; name the ones that would keep the demo from exiting."""
    others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    if not others:
        return
    for task in others:
        task.cancel()
    _done, pending = await asyncio.wait(others, timeout=grace)
    for task in pending:
        log.error("task still running after the demo ended: %r", task)


def say(line: str) -> None:
    """A line on stderr; the terminal may be gone (closed window), which must not skip the cleanup."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def summary(web: MockWebUI) -> str:
    """Results of the demo's jobs as the web UI saw them, e.g. ``passed 6, failed 1, running 0``."""
    counts = Counter(j.result if j.result != "none" else j.state for j in web.jobs.values())
    return "jobs " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "no jobs"


async def _stop_after(worker: Worker, seconds: float) -> None:
    await asyncio.sleep(seconds)
    worker.quit()


def main(args: argparse.Namespace | None = None) -> int:
    no_ui = bool(getattr(args, "no_ui", False))
    slots = int(getattr(args, "slots", 3) or 3)
    duration = getattr(args, "duration", None)
    workdir = Path(tempfile.mkdtemp(prefix="qaworker-demo-"))
    try:
        return threads.run(run_demo(no_ui, slots, duration, workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        ended = end_descendants()
        if ended:
            say(f"qaworker demo: ended leftover processes {ended}")
        shutil.rmtree(workdir, ignore_errors=True)
