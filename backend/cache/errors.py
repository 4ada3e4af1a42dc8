"""The one error type the cache raises to job setup (PROTOCOL.md §10.2 step 11)."""

from __future__ import annotations

ASSET_FAILURE = "asset failure"  # the web UI answered 4xx: the asset is missing or not the job's
CACHE_FAILURE = "cache failure"  # everything else: network, 5xx, size mismatch, disk, rsync


class CacheError(Exception):
    """``str(exc)`` is the message for the job reason; ``category`` its prefix; ``detail`` the cause."""

    def __init__(self, category: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.detail = detail

    @property
    def reason(self) -> str:
        """The full setup-failure reason as openQA shows it: ``<category>: <message>``."""
        return f"{self.category}: {self.message}"
