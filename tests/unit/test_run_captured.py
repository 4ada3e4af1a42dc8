"""backend.engine.child.run_captured: helper commands (rsync, hooks, lscpu, ipmitool) run with real processes,
their output read through the loop and their whole process group ended when the caller gives up."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from backend.engine import child
from backend.engine.child import run_captured


async def test_stdout_and_stderr_apart_or_merged_and_the_exit_code():
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    apart = await run_captured([sys.executable, "-c", script])
    assert (apart.returncode, apart.stdout, apart.stderr) == (3, b"out\n", b"err\n")
    merged = await run_captured([sys.executable, "-c", script], merge_stderr=True)
    assert merged.returncode == 3 and sorted(merged.stdout.splitlines()) == [b"err", b"out"] and merged.stderr == b""


async def test_cwd_env_and_a_null_stdin(tmp_path: Path):
    result = await run_captured(["/bin/sh", "-c", 'pwd; echo "$GREETING"; cat'], cwd=tmp_path,
                                env={"GREETING": "hi", "PATH": os.environ["PATH"]})
    assert result.stdout.decode().splitlines() == [str(tmp_path), "hi"]


async def test_a_chatty_child_is_drained_and_only_the_limit_kept():
    result = await run_captured([sys.executable, "-c", "import sys; sys.stdout.write('x' * 3_000_000)"],
                                output_limit=1000)
    assert result.returncode == 0 and result.stdout == b"x" * 1000


async def test_a_missing_program_raises_oserror():
    with pytest.raises(OSError):
        await run_captured(["/nonexistent/qaworker-no-such-tool"])


async def test_the_fork_happens_off_the_loop_thread(monkeypatch):
    loop_thread = threading.get_ident()
    forked_in: list[int] = []
    real = child._popen_registered

    def spy(argv, kwargs):
        forked_in.append(threading.get_ident())
        return real(argv, kwargs)

    monkeypatch.setattr(child, "_popen_registered", spy)
    assert (await run_captured(["true"])).returncode == 0
    assert forked_in and loop_thread not in forked_in


def _group_members(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


async def test_a_cancel_ends_the_whole_group_and_reaps_it(tmp_path: Path):
    pidfile = tmp_path / "pid"
    # the shell starts a grandchild that would outlive it, then waits
    task = asyncio.create_task(run_captured(["/bin/sh", "-c", f"echo $$ > {pidfile}; sleep 60 & wait"]))
    await asyncio.to_thread(_wait_for_file, pidfile)
    leader = int(pidfile.read_text())
    assert await asyncio.to_thread(_group_members, leader)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    assert await asyncio.to_thread(_group_members, leader) == []
    assert not psutil.pid_exists(leader)  # reaped, not left a zombie


async def test_with_a_grace_the_group_gets_sigterm_first(tmp_path: Path):
    marker = tmp_path / "termed"
    script = f"trap 'echo term > {marker}; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    task = asyncio.create_task(run_captured(["/bin/sh", "-c", script], kill_grace=5))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert marker.read_text() == "term\n"


def _wait_for_file(path: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


async def test_a_missing_working_directory_raises_oserror(tmp_path: Path):
    with pytest.raises(OSError):
        await run_captured(["true"], cwd=tmp_path / "missing")


def test_no_subprocess_is_forked_on_the_loop_in_the_product() -> None:
    """asyncio.create_subprocess_* fork and read the exec's error pipe on the loop thread (73 ms per spawn
    at 1 job/s in bench/scale.py): the product starts children through backend.engine.child only."""
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"\basyncio\.create_subprocess_(exec|shell)\(")
    offenders = [f"{path.relative_to(root)}:{n}" for top in ("backend", "app", "widgets")
                 for path in sorted((root / top).rglob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not offenders, f"use backend.engine.child.run_captured / ThreadSpawnedChild: {offenders}"
