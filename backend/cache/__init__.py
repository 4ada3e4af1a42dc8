"""The asset cache and test sync, in-process and safe for several qaworker processes (PROTOCOL.md §18)."""

from backend.cache.errors import ASSET_FAILURE, CACHE_FAILURE, CacheError
from backend.cache.service import AssetCache, CacheStats

__all__ = ["ASSET_FAILURE", "CACHE_FAILURE", "AssetCache", "CacheError", "CacheStats"]
