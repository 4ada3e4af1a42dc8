"""The control socket over a real Unix socket: a real Worker + mock web UI + simulator on the other side.

What a client of ``qaworker attach`` relies on: a snapshot first and then every event in order; the
command API; any number of clients; a client that stops reading never slows the worker and is
re-synced (or dropped); another user is refused by the kernel's word (SO_PEERCRED), a group member
may watch but not steer; a client of another protocol version gets one clear line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend import events as ev
from backend.control import protocol as proto
from backend.control.client import AttachError, ControlConnection
from backend.control.codec import decode, decode_event
from backend.control.server import ControlServer
from backend.control.services import Services, start_services
from backend.events import SlotState
from backend.history import HistoryEntry
from backend.state import WorkerView
from backend.worker import Worker
from tests.integration.control_helpers import BusRuntime, until
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered

pytestmark = pytest.mark.timeout(90)


@dataclass
class Stack:
    web: object
    worker: Worker
    services: Services
    socket: Path
    instance: int


@contextlib.asynccontextmanager
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        async with running_worker(config) as worker:
            path = tmp_path / "control.sock"
            services = await start_services(worker, socket=path)
            try:
                await wait_registered(web)
                yield Stack(web, worker, services, path, config.slots[0].instance)
            finally:
                await services.close()


async def read_until(conn: ControlConnection, predicate, timeout: float = 20) -> list[dict]:
    """Messages up to and including the first one ``predicate`` accepts."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            message = await conn.read()
            assert message is not None, f"connection closed; got {[m['type'] for m in seen]}"
            seen.append(message)
            if predicate(message):
                return seen


def is_event(name: str, **fields):
    def check(message: dict) -> bool:
        return (message["type"] == "event" and message["event"] == name
                and all(message["data"].get(k) == v for k, v in fields.items()))
    return check


async def command(conn: ControlConnection, request_id: int, cmd: str, **args) -> dict:
    conn.send({"type": "command", "id": request_id, "cmd": cmd, **args})
    seen = await read_until(conn, lambda m: m["type"] == "reply" and m["id"] == request_id)
    return seen[-1]


async def test_snapshot_first_then_every_event_of_a_job_in_order(tmp_path) -> None:
    async with stack(tmp_path) as s:
        conn = await ControlConnection.open(s.socket)
        try:
            assert conn.hello["protocol"] == proto.PROTOCOL and conn.hello["access"] == "control"
            assert conn.hello["instances"] == [s.instance] and conn.hello["pid"] == os.getpid()
            first = await conn.read()
            assert first is not None and first["type"] == "snapshot"
            view = decode(WorkerView, first["view"])
            assert view.slots[s.instance].state is SlotState.IDLE
            assert any(h.state.value == "connected" for h in view.hosts.values())

            job_id = s.web.schedule_job(job_settings(TEST="over-the-socket"))
            seen = await read_until(conn, is_event("JobFinished", job_id=job_id))
            events = [decode_event(m) for m in seen if m["type"] == "event"]
            for event in events:
                view.apply(event)
            names = [type(e).__name__ for e in events if getattr(e, "job_id", None) == job_id]
            assert names[0] == "JobAccepted" and names[-1] == "JobFinished"
            assert "JobProgress" in names and names.index("JobProgress") > 0
            finished = events[-1]
            assert isinstance(finished, ev.JobFinished) and finished.result == "passed"
            # snapshot + events rebuild what the worker itself shows
            assert view.slots[s.instance].last_finished.job_id == job_id
            assert view.slots[s.instance].jobs_done == s.worker.view.slots[s.instance].jobs_done == 1

            # the history entry comes just before the JobFinished event (the dashboard has it when it renders)
            history = [m for m in seen if m["type"] == "history"]
            assert seen[-2] is history[-1]
            entry = decode(HistoryEntry, history[-1]["entry"])
            assert (entry.job_id, entry.result, entry.instance) == (job_id, "passed", s.instance)
            assert entry.url == f"{s.web.url}/tests/{job_id}" and "over-the-socket" in entry.name
        finally:
            await conn.close()


