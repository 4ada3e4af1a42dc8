# ruff: noqa: ASYNC220, ASYNC240  (tests do small, deliberate blocking file and process work)
"""Availability checks (§7): order, leftover QEMU, pool lock, WORKER_HOSTNAME, load, free disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend import health
from backend.config import HostConfig, SlotConfig, WorkerConfig
from backend.health import Availability, check_availability, worker_hostname
from backend.job.pool import PoolDir

LOAD_MSG = (
    "The average load ({}) is exceeding the configured threshold of {}. "
    "The worker will temporarily not accept new jobs until the load is lower again."
)


@pytest.fixture
def pool(tmp_path: Path):
    p = PoolDir(tmp_path / "pool" / "4")
    p.path.mkdir(parents=True)
    yield p
    p.unlock()


@pytest.fixture
def loadavg(tmp_path: Path) -> Path:
    f = tmp_path / "loadavg"
    f.write_text("0.52 0.58 0.59 1/234 5678\n")
    return f


def slot(pool: PoolDir, **settings: str) -> SlotConfig:
    merged = {"QAWORKER_POOL_MIN_FREE_MB": "1", **settings}
    return SlotConfig(instance=4, settings=merged, hosts=[], pool_dir=pool.path)


async def check(
    pool: PoolDir,
    loadavg: Path,
    *,
    hostname: str | None = "localhost",
    no_cleanup: bool = False,
    extra=(),
    **settings: str,
) -> Availability:
    return await check_availability(
        slot(pool, **settings),
        pool,
        worker_hostname=hostname,
        no_cleanup=no_cleanup,
        extra_checks=extra,
        loadavg_file=loadavg,
    )


@pytest.fixture
def fake_qemu(tmp_path: Path):
    """A live process whose executable is called qemu-system-x86_64 (a copy of sleep)."""
    exe = tmp_path / "bin" / "qemu-system-x86_64"
    exe.parent.mkdir()
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "30"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def hold_lock(path: Path) -> subprocess.Popen:
    code = textwrap.dedent("""
        import fcntl, os, sys
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path / ".locked")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


async def test_all_good_takes_the_lock(pool: PoolDir, loadavg: Path) -> None:
    result = await check(pool, loadavg)
    assert result == Availability(None) and result.ok
    assert pool.locked


async def test_extra_check_comes_first_and_lock_is_not_taken(pool: PoolDir, loadavg: Path) -> None:
    async def cache_down() -> str | None:
        return "Worker cache not available via http://127.0.0.1:9530: connection refused"

    result = await check(pool, loadavg, hostname=None, extra=[cache_down])
    assert result == Availability("Worker cache not available via http://127.0.0.1:9530: connection refused")
    assert not pool.locked


async def test_live_qemu_makes_worker_broken_until_it_is_gone(
    pool: PoolDir, loadavg: Path, fake_qemu
) -> None:
    (pool.path / "qemu.pid").write_text(f"{fake_qemu.pid}\n")
    result = await check(pool, loadavg)
    assert result == Availability(
        f"A QEMU instance using the current pool directory is still running (PID: {fake_qemu.pid})"
    )
    assert not pool.locked
    assert (pool.path / "qemu.pid").exists()
    os.kill(fake_qemu.pid, signal.SIGKILL)
    fake_qemu.wait()
    assert (await check(pool, loadavg)).ok
    assert not (pool.path / "qemu.pid").exists()


