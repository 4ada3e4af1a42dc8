"""AssetCache.health(): a clear reason while the cache is unusable, None again once fixed."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from backend.cache import AssetCache
from backend.events import EventBus


async def open_cache(tmp_path: Path, **kwargs: object) -> AssetCache:
    options: dict = {"limit_bytes": 1 << 30, "min_free_percentage": None}
    options.update(kwargs)
    cache = AssetCache(tmp_path / "cache", bus=EventBus(), **options)
    await cache.open()
    return cache


async def test_missing_cache_dir_is_reported_and_recovers(tmp_path):
    cache = await open_cache(tmp_path)
    assert await cache.health() is None
    shutil.rmtree(tmp_path / "cache")
    assert await cache.health() == f"Cache directory {tmp_path / 'cache'} does not exist"
    (tmp_path / "cache").mkdir()  # an admin recreates it: the database is recreated too
    assert await cache.health() is None
    assert (tmp_path / "cache" / "cache.sqlite").exists()
    await cache.close()


async def test_cache_path_that_is_a_file_is_reported(tmp_path):
    cache = await open_cache(tmp_path)
    (tmp_path / "cache").rename(tmp_path / "aside")
    (tmp_path / "cache").write_text("oops")
    assert await cache.health() == f"Cache directory {tmp_path / 'cache'} is not a directory"
    (tmp_path / "cache").unlink()
    (tmp_path / "aside").rename(tmp_path / "cache")
    assert await cache.health() is None
    await cache.close()


async def test_unwritable_cache_dir_is_reported(tmp_path):
    cache = await open_cache(tmp_path)
    # root ignores permissions: make the place we must write to unusable instead
    shutil.rmtree(tmp_path / "cache" / "tmp")
    (tmp_path / "cache" / "tmp").write_text("not a dir")
    reason = await cache.health()
    assert reason is not None and reason.startswith(f"Cache directory {tmp_path / 'cache'} is not writable")
    (tmp_path / "cache" / "tmp").unlink()
    assert await cache.health() is None
    await cache.close()


async def test_too_little_free_space_is_reported(tmp_path):
    cache = await open_cache(tmp_path, min_free_percentage=100.0)  # no filesystem is 100 % free
    reason = await cache.health()
    assert reason is not None and "free disk space (CACHE_MIN_FREE_PERCENTAGE is 100%)" in reason
    cache.min_free_percentage = 0.0
    assert await cache.health() is None
    await cache.close()


async def test_broken_database_is_reported(tmp_path):
    cache = await open_cache(tmp_path)
    db = tmp_path / "cache" / "cache.sqlite"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db}{suffix}")
    db.mkdir()  # sqlite cannot open a directory
    reason = await cache.health()
    assert reason is not None and reason.startswith(f"Cache database {db.resolve()} is unusable")
    db.rmdir()
    assert await cache.health() is None
    await cache.close()
