"""The headless face: one readable line per event, coalescing, and the run loop with sd_notify."""

from __future__ import annotations

import asyncio
import io
import logging
import socket

import pytest

from app.headless import EventLogger, event_level, format_event, human_bytes, human_duration, run_headless
from app.logsetup import setup_logging
from backend import events as ev
from backend.events import EventBus, HostState, ModuleStatus, SlotState
from backend.sdnotify import Notifier
from backend.state import WorkerView

HOST = "http://127.0.0.1:9526"


class FakeRuntime:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.view = WorkerView()
        self.bus.add_listener(self.view.apply)
        self.stopped = asyncio.Event()
        self.exit_code = 0

    def drain(self) -> None:
        self.bus.publish(ev.WorkerStopping(mode="drain"))

    def quit(self) -> None:
        self.bus.publish(ev.WorkerStopping(mode="quit"))

    def abort_job(self, instance: int) -> bool:
        return False

    def stop(self, code: int = 0) -> None:
        self.exit_code = code
        self.bus.publish(ev.WorkerStopped(exit_code=code))
        self.stopped.set()

    async def wait_stopped(self) -> int:
        await self.stopped.wait()
        return self.exit_code


MODULES = (ModuleStatus("boot", result="passed"), ModuleStatus("install", result="failed"),
           ModuleStatus("console", result="running"), ModuleStatus("shutdown"))

CASES: list[tuple[ev.Event, str | None]] = [
    (ev.WorkerStarted(version="0.1.0", instances=(1, 2), hosts=(HOST,)),
     f"qaworker 0.1.0 started: slots 1,2; web UIs {HOST}"),
    (ev.WorkerStopping(mode="drain"), "stopping after the current jobs (0 running); no new jobs"),
    (ev.WorkerStopping(mode="quit"), "stopping now (quit); 0 running jobs are stopped"),
    (ev.WorkerStopped(exit_code=1), "stopped (exit code 1)"),
    (ev.ConnectionChanged(host=HOST, instance=1, state=HostState.CONNECTED, worker_id=7),
     f"[{HOST} #1] connected, worker id 7"),
    (ev.ConnectionChanged(host=HOST, instance=1, state=HostState.REGISTERING), f"[{HOST} #1] registering"),
    (ev.ConnectionChanged(host=HOST, instance=1, state=HostState.ESTABLISHING_WS),
     f"[{HOST} #1] establishing websocket connection"),
    (ev.ConnectionChanged(host=HOST, instance=2, state=HostState.FAILED, reason="Connection error: refused",
                          next_retry_in=10),
     f"[{HOST} #2] failed: Connection error: refused; retrying in 10s"),
    (ev.ConnectionChanged(host=HOST, instance=2, state=HostState.DISABLED, reason="no working directory"),
     f"[{HOST} #2] disabled: no working directory"),
    (ev.ConnectionChanged(host=HOST, instance=2, state=HostState.NEW), None),
    (ev.SlotStateChanged(instance=1, state=SlotState.BROKEN, reason="qemu.pid: QEMU 123 still runs"),
     "[slot 1] broken: qemu.pid: QEMU 123 still runs"),
    (ev.SlotStateChanged(instance=1, state=SlotState.IDLE), "[slot 1] idle, waiting for jobs"),
    (ev.SlotStateChanged(instance=1, state=SlotState.OFFLINE), "[slot 1] offline: no web UI connection"),
    (ev.SlotStateChanged(instance=1, state=SlotState.SETUP, job_id=42, reason="downloading assets"),
     "[slot 1] setup (job 42): downloading assets"),
    (ev.JobAccepted(instance=1, job_id=42, name="sle-15-gnome", host=HOST, max_job_time=7200,
                    pending_job_ids=(43, 44)),
     f"[slot 1] job 42 (sle-15-gnome) accepted from {HOST}; queued after it: 43, 44"),
    (ev.JobProgress(instance=1, job_id=42, current_module="console", modules=MODULES),
     "[slot 1] job 42 running module console (2/4 modules done); failed: install"),
    (ev.JobProgress(instance=1, job_id=42, current_module="console", paused="needle match failed"),
     "[slot 1] job 42 paused: needle match failed"),
    (ev.JobFinished(instance=1, job_id=42, result="passed", duration=723),
     "[slot 1] job 42 finished: passed after 12m 03s"),
    (ev.JobFinished(instance=1, job_id=42, result="incomplete", reason="backend died: QEMU exited",
                    duration=7300),
     "[slot 1] job 42 finished: incomplete (backend died: QEMU exited) after 2h 01m"),
    (ev.JobSkipped(instance=1, job_id=43, reason="quit: worker has been stopped or restarted"),
     "[slot 1] job 43 skipped: quit: worker has been stopped or restarted"),
    (ev.LogLines(instance=1, job_id=42, lines=("a", "b")), None),
    (ev.UploadProgress(instance=1, job_id=42, files_done=231, files_total=231, bytes_done=3 << 20,
                       bytes_total=3 << 20), "[slot 1] job 42 uploaded 231 files, 3.0 MiB"),
    (ev.UploadProgress(instance=1, job_id=42, files_done=3, files_total=9),
     "[slot 1] job 42 uploading 3/9 files"),
    (ev.UploadProgress(instance=1, job_id=42, last_error="502 response: Bad Gateway"),
     "[slot 1] job 42 upload error: 502 response: Bad Gateway"),
    (ev.LiveViewers(instance=1, job_id=42, viewers=2), "[slot 1] job 42 live viewers: 2"),
    (ev.DeveloperSession(instance=1, job_id=42, active=True), "[slot 1] job 42 developer session started"),
    (ev.DeveloperSession(instance=1, job_id=42, active=False), "[slot 1] job 42 developer session ended"),
    (ev.CacheProgress(key="127.0.0.1/sle.iso", bytes_total=4 << 30, waiting_jobs=(42,)),
     "[cache] downloading 127.0.0.1/sle.iso (4.0 GiB) for job 42"),
    (ev.CacheProgress(key="127.0.0.1/sle.iso", bytes_done=4 << 30, done=True),
     "[cache] 127.0.0.1/sle.iso ready (4.0 GiB)"),
    (ev.CacheProgress(key="127.0.0.1/sle.iso", error="404 Not Found", done=True),
     "[cache] 127.0.0.1/sle.iso failed: 404 Not Found"),
    (ev.CacheTotals(used_bytes=1, limit_bytes=2), None),
    (ev.CacheQueue(active=1, downloads=1, queued=2, failed=0, limit=5), None),  # for /influxdb/minion
    (ev.Notice(level="warning", message="disk almost full", instance=2), "[slot 2] disk almost full"),
    (ev.Notice(level="info", message="cache cleaned"), "cache cleaned"),
    (ev.Notice(level="error", message="optipng missing", instance=1, job_id=42),
     "[slot 1] job 42: optipng missing"),
]


