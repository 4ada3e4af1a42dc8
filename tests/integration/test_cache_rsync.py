"""Test sync with the real rsync binary against a real ``rsync --daemon`` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.cache import CACHE_FAILURE, AssetCache, CacheError
from backend.events import CacheProgress, EventBus
from tests.helpers import free_port, require_tools

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _rsync_installed() -> None:
    require_tools("rsync")
HOST = "127.0.0.1"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An rsync daemon serving module [tests]; yields (rsync://… URL, source dir)."""
    import subprocess

    src = tmp_path / "share-tests"
    (src / "opensuse" / "tests").mkdir(parents=True)
    (src / "opensuse" / "main.pm").write_text("1;\n")
    (src / "opensuse" / "tests" / "boot.pm").write_text("sub run {}\n")
    port = free_port()
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(f"port = {port}\naddress = 127.0.0.1\nuse chroot = no\npid file = {tmp_path}/rsyncd.pid\n"
                    f"[tests]\npath = {src}\nread only = yes\nuid = root\ngid = root\n")
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("rsync daemon did not start") from None
                time.sleep(0.05)
        yield f"rsync://127.0.0.1:{port}/tests", src
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[AssetCache]:
    c = AssetCache(tmp_path / "cache", limit_bytes=1 << 30, min_free_percentage=None, bus=EventBus(),
                   rsync_retry_delay=0.05)
    await c.open()
    yield c
    await c.close()


async def test_sync_from_rsync_daemon_mirrors_and_deletes(cache, daemon, tmp_path):
    url, src = daemon
    tests = await cache.sync_tests(HOST, url)
    assert tests == (tmp_path / "cache" / HOST / "tests").resolve()
    assert (tests / "opensuse" / "tests" / "boot.pm").read_text() == "sub run {}\n"
    (src / "opensuse" / "tests" / "boot.pm").unlink()
    (src / "opensuse" / "new.pm").write_text("new\n")
    (tests / "stale.pm").write_text("left over\n")
    await cache.sync_tests(HOST, url)
    assert (tests / "opensuse" / "new.pm").exists()
    assert not (tests / "opensuse" / "tests" / "boot.pm").exists() and not (tests / "stale.pm").exists()


async def test_concurrent_syncs_are_deduplicated(cache, daemon):
    url, _ = daemon
    results = await asyncio.gather(*(cache.sync_tests(HOST, url) for _ in range(4)))
    assert len(set(results)) == 1


async def test_unknown_module_fails_at_once_with_exit_code(cache, daemon):
    url, _ = daemon
    t0 = time.monotonic()
    cache.rsync_retry_delay = 3.0  # a retry would show in the elapsed time
    with pytest.raises(CacheError) as err:
        await cache.sync_tests(HOST, url.replace("/tests", "/nope"))
    assert err.value.category == CACHE_FAILURE
    assert str(err.value) == "Failed to rsync tests: exit code 5"
    assert time.monotonic() - t0 < 2.5


async def test_socket_error_exit_10_is_retried_three_times(cache, tmp_path):
    bus_events = cache.bus.subscribe()
    port = free_port()  # nothing listens there: rsync exits with 10
    t0 = time.monotonic()
    cache.rsync_retry_delay = 0.3
    with pytest.raises(CacheError) as err:
        await cache.sync_tests(HOST, f"rsync://127.0.0.1:{port}/tests")
    assert str(err.value) == "Failed to rsync tests: exit code 10"
    assert time.monotonic() - t0 >= 0.6, "two pauses between three tries"
    events = []
    while True:
        try:
            events.append(bus_events.get_nowait())
        except asyncio.QueueEmpty:
            break
    assert any(isinstance(e, CacheProgress) and e.key == f"{HOST}/tests" and e.error for e in events)


async def test_retry_exit_codes_with_a_flaky_rsync(tmp_path):
    """A stand-in rsync that exits 23, then 24, then succeeds; exit codes outside 10/23/24 are final."""
    counter = tmp_path / "tries"
    fake = tmp_path / "fake-rsync"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {counter}\nn=$(wc -l < {counter})\n"
                    "case $n in 1) exit 23;; 2) exit 24;; *) exit 0;; esac\n")
    fake.chmod(0o755)
    cache = AssetCache(tmp_path / "cache", limit_bytes=1 << 30, min_free_percentage=None, bus=EventBus(),
                       rsync=str(fake), rsync_retry_delay=0.01)
    await cache.open()
    tests = await cache.sync_tests(HOST, "rsync://example/tests")
    lines = counter.read_text().splitlines()
    assert len(lines) == 3
    assert lines[0] == f"-avHP --timeout 1800 rsync://example/tests/ --delete {tests}/"
    counter.unlink()
    fake.write_text(f"#!/bin/sh\necho x >> {counter}\nexit 12\n")
    with pytest.raises(CacheError, match="exit code 12"):
        await cache.sync_tests(HOST, "rsync://example/tests")
    assert len(counter.read_text().splitlines()) == 1
    await cache.close()
