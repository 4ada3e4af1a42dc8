"""The other end of the control socket: a ``Runtime`` for a worker in another process.

``RemoteRuntime`` has its own EventBus and WorkerView, fed from the socket: the snapshot replaces the
view, each event is applied to it and published on the local bus — the dashboard cannot tell it from
an in-process Worker. When the worker goes away it says so (a warning notice and ``link``) and keeps
trying to attach again; a snapshot on re-attach brings the view back in step.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import events as ev
from backend.control import protocol as proto
from backend.control.codec import decode, decode_event
from backend.control.connection import AttachError, CommandRefused, ControlConnection
from backend.events import EventBus
from backend.history import HistoryEntry
from backend.state import WorkerView

log = logging.getLogger("qaworker.attach")

__all__ = ["AttachError", "CommandRefused", "ControlConnection", "RemoteRuntime"]


@dataclass
class Link:
    """How the attachment stands, for the dashboard's banner."""

    state: str = "connecting"  # connecting, attached, lost, detached, failed
    socket: Path | None = None
    since: float = field(default_factory=time.time)
    reason: str = ""
    access: str = ""  # what the worker granted: control or watch
    read_only: bool = False
    pid: int | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RemoteFrame:
    """The newest screen of a slot as the worker sent it (PNG, downscaled on the worker's side)."""

    instance: int
    job_id: int
    name: str
    ts: float
    png: bytes


class RemoteHistory:
    """The worker's job history as the snapshot and ``history`` messages tell it (newest last)."""

    def __init__(self) -> None:
        self._entries: list[HistoryEntry] = []
        self._listeners: list[Callable[[HistoryEntry], None]] = []

    def entries(self) -> list[HistoryEntry]:
        return list(self._entries)

    def add_listener(self, callback: Callable[[HistoryEntry], None]) -> None:
        self._listeners.append(callback)

    def replace(self, entries: list[HistoryEntry]) -> None:
        self._entries = entries

    def add(self, entry: HistoryEntry) -> None:
        self._entries.append(entry)
        del self._entries[:-1000]
        for listener in list(self._listeners):
            listener(entry)


class RemoteScreens:
    """Screens of the slots some widget shows; asks the worker for exactly those."""

    def __init__(self, runtime: RemoteRuntime) -> None:
        self._runtime = runtime
        self._wants: dict[object, frozenset[int]] = {}
        self._frames: dict[int, RemoteFrame] = {}
        self.max_size = (640, 480)

    def want(self, owner: object, instances: Iterable[int]) -> None:
        wanted = frozenset(instances)
        if self._wants.get(owner, frozenset()) == wanted:
            return
        if wanted:
            self._wants[owner] = wanted
        else:
            self._wants.pop(owner, None)
        self._runtime._send_screen_wants()

    @property
    def wanted(self) -> set[int]:
        return set().union(*self._wants.values()) if self._wants else set()

    def latest(self, instance: int) -> RemoteFrame | None:
        return self._frames.get(instance)

    def _store(self, frame: RemoteFrame) -> None:
        self._frames[frame.instance] = frame