async def test_commands_abort_follow_cache_history_drain(tmp_path) -> None:
    async with stack(tmp_path) as s:
        conn = await ControlConnection.open(s.socket)
        try:
            await read_until(conn, lambda m: m["type"] == "snapshot")
            reply = await command(conn, 1, "abort", instance=s.instance)
            assert not reply["ok"] and "no job" in reply["error"]

            job_id = s.web.schedule_job(job_settings(SIM_MODULES="boot,a,b,c,d,e,f,shutdown", SIM_MODULE_SECONDS="1"))
            await read_until(conn, is_event("SlotStateChanged", state="running", job_id=job_id))
            await read_until(conn, is_event("LogLines", job_id=job_id))
            follow = await command(conn, 2, "follow", instances=[s.instance], lines=5)
            assert follow["ok"] and follow["result"][0]["job_id"] == job_id and follow["result"][0]["lines"]

            stale = await command(conn, 3, "abort", instance=s.instance, job_id=job_id - 1)
            assert not stale["ok"] and "nothing aborted" in stale["error"]  # a stale dialog aborts nothing
            assert s.web.jobs[job_id].state == "running"
            aborted = await command(conn, 4, "abort", instance=s.instance, job_id=job_id)
            assert aborted["ok"] and aborted["result"] == job_id
            await read_until(conn, is_event("JobFinished", job_id=job_id))
            await s.web.wait_for(lambda: s.web.jobs[job_id].result == "incomplete", 15)

            cache = await command(conn, 5, "cache")
            assert cache["ok"] and "used_bytes" in cache["result"]
            history = await command(conn, 6, "history", instance=s.instance)
            assert [e["job_id"] for e in history["result"]] == [job_id]
            unknown = await command(conn, 7, "reboot")
            assert not unknown["ok"] and "unknown command" in unknown["error"]

            drained = await command(conn, 8, "drain")
            assert drained["ok"] and drained["result"] == "drain"
            code = await asyncio.wait_for(s.worker.wait_stopped(), 20)
            assert code == 0
            await read_until(conn, is_event("WorkerStopped"))
        finally:
            await conn.close()


async def test_two_clients_see_the_same_events(tmp_path) -> None:
    async with stack(tmp_path) as s:
        a, b = await ControlConnection.open(s.socket), await ControlConnection.open(s.socket)
        try:
            for conn in (a, b):
                await read_until(conn, lambda m: m["type"] == "snapshot")
            job_id = s.web.schedule_job(job_settings())
            seen_a, seen_b = await asyncio.gather(read_until(a, is_event("JobFinished", job_id=job_id)),
                                                  read_until(b, is_event("JobFinished", job_id=job_id)))

            def events(seen: list[dict]) -> list[tuple]:
                return [(m["event"], m["data"].get("ts")) for m in seen if m["type"] == "event"]
            assert events(seen_a) == events(seen_b) and len(events(seen_a)) > 5
            b_detach = await command(b, 1, "detach")
            assert b_detach["ok"]
            async def until_closed() -> list[dict]:
                late = []  # events already on their way when the reply was sent may still arrive
                while (message := await b.read()) is not None:
                    late.append(message)
                return late

            late = await asyncio.wait_for(until_closed(), 5)  # the worker closed it after the reply
            assert all(m["type"] == "event" for m in late)
        finally:
            await a.close()
            await b.close()