@pytest.mark.parametrize(("event", "expected"), CASES, ids=[f"{type(e).__name__}-{i}" for i, (e, _) in
                                                            enumerate(CASES)])
def test_format_event(event, expected):
    assert format_event(event, WorkerView()) == expected


def test_every_event_type_is_covered():
    covered = {type(e) for e, _ in CASES}
    all_types = {cls for cls in vars(ev).values() if isinstance(cls, type) and issubclass(cls, ev.Event)
                 and cls is not ev.Event}
    assert all_types <= covered


def test_levels():
    assert event_level(ev.Notice(level="error", message="x")) == logging.ERROR
    assert event_level(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.FAILED)) == logging.WARNING
    assert event_level(ev.SlotStateChanged(instance=1, state=SlotState.BROKEN)) == logging.WARNING
    assert event_level(ev.UploadProgress(instance=1, job_id=1, last_error="x")) == logging.WARNING
    assert event_level(ev.JobFinished(instance=1, job_id=1, result="incomplete")) == logging.WARNING
    assert event_level(ev.JobFinished(instance=1, job_id=1, result="failed")) == logging.INFO
    assert event_level(ev.WorkerStopped(exit_code=1)) == logging.ERROR
    assert event_level(ev.SlotStateChanged(instance=1, state=SlotState.IDLE)) == logging.INFO


def test_humanised_numbers():
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB"
    assert human_duration(59.6) == "1m 00s" and human_duration(3) == "3s"


