"""The asset cache as the provider of assets and tests for job setup (``backend.ports``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from backend.cache.errors import CacheError
from backend.cache.service import AssetCache
from backend.config import HostConfig
from backend.ports import ProvisionError
from backend.webui.client import ApiClient

log = logging.getLogger(__name__)


class CacheAssetProvider:
    """``AssetProvider``: downloads through the shared cache (one download per asset)."""

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
            raise ProvisionError(exc.category, exc.message) from exc


class CacheTestsProvider:
    """``TestsProvider``: syncs the tests from TESTPOOLSERVER into the cache before setup."""

    def __init__(self, cache: AssetCache, host: HostConfig, *, attempts: int = 3) -> None:
        assert host.testpoolserver
        self.cache = cache
        self.host = host
        self.testpoolserver = host.testpoolserver
        self.attempts = max(1, attempts)  # whole syncs, each with rsync's own retries

    async def provide(self, settings: Mapping[str, str]) -> Path | None:
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.cache.sync_tests(self.host.cache_host, self.testpoolserver)
            except CacheError as exc:
                if attempt == self.attempts:
                    raise ProvisionError(exc.category, exc.message) from exc
                log.warning("test sync from %s failed (attempt %d of %d): %s", self.testpoolserver, attempt,
                            self.attempts, exc.message)
        return None