async def test_stale_pid_of_a_live_non_qemu_process_is_not_broken(pool: PoolDir, loadavg: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (pool.path / "qemu.pid").write_text(f"{sleeper.pid}\n")
        assert (await check(pool, loadavg, no_cleanup=True)).ok
        assert (pool.path / "qemu.pid").exists()  # --no-cleanup means no cleanup at all
        assert (await check(pool, loadavg)).ok
        assert not (pool.path / "qemu.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_garbage_pid_file_is_not_broken(pool: PoolDir, loadavg: Path) -> None:
    (pool.path / "qemu.pid").write_text("not a pid")
    assert (await check(pool, loadavg)).ok


async def test_pool_locked_by_another_worker_is_fatal(pool: PoolDir, loadavg: Path) -> None:
    holder = hold_lock(pool.path)
    try:
        result = await check(pool, loadavg)
        assert result == Availability(
            f"Unable to lock pool directory: {pool.path} already locked", fatal=True
        )
    finally:
        holder.communicate("")
    assert (await check(pool, loadavg)).ok  # recovers once the other worker is gone


async def test_missing_worker_hostname(pool: PoolDir, loadavg: Path) -> None:
    result = await check(pool, loadavg, hostname=None)
    assert result == Availability("Unable to determine worker address (WORKER_HOSTNAME)")
    assert pool.locked


@pytest.mark.parametrize(
    ("content", "threshold", "broken"),
    [
        ("50.00 20.00 10.00 1/2 3", "40", True),  # rising
        ("45.00 50.00 30.00 1/2 3", "40", True),  # above the 15-minute value
        ("41.00 50.00 60.00 1/2 3", "40", True),  # falling, but everything still over the threshold
        ("30.00 50.00 60.00 1/2 3", "40", False),  # falling edge is accepted
        ("39.00 39.50 20.00 1/2 3", "40", False),  # below
        ("50.00 20.00 10.00 1/2 3", "0", False),  # 0 disables
        ("50.00 20.00 10.00 1/2 3", "", True),  # default 40
        ("50.00 20.00 10.00 1/2 3", "lots", True),  # non-numeric -> default 40
        ("garbage", "40", False),  # unreadable load is not a reason to refuse work
    ],
)
async def test_load_threshold(
    pool: PoolDir, loadavg: Path, content: str, threshold: str, broken: bool
) -> None:
    loadavg.write_text(content)
    result = await check(pool, loadavg, CRITICAL_LOAD_AVG_THRESHOLD=threshold)
    shown = threshold if threshold.replace(".", "").isdigit() else "40"
    expected = LOAD_MSG.format(" ".join(content.split()[:3]), shown) if broken else None
    assert result == Availability(expected)


async def test_load_file_from_environment(pool: PoolDir, tmp_path: Path) -> None:
    env_file = tmp_path / "env-loadavg"
    env_file.write_text("99.00 1.00 1.00 1/2 3")
    config = WorkerConfig(slots=[slot(pool)], env={"OPENQA_LOAD_AVG_FILE": str(env_file)})  # read at load
    result = await check_availability(config.slots[0], pool, worker_hostname="localhost", no_cleanup=False)
    assert result.reason == LOAD_MSG.format("99.00 1.00 1.00", "40")


async def test_free_disk_space_minimum(pool: PoolDir, loadavg: Path) -> None:
    result = await check(pool, loadavg, QAWORKER_POOL_MIN_FREE_MB=str(10**12))
    assert result.reason is not None and not result.fatal
    assert result.reason.startswith(f"Not enough free disk space in the pool directory {pool.path}: ")
    assert result.reason.endswith(f"{10**12} MiB required (QAWORKER_POOL_MIN_FREE_MB)")
    assert (await check(pool, loadavg, QAWORKER_POOL_MIN_FREE_MB="0")).ok


def host(configured: str) -> HostConfig:
    url = configured if "://" in configured else f"http://{configured}"
    return HostConfig(configured=configured, base_url=url)


def test_worker_hostname_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_hostname([host("openqa.example.com")], "given.name") == "given.name"
    assert worker_hostname([host("localhost"), host("http://127.0.0.1:9526")], None) == "localhost"
    assert worker_hostname([], None) == "localhost"
    monkeypatch.setattr(health.socket, "getfqdn", lambda: "worker7.example.com")
    assert worker_hostname([host("localhost"), host("openqa.example.com")], None) == "worker7.example.com"
    monkeypatch.setattr(health.socket, "getfqdn", lambda: "worker7")
    assert worker_hostname([host("openqa.example.com")], None) is None
