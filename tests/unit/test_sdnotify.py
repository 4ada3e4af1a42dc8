"""sd_notify: real AF_UNIX datagram sockets (a path in tmp_path and an abstract name).

The reporter's timers (watchdog pings, EXTEND_TIMEOUT_USEC, the contact window) run on a virtual clock
(tests/clock.py): ``collect(sock, 0.25)`` is exactly 0.25 s of the reporter's time, however busy the
machine, and takes no wall-clock time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import pytest

from backend import events as ev
from backend.events import EventBus, HostState, SlotState
from backend.sdnotify import Notifier, SystemdReporter
from backend.state import WorkerView

HOST = "http://127.0.0.1:9526"

pytestmark = pytest.mark.virtual_clock


class FakeRuntime:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.view = WorkerView()
        self.bus.add_listener(self.view.apply)
        self.stopped = asyncio.Event()

    def drain(self) -> None:
        self.bus.publish(ev.WorkerStopping(mode="drain"))

    def quit(self) -> None:
        self.bus.publish(ev.WorkerStopping(mode="quit"))

    def abort_job(self, instance: int) -> bool:
        return False

    async def wait_stopped(self) -> int:
        await self.stopped.wait()
        return 0


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, split into KEY=value fields."""
    fields: list[str] = []
    while True:
        try:
            fields.extend(sock.recv(65536).decode().split("\n"))
        except BlockingIOError:
            return fields


async def collect(sock: socket.socket, seconds: float) -> list[str]:
    """What arrives while ``seconds`` of (virtual) time pass."""
    await asyncio.sleep(seconds)
    return received(sock)


def test_notifier_sends_to_path_socket(listener):
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready() and n.status("2 idle\nsecond line") and n.stopping()
    assert n.extend_timeout(1.5) and n.watchdog()
    assert received(sock) == ["READY=1", "STATUS=2 idle second line", "STOPPING=1",
                              "EXTEND_TIMEOUT_USEC=1500000", "WATCHDOG=1"]
    n.close()


def test_notifier_abstract_namespace():
    name = f"qaworker-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_notifier_without_socket_is_a_noop():
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_interval() is None


def test_notifier_logs_a_send_failure_once(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="backend.sdnotify"):
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.status("x") is False
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


def test_watchdog_interval_is_half_and_honours_pid(listener):
    _sock, path = listener
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "120000000"}).watchdog_interval() == 60.0
    mine = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval() == 1.0
    other = {**mine, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(other).watchdog_interval() is None
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "junk"}).watchdog_interval() is None


def test_unset_environment_hides_socket_from_children(monkeypatch, listener):
    _sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    n = Notifier(unset_environment=True)
    assert n.enabled and n.watchdog_interval() == 0.5
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ


async def test_ready_after_worker_started_and_status_deduplicated(listener):
    sock, path = listener
    rt = FakeRuntime()
    reporter = SystemdReporter(rt, Notifier({"NOTIFY_SOCKET": path}))
    task = asyncio.create_task(reporter.run())
    await asyncio.sleep(0.05)
    assert received(sock) == []  # not ready before the worker started
    rt.bus.publish(ev.WorkerStarted(version="0.1.0", instances=(1, 2), hosts=(HOST,)))
    for _ in range(3):  # the same state three times: one STATUS only
        rt.bus.publish(ev.SlotStateChanged(instance=1, state=SlotState.IDLE))
    rt.bus.publish(ev.LogLines(instance=1, job_id=1, lines=("x",)))
    got = await collect(sock, 0.05)
    assert got[0].startswith("STATUS=") and got[1] == "READY=1"
    assert got.count("READY=1") == 1
    assert len([f for f in got if f.startswith("STATUS=")]) == 1
    rt.bus.publish(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.CONNECTED, worker_id=7))
    got = await collect(sock, 0.05)
    assert got == ["STATUS=2 idle; 1/2 web UI connections up"]
    rt.bus.publish(ev.WorkerStopped())
    await asyncio.wait_for(task, 1)


