"""Issue 11 item 5: a blocked event loop stops the systemd watchdog pings (so systemd restarts it).

A real notify socket (a unix datagram socket in tmp_path) is read by a thread that stamps every
datagram with its arrival time; the loop under test is then blocked on purpose. Real time here: the
point is what happens while the loop cannot run, which a virtual clock cannot show.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from backend import events as ev
from backend.events import HostState
from backend.sdnotify import Notifier, SystemdReporter
from tests.unit.test_sdnotify import HOST, FakeRuntime


class StampedReader(threading.Thread):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.pings: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if b"WATCHDOG=1" in data.split(b"\n"):
                self.pings.append(time.monotonic())


async def test_blocked_loop_sends_no_watchdog_ping_and_resumes_after(tmp_path) -> None:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    reader = StampedReader(sock)
    reader.start()
    rt = FakeRuntime()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # a ping every 50 ms
    task = asyncio.create_task(SystemdReporter(rt, notifier).run())
    try:
        rt.bus.publish(ev.WorkerStarted(version="0.1.0", instances=(1,), hosts=(HOST,)))
        rt.bus.publish(ev.ConnectionChanged(host=HOST, instance=1, state=HostState.FAILED, reason="down"))
        await asyncio.sleep(0.4)
        assert len(reader.pings) >= 3  # alive: pinging although no web UI is reachable
        blocked_from = time.monotonic()
        time.sleep(1.0)  # noqa: ASYNC251 -- the point: the loop hangs, nothing of ours may run
        blocked_until = time.monotonic()
        await asyncio.sleep(0.4)
        during = [t for t in reader.pings if blocked_from + 0.1 < t < blocked_until]
        assert during == [], f"{len(during)} watchdog ping(s) while the loop was blocked"
        assert any(t >= blocked_until for t in reader.pings)  # alive again: pings again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()
        reader.stop.set()
        reader.join(2)
        sock.close()