class RemoteRuntime:
    """``backend.api.Runtime`` over the control socket at ``path``; ``run()`` keeps it attached."""

    def __init__(self, path: Path, *, read_only: bool = False, retry_delay: float = 1.0,
                 max_retry_delay: float = 5.0) -> None:
        self.path = path
        self.read_only = read_only
        self.bus = EventBus()
        self.view = WorkerView()
        self.history = RemoteHistory()
        self.screens = RemoteScreens(self)
        self.link = Link(socket=path, read_only=read_only)
        self.exit_code = 0
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._conn: ControlConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._stopped = asyncio.Event()
        self._attached = asyncio.Event()
        self._quit_sent = False
        self._log_totals: dict[tuple[int, int], int] = {}
        self._tasks: set[asyncio.Task] = set()

    # -- Runtime ------------------------------------------------------------------------------------

    def drain(self) -> None:
        self._steer("drain")

    def quit(self) -> None:
        """Stop the worker itself (jobs end incomplete); the dashboard closes once it has stopped."""
        if self._steer("quit"):
            self._quit_sent = True

    def abort_job(self, instance: int, job_id: int | None = None) -> bool:
        """Abort the slot's job — only ``job_id`` when given (the one a dialog asked about)."""
        slot = self.view.slots.get(instance)
        if slot is None or slot.job is None or (job_id is not None and slot.job.job_id != job_id):
            return False
        return self._steer("abort", instance=instance, job_id=slot.job.job_id)

    async def wait_stopped(self) -> int:
        await self._stopped.wait()
        return self.exit_code

    # -- commands -----------------------------------------------------------------------------------

    async def command(self, cmd: str, **args: Any) -> Any:
        """Send one command and wait for its reply; CommandRefused carries the worker's reason."""
        if self._conn is None:
            raise CommandRefused("not attached to the worker right now")
        request_id = next(self._ids)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            self._conn.send({"type": "command", "id": request_id, "cmd": cmd, **args})
            async with asyncio.timeout(10):
                return await future
        finally:
            self._waiting.pop(request_id, None)

    def _steer(self, cmd: str, **args: Any) -> bool:
        if self.read_only or self.link.access == "watch":
            why = "attached read-only" if self.read_only else "this user may only watch this worker"
            self._notice("warning", f"{cmd} refused: {why}")
            return False
        if self._conn is None:
            self._notice("warning", f"{cmd} not sent: the worker is not attached ({self.link.reason or 'connecting'})")
            return False
        self._spawn(self._steer_async(cmd, args))
        return True

    async def _steer_async(self, cmd: str, args: dict[str, Any]) -> None:
        try:
            await self.command(cmd, **args)
        except CommandRefused as exc:
            if cmd == "quit":
                self._quit_sent = False
            self._notice("error", str(exc))
        except (TimeoutError, ConnectionError) as exc:
            self._notice("error", f"{cmd}: no answer from the worker ({exc.__class__.__name__})")

    def detach(self) -> None:
        """Leave the worker running; the worker logs "detached"."""
        self._spawn(self._detach())

    async def _detach(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.command("detach")
        self._set_link("detached", "detached")
        self._finish(0)

    async def close(self) -> None:
        self._finish(self.exit_code)
        if self._conn is not None:
            await self._conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _finish(self, code: int) -> None:
        self.exit_code = code
        self._stopped.set()
        if self._conn is not None:
            self._conn.writer.close()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_screen_wants(self) -> None:
        if self._conn is not None:
            width, height = self.screens.max_size
            self._spawn(self._quiet(self.command("screen", instances=sorted(self.screens.wanted), max_width=width,
                                                 max_height=height)))

    async def _quiet(self, awaitable) -> None:
        with contextlib.suppress(Exception):
            await awaitable

    # -- the link -----------------------------------------------------------------------------------

    async def wait_attached(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._attached.wait()

    async def run(self) -> int:
        """Attach, follow, re-attach after the worker went away, until detached; returns the exit code."""
        delay = self.retry_delay
        while not self._stopped.is_set():
            self.link.attempts += 1
            try:
                conn = await ControlConnection.open(self.path, read_only=self.read_only)
            except AttachError as exc:
                self._set_link("failed", str(exc))
                self._finish(2)
                break
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                if self.link.state != "lost" and self.link.state != "connecting":
                    self._set_link("lost", f"the worker went away ({_why(exc)}); re-attaching…")
                elif self.link.state == "connecting":
                    self.link.reason = f"waiting for the worker at {self.path} ({_why(exc)})"
                await self._sleep(delay)
                delay = min(self.max_retry_delay, delay * 1.5)
                continue
            delay = self.retry_delay
            reason = await self._follow(conn)
            if self._stopped.is_set():
                break
            if self._quit_sent:
                self._set_link("lost", "the worker stopped")
                self._finish(0)
                break
            self._set_link("lost", f"{reason}; re-attaching when it is back…")
            await self._sleep(delay)
        return self.exit_code

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopped.wait()

    async def _follow(self, conn: ControlConnection) -> str:
        self._conn = conn
        hello = conn.hello
        self.link.access = str(hello.get("access", ""))
        self.link.pid = hello.get("pid")
        reason = "the worker went away"
        try:
            while True:
                try:
                    message = await conn.read()
                except (OSError, asyncio.IncompleteReadError, ValueError, proto.ProtocolError) as exc:
                    return f"the worker went away ({_why(exc)})"
                if message is None:
                    return reason
                if message["type"] == "bye":
                    reason = f"the worker stopped ({message.get('reason', '')})"
                    continue
                try:
                    self._handle(message)
                except (TypeError, ValueError, KeyError) as exc:
                    log.warning("attach: could not use a %s message: %s", message.get("type"), exc)
        finally:
            self._conn = None
            self._attached.clear()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionResetError("the worker went away"))
            await conn.close()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "event":
            event = decode_event(message)
            if event is None:
                return  # a newer worker's event: nothing here shows it
            self.view.apply(event)
            if isinstance(event, ev.LogLines):
                key = (event.instance, event.job_id)
                self._log_totals[key] = self._log_totals.get(key, 0) + len(event.lines)
            self.bus.publish(event)
            if isinstance(event, ev.WorkerStopped) and self._quit_sent:
                self._set_link("lost", "the worker stopped")
                self._finish(event.exit_code)  # we asked it to: the dashboard is done too
        elif kind == "snapshot":
            self._apply_snapshot(message)
        elif kind == "history":
            self.history.add(decode(HistoryEntry, message["entry"]))
        elif kind == "screen":
            frame = RemoteFrame(int(message["instance"]), int(message["job_id"]), str(message.get("name", "")),
                                float(message.get("ts", 0.0)), base64.b64decode(message["png"]))
            self.screens._store(frame)
        elif kind == "reply":
            future = self._waiting.get(message.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(CommandRefused(str(message.get("error"))))
        elif kind == "error":
            self._notice("error", str(message.get("error")))

    def _apply_snapshot(self, message: dict[str, Any]) -> None:
        view = decode(WorkerView, message["view"])
        totals = {(int(i), int(j)): int(n) for i, j, n in message.get("log_totals", [])}
        self.view = view
        self.history.replace([decode(HistoryEntry, e) for e in message.get("history", [])])
        # Lines the dashboard has not seen yet (all of them on first attach, the gap after a re-sync).
        for instance, slot in view.slots.items():
            if slot.job is None:
                continue
            key = (instance, slot.job.job_id)
            total = totals.get(key, len(slot.job.log_tail))
            new = total - self._log_totals.get(key, 0)
            if new > 0 and slot.job.log_tail:
                lines = tuple(list(slot.job.log_tail)[-min(new, len(slot.job.log_tail)):])
                self.bus.publish(ev.LogLines(instance=instance, job_id=slot.job.job_id, lines=lines))
            self._log_totals[key] = total
        live = {(i, s.job.job_id) for i, s in view.slots.items() if s.job is not None}
        self._log_totals = {k: v for k, v in self._log_totals.items() if k in live}
        first = self.link.state != "attached"
        self._set_link("attached", "")
        self._attached.set()
        if first and self.screens.wanted:
            self._send_screen_wants()

    def _set_link(self, state: str, reason: str) -> None:
        changed = state != self.link.state
        self.link.state, self.link.reason = state, reason
        if changed:
            self.link.since = time.time()
            if state == "attached":
                self._notice("info", f"attached to the worker at {self.path} (pid {self.link.pid})")
            elif state in ("lost", "failed"):
                self._notice("error" if state == "failed" else "warning", reason)

    def _notice(self, level: str, message: str) -> None:
        log.log(logging.WARNING if level in ("warning", "error") else logging.INFO, "attach: %s", message)
        self.bus.publish(ev.Notice(level=level, message=message))


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or exc.__class__.__name__
