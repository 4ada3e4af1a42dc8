"""The job history: real jobs of a real Worker into a real sqlite file, kept across restarts, read by the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import pytest

from backend import events as ev
from backend.control.services import start_services
from backend.events import EventBus
from backend.history import HistoryEntry, HistoryRecorder, HistoryStore, history_path
from tests.e2e.pty_helpers import ROOT
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered

pytestmark = pytest.mark.timeout(90)


async def test_finished_jobs_are_recorded_and_survive_a_restart(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        async with running_worker(config) as worker:
            services = await start_services(worker, control=False)
            try:
                await wait_registered(web)
                passed = web.schedule_job(job_settings(TEST="history-pass"))
                await web.wait_for(lambda: web.jobs[passed].result == "passed", 30)
                failed = web.schedule_job(job_settings(TEST="history-fail", SIM_FAIL_MODULE="login"))
                await web.wait_for(lambda: web.jobs[failed].result == "failed", 30)
                await web.wait_for(lambda: len(services.history.entries()) == 2, 5)
            finally:
                await services.close()
        entries = services.history.entries()
        assert [(e.job_id, e.result, e.instance) for e in entries] == [(passed, "passed", instance),
                                                                      (failed, "failed", instance)]
        first = entries[0]
        assert "history-pass" in first.name and first.host == web.url
        assert first.url == f"{web.url}/tests/{passed}"
        assert first.started_at < first.finished_at and first.duration > 0.3

    path = history_path(config.slots[0].pool_dir)
    assert path.exists()
    again = HistoryRecorder(EventBus(), HistoryStore(path), {})  # the next start of the worker
    await again.start()
    try:
        assert [e.job_id for e in again.entries()] == [passed, failed]
    finally:
        await again.close()


def entry(n: int, **kw) -> HistoryEntry:
    base = dict(job_id=n, name=f"job-{n}", host="h", url=f"http://h/tests/{n}", instance=1 + n % 2,
                result="passed" if n % 3 else "failed", finished_at=1000.0 + n, started_at=990.0 + n, duration=10.0)
    return HistoryEntry(**{**base, **kw})


async def test_the_store_keeps_the_newest_and_never_runs_sqlite_on_the_loop(tmp_path, monkeypatch) -> None:
    store = HistoryStore(tmp_path / "h.sqlite", keep=5)
    threads: list[str] = []
    real_add = HistoryStore.add

    def add(self, e):
        threads.append(threading.current_thread().name)
        return real_add(self, e)

    monkeypatch.setattr(HistoryStore, "add", add)
    bus = EventBus()
    recorder = HistoryRecorder(bus, store, {"h": "http://h"}, keep=5)
    await recorder.start()
    for n in range(8):
        bus.publish(ev.JobAccepted(instance=1, job_id=n, name=f"job-{n}", host="h", max_job_time=60.0))
        bus.publish(ev.JobFinished(instance=1, job_id=n, result="passed", duration=1.0))
    bus.publish(ev.JobSkipped(instance=2, job_id=99, reason="skipped"))
    await recorder.close()
    assert threads and all(name.startswith("history-sqlite") for name in threads)
    assert threading.main_thread().name not in threads
    check = HistoryStore(tmp_path / "h.sqlite")
    check.open()
    try:
        assert [e.job_id for e in check.recent()] == [99, 7, 6, 5, 4]
        assert check.recent(instance=2)[0].result == "skipped"
    finally:
        check.close()
    assert [e.job_id for e in recorder.entries()] == [4, 5, 6, 7, 99]


async def test_an_unusable_history_file_costs_only_the_file(tmp_path, caplog) -> None:
    path = tmp_path / "h.sqlite"
    path.mkdir()  # not a file
    bus = EventBus()
    recorder = HistoryRecorder(bus, HistoryStore(path), {})
    await recorder.start()
    bus.publish(ev.JobFinished(instance=1, job_id=5, result="passed"))
    await recorder.close()
    assert "unusable" in caplog.text and [e.job_id for e in recorder.entries()] == [5]


def history_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "history", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


async def test_qaworker_history_prints_the_file(tmp_path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.open()
    for n in range(1, 7):
        store.add(entry(n, reason="boom" if n == 3 else ""))
    store.close()
    text = await asyncio.to_thread(history_cli, "--file", str(tmp_path / "h.sqlite"))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 6 and "#6" in lines[0] and "#1 " in lines[-1]  # newest first
    assert "http://h/tests/3" in lines[3] and "(boom)" in lines[3]
    as_json = await asyncio.to_thread(history_cli, "--file", str(tmp_path / "h.sqlite"), "--json", "--slot", "2",
                                      "--result", "passed")
    rows = json.loads(as_json.stdout)
    assert [r["job_id"] for r in rows] == [5, 1] and all(r["instance"] == 2 for r in rows)
    missing = await asyncio.to_thread(history_cli, "--file", str(tmp_path / "none.sqlite"))
    assert missing.returncode == 1 and "no job history at" in missing.stderr
