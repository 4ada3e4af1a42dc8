"""Run a real Worker in-process against the real mock web UI (served on 127.0.0.1) and the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil

from backend.config import HostConfig, SlotConfig, WorkerConfig
from backend.engine.simulator import simulator_command
from backend.mockweb.server import MockWebUI
from backend.worker import Worker
from tests import loopguard
from tests.helpers import free_instance

KEY = "1234567890ABCDEF"
SECRET = "FEDCBA0987654321"
ROOT = Path(__file__).resolve().parents[2]


def simulator_path(tmp: Path) -> str:
    installed = Path(sys.executable).parent / "qaworker-simulator"
    if installed.exists():
        return str(installed)
    return simulator_command()


def make_config(tmp: Path, urls: list[str], *, instances: list[int] | None = None, settings: dict | None = None,
                cache: bool = False, secret: str = SECRET, env: dict | None = None) -> WorkerConfig:
    prjdir = tmp / "openqa"
    share = prjdir / "share"
    (share / "tests" / "sim").mkdir(parents=True, exist_ok=True)  # DISTRI=sim: the default CASEDIR
    hosts = [HostConfig(configured=u, base_url=u, api_key=KEY, api_secret=secret, share_dir=share) for u in urls]
    instances = instances or [free_instance()]
    base = {"WORKER_CLASS": "qemu_x86_64,test", "WORKER_HOSTNAME": "127.0.0.1", "RETRY_DELAY": "0.2",
            "RETRY_DELAY_IF_WEBUI_BUSY": "0.5", "RETRIES": "5", "QAWORKER_STOP_GRACE": "3",
            "QAWORKER_POOL_MIN_FREE_MB": "0", "CRITICAL_LOAD_AVG_THRESHOLD": "0"}
    base.update(settings or {})
    slots = [SlotConfig(instance=i, settings=dict(base), hosts=hosts, pool_dir=prjdir / "pool" / str(i))
             for i in instances]
    return WorkerConfig(slots=slots, isotovideo=simulator_path(tmp), prjdir=prjdir,
                        cache_dir=(tmp / "cache") if cache else None, cache_limit_gib=1,
                        env={"OPENQA_WORKER_CONNECT_INTERVAL": "0.3", **(env or {})})


def job_settings(**settings: str) -> dict[str, str]:
    base = {"DISTRI": "sim", "VERSION": "1", "TEST": "simtest", "WORKER_CLASS": "test",
            "SIM_MODULE_SECONDS": "0.3", "SIM_SCREENSHOTS": "1", "SIM_SCREENSHOT_SIZE": "64x48",
            "SIM_MODULES": "boot,login,shutdown", "OPTIMIZE_IMAGES": "0"}
    base.update(settings)
    return base


@contextlib.asynccontextmanager
async def mock_web(tmp: Path, **kwargs) -> AsyncIterator[MockWebUI]:
    web = MockWebUI(tmp / "webui", api_key=KEY, api_secret=SECRET, **kwargs)
    await web.start()
    try:
        yield web
    finally:
        await web.stop()


@contextlib.asynccontextmanager
async def running_worker(config: WorkerConfig) -> AsyncIterator[Worker]:
    worker = Worker(config)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        if not task.done():
            worker.quit()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 30)
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def wait_registered(web: MockWebUI, count: int = 1, timeout: float = 15) -> None:
    await web.wait_for(lambda: sum(1 for w in web.workers.values() if w.connected) >= count, timeout)


def job_processes(worker_pid: int | None = None) -> list[psutil.Process]:
    """Processes carrying a job marker of this test process's workers."""
    prefix = f"QAWORKER_JOB_MARKER=qaworker-{worker_pid or os.getpid()}-"
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                # A zombie has no environment to attribute it by; the engine tests check reaping.
                # (In-process workers make this test process a subreaper, so orphans of worker
                # *subprocesses*, e.g. their image-pool processes, end up as our zombies.)
                continue
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        marker = env.get("QAWORKER_JOB_MARKER", "")
        if f"QAWORKER_JOB_MARKER={marker}".startswith(prefix):
            found.append(proc)
    return [p for p in found if p.pid != os.getpid()]


async def quit_in_process_worker(worker, task: asyncio.Task) -> None:
    """Quit a worker running in this process as ``task`` and give it 30 s to end (the caller asserts how)."""
    worker.quit()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, 30)


async def assert_no_leftovers(worker_pid: int | None = None, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:  # the /proc scan takes tens of ms: in a thread, never on the test's loop (the loop guard)
        left = await asyncio.to_thread(lambda: [p for p in job_processes(worker_pid) if _alive(p)])
        if not left:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"leftover job processes: {[(p.pid, _cmd(p)) for p in left]}")
        await asyncio.sleep(0.2)


def _alive(p: psutil.Process) -> bool:
    try:
        return (p.is_running() and p.status() != psutil.STATUS_ZOMBIE) or p.ppid() == os.getpid()
    except psutil.NoSuchProcess:
        return False


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return "?"


def write_worker_config(tmp: Path, url: str, instances: list[int], extra: str = "") -> dict[str, str]:
    """``<tmp>/conf`` (workers.ini with one WORKER_CLASS=test section per slot, client.conf) and the
    environment a real `python -m app.cli` process reads it with (pools under ``<tmp>/base/openqa/pool``)."""
    sections = "".join(f"[{i}]\nWORKER_CLASS = test\n" for i in instances)
    conf = tmp / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "workers.ini").write_text(
        f"[global]\nHOST = {url}\nWORKER_HOSTNAME = 127.0.0.1\nRETRY_DELAY = 0.2\nRETRY_DELAY_IF_WEBUI_BUSY = 0.5\n"
        f"QAWORKER_STOP_GRACE = 3\nQAWORKER_POOL_MIN_FREE_MB = 0\nCRITICAL_LOAD_AVG_THRESHOLD = 0\n{extra}\n{sections}")
    (conf / "client.conf").write_text(f"[127.0.0.1]\nkey = {KEY}\nsecret = {SECRET}\n")
    (tmp / "base" / "openqa" / "share" / "tests" / "sim").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "OPENQA_CONFIG": str(conf), "OPENQA_BASEDIR": str(tmp / "base"),
            "OPENQA_WORKER_CONNECT_INTERVAL": "0.3", "PYTHONUNBUFFERED": "1"}


async def start_worker_process(tmp: Path, url: str, instance: int | list[int], extra: str = "",
                               isotovideo: str | None = None, args: tuple[str, ...] = (),
                               prefix: tuple[str, ...] = ()) -> asyncio.subprocess.Process:
    """The real `python -m app.cli --no-ui` process (one or several slots); output goes to <tmp>/worker.log.
    ``prefix`` runs it through a wrapper that execs it (e.g. into a cgroup).

    Under pytest it runs with the slow-callback guard (tests/loopguard.py), which fails the test when
    the process logs a slow callback of our code.
    """
    instances = instance if isinstance(instance, list) else [instance]
    slot_args = (["--instances", ",".join(map(str, instances))] if len(instances) > 1
                 else ["--instance", str(instances[0])])
    env = write_worker_config(tmp, url, instances, extra)
    if loopguard.under_pytest():
        env.update(loopguard.subprocess_env())
        loopguard.watch_log(tmp / "worker.log")
    with (tmp / "worker.log").open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-m", "app.cli", "--no-ui", *slot_args,
            "--isotovideo", isotovideo or simulator_command(), *args,
            cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)


async def end_worker_process(proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
    """Test cleanup: SIGTERM our worker process (the quit a test expects), SIGKILL it after ``timeout``."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
