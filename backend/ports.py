"""Ports between job setup and whatever provides assets and tests (the asset cache, today).

Both sides import this module and nothing of each other: setup asks an ``AssetProvider`` for a file
and a ``TestsProvider`` for a tests directory; a provider that cannot deliver raises
``ProvisionError`` with the protocol's failure category (``asset failure``, ``cache failure``, …),
which setup turns into the job's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol


class ProvisionError(Exception):
    """An asset or the tests could not be provided; the job ends ``<category>: <message>``."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.category}: {self.message}"


class AssetProvider(Protocol):
    async def provide(self, asset_type: str, name: str, job_id: int) -> Path:
        """An absolute path of the asset's file, named ``name``; raises ``ProvisionError``."""
        ...


class TestsProvider(Protocol):
    async def provide(self, settings: Mapping[str, str]) -> Path | None:
        """The synced tests root for a job with these settings, or None when not needed."""
        ...
