"""The successive lives of a real worker process on one slot, for the live-restore tests (issue 11 items 3+4).

Real worker processes (`python -m app.cli --no-ui`, tests/integration/harness.py) against the mock web UI;
every life is ended by the test (``lives``), and the job record / monitor helpers read what the pool holds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from backend.mockweb.jobs import image_path
from backend.mockweb.server import MockWebUI
from tests.helpers import alive, free_instance
from tests.integration.harness import end_worker_process, start_worker_process


def pool_of(tmp: Path, instance: int) -> Path:
    return tmp / "base" / "openqa" / "pool" / str(instance)


class Workers:
    """The successive lives of the worker on one slot; every one is ended by the test."""

    def __init__(self, tmp: Path, web: MockWebUI, instance: int, extra: str = "") -> None:
        self.tmp, self.web, self.instance, self.extra = tmp, web, instance, extra
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, args: tuple[str, ...] = ()) -> asyncio.subprocess.Process:
        proc = await start_worker_process(self.tmp, self.web.url, self.instance, extra=self.extra, args=args)
        self.procs.append(proc)
        return proc

    async def start_registered(self, args: tuple[str, ...] = ()) -> asyncio.subprocess.Process:
        """The next life, once the web UI has its (new) registration."""
        worker = worker_of(self.web, self.instance)
        before = worker.registrations if worker is not None else 0
        proc = await self.start(args)
        await registered(self.web, self.instance, before)
        return proc

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        proc = self.procs[-1]
        proc.send_signal(sig)
        return await asyncio.wait_for(proc.wait(), 30)

    async def restart(self, sig: int = signal.SIGKILL, args: tuple[str, ...] = ()) -> int:
        """End this life with ``sig`` and start the next one (registered); the old life's exit status."""
        status = await self.kill(sig)
        await self.start_registered(args)
        return status

    @property
    def pool(self) -> Path:
        return pool_of(self.tmp, self.instance)

    def log(self) -> str:
        return (self.tmp / "worker.log").read_text(errors="replace")

    async def close(self) -> None:
        for proc in self.procs:
            await end_worker_process(proc)


@contextlib.asynccontextmanager
async def lives(tmp: Path, web: MockWebUI, extra: str = "") -> AsyncIterator[Workers]:
    workers = Workers(tmp, web, free_instance(), extra)
    try:
        yield workers
    finally:
        await workers.close()


def worker_of(web: MockWebUI, instance: int):
    return next((w for w in web.workers.values() if w.instance == instance), None)


async def registered(web: MockWebUI, instance: int, after: int = 0) -> None:
    await web.wait_for(lambda: (w := worker_of(web, instance)) is not None and w.connected
                       and w.registrations > after, 20)


def job_record(pool: Path) -> dict:
    """The pool's job record as the worker wrote it ({} while there is none)."""
    try:
        return json.loads((pool / ".qaworker" / "job.json").read_text())
    except FileNotFoundError:  # not written yet (it is replaced atomically: never half-written)
        return {}


def monitor_pid(pool: Path) -> int:
    return job_record(pool)["monitor"]["monitor_pid"]


async def recorded_monitor(web: MockWebUI, pool: Path) -> int:
    """Wait until the job record names the running job's monitor; its pid."""
    await web.wait_for(lambda: bool(job_record(pool).get("monitor")), 10)
    return monitor_pid(pool)


def assert_screenshots_exactly_once(web: MockWebUI, job_id: int) -> None:
    job = web.jobs[job_id]
    uploads = collections.Counter(a.md5 for a in job.artefacts if a.kind == "image")
    assert uploads and max(uploads.values()) == 1, uploads  # no image uploaded twice
    referenced = {d["screenshot"]["md5"] for m in job.modules.values() for d in m.get("details", [])
                  if isinstance(d.get("screenshot"), dict)}
    assert referenced, job.modules
    missing = [m for m in referenced if not image_path(web.data_dir / "images", m).exists()]
    assert missing == []  # no screenshot lost


def assert_passed_without_clone(web: MockWebUI, job_id: int, modules: int) -> None:
    job = web.jobs[job_id]
    assert (job.state, job.result, job.reason) == ("done", "passed", None), (job.result, job.reason)
    assert job.duplicated_as is None
    assert len(web.jobs) == 1  # no clone was created
    assert [m.get("result") for m in job.modules.values()] == ["ok"] * modules


def gone(pid: int) -> bool:
    return not alive(pid)
