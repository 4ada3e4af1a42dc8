"""The simulator run like isotovideo: files, signals, leftovers, command server, live status."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import zlib
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from backend.engine import procs
from backend.engine.cmdsrv import CommandServerMonitor, CommandServerStatus, broadcast, cmd_srv_url, ws_url
from backend.engine.isotovideo import (
    IsotovideoProcess,
    build_command,
    detect_interface_version,
    new_marker,
    qemu_still_running,
    set_child_subreaper,
)
from backend.engine.simulator import simulator_command
from backend.engine.watch import PoolWatcher
from tests.helpers import free_instance

pytestmark = pytest.mark.timeout(30)

FAST = {"SIM_MODULE_SECONDS": "0.2", "SIM_SCREENSHOT_SIZE": "320x240", "SIM_ASSET_SIZE": "300000"}


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    set_child_subreaper()


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    p = tmp_path / "pool" / "1"
    p.mkdir(parents=True)
    return p


async def start_sim(pool: Path, **settings: str) -> tuple[IsotovideoProcess, int]:
    qemuport = 20002 + 10 * free_instance()
    vars_ = {"QEMUPORT": str(qemuport), "JOBTOKEN": "tok123", **FAST, **settings}
    (pool / "vars.json").write_text(json.dumps(vars_))
    argv, shell = build_command(simulator_command(), vars_)
    assert not shell
    proc = await IsotovideoProcess.start(argv, pool_dir=pool, env={"QEMUPORT": str(qemuport)},
                                         log_path=pool / "autoinst-log.txt", marker=new_marker())
    return proc, qemuport


async def wait_for(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def status(pool: Path) -> dict:
    try:
        return json.loads((pool / "autoinst-status.json").read_text())
    except (OSError, ValueError):
        return {}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4:idat])
    raw = zlib.decompress(data[idat + 4:idat + 4 + length])
    assert len(raw) == height * (1 + 3 * width)
    return width, height


async def test_full_run_writes_what_os_autoinst_writes(pool: Path) -> None:
    proc, _ = await start_sim(pool, SIM_MODULES="boot,login,shutdown", SIM_FAIL_MODULE="login",
                              SIM_SOFTFAIL_MODULE="shutdown", SIM_ULOG="1", PUBLISH_HDD_1="out.qcow2",
                              STORE_HDD_1="priv.qcow2", PUBLISH_HDD_2="none.qcow2")
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    await proc.stop()
    assert status(pool) == {"status": "finished", "current_test": "", "test_execution_paused": 0}
    order = json.loads((pool / "testresults" / "test_order.json").read_text())
    assert [m["name"] for m in order] == ["boot", "login", "shutdown"]
    assert set(order[0]) == {"name", "category", "flags", "script"}
    results = {m: json.loads((pool / "testresults" / f"result-{m}.json").read_text())
               for m in ("boot", "login", "shutdown")}
    assert [r["result"] for r in results.values()] == ["ok", "fail", "softfail"]
    boot = results["boot"]["details"]
    assert [d.get("screenshot") for d in boot[:2]] == ["boot-1.png", "boot-2.png"]
    assert boot[2]["text"] == "boot-3.txt" and (pool / "testresults" / "boot-3.txt").is_file()
    assert results["login"]["details"][1]["result"] == "fail"
    for shot in ("boot-1.png", "login-2.png"):
        assert png_size((pool / "testresults" / shot).read_bytes()) == (320, 240)
        assert png_size((pool / "testresults" / ".thumbs" / shot).read_bytes()) == (40, 30)
    assert (pool / "assets_public" / "out.qcow2").stat().st_size == 300000
    assert (pool / "assets_private" / "priv.qcow2").stat().st_size == 300000
    assert not (pool / "assets_public" / "none.qcow2").exists()
    assert (pool / "ulogs" / "simulator-journal.txt").is_file()
    assert (pool / "video.ogv").read_bytes().startswith(b"OggS")
    assert "boot: started" in (pool / "serial0").read_text()
    log = (pool / "autoinst-log.txt").read_text()
    assert "||| starting login" in log and "[debug]" in log
    assert not (pool / "base_state.json").exists()


async def test_watcher_follows_a_simulated_job(pool: Path) -> None:
    seen: list[tuple[str, str]] = []
    results: list[str] = []
    watcher: PoolWatcher

    def on_change() -> None:
        st = watcher.read_status()
        seen.append((st.status, st.current_test))
        results.extend(st.new_results)

    watcher = PoolWatcher(pool, on_change, coalesce=0.02)
    task = asyncio.create_task(watcher.run())
    try:
        proc, _ = await start_sim(pool, SIM_MODULES="boot,login,console", SIM_MODULE_SECONDS="0.3")
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await wait_for(lambda: seen and seen[-1][0] == "finished", what="finished status")
    finally:
        task.cancel()
    assert {("running", "boot"), ("running", "login"), ("running", "console")} <= set(seen)
    assert results == ["boot", "login", "console"]


async def test_sigterm_writes_base_state_and_exits_1(pool: Path) -> None:
    proc, _ = await start_sim(pool, SIM_HANG="login")
    await wait_for(lambda: status(pool).get("current_test") == "login", what="login module")
    t0 = time.monotonic()
    await proc.stop(grace=10)
    assert time.monotonic() - t0 < 3  # it honoured SIGTERM, no SIGKILL needed
    assert proc.returncode == 1
    assert json.loads((pool / "base_state.json").read_text()) == {
        "component": "isotovideo", "msg": "isotovideo received signal TERM"}


async def test_crash_reports_backend_failure(pool: Path) -> None:
    proc, _ = await start_sim(pool, SIM_CRASH="login", SIM_QEMU_PID="1")
    assert await asyncio.wait_for(proc.wait(), 20) == 1
    assert json.loads((pool / "base_state.json").read_text())["msg"] == "QEMU exited unexpectedly"
    assert (pool / "testresults" / "result-boot.json").exists()
    assert not (pool / "testresults" / "result-login.json").exists()
    await proc.stop(grace=1)
    assert qemu_still_running(pool) is None


async def test_no_tests_scheduled(pool: Path) -> None:
    proc, _ = await start_sim(pool, SIM_NO_TESTS="1")
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert json.loads((pool / "testresults" / "test_order.json").read_text()) == []


async def test_stubborn_job_with_orphan_and_qemu_leaves_nothing_behind(pool: Path) -> None:
    proc, _ = await start_sim(pool, SIM_HANG="boot", SIM_IGNORE_SIGTERM="1", SIM_ORPHAN="1",
                              SIM_QEMU_PID="1", SIM_EXIT_CODE="0")
    await wait_for(lambda: status(pool).get("current_test") == "boot", what="boot module")
    qemu_pid = qemu_still_running(pool)
    assert qemu_pid is not None  # the broken-worker check sees the running "QEMU"
    job_pids = [p.pid for p in procs.find_job_processes(proc.marker, pool)]
    assert len(job_pids) >= 3  # simulator, its qemu and the orphaned grandchild in its own session
    assert qemu_pid in job_pids
    await proc.stop(grace=0.5)
    assert proc.returncode == -9
    for pid in job_pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert not psutil.pid_exists(pid), f"pid {pid} survived the job"
    assert qemu_still_running(pool) is None


async def test_command_server_status_pause_resume_and_broadcast(pool: Path) -> None:
    states: list[CommandServerStatus] = []
    qemuport = 20002 + 10 * free_instance()
    url = cmd_srv_url(qemuport, "tok123", host="127.0.0.1")
    # The monitor starts before the server is up and must keep retrying.
    monitor = CommandServerMonitor(ws_url(qemuport, "tok123"), states.append, retry_delay=0.05)
    mon_task = asyncio.create_task(monitor.run())
    vars_ = {"QEMUPORT": str(qemuport), "JOBTOKEN": "tok123", **FAST, "SIM_PAUSE": "login",
             "SIM_PAUSE_SECONDS": "20"}
    (pool / "vars.json").write_text(json.dumps(vars_))
    await asyncio.sleep(0.3)
    proc = await IsotovideoProcess.start(build_command(simulator_command(), vars_)[0], pool_dir=pool,
                                         env={}, log_path=pool / "autoinst-log.txt", marker=new_marker())
    try:
        await wait_for(lambda: monitor.state.test_execution_paused == "paused at needle mismatch",
                       what="paused broadcast")
        assert monitor.state.connected and monitor.state.running == "login"
        assert monitor.state.current_test_full_name == "simulator-login"
        assert status(pool)["test_execution_paused"] == "paused at needle mismatch"
        async with httpx.AsyncClient(trust_env=False) as client:
            version = (await client.get(f"{url}/isotovideo/version")).json()
            assert version["version"] == 34
            wrong = await client.get(f"http://127.0.0.1:{qemuport + 1}/wrong/isotovideo/version")
            assert wrong.status_code == 404
        async with websockets.connect(ws_url(qemuport, "tok123"), proxy=None) as ws:
            await ws.send(json.dumps({"cmd": "resume_test_execution"}))
        await wait_for(lambda: monitor.state.test_execution_paused == "", what="resume")
        assert await broadcast(url, {"stopping_test_execution": "cancel"})
        await wait_for(lambda: monitor.state.stopping_test_execution == "cancel", what="broadcast")
        assert not await broadcast(f"http://127.0.0.1:{qemuport + 1}/wrong", {"x": 1}, timeout=2)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert monitor.state.stopping_test_execution == "test execution ended"
        await wait_for(lambda: not monitor.state.connected, what="disconnect noticed")
    finally:
        mon_task.cancel()
        await proc.stop(grace=1)
    assert states[0].connected


async def test_broadcast_to_a_dead_server_is_only_logged() -> None:
    port = 20003 + 10 * free_instance()
    payload = {"stopping_test_execution": "quit"}
    assert await broadcast(f"http://127.0.0.1:{port}/tok", payload, timeout=1) is False


async def test_detect_interface_version(tmp_path: Path) -> None:
    assert await detect_interface_version(simulator_command()) == 34
    assert await detect_interface_version(str(tmp_path / "missing")) == 0
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\necho no version here\n")
    silent.chmod(0o755)
    assert await detect_interface_version(str(silent)) == 0