async def test_ready_sent_at_once_when_worker_started_earlier(listener):
    sock, path = listener
    rt = FakeRuntime()
    rt.bus.publish(ev.WorkerStarted(version="0.1.0", instances=(1,), hosts=(HOST,)))
    task = asyncio.create_task(SystemdReporter(rt, Notifier({"NOTIFY_SOCKET": path})).run())
    got = await collect(sock, 0.05)
    assert "READY=1" in got
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_watchdog_goes_on_through_a_30_minute_web_ui_outage(listener):
    """Issue 11 item 5: the watchdog means "the loop is alive"; an outage only shows in STATUS=."""
    sock, path = listener
    rt = FakeRuntime()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "120000000"})  # systemd's 2 min: ping every 60 s
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(SystemdReporter(rt, notifier, contact_window=600, clock=loop.time).run())
    assert await collect(sock, 0.1) == []  # no pings (and no STATUS) before READY
    rt.bus.publish(ev.WorkerStarted(version="0.1.0", instances=(1,), hosts=(HOST,)))
    rt.bus.publish(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.CONNECTED, worker_id=3))
    await asyncio.sleep(1)
    received(sock)
    rt.bus.publish(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.FAILED, reason="refused"))
    start = loop.time()
    got = []
    for _minute in range(30):  # half an hour without any web UI (virtual clock), read as it comes
        got += await collect(sock, 60)
    assert loop.time() - start >= 30 * 60
    assert got.count("WATCHDOG=1") >= 29  # one every 60 s, never withheld
    # systemctl status still tells that no web UI was reached.
    assert "STATUS=1 idle; 0/1 web UI connections up – no web UI contact for over 600 s" in got
    rt.bus.publish(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.CONNECTED, worker_id=3))
    got = await collect(sock, 61)
    assert "WATCHDOG=1" in got
    assert "STATUS=1 idle; 1/1 web UI connections up" in got  # the note goes when a web UI answers
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_webui_reachability_predicate_precisely():
    now = [1000.0]
    rt = FakeRuntime()
    rep = SystemdReporter(rt, Notifier({}), contact_window=600, clock=lambda: now[0])
    rep._handle(ev.WorkerStarted(version="1", instances=(1,), hosts=("a", "b")))
    assert rep.webui_reachable()  # start-up grace
    now[0] += 601
    assert not rep.webui_reachable()  # nobody reached for 10 minutes
    for host in ("a", "b"):  # deliberately idle: every host disabled
        rt.bus.publish(ev.ConnectionChanged(host=host, instance=1, state=HostState.DISABLED))
        rep._handle(ev.ConnectionChanged(host=host, instance=1, state=HostState.DISABLED))
    assert rep.webui_reachable()
    ev_a = ev.ConnectionChanged(host="a", instance=1, state=HostState.CONNECTED)
    rt.bus.publish(ev_a)
    rep._handle(ev_a)
    ev_b = ev.ConnectionChanged(host="b", instance=1, state=HostState.FAILED)
    rt.bus.publish(ev_b)
    rep._handle(ev_b)
    now[0] += 5000
    assert rep.webui_reachable()  # "a" is connected: "b" failing for long does not matter
    ev_a = ev.ConnectionChanged(host="a", instance=1, state=HostState.FAILED)
    rt.bus.publish(ev_a)
    rep._handle(ev_a)
    now[0] += 599
    assert rep.webui_reachable()  # "a" was connected within the window
    now[0] += 2
    assert not rep.webui_reachable()
    rt.bus.publish(ev.WorkerStopping(mode="drain"))
    assert rep.webui_reachable()  # no outage note while draining


async def test_stopping_and_extend_timeout_while_draining(listener):
    sock, path = listener
    rt = FakeRuntime()
    rep = SystemdReporter(rt, Notifier({"NOTIFY_SOCKET": path}), extend_every=0.05, extend_by=2.0)
    task = asyncio.create_task(rep.run())
    rt.bus.publish(ev.WorkerStarted(version="0.1.0", instances=(1,), hosts=(HOST,)))
    rt.bus.publish(ev.JobAccepted(instance=1, job_id=42, name="boot", host=HOST, max_job_time=7200))
    await collect(sock, 0.05)
    rt.drain()
    got = await collect(sock, 0.22)
    assert got.count("STOPPING=1") == 1
    assert got.count("EXTEND_TIMEOUT_USEC=2000000") == 5  # every 0.05 s: at 0, 0.05, 0.1, 0.15, 0.2 s
    assert any(f.startswith("STATUS=drain") for f in got)
    rt.bus.publish(ev.JobFinished(instance=1, job_id=42, result="passed"))
    await asyncio.sleep(0.1)  # the extend loop's last sleep ends: it sees no running job and stops
    received(sock)
    assert not any(f.startswith("EXTEND_TIMEOUT_USEC") for f in await collect(sock, 0.15))
    loop = asyncio.get_running_loop()
    start = loop.time()
    rt.bus.publish(ev.WorkerStopped())
    await asyncio.wait_for(task, 1)
    assert loop.time() - start < 0.01  # at once: no timer of the reporter was waited for


async def test_quit_without_jobs_sends_stopping_only(listener):
    sock, path = listener
    rt = FakeRuntime()
    reporter = SystemdReporter(rt, Notifier({"NOTIFY_SOCKET": path}), extend_every=0.02)
    task = asyncio.create_task(reporter.run())
    rt.bus.publish(ev.WorkerStarted(version="0.1.0", instances=(1,), hosts=(HOST,)))
    rt.quit()
    got = await collect(sock, 0.1)
    assert "STOPPING=1" in got
    assert not any(f.startswith("EXTEND_TIMEOUT_USEC") for f in got)
    rt.bus.publish(ev.WorkerStopped())
    await asyncio.wait_for(task, 1)
