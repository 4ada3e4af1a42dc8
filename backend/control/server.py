"""The control socket of one qaworker process: the read model and its events for any number of clients.

Every client gets a snapshot first, then every event in order. Publishing never waits for a client:
each one has a bounded outbox, written by its own task; a client that stops reading has its backlog
dropped and is re-synced with a fresh snapshot once it reads again, and one that stays stalled for
``stall_timeout`` is disconnected. Encoding a snapshot runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import grp
import logging
import os
import socket
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backend import __version__
from backend import events as ev
from backend.api import Runtime
from backend.config.environment import read_environment
from backend.control import protocol as proto
from backend.control.access import Access, AccessPolicy, peer_of
from backend.control.codec import encode, encode_event
from backend.control.commands import CommandHandlers
from backend.control.paths import prepare_dir
from backend.control.session import Client, HistoryFeed, ScreenFeed

log = logging.getLogger("qaworker.control")

OUTBOX_LIMIT = 4 * 1024 * 1024  # bytes queued per client before its backlog is dropped
STALL_TIMEOUT = 30.0  # a client that reads nothing for this long is disconnected
HELLO_TIMEOUT = 10.0


class ControlServer(CommandHandlers):
    """Serves ``runtime`` (a Worker) on a Unix socket at ``path``."""

    def __init__(self, runtime: Runtime, path: Path, instances: Iterable[int], *,
                 history: HistoryFeed | None = None, screens: ScreenFeed | None = None,
                 mode: int = 0o660, group: str | None = None, service_uid: int | None = None,
                 outbox_limit: int = OUTBOX_LIMIT, stall_timeout: float = STALL_TIMEOUT,
                 description: str = "") -> None:
        self.runtime = runtime
        self.path = path
        self.instances = sorted(instances)
        self.history = history
        self.screens = screens
        self.mode = mode
        self.group = group if group is not None else read_environment().control_group
        self.service_uid = os.geteuid() if service_uid is None else service_uid
        self.outbox_limit = outbox_limit
        self.stall_timeout = stall_timeout
        self.description = description
        self.clients: set[Client] = set()
        self.policy: AccessPolicy | None = None
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._log_totals: dict[tuple[int, int], int] = {}
        self._closed = False
        self._no_clients = asyncio.Event()
        runtime.bus.add_listener(self._on_event)
        if history is not None:
            history.add_listener(self._on_history)
        if screens is not None:
            screens.add_listener(self._on_screen)

    # -- lifetime ----------------------------------------------------------------------------------

    async def start(self) -> None:
        sock = await asyncio.to_thread(self._bind)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=proto.MAX_LINE)
        log.info("control socket %s (qaworker attach --socket %s)", self.path, self.path)

    def _bind(self) -> socket.socket:
        prepare_dir(self.path)
        if self.path.exists() or self.path.is_symlink():
            self._take_over_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, self.mode)
            if self.group:
                os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
            info = os.stat(self.path)
            self._inode = (info.st_dev, info.st_ino)
            self.policy = AccessPolicy(self.service_uid, info.st_gid)
            sock.listen(16)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _take_over_stale(self) -> None:
        """A socket left by a dead qaworker is removed; a live one belongs to another process."""
        if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
            raise FileExistsError(f"{self.path} exists and is no socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        except OSError:
            pass
        finally:
            probe.close()
        raise FileExistsError(f"{self.path} is in use by another qaworker process")

    async def close(self, reason: str = "the worker stopped") -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        bye = proto.dumps({"type": "bye", "reason": reason})
        for client in list(self.clients):
            if client.ready and not client.closing:
                client.replies.append(bye)
                client.finish = True
                client.wake.set()
        if self.clients:  # the writers send the bye and close; a stalled one is cut off
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._no_clients.wait()
        for client in list(self.clients):
            self._close_client(client)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._unlink)

    def _unlink(self) -> None:
        """Remove our socket file — not one a newer process put at the same path."""
        with contextlib.suppress(OSError):
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)

    # -- one connection ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        client: Client | None = None
        try:
            sock = writer.get_extra_info("socket")
            peer = peer_of(sock)
            assert self.policy is not None
            access = await asyncio.to_thread(self.policy.decide, peer)
            if access is Access.NONE:
                log.warning("control: refused %s", peer.describe())
                await self._refuse(writer, self.policy.refusal(peer))
                return
            client = Client(peer, access, writer)
            await self._write_now(writer, {"type": "hello", "protocol": proto.PROTOCOL, "qaworker": __version__,
                                           "pid": os.getpid(), "instances": self.instances,
                                           "access": access.value, "description": self.description})
            hello = await self._read_hello(reader, writer)
            if hello is None:
                return
            client.name = str(hello.get("client") or "")
            client.read_only = bool(hello.get("read_only")) or access is Access.WATCH
            self.clients.add(client)
            self._no_clients.clear()
            client.ready = True
            client.wake.set()  # the first snapshot
            log.info("control: %s attached%s", client.describe(), f" ({client.name})" if client.name else "")
            writer_task = asyncio.create_task(self._write_loop(client), name="control-writer")
            self._tasks.add(writer_task)
            writer_task.add_done_callback(self._tasks.discard)
            try:
                await self._read_loop(client, reader)
            finally:
                writer_task.cancel()
                await asyncio.wait([writer_task])  # unlike awaiting it, keeps a cancel aimed at us
                if not writer_task.cancelled():
                    writer_task.exception()  # a dead client's write error: expected, retrieved
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            if client is not None:
                log.info("control: %s went away (%s)", client.describe(), exc.__class__.__name__)
        except Exception:
            log.exception("control: connection failed")
        finally:
            if client is not None:
                self._close_client(client)
            else:
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _write_now(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(proto.dumps(message))
        async with asyncio.timeout(HELLO_TIMEOUT):
            await writer.drain()

    async def _refuse(self, writer: asyncio.StreamWriter, why: str) -> None:
        with contextlib.suppress(Exception):
            await self._write_now(writer, {"type": "error", "error": why})
        writer.close()

    async def _read_hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict | None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                line = await reader.readline()
        except TimeoutError:
            await self._refuse(writer, "no hello within 10 s")
            return None
        if not line:
            return None
        try:
            hello = proto.loads(line)
        except proto.ProtocolError as exc:
            await self._refuse(writer, str(exc))
            return None
        if hello.get("type") != "hello" or hello.get("protocol") != proto.PROTOCOL:
            theirs = hello.get("protocol", "none") if hello.get("type") == "hello" else "none (no hello)"
            log.warning("control: refused a client of protocol %s", theirs)
            await self._refuse(writer, proto.mismatch(proto.PROTOCOL, theirs, side="worker"))
            return None
        return hello

    async def _read_loop(self, client: Client, reader: asyncio.StreamReader) -> None:
        while not client.closing:
            try:
                line = await reader.readline()
            except ValueError:  # longer than MAX_LINE
                self._reply(client, None, error="line too long")
                return
            if not line:
                if not client.finish:
                    log.info("control: %s went away", client.describe())
                return
            try:
                message = proto.loads(line)
            except proto.ProtocolError as exc:
                self._reply(client, None, error=str(exc))
                continue
            if message.get("type") != "command":
                self._reply(client, message.get("id"), error=f"unexpected message type {message.get('type')!r}")
                continue
            await self._command(client, message)

    async def _write_loop(self, client: Client) -> None:
        writer = client.writer
        while not client.closing:
            await client.wake.wait()
            client.wake.clear()
            if client.closing:
                return
            if client.resync:
                client.resync = False
                client.outbox.clear()
                client.outbox_bytes = 0
                snapshot = self._snapshot()  # taken now, in step with the events queued after it
                writer.write(await asyncio.to_thread(proto.dumps, snapshot))
            while client.replies:
                writer.write(client.replies.popleft())
            while client.outbox:
                batch = []
                while client.outbox and len(batch) < 512:
                    batch.append(client.outbox.popleft())
                client.outbox_bytes -= sum(map(len, batch))
                writer.write(b"".join(batch))
            try:
                async with asyncio.timeout(self.stall_timeout):
                    await writer.drain()
            except TimeoutError:
                log.warning("control: %s read nothing for %.0f s; disconnected", client.describe(), self.stall_timeout)
                self._close_client(client)
                return
            if client.finish and not client.replies and not client.outbox:
                self._close_client(client)
                return

    def _close_client(self, client: Client) -> None:
        client.closing = True
        client.wake.set()
        if client in self.clients:
            self.clients.discard(client)
            if self.screens is not None:
                self.screens.want(client, ())
            if not self.clients:
                self._no_clients.set()
        with contextlib.suppress(Exception):
            client.writer.close()

    # -- what goes out -------------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        history = [encode(e) for e in self.history.entries()] if self.history is not None else []
        return {"type": "snapshot", "view": encode(self.runtime.view), "history": history,
                "log_totals": [[i, j, n] for (i, j), n in self._log_totals.items()]}

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.LogLines):
            key = (event.instance, event.job_id)
            self._log_totals[key] = self._log_totals.get(key, 0) + len(event.lines)
        elif isinstance(event, ev.JobFinished | ev.JobSkipped):
            self._log_totals.pop((event.instance, event.job_id), None)
        if self._closed or not self.clients:
            return
        line = proto.dumps(encode_event(event))
        for client in list(self.clients):
            if isinstance(event, ev.LogLines) and client.logs is not None and event.instance not in client.logs:
                continue
            client.queue(line, self.outbox_limit)

    def _on_history(self, entry: Any) -> None:
        if self._closed or not self.clients:
            return
        line = proto.dumps({"type": "history", "entry": encode(entry)})
        for client in list(self.clients):
            client.queue(line, self.outbox_limit)

    def _on_screen(self, frame: Any) -> None:
        if self._closed:
            return
        wanting = [c for c in self.clients if frame.instance in c.screens]
        if wanting:
            task = asyncio.get_running_loop().create_task(self._send_screen(frame, wanting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_screen(self, frame: Any, clients: list[Client]) -> None:
        assert self.screens is not None
        by_size: dict[tuple[int, int], bytes] = {}
        for client in clients:
            if client.screen_size not in by_size:
                png = await self.screens.encoded_for_wire(frame, client.screen_size)
                by_size[client.screen_size] = proto.dumps(
                    {"type": "screen", "instance": frame.instance, "job_id": frame.job_id, "name": frame.name,
                     "ts": frame.ts, "png": base64.b64encode(png).decode()})
            client.queue(by_size[client.screen_size], self.outbox_limit)

    def _reply(self, client: Client, request_id: object, result: Any = None, *, error: str = "") -> None:
        reply: dict[str, Any] = {"type": "reply", "id": request_id, "ok": not error}
        if error:
            reply["error"] = error
        else:
            reply["result"] = result
        client.replies.append(proto.dumps(reply))
        client.wake.set()

    # -- commands ------------------------------------------------------------------------------------