async def raw_client(path: Path, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """A client socket after the hello exchange; returns it and what it read so far."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, str(path))
    data = b""
    while b"\n" not in data:
        data += await loop.sock_recv(sock, 65536)
    await loop.sock_sendall(sock, proto.dumps({"type": "hello", "protocol": proto.PROTOCOL, "client": "test"}))
    return sock, data


async def test_a_stalled_client_never_slows_the_worker_and_is_resynced_then_dropped(tmp_path, caplog) -> None:
    runtime = BusRuntime()
    runtime.bus.publish(ev.WorkerStarted(version="t", instances=(1,), hosts=("h",)))
    limit = 256 * 1024
    server = ControlServer(runtime, tmp_path / "c.sock", [1], outbox_limit=limit, stall_timeout=3.0)
    await server.start()
    loop = asyncio.get_running_loop()
    stalled, _ = await raw_client(server.path, rcvbuf=4096)
    healthy = await ControlConnection.open(server.path)
    assert (await healthy.read())["type"] == "snapshot"  # from here on every event reaches it
    await until(lambda: len(server.clients) == 2, 5, "both clients attached")
    got: list[int] = []

    async def read_healthy() -> None:
        while (m := await healthy.read()) is not None:
            if m["type"] == "event" and m["event"] == "LogLines":
                got.append(int(m["data"]["lines"][0].split()[0]))

    reader = asyncio.create_task(read_healthy())
    lags: list[float] = []
    peak_outbox = 0
    line = "x" * 1000
    try:
        for burst in range(40):  # ~4 MB of log lines, 16× the per-client limit
            for n in range(burst * 100, burst * 100 + 100):
                runtime.bus.publish(ev.LogLines(instance=1, job_id=7, lines=(f"{n} {line}",)))
            peak_outbox = max(peak_outbox, *(c.outbox_bytes for c in server.clients))
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)
        await until(lambda: len(got) >= 4000, 20, "the healthy client got every event")
        assert got == list(range(4000)), "the healthy client missed or reordered events"
        assert max(lags) < 0.25, f"the loop stalled: {max(lags):.3f} s"
        assert peak_outbox <= limit
        stalled_client = next(c for c in server.clients if c.name == "test")
        assert stalled_client.dropped >= 1
        assert "is not reading" in caplog.text

        # it reads again: after what was in flight comes a fresh snapshot
        stalled.setblocking(True)
        stalled.settimeout(5)
        buffer = b""
        deadline = time.monotonic() + 10
        while b'"type":"snapshot"' not in buffer.split(b"\n", 1)[-1] and time.monotonic() < deadline:
            buffer += await asyncio.to_thread(stalled.recv, 1 << 20)
        types = [json.loads(x)["type"] for x in buffer.split(b"\n") if x.strip()]
        assert types.count("snapshot") >= 2, types[:10]  # the first one, then the re-sync

        # a client that stops reading for good while the worker stays busy is disconnected after stall_timeout
        for n in range(1000):
            runtime.bus.publish(ev.LogLines(instance=1, job_id=7, lines=(f"{n} {line}",)))
            await asyncio.sleep(0.01)
            if not any(c.name == "test" for c in server.clients):
                break
        assert not any(c.name == "test" for c in server.clients), "the stalled client was never dropped"
        assert "read nothing for 3 s; disconnected" in caplog.text
    finally:
        reader.cancel()
        stalled.close()
        await healthy.close()
        await server.close()
    assert not server.path.exists()


async def test_a_client_of_another_protocol_version_gets_one_clear_line(tmp_path) -> None:
    runtime = BusRuntime()
    server = ControlServer(runtime, tmp_path / "c.sock", [1])
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        hello = json.loads(await reader.readline())
        assert hello["type"] == "hello"
        writer.write(proto.dumps({"type": "hello", "protocol": 99}))
        error = json.loads(await reader.readline())
        assert error["type"] == "error"
        assert "protocol version mismatch" in error["error"] and "1" in error["error"] and "99" in error["error"]
        assert await reader.readline() == b""
        writer.close()

        with pytest.raises(AttachError, match=r"protocol version mismatch: this client speaks .* 2, the other side 1"):
            await ControlConnection.open(server.path, protocol=2)
    finally:
        await server.close()


async def test_a_stale_socket_is_replaced_and_a_live_one_is_not_stolen(tmp_path) -> None:
    path = tmp_path / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # what a crashed qaworker leaves behind
    stale.close()
    first = ControlServer(BusRuntime(), path, [1])
    await first.start()
    second = ControlServer(BusRuntime(), path, [1])
    try:
        with pytest.raises(FileExistsError, match="in use by another qaworker"):
            await second.start()
        conn = await ControlConnection.open(path)  # the first one still serves
        await conn.close()
    finally:
        await second.close()
        await first.close()
    assert not path.exists()
