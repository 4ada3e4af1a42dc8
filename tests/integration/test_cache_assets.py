"""AssetCache against a real HTTP server on 127.0.0.1, real files and a real sqlite database."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from backend.cache import ASSET_FAILURE, CACHE_FAILURE, CacheError
from backend.events import CacheProgress, CacheTotals
from backend.job.setup import link_asset
from tests.integration.cache_support import new_cache

pytestmark = pytest.mark.timeout(30)
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


def db_rows(cache_dir: Path) -> dict[str, tuple]:
    with sqlite3.connect(cache_dir / "cache.sqlite") as conn:
        rows = conn.execute("SELECT filename, etag, size, last_use, pending FROM assets").fetchall()
    return {os.path.basename(r[0]): r[1:] for r in rows}


async def test_downloads_into_host_dir_via_redirect_and_registers(cache, client, server, tmp_path):
    server.add("iso", "a.iso", b"x" * 300_000)
    path = await cache.get_asset(client, HOST, 42, "iso", "a.iso")
    assert path == (tmp_path / "cache" / HOST / "a.iso").resolve()
    assert path.read_bytes() == b"x" * 300_000
    assert server.redirects == 1 and server.downloads("iso", "a.iso") == 1
    etag, size, _last_use, pending = db_rows(tmp_path / "cache")["a.iso"]
    assert (etag, size, pending) == (server.asset("iso", "a.iso").etag, 300_000, 0)
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    assert cache.stats.misses == 1 and cache.stats.used_bytes == 300_000


async def test_eight_concurrent_callers_share_one_download(cache, client, server, bus):
    server.chunk_delay = 0.01
    server.add("hdd", "disk.qcow2", os.urandom(1_000_000))
    sub = bus.subscribe()
    paths = await asyncio.gather(*(cache.get_asset(client, HOST, 10 + i, "hdd", "disk.qcow2", waiter=100 + i)
                                   for i in range(8)))
    assert len(set(paths)) == 1
    assert server.downloads("hdd", "disk.qcow2") == 1
    assert server.asset("hdd", "disk.qcow2").requests == 1
    events = []
    while True:
        try:
            events.append(sub.get_nowait())
        except asyncio.QueueEmpty:
            break
    progress = [e for e in events if isinstance(e, CacheProgress)]
    assert progress[-1].done and progress[-1].bytes_done == 1_000_000
    assert any(len(e.waiting_jobs) == 8 for e in progress), "progress names every waiting job"
    # ~16 chunks of 64 KiB 10 ms apart: throttled to about one event per 0.2 s, not one per chunk
    assert len(progress) < 10
    assert any(isinstance(e, CacheTotals) and e.used_bytes == 1_000_000 for e in events)


async def test_etag_304_touches_without_downloading(cache, client, server, tmp_path):
    server.add("iso", "b.iso", b"b" * 1000)
    cache.fresh_seconds = 0  # always ask the server
    await cache.get_asset(client, HOST, 1, "iso", "b.iso")
    before = db_rows(tmp_path / "cache")["b.iso"][2]
    await asyncio.sleep(0.01)
    await cache.get_asset(client, HOST, 2, "iso", "b.iso")
    asset = server.asset("iso", "b.iso")
    assert (asset.downloads, asset.not_modified) == (1, 1)
    assert db_rows(tmp_path / "cache")["b.iso"][2] > before
    # changed on the server → downloaded again, no double counting in the totals
    server.add("iso", "b.iso", b"c" * 2000)
    path = await cache.get_asset(client, HOST, 3, "iso", "b.iso")
    assert path.read_bytes() == b"c" * 2000
    assert cache.stats.used_bytes == 2000


async def test_size_mismatch_is_retried_then_succeeds(cache, client, server):
    server.add("iso", "c.iso", os.urandom(200_000))
    server.truncate("iso", "c.iso", times=2)
    path = await cache.get_asset(client, HOST, 1, "iso", "c.iso")
    assert path.read_bytes() == server.asset("iso", "c.iso").content
    assert server.asset("iso", "c.iso").requests == 3


async def test_size_mismatch_every_time_is_a_cache_failure(tmp_path, bus, client, server):
    cache = new_cache(tmp_path, bus, download_attempts=3)
    await cache.open()
    server.add("iso", "d.iso", os.urandom(200_000))
    server.truncate("iso", "d.iso", times=10)
    with pytest.raises(CacheError) as err:
        await cache.get_asset(client, HOST, 1, "iso", "d.iso")
    assert err.value.category == CACHE_FAILURE
    dest = (tmp_path / "cache" / HOST / "d.iso").resolve()
    assert str(err.value) == f"Failed to download d.iso to {dest}"
    assert server.asset("iso", "d.iso").requests == 3
    assert not dest.exists() and "d.iso" not in db_rows(tmp_path / "cache")
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    await cache.close()


async def test_5xx_is_retried(cache, client, server):
    server.add("iso", "e.iso", b"e" * 10)
    server.fail("iso", "e.iso", 503, times=2)
    path = await cache.get_asset(client, HOST, 1, "iso", "e.iso")
    assert path.read_bytes() == b"e" * 10


async def test_404_is_an_asset_failure_without_retry(cache, client, server):
    t0 = time.monotonic()
    cache.retry_delay = 5.0  # a retry would show in the elapsed time
    with pytest.raises(CacheError) as err:
        await cache.get_asset(client, HOST, 1, "iso", "missing.iso")
    assert err.value.category == ASSET_FAILURE
    assert err.value.reason.startswith("asset failure: Failed to download missing.iso to ")
    assert "404" in err.value.detail
    assert server.redirects == 1 and time.monotonic() - t0 < 2


async def test_stale_file_is_not_used_when_the_server_check_fails(cache, client, server, tmp_path):
    server.add("iso", "f.iso", b"f" * 100)
    cache.fresh_seconds = 0
    await cache.get_asset(client, HOST, 1, "iso", "f.iso")
    server.fail("iso", "f.iso", 500, times=10)
    cache.download_attempts = 2
    with pytest.raises(CacheError) as err:
        await cache.get_asset(client, HOST, 2, "iso", "f.iso")
    assert err.value.category == CACHE_FAILURE
    assert not (tmp_path / "cache" / HOST / "f.iso").exists()


async def test_cancelling_one_waiter_does_not_cancel_the_download(cache, client, server):
    server.chunk_delay = 0.02
    server.add("iso", "g.iso", os.urandom(640 * 1024))
    first = asyncio.create_task(cache.get_asset(client, HOST, 1, "iso", "g.iso"))
    second = asyncio.create_task(cache.get_asset(client, HOST, 2, "iso", "g.iso"))
    await asyncio.sleep(0.05)
    first.cancel()
    path = await second
    assert first.cancelled()
    assert path.read_bytes() == server.asset("iso", "g.iso").content
    assert server.downloads("iso", "g.iso") == 1


async def test_lru_eviction_spares_pinned_and_just_downloaded(tmp_path, bus, client, server):
    cache = new_cache(tmp_path, bus, limit_bytes=2500)
    await cache.open()
    for name in ("a", "b", "c"):
        server.add("hdd", name, name.encode() * 1000)
    a = await cache.get_asset(client, HOST, 1, "hdd", "a")
    b = await cache.get_asset(client, HOST, 2, "hdd", "b")
    cache.unpin_job(2)
    cache.fresh_seconds = 0
    await cache.get_asset(client, HOST, 3, "hdd", "a")  # a is now more recent than b, but pinned by 1 and 3
    # c needs room: the least recently used unpinned asset (b) goes; a stays although it is older than c
    c = await cache.get_asset(client, HOST, 4, "hdd", "c")
    assert a.exists() and c.exists() and not b.exists()
    assert set(db_rows(tmp_path / "cache")) == {"a", "c"}
    assert cache.stats.evictions == 1 and cache.stats.used_bytes == 2000
    # an asset bigger than the whole cache is still delivered (never evicted right after download)
    server.add("hdd", "big", b"B" * 5000)
    big = await cache.get_asset(client, HOST, 5, "hdd", "big")
    assert big.exists() and big.stat().st_size == 5000
    assert a.exists() and c.exists(), "pinned assets survive even when over the limit"
    cache.unpin_job(1)
    cache.unpin_job(3)
    cache.unpin_job(4)
    await cache.close()
    # on the next start the limit is enforced: big is pinned by nobody now, but it is the most recent
    reopened = new_cache(tmp_path, bus, limit_bytes=5000)
    await reopened.open()
    assert set(db_rows(tmp_path / "cache")) == {"big"}
    await reopened.close()


async def test_assets_pinned_in_another_cache_object_are_not_evicted(tmp_path, bus, client, server):
    first = new_cache(tmp_path, bus)
    await first.open()
    server.add("hdd", "p", b"p" * 1000)
    pinned = await first.get_asset(client, HOST, 1, "hdd", "p")
    other = new_cache(tmp_path, bus, limit_bytes=10)  # like a second worker process with a tiny limit
    await other.open()
    assert pinned.exists(), "the pin is visible to other processes sharing the cache"
    first.unpin_job(1)
    await other.close()
    third = new_cache(tmp_path, bus, limit_bytes=10)
    await third.open()
    assert not pinned.exists()
    await third.close()
    await first.close()


async def test_classic_database_is_adopted_without_redownload(tmp_path, bus, client, server):
    content = b"classic" * 1000
    server.add("iso", "old.iso", content)
    cache_dir = tmp_path / "cache"
    (cache_dir / HOST).mkdir(parents=True)
    asset = cache_dir / HOST / "old.iso"
    asset.write_bytes(content)
    (cache_dir / HOST / "notes.txt").write_bytes(b"other asset" * 10)  # counted too (fault 23)
    with sqlite3.connect(cache_dir / "cache.sqlite") as conn:
        conn.executescript("""
            CREATE TABLE assets (etag TEXT, size INTEGER, last_use DATETIME NOT NULL,
                filename TEXT NOT NULL UNIQUE PRIMARY KEY, pending INTEGER DEFAULT 1);
            CREATE INDEX assets_pending ON assets (pending);
            CREATE TABLE minion_jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT, state TEXT);
            INSERT INTO minion_jobs (task, state) VALUES ('cache_asset', 'finished');
        """)
        conn.execute("INSERT INTO assets VALUES (?, ?, strftime('%s','now'), ?, 0)",
                     (server.asset("iso", "old.iso").etag, len(content), str(asset.resolve())))
        conn.execute("INSERT INTO assets VALUES (NULL, 110, strftime('%s','now'), ?, 0)",
                     (str((cache_dir / HOST / "notes.txt").resolve()),))
    cache = new_cache(tmp_path, bus)
    await cache.open()
    assert cache.stats.used_bytes == len(content) + 110
    path = await cache.get_asset(client, HOST, 1, "iso", "old.iso")
    assert path.read_bytes() == content
    assert server.downloads("iso", "old.iso") == 0 and server.asset("iso", "old.iso").not_modified == 1
    await cache.close()
    with sqlite3.connect(cache_dir / "cache.sqlite") as conn:
        assert conn.execute("SELECT task FROM minion_jobs").fetchall() == [("cache_asset",)]


async def test_corrupt_database_is_moved_aside_and_rebuilt_keeping_files(tmp_path, bus, client, server):
    cache_dir = tmp_path / "cache"
    (cache_dir / HOST).mkdir(parents=True)
    (cache_dir / HOST / "kept.qcow2").write_bytes(b"k" * 4096)
    (cache_dir / HOST / "tests").mkdir()
    (cache_dir / HOST / "tests" / "main.pm").write_text("1;")
    (cache_dir / "cache.sqlite").write_bytes(b"this is not a database" * 100)
    cache = new_cache(tmp_path, bus)
    await cache.open()
    assert (cache_dir / HOST / "kept.qcow2").read_bytes() == b"k" * 4096
    assert (cache_dir / HOST / "tests" / "main.pm").exists()
    assert len(list(cache_dir.glob("cache.sqlite.corrupt-*"))) == 1
    assert set(db_rows(cache_dir)) == {"kept.qcow2"}
    assert cache.stats.used_bytes == 4096
    assert await cache.health() is None
    # the adopted file has no etag: the next use fetches it properly
    server.add("hdd", "kept.qcow2", b"n" * 10)
    path = await cache.get_asset(client, HOST, 1, "hdd", "kept.qcow2")
    assert path.read_bytes() == b"n" * 10
    await cache.close()


async def test_interrupted_downloads_and_stray_tmp_files_are_purged_on_open(tmp_path, bus):
    cache = new_cache(tmp_path, bus)
    await cache.open()
    await cache.close()
    cache_dir = tmp_path / "cache"
    (cache_dir / HOST).mkdir()
    half = cache_dir / HOST / "half.iso"
    half.write_bytes(b"h" * 10)
    (cache_dir / "tmp" / "half.iso.123.abcd.part").write_bytes(b"h" * 5)
    with sqlite3.connect(cache_dir / "cache.sqlite") as conn:
        conn.execute("INSERT INTO assets VALUES (NULL, NULL, 1, ?, 1)", (str(half.resolve()),))
    cache = new_cache(tmp_path, bus)
    await cache.open()
    assert not half.exists() and list((cache_dir / "tmp").iterdir()) == []
    assert db_rows(cache_dir) == {}
    await cache.close()


async def test_two_processes_share_one_download(tmp_path, server):
    server.chunk_delay = 0.01
    server.add("hdd", "shared.qcow2", os.urandom(2 * 1024 * 1024))
    procs = []
    for _ in range(2):
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.cache_support", str(tmp_path / "cache"),
            server.url, HOST, "hdd", "shared.qcow2", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE))
    for proc in procs:  # both have opened the cache: now let them race
        assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 15)
    for proc in procs:
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    results = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 15)) for proc in procs]
    for proc in procs:
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert all("path" in r for r in results), results
    assert server.downloads("hdd", "shared.qcow2") == 1
    assert sorted(r["misses"] for r in results) == [0, 1]
    data = await asyncio.to_thread(Path(results[0]["path"]).read_bytes)
    assert data == server.asset("hdd", "shared.qcow2").content


async def test_cached_asset_is_hardlinked_into_the_pool_or_symlinked(cache, client, server, tmp_path):
    server.add("iso", "l.iso", b"l" * 10)
    path = await cache.get_asset(client, HOST, 1, "iso", "l.iso")
    pool = tmp_path / "pool"
    pool.mkdir()
    linked = await asyncio.to_thread(link_asset, path, pool)
    assert linked == pool / "l.iso" and linked.stat().st_ino == path.stat().st_ino
    symlinked_source = tmp_path / "cache" / HOST / "s.iso"
    symlinked_source.symlink_to(path)
    linked2 = await asyncio.to_thread(link_asset, symlinked_source, pool)
    assert linked2.is_symlink() and linked2.read_bytes() == b"l" * 10
    again = await asyncio.to_thread(link_asset, path, pool)  # an old link in the pool is replaced
    assert again.stat().st_ino == path.stat().st_ino
