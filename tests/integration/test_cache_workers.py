"""Issue 12 row 9: CACHEWORKERS bounds asset downloads and test syncs together, across the whole host.

Real HTTP downloads from a server on 127.0.0.1, real flock'ed slot files; ``rsync`` is a fake on PATH that
marks itself running (one file per process) so the test can count what runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.cache import AssetCache
from backend.events import CacheQueue, EventBus
from tests.fakebin import FakeBin, fakebin  # noqa: F401 (fixture)
from tests.integration.cache_support import AssetServer, make_client

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def fake_rsync(fake: FakeBin, running: Path, seconds: float = 0.4) -> None:
    running.mkdir()
    fake.add("rsync", f'touch {running}/$$\nsleep {seconds}\nrm -f {running}/$$\n')


@pytest.fixture
async def server() -> AsyncIterator[AssetServer]:
    srv = AssetServer(chunk_delay=0.05, chunk_size=16 * 1024)  # ~0.4 s per 128 KiB asset
    await srv.start()
    yield srv
    await srv.stop()


async def sample_max(running, stop: asyncio.Event) -> tuple[int, tuple[int, list[str]]]:
    """The most transfers seen at once: bodies being served + fake rsyncs running (and what they were)."""
    highest: tuple[int, tuple[int, list[str]]] = (0, (0, []))
    while not stop.is_set():
        serving, syncs = running()
        highest = max(highest, (serving + len(syncs), (serving, syncs)))
        await asyncio.sleep(0.01)
    return highest


async def test_downloads_and_syncs_of_two_caches_share_cacheworkers(tmp_path, server, fakebin):  # noqa: F811
    running = tmp_path / "rsync-running"
    fake_rsync(fakebin, running)
    for i in range(6):
        server.add("iso", f"{i}.iso", os.urandom(128 * 1024))
    bus = EventBus()
    queue = bus.subscribe()
    # two caches on one directory exclude each other like two worker processes (flock per open file)
    caches = [AssetCache(tmp_path / "cache", limit_bytes=1 << 30, min_free_percentage=None, bus=bus, workers=2)
              for _ in range(2)]
    for cache in caches:
        await cache.open()
    client = make_client(server.url)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_max(lambda: (server.serving, sorted(os.listdir(running))), stop))
    try:
        work = [caches[i % 2].get_asset(client, "127.0.0.1", i, "iso", f"{i}.iso") for i in range(6)]
        work += [caches[i % 2].sync_tests(f"host{i}", "rsync://127.0.0.1/tests") for i in range(4)]
        await asyncio.gather(*work)
    finally:
        stop.set()
        highest = await sampler
        await client.aclose()
        for cache in caches:
            await cache.close()
    assert highest[0] == 2, highest  # never more than CACHEWORKERS, and the two slots were really used together
    assert len(fakebin.calls("rsync")) == 4 and server.serving == 0
    counts: list[CacheQueue] = []
    while True:
        try:
            event = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        if isinstance(event, CacheQueue):
            counts.append(event)
    assert max(c.queued for c in counts) >= 2 and max(c.active for c in counts) <= 2
    assert counts[-1].active == counts[-1].queued == counts[-1].failed == 0


HOLDER = """
import asyncio, sys
from pathlib import Path
from backend.cache import AssetCache
from backend.events import EventBus

async def main():
    cache = AssetCache(Path(sys.argv[1]), limit_bytes=1 << 30, min_free_percentage=None, bus=EventBus(), workers=1)
    await cache.open()
    await cache.sync_tests("other", "rsync://127.0.0.1/tests")

asyncio.run(main())
"""


async def test_a_slot_held_by_another_process_is_waited_for_and_freed_when_it_dies(tmp_path, server, fakebin):  # noqa: F811
    running = tmp_path / "rsync-running"
    fake_rsync(fakebin, running, seconds=60)
    server.add("iso", "a.iso", os.urandom(16 * 1024))
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(tmp_path / "cache"), cwd=ROOT,
                                                  start_new_session=True)
    cache = AssetCache(tmp_path / "cache", limit_bytes=1 << 30, min_free_percentage=None, bus=EventBus(), workers=1)
    await cache.open()
    client = make_client(server.url)
    try:
        for _ in range(200):
            if os.listdir(running):
                break
            await asyncio.sleep(0.05)
        assert os.listdir(running), "the other process never started its sync"
        download = asyncio.create_task(cache.get_asset(client, "127.0.0.1", 1, "iso", "a.iso"))
        await asyncio.sleep(1.0)
        assert not download.done() and server.asset("iso", "a.iso").requests == 0
        assert (cache.workers.active, cache.workers.queued) == (0, 1)
        os.killpg(holder.pid, signal.SIGKILL)  # dies holding the host's only slot: the kernel frees it
        await holder.wait()
        path = await asyncio.wait_for(download, 20)
        assert path.stat().st_size == 16 * 1024
    finally:
        if holder.returncode is None:
            os.killpg(holder.pid, signal.SIGKILL)
            await holder.wait()
        await client.aclose()
        await cache.close()


async def test_a_cancelled_transfer_gives_up_its_place_and_leaks_no_slot(tmp_path, server, fakebin):  # noqa: F811
    running = tmp_path / "rsync-running"
    fake_rsync(fakebin, running, seconds=1.0)
    server.add("iso", "a.iso", os.urandom(16 * 1024))
    bus = EventBus()
    queue = bus.subscribe()
    cache = AssetCache(tmp_path / "cache", limit_bytes=1 << 30, min_free_percentage=None, bus=bus, workers=1)
    await cache.open()
    client = make_client(server.url)

    async def until(wanted) -> None:
        while not (isinstance(event := await queue.get(), CacheQueue) and wanted(event)):
            pass

    async def transfer() -> None:  # what a download task does; AssetCache.close() cancels those
        async with cache.workers.slot(download=True):
            await asyncio.sleep(60)

    try:
        sync = asyncio.create_task(cache.sync_tests("h", "rsync://127.0.0.1/tests"))
        await asyncio.wait_for(until(lambda e: e.active == 1), 10)
        waiting = asyncio.create_task(transfer())
        await asyncio.wait_for(until(lambda e: e.queued == 1), 10)
        waiting.cancel()  # while it waits for the host's only slot
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert (cache.workers.active, cache.workers.queued) == (1, 0)
        await sync
        running_one = asyncio.create_task(transfer())
        await asyncio.wait_for(until(lambda e: e.active == 1 and e.downloads == 1), 10)
        running_one.cancel()  # cancelled while holding the slot: it is given back
        with contextlib.suppress(asyncio.CancelledError):
            await running_one
        path = await asyncio.wait_for(cache.get_asset(client, "127.0.0.1", 2, "iso", "a.iso"), 10)
        assert path.stat().st_size == 16 * 1024
        assert cache.workers.counts().failed == 0  # a cancellation is no failed transfer
    finally:
        await client.aclose()
        await cache.close()
