"""Put a cached asset into a pool directory (PROTOCOL.md §10.2 step 11).

Hardlink (so eviction from the cache cannot pull the file from under a running job); symlink when
hardlinking fails (other filesystem) or when the cached file is itself a symlink.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def link_into_sync(path: Path, pool_dir: Path) -> Path:
    target = pool_dir / path.name
    if target.is_symlink() or target.exists():
        target.unlink()
    if not path.is_symlink():
        try:
            os.link(path, target)
            return target
        except OSError as exc:
            log.info("cannot hardlink %s into %s (%s), symlinking instead", path, pool_dir, exc)
    os.symlink(os.path.realpath(path) if not path.is_symlink() else path, target)
    return target


async def link_into(path: Path, pool_dir: Path) -> Path:
    """Link ``path`` into ``pool_dir`` under its basename; returns the link's path."""
    return await asyncio.to_thread(link_into_sync, path, pool_dir)
