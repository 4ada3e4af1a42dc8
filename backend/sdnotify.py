"""systemd notification protocol (sd_notify) without a dependency, and the reporter that drives it.

``Notifier`` speaks the datagram protocol (PROTOCOL.md §19.2, ANCHORS.md §D.1). It is a no-op when
``NOTIFY_SOCKET`` is unset, never blocks and logs a send failure only once.

``SystemdReporter`` turns the event stream into notifications:

* ``READY=1`` once the worker published ``WorkerStarted`` (its registration loops are up; we do not
  wait for a first successful registration, or startup would hang while a web UI is down).
* ``STATUS=<WorkerView.summary()>`` whenever that line changes.
* ``WATCHDOG=1`` every ``WATCHDOG_USEC/2`` from a task of the worker's own event loop: the ping
  means exactly "the loop is alive" (issue 11 item 5). A blocked loop sends none, so systemd restarts
  a hung worker; a web UI outage of any length never stops the pings (the jobs keep running, like
  the classic worker's do). How long no web UI was reached is told in ``STATUS=`` instead (see
  ``SystemdReporter.webui_reachable``) and in the metrics.
* ``STOPPING=1`` on ``WorkerStopping`` and ``EXTEND_TIMEOUT_USEC`` every ``extend_every`` seconds
  while jobs still run during the stop, so a long drain is not killed by ``TimeoutStopSec``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from backend import events as ev
from backend.api import Runtime
from backend.events import HostState
from backend.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_WATCHDOG_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET``; a silent no-op when it is unset."""

    def __init__(self, env: Mapping[str, str] | None = None, *, unset_environment: bool = False) -> None:
        source: Mapping[str, str] = os.environ if env is None else env
        self.address = source.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = source.get("WATCHDOG_USEC", "")
        self._watchdog_pid = source.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None
        self._failed = False
        if unset_environment and env is None:
            # Children (isotovideo, QEMU) must not talk to systemd in our name.
            for name in _WATCHDOG_VARS:
                os.environ.pop(name, None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()  # abstract namespace
        return self.address

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram. True if it was handed to the socket."""
        if self.address is None or not fields:
            return False
        payload = "\n".join(fields).encode()
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(payload, self._target())
            return True
        except OSError as exc:  # BlockingIOError (queue full), ENOENT, ECONNREFUSED, ...
            if not self._failed:
                self._failed = True
                log.warning("sd_notify to %s failed: %s (further failures are not logged)",
                            self.address, exc)
            return False

    def ready(self) -> bool:
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def extend_timeout(self, seconds: float) -> bool:
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), None when no watchdog is asked for."""
        if self.address is None:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None  # meant for another process (we were forked/exec'd from it)
            except ValueError:
                return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class SystemdReporter:
    """Drives a ``Notifier`` from a runtime's events. Construct it before the worker starts publishing.

    Web UI reachability (for ``STATUS=`` only, never for the watchdog): the worker is stopping, OR
    some web UI connection is CONNECTED now, OR one was CONNECTED at most ``contact_window`` seconds
    ago, OR no connection has been in trouble for longer than ``contact_window``. "In trouble" means
    any state other than CONNECTED and DISABLED (new, registering, establishing the websocket,
    failed), measured from the moment it left CONNECTED (or from start-up). When unreachable,
    ``STATUS=`` says so; the watchdog pings go on regardless.
    """

    def __init__(self, runtime: Runtime, notifier: Notifier, *, contact_window: float = 600.0,
                 extend_every: float = 30.0, extend_by: float = 90.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.notifier = notifier
        self.contact_window = contact_window
        self.extend_every = extend_every
        self.extend_by = extend_by
        self._clock = clock
        self._sub = runtime.bus.subscribe()
        self._ready_sent = False
        self._stopping_sent = False
        self._last_status = ""
        self._last_contact: float | None = None
        self._trouble_since: dict[tuple[str, int], float] = {}
        self._extend_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # the watchdog starts with READY=1
        now = clock()
        self._started = bool(runtime.view.version)  # WorkerStarted already happened
        for key, host in runtime.view.hosts.items():
            self._track(key, host.state, now)

    # -- health -----------------------------------------------------------------------------------

    def _track(self, key: tuple[str, int], state: HostState, now: float) -> None:
        if state is HostState.CONNECTED:
            self._last_contact = now
            self._trouble_since.pop(key, None)
        elif state is HostState.DISABLED:
            self._trouble_since.pop(key, None)
        else:
            self._trouble_since.setdefault(key, now)

    def webui_reachable(self) -> bool:
        now = self._clock()
        view = self.runtime.view
        if view.stopping:
            return True  # keep petting while we drain, or a long drain looks like a hang
        if any(h.state is HostState.CONNECTED for h in view.hosts.values()):
            self._last_contact = now
            return True
        if self._last_contact is not None and now - self._last_contact <= self.contact_window:
            return True
        return all(now - since <= self.contact_window for since in self._trouble_since.values())

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Report until ``WorkerStopped`` or the bus closes; cancel it to stop earlier."""
        watchdog: asyncio.Task[None] | None = None
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            watchdog = asyncio.create_task(self._watchdog_loop(interval), name="sd-watchdog")
        try:
            if self._started:
                self._on_started()
            async for event in self._sub:
                self._handle(event)
                if isinstance(event, ev.WorkerStopped):
                    break
        finally:
            self._sub.close()
            for task in (watchdog, self._extend_task):
                if task is not None:
                    await cancel_and_wait(task)

    def _handle(self, event: ev.Event) -> None:
        now = self._clock()
        match event:
            case ev.WorkerStarted():
                for host in event.hosts:
                    for instance in event.instances:
                        self._trouble_since.setdefault((host, instance), now)
                self._on_started()
            case ev.ConnectionChanged():
                self._track((event.host, event.instance), event.state, now)
            case ev.WorkerStopping():
                self._on_stopping()
            case ev.LogLines() | ev.JobProgress() | ev.UploadProgress() | ev.CacheProgress() | ev.JobResources():
                return  # frequent and never change the summary's state counts
            case _:
                pass
        self._update_status()

    def _on_started(self) -> None:
        if not self._ready_sent:
            self._ready_sent = True
            self._update_status()
            self.notifier.ready()
            self._ready.set()

    def _on_stopping(self) -> None:
        if not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping()
        if self._extend_task is None and self.runtime.view.running_jobs > 0:
            self._extend_task = asyncio.create_task(self._extend_loop(), name="sd-extend-timeout")

    def _update_status(self, suffix: str = "") -> None:
        text = self.runtime.view.summary() + suffix
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)

    async def _watchdog_loop(self, interval: float) -> None:
        await self._ready.wait()
        while True:
            # Sent by the loop itself: a blocked loop stops it, a web UI outage never does.
            self.notifier.watchdog()
            if self.webui_reachable():
                self._update_status()
            else:
                self._update_status(f" – no web UI contact for over {self.contact_window:g} s")
            await asyncio.sleep(interval)

    async def _extend_loop(self) -> None:
        # EXTEND_TIMEOUT_USEC moves the stop deadline to now + extend_by; repeat before it passes.
        while self.runtime.view.running_jobs > 0:
            self.notifier.extend_timeout(self.extend_by)
            await asyncio.sleep(self.extend_every)
