"""The per-job log files (worker-log.txt, the worker's notes in autoinst-log.txt): real files, a real loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from app.threads import started_pool
from backend.job.joblog import JobLog


async def test_every_line_reaches_its_file_in_order(tmp_path: Path) -> None:
    job_log = JobLog(tmp_path, 1, 42)
    for i in range(200):  # many lines while writes are in flight: they are batched, never reordered
        job_log.note(f"note {i}")
        if i % 3 == 0:
            job_log.autoinst(f"autoinst {i}")
        if i % 50 == 0:
            await asyncio.sleep(0)
    await job_log.close()
    notes = (tmp_path / "worker-log.txt").read_text().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in notes] == [str(i) for i in range(200)]
    assert all("[info] note" in line for line in notes)
    assert (tmp_path / "autoinst-log.txt").read_text() == "".join(f"autoinst {i}\n" for i in range(0, 200, 3))


async def test_isotovideos_own_lines_are_kept_between_the_workers_notes(tmp_path: Path) -> None:
    job_log = JobLog(tmp_path, 1, 42)
    job_log.autoinst("+++ setup notes +++")
    await job_log.flush()
    with (tmp_path / "autoinst-log.txt").open("a") as fh:  # isotovideo appends too
        fh.write("isotovideo line\n")
    job_log.autoinst("+++ worker notes +++\n")
    await job_log.close()
    assert (tmp_path / "autoinst-log.txt").read_text().splitlines() == [
        "+++ setup notes +++", "isotovideo line", "+++ worker notes +++"]


async def test_jobs_do_not_start_threads_of_their_own(tmp_path: Path) -> None:
    pool = started_pool(4)  # the worker's default pool: every thread exists before the loop needs one
    asyncio.get_running_loop().set_default_executor(pool)
    before = threading.active_count()
    logs = [JobLog(tmp_path / str(n), n, n) for n in range(10)]
    for n, job_log in enumerate(logs):
        (tmp_path / str(n)).mkdir()
        job_log.note("isotovideo has been started")
    for job_log in logs:
        await job_log.flush()
    assert threading.active_count() == before
    for n in range(10):
        assert "isotovideo has been started" in (tmp_path / str(n) / "worker-log.txt").read_text()


async def test_an_unwritable_pool_is_logged_and_later_lines_still_arrive(tmp_path: Path, caplog) -> None:
    pool_dir = tmp_path / "pool"  # not there yet: the append fails
    job_log = JobLog(pool_dir, 3, 7)
    with caplog.at_level(logging.WARNING, logger="backend.job"):
        job_log.note("lost: the pool is gone")
        await job_log.flush()
    assert "[slot 3] [job 7] cannot write worker-log.txt" in caplog.text
    pool_dir.mkdir()
    job_log.note("after the pool came back")
    await job_log.close()
    assert "after the pool came back" in (pool_dir / "worker-log.txt").read_text()


async def test_a_cancelled_flush_leaves_the_lines_to_be_written(tmp_path: Path) -> None:
    job_log = JobLog(tmp_path, 1, 1)
    job_log.note("first")
    flush = asyncio.ensure_future(job_log.flush())
    await asyncio.sleep(0)
    flush.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flush
    job_log.note("second")
    await job_log.close()
    lines = (tmp_path / "worker-log.txt").read_text().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["first", "second"]
