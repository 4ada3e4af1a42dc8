"""Results the web UI never confirmed survive the next pool cleanup in ``<pool>/.preserved/<job>``."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PRESERVED_KEEP = 5  # the newest preserved jobs kept per pool


def preserve_sync(pool: Path, job_id: int) -> Path:
    target = pool / ".preserved" / str(job_id)
    target.mkdir(parents=True, exist_ok=True)
    for entry in pool.iterdir():
        if entry.name.startswith(".") or entry.name == "worker_packages.txt" or entry.is_symlink():
            continue
        shutil.move(str(entry), str(target / entry.name))
    kept = sorted((pool / ".preserved").iterdir(), key=lambda p: p.stat().st_mtime)
    for old in kept[:-PRESERVED_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


async def preserve_results(pool: Path, job_id: int, instance: int) -> None:
    try:
        target = await asyncio.to_thread(preserve_sync, pool, job_id)
    except OSError as exc:
        log.error("[slot %d] could not preserve the results of job %d: %s", instance, job_id, exc)
        return
    log.warning("[slot %d] results of job %d were not all delivered; kept in %s", instance, job_id, target)
