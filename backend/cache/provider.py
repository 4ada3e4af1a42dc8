"""The seam between job setup and the asset cache: assets and tests come through the cache."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from backend.cache.errors import CacheError
from backend.cache.service import AssetCache
from backend.config import HostConfig
from backend.job.setup import SetupError, looks_like_url
from backend.webui.client import ApiClient

log = logging.getLogger(__name__)


class CacheAssetProvider:
    """``AssetProvider`` for setup_job: downloads through the shared cache (one download per asset)."""

    def __init__(self, cache: AssetCache, client: ApiClient, host: HostConfig, job_id: int) -> None:
        self.cache = cache
        self.client = client
        self.host = host
        self.job_id = job_id

    async def provide(self, asset_type: str, name: str, job_id: int) -> Path:
        try:
            return await self.cache.get_asset(self.client, self.host.cache_host, job_id, asset_type, name,
                                              waiter=job_id)
        except CacheError as exc:
            if exc.detail:
                log.warning("[job %d] %s: %s", job_id, exc.message, exc.detail)
            raise SetupError(exc.category, exc.message) from exc


def tests_dir_provider(cache: AssetCache, host: HostConfig) -> Callable[[Any], Awaitable[Path | None]]:
    """Sync the tests from TESTPOOLSERVER into the cache before setup (skipped for git CASEDIR+NEEDLES_DIR)."""

    async def provide(job: Any) -> Path | None:
        settings = job.settings
        if looks_like_url(settings.get("CASEDIR", "")) and looks_like_url(settings.get("NEEDLES_DIR", "")):
            return None
        assert host.testpoolserver
        try:
            return await cache.sync_tests(host.cache_host, host.testpoolserver)
        except CacheError as exc:
            raise SetupError(exc.category, exc.message) from exc

    return provide
