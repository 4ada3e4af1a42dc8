"""Shared helpers of the fault suite: every scenario ends with the same four checks (see README.md)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.mockweb.server import MockWebUI
from backend.worker import Worker
from tests.integration.harness import (
    KEY,
    SECRET,
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    start_worker_process,
    wait_registered,
)

ROOT = Path(__file__).resolve().parents[2]

# Results os-autoinst always produces; the worker must deliver them or keep them.
CORE_FILES = {"autoinst-log.txt", "vars.json"}

__all__ = ["CORE_FILES", "KEY", "SECRET", "assert_accounted", "assert_healthy", "assert_no_leftovers",
           "collected_loop_errors", "job_settings", "make_config", "mock_web", "pool_of", "process_pool",
           "running_worker", "serving", "start_worker_process", "stop_process", "wait_registered"]


@contextlib.asynccontextmanager
async def serving(tmp: Path, **config_kwargs) -> AsyncIterator[tuple[MockWebUI, Worker]]:
    """A mock web UI plus an in-process worker registered with it."""
    async with mock_web(tmp) as web, running_worker(make_config(tmp, [web.url], **config_kwargs)) as worker:
        await wait_registered(web)
        yield web, worker


def pool_of(worker: Worker, index: int = 0) -> Path:
    return worker.config.slots[index].pool_dir


async def assert_healthy(web: MockWebUI, worker_pid: int | None = None, timeout: float = 60) -> None:
    """No leftover processes, and the worker still takes (and passes) the next job."""
    await assert_no_leftovers(worker_pid)
    job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot")), timeout)
    assert (job.result, job.reason) == ("passed", None), (job.result, job.reason)
    await assert_no_leftovers(worker_pid)


def assert_accounted(web: MockWebUI, job_id: int, pool: Path, files: set[str] = CORE_FILES) -> None:
    """Every result file reached the web UI, or still lies in the pool (or <pool>/.preserved/<job>)."""
    uploaded = web.jobs[job_id].uploaded_files()
    missing = set()
    for name in files:
        if name in uploaded:
            continue
        if (pool / name).exists() or (pool / ".preserved" / str(job_id) / name).exists():
            continue
        missing.add(name)
    assert not missing, f"lost result files of job {job_id}: {sorted(missing)} (uploaded {sorted(uploaded)})"


def process_pool(tmp: Path, instance: int) -> Path:
    return tmp / "base" / "openqa" / "pool" / str(instance)


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Test cleanup: end our own worker process (by its pid) if a test left it running."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[str]]:
    """Exceptions the event loop saw in tasks nobody awaited ("Task exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    previous = loop.get_exception_handler()

    def handler(_loop: asyncio.AbstractEventLoop, context: dict) -> None:
        errors.append(f"{context.get('message')}: {context.get('exception')!r}")

    loop.set_exception_handler(handler)
    yield errors
    loop.set_exception_handler(previous)


def collected_loop_errors(errors: list[str]) -> list[str]:
    gc.collect()  # unretrieved task exceptions are reported when the task is collected
    return list(errors)
