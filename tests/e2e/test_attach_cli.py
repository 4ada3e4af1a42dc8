"""`qaworker attach` on the command line: finding the worker, and one clear line when attaching cannot work."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from backend import events as ev
from backend.control.server import ControlServer
from tests.e2e.pty_helpers import ROOT, PtySession
from tests.integration.control_helpers import BusRuntime

pytestmark = pytest.mark.timeout(60)


def attach_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "attach", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=30)


async def test_list_names_the_running_workers_and_none_is_a_clear_message(tmp_path) -> None:
    runtime = BusRuntime()
    runtime.bus.publish(ev.WorkerStarted(version="t", instances=(5, 6), hosts=("h",)))
    xdg = tmp_path / "xdg"
    server = ControlServer(runtime, xdg / "qaworker" / "control-5-6.sock", [5, 6])
    await server.start()
    try:
        env = {"XDG_RUNTIME_DIR": str(xdg), "QAWORKER_CONTROL_SOCKET": ""}
        listed = await asyncio.to_thread(attach_cli, "--list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert "control-5-6.sock" in listed.stdout and "slots 5,6" in listed.stdout
        assert f"pid {os.getpid()}" in listed.stdout
        wrong = await asyncio.to_thread(attach_cli, "--instance", "9", env=env)
        assert wrong.returncode == 1 and "no running qaworker with slot 9" in wrong.stderr
    finally:
        await server.close()
    gone = await asyncio.to_thread(attach_cli, env={"QAWORKER_CONTROL_SOCKET": str(xdg / "qaworker" / "x.sock")})
    assert gone.returncode == 1
    assert "no running qaworker found" in gone.stderr and "Traceback" not in gone.stderr


async def test_a_worker_of_another_protocol_version_is_one_line(tmp_path) -> None:
    path = tmp_path / "future.sock"

    async def future_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(json.dumps({"type": "hello", "protocol": 99, "qaworker": "9.0"}).encode() + b"\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_unix_server(future_worker, str(path))
    session = PtySession([sys.executable, "-m", "app.cli", "attach", "--socket", str(path)],
                         {**os.environ, "TERM": "xterm-256color"})
    try:
        code = await asyncio.wait_for(asyncio.to_thread(session.proc.wait), 20)
        await asyncio.sleep(0.3)  # the reader thread drains the last output
        out = session.text()
        assert code == 2, out
        assert ("qaworker attach: protocol version mismatch: this client speaks qaworker control protocol 1, "
                "the other side 99") in out
        assert "Traceback" not in out
    finally:
        session.close()
        server.close()
