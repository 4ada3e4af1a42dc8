"""Who may use the control socket, with real other users: the client runs under setpriv as a test user.

Root and the worker's user steer; members of the socket's group watch (commands refused with a clear
line); anyone else is refused — by the socket file's mode, and by SO_PEERCRED when the mode was loosened.
The users and the group are created for this module and removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend import events as ev
from backend.control.server import ControlServer
from tests.integration.control_helpers import BusRuntime

pytestmark = pytest.mark.timeout(60)

SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's python lives under /root, out of the test users' reach

# A stdlib-only client: prints every line it gets, sends a hello and (optionally) one command.
CLIENT = r"""
import json, socket, sys
path, command = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path)
except PermissionError as exc:
    print(json.dumps({"type": "connect-error", "errno": exc.errno}))
    sys.exit(3)
f = s.makefile("rwb")
def out(line):
    print(line.decode().strip(), flush=True)
line = f.readline()
out(line)
if json.loads(line)["type"] != "hello":
    out(f.readline() or b'{"type": "eof"}')
    sys.exit(4)
f.write(json.dumps({"type": "hello", "protocol": 1, "client": "stranger"}).encode() + b"\n")
if command:
    f.write(json.dumps({"type": "command", "id": 1, "cmd": command}).encode() + b"\n")
f.flush()
while True:
    line = f.readline()
    if not line:
        out(b'{"type": "eof"}')
        break
    message = json.loads(line)
    print(json.dumps({"type": message["type"], "ok": message.get("ok"), "error": message.get("error"),
                      "access": message.get("access")}), flush=True)
    if message["type"] == "reply" or (message["type"] == "snapshot" and not command):
        break
"""


@dataclass
class Users:
    member: str  # in the socket's group
    stranger: str  # in no group of ours
    group: str


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    if os.geteuid() != 0:
        pytest.skip("creating test users needs root (CI runs as root)")
    for tool in ("useradd", "userdel", "groupadd", "groupdel", "setpriv"):
        assert shutil.which(tool), f"{tool} missing (util-linux / passwd)"
    assert Path(SYSTEM_PYTHON).exists()
    tag = uuid.uuid4().hex[:6]
    made = Users(member=f"qawm{tag}", stranger=f"qaws{tag}", group=f"qawg{tag}")
    _run("groupadd", "--system", made.group)
    try:
        _run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", made.group, made.member)
        _run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", made.stranger)
        yield made
    finally:
        for user in (made.member, made.stranger):
            subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", made.group], capture_output=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the test users may enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="qaworker-access-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def as_user(user: str, socket: Path, command: str = "") -> tuple[int, list[dict]]:
    info = pwd.getpwnam(user)
    proc = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={info.pw_uid}", f"--regid={info.pw_gid}", "--init-groups",
        SYSTEM_PYTHON, "-I", "-c", CLIENT, str(socket), *([command] if command else []),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert not err.strip() or proc.returncode in (3, 4), err.decode()
    return proc.returncode or 0, [json.loads(x) for x in out.decode().splitlines() if x.strip()]


async def serve(shared_dir: Path, *, mode: int = 0o660, group: str | None = None) -> tuple[ControlServer, BusRuntime]:
    runtime = BusRuntime()
    runtime.bus.publish(ev.WorkerStarted(version="t", instances=(1,), hosts=("h",)))
    server = ControlServer(runtime, shared_dir / "control-1.sock", [1], mode=mode, group=group)
    await server.start()
    return server, runtime


async def test_a_stranger_cannot_even_connect_to_the_0660_socket(users: Users, shared_dir: Path) -> None:
    server, _runtime = await serve(shared_dir, group=users.group)
    try:
        assert oct(server.path.stat().st_mode & 0o777) == "0o660"
        code, lines = await as_user(users.stranger, server.path)
        assert code == 3 and lines == [{"type": "connect-error", "errno": 13}]
    finally:
        await server.close()


async def test_a_stranger_is_refused_by_peer_credentials_when_the_mode_was_loosened(users: Users,
                                                                                    shared_dir: Path) -> None:
    server, runtime = await serve(shared_dir, mode=0o666, group=users.group)
    try:
        code, lines = await as_user(users.stranger, server.path, "quit")
        assert code == 4
        assert lines[0]["type"] == "error"
        assert f"permission denied: {users.stranger}" in lines[0]["error"]
        assert f"members of group '{users.group}' may watch" in lines[0]["error"]
        assert lines[-1] == {"type": "eof"}
        assert runtime.commands == []
    finally:
        await server.close()


async def test_a_group_member_watches_but_cannot_steer(users: Users, shared_dir: Path) -> None:
    server, runtime = await serve(shared_dir, group=users.group)
    try:
        code, lines = await as_user(users.member, server.path)
        assert code == 0
        assert lines[0]["type"] == "hello" and lines[0]["access"] == "watch"
        assert lines[-1]["type"] == "snapshot"

        code, lines = await as_user(users.member, server.path, "quit")
        reply = lines[-1]
        assert reply["type"] == "reply" and reply["ok"] is False
        assert f"{users.member} may watch this worker (group '{users.group}') but not steer it" in reply["error"]
        assert runtime.commands == []  # the worker never heard of it
    finally:
        await server.close()