def test_frequent_events_are_coalesced(caplog):
    view = WorkerView()
    logger = EventLogger(view, logging.getLogger("qaworker.test"))
    with caplog.at_level(logging.INFO, logger="qaworker.test"):
        for _ in range(100):
            logger.handle(ev.JobProgress(instance=1, job_id=42, current_module="boot"))
            logger.handle(ev.LogLines(instance=1, job_id=42, lines=("serial line",)))
        logger.handle(ev.JobProgress(instance=1, job_id=42, current_module="install"))
        logger.handle(ev.JobProgress(instance=1, job_id=42, current_module="install", paused="on failure"))
        logger.handle(ev.JobProgress(instance=1, job_id=42, current_module="install"))
        for done in range(1, 51):
            logger.handle(ev.UploadProgress(instance=1, job_id=42, files_done=done, files_total=50,
                                            bytes_done=done * 1000))
        for _ in range(3):
            logger.handle(ev.UploadProgress(instance=1, job_id=42, files_done=50, files_total=50,
                                            last_error="503 response: busy"))
        logger.handle(ev.UploadProgress(instance=1, job_id=42, files_done=50, files_total=50))
        for done in range(0, 100, 10):
            logger.handle(ev.CacheProgress(key="h/a.iso", bytes_done=done, bytes_total=100))
        logger.handle(ev.CacheProgress(key="h/a.iso", bytes_done=100, bytes_total=100, done=True))
        logger.handle(ev.JobFinished(instance=1, job_id=42, result="passed"))
        logger.handle(ev.JobProgress(instance=2, job_id=43, isotovideo_status="initial"))
    assert caplog.messages == [
        "[slot 1] job 42 running module boot",
        "[slot 1] job 42 running module install",
        "[slot 1] job 42 paused: on failure",
        "[slot 1] job 42 running module install",
        "[slot 1] job 42 uploaded 50 files, 48.8 KiB",
        "[slot 1] job 42 upload error: 503 response: busy",
        "[cache] downloading h/a.iso (100 B)",
        "[cache] h/a.iso ready (100 B)",
        "[slot 1] job 42 finished: passed",
    ]
    assert [r.levelno for r in caplog.records][5] == logging.WARNING
    assert caplog.records[0].job_id == 42 and caplog.records[0].instance == 1


async def test_run_headless_logs_notifies_and_returns_exit_code(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "n"))
    sock.setblocking(False)
    buf = io.StringIO()
    handler = setup_logging("info", "json", buf)
    rt = FakeRuntime()
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "n")})
        task = asyncio.create_task(run_headless(rt, notifier=notifier))
        await asyncio.sleep(0)
        rt.bus.publish(ev.WorkerStarted(version="0.1.0", instances=(1,), hosts=(HOST,)))
        rt.bus.publish(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.CONNECTED, worker_id=7))
        rt.bus.publish(ev.JobAccepted(instance=1, job_id=42, name="gnome", host=HOST, max_job_time=60))
        rt.drain()
        rt.bus.publish(ev.JobFinished(instance=1, job_id=42, result="passed", duration=5))
        rt.stop(3)  # published right before wait_stopped returns: must still be logged
        assert await asyncio.wait_for(task, 2) == 3
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()  # writes what is still queued
    out = buf.getvalue()
    assert '"message": "[slot 1] job 42 (gnome) accepted from http://127.0.0.1:9526"' in out
    assert '"job_id": 42' in out and '"event": "JobAccepted"' in out
    assert f"[{HOST} #1] connected, worker id 7" in out
    assert "stopped (exit code 3)" in out
    fields: list[str] = []
    while True:
        try:
            fields += sock.recv(65536).decode().split("\n")
        except BlockingIOError:
            break
    sock.close()
    assert "READY=1" in fields and "STOPPING=1" in fields
    assert any(f.startswith("STATUS=") and "1/1 web UI connections up" in f for f in fields)


async def test_run_headless_without_notify_socket(monkeypatch, caplog):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    rt = FakeRuntime()
    with caplog.at_level(logging.INFO, logger="qaworker"):
        task = asyncio.create_task(run_headless(rt))
        await asyncio.sleep(0)
        rt.bus.publish(ev.SlotStateChanged(instance=1, state=SlotState.BROKEN, reason="no space left"))
        rt.stop(0)
        assert await asyncio.wait_for(task, 2) == 0
    assert "[slot 1] broken: no space left" in caplog.messages
