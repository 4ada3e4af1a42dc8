"""PoolWatcher: inotify-driven live status from the pool directory."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.engine import watch
from backend.engine.watch import PoolWatcher

pytestmark = pytest.mark.timeout(20)


def write_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


class Recorder:
    def __init__(self) -> None:
        self.calls = 0
        self.changed = asyncio.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.changed.set()

    async def next(self, timeout: float = 3.0) -> None:
        await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()

    async def quiet(self, period: float = 0.4) -> bool:
        """True when no change was reported within ``period``."""
        self.changed.clear()
        try:
            await asyncio.wait_for(self.changed.wait(), period)
        except TimeoutError:
            return True
        return False


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[PoolWatcher, Recorder]]:
    rec = Recorder()
    watcher = PoolWatcher(tmp_path, rec, coalesce=0.05, poll_interval=0.1)
    task = asyncio.create_task(watcher.run())
    await rec.next()  # the initial report
    yield watcher, rec
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_reacts_to_status_results_and_test_order(tmp_path: Path, watched) -> None:
    watcher, rec = watched
    assert watcher.using_inotify
    assert watcher.read_status().status == ""
    write_atomic(tmp_path / "autoinst-status.json",
                 {"status": "running", "current_test": "boot", "test_execution_paused": 0})
    await rec.next()
    st = watcher.read_status()
    assert (st.status, st.current_test, st.test_execution_paused) == ("running", "boot", "")

    # testresults/ appears later: the watcher must start following it
    (tmp_path / "testresults").mkdir()
    write_atomic(tmp_path / "testresults" / "test_order.json", [{"name": "boot"}])
    await rec.next()
    assert watcher.read_status().test_order_changed
    assert not watcher.read_status().test_order_changed  # reported once

    (tmp_path / "testresults" / "result-boot.json").write_text('{"result": "ok", "details": []}')
    await rec.next()
    assert watcher.read_status().new_results == ("boot",)
    assert watcher.read_status().new_results == ()

    write_atomic(tmp_path / "autoinst-status.json",
                 {"status": "running", "current_test": "login", "test_execution_paused": "paused at x"})
    await rec.next()
    assert watcher.read_status().test_execution_paused == "paused at x"


async def test_ignores_unrelated_files_and_coalesces_bursts(tmp_path: Path, watched) -> None:
    watcher, rec = watched
    (tmp_path / "autoinst-log.txt").write_text("noise\n" * 10)
    (tmp_path / "testresults").mkdir()
    await rec.next()  # the new testresults/ dir
    (tmp_path / "testresults" / "boot-1.png").write_bytes(b"png")
    (tmp_path / "serial0").write_text("x")
    assert await rec.quiet()
    before = rec.calls
    for i in range(100):
        write_atomic(tmp_path / "autoinst-status.json", {"status": "running", "current_test": f"m{i}"})
    await rec.next()
    await rec.quiet(0.3)
    assert 1 <= rec.calls - before <= 5
    assert watcher.read_status().current_test == "m99"


async def test_falls_back_to_polling_without_inotify(tmp_path: Path, monkeypatch) -> None:
    def no_inotify() -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(watch, "_Inotify", no_inotify)
    rec = Recorder()
    watcher = PoolWatcher(tmp_path, rec, poll_interval=0.1)
    task = asyncio.create_task(watcher.run())
    try:
        await rec.next()
        assert not watcher.using_inotify
        write_atomic(tmp_path / "autoinst-status.json", {"status": "finished", "current_test": ""})
        await rec.next()
        assert watcher.read_status().status == "finished"
    finally:
        task.cancel()


def test_read_status_tolerates_missing_and_broken_files(tmp_path: Path) -> None:
    watcher = PoolWatcher(tmp_path, lambda: None)
    assert watcher.read_status() == watch.IsotovideoStatus()
    (tmp_path / "autoinst-status.json").write_text("{half a json")
    assert watcher.read_status().status == ""
    (tmp_path / "base_state.json").write_text('{"component": "backend", "msg": "QEMU exited unexpectedly"}')
    assert watcher.read_status().base_state == {"component": "backend", "msg": "QEMU exited unexpectedly"}
