"""Screenshot preparation for one job: the md5 of each screenshot as isotovideo wrote it, then its
optimisation (and its thumbnail's), each done once, in the worker's ``ImagePool`` (PROTOCOL.md §13.3, §13.5).

``start(name)`` begins as soon as a screenshot is written (the reporter's ``ScreenshotWatcher``) or when
a round first needs it; ``md5s`` and ``ready`` wait only for what is not done yet. The md5 is always
taken before the file is touched: known_images compare the unoptimised bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend.job.imageopt import ImagePool, OptimizeError, available_cores
from backend.job.results import ResultsReader
from backend.job.upload import ProgressTracker, UploadSettings

log = logging.getLogger(__name__)


@dataclass
class _Shot:
    hashed: asyncio.Future[str | None]  # the md5, None when the file could not be read
    task: asyncio.Task[None]  # done = hashed and optimised (its thumbnail too, if it existed then)


class ScreenshotPrep:
    def __init__(self, job_id: int, reader: ResultsReader, image_pool: ImagePool, tracker: ProgressTracker,
                 settings: Callable[[], UploadSettings], on_failure: Callable[[str], None]) -> None:
        self.job_id = job_id
        self.reader = reader
        self.image_pool = image_pool
        self.tracker = tracker
        self.settings = settings
        self.on_failure = on_failure  # an optimisation failed for good (the text of the error)
        self.retry_pause: float | None = None  # None: OPENQA_WORKER_OPTIMIZE_RETRY_DELAY (default 1 s)
        self._shots: dict[str, _Shot] = {}
        self._optimizing: dict[Path, asyncio.Task[None]] = {}
        # Few optimisations in flight per job, so slots sharing the pool interleave fairly.
        self._gate = asyncio.Semaphore(max(2, available_cores()))

    def start(self, name: str) -> None:
        self._shot(name)

    async def md5s(self, names: list[str]) -> dict[str, str]:
        """md5 of every named screenshot that can be read (the others are tried again next time)."""
        shots = {n: self._shot(n) for n in dict.fromkeys(names)}
        out: dict[str, str] = {}
        for name, shot in shots.items():
            md5 = await asyncio.shield(shot.hashed)
            if md5 is None:
                self._shots.pop(name, None)
                continue
            out[name] = md5
        return out

    async def ready(self, name: str, settings: UploadSettings) -> bool:
        """Wait until the screenshot (and its thumbnail) are optimised; returns whether a thumbnail exists."""
        await asyncio.shield(self._shot(name).task)
        thumb = self.reader.thumbnail_path(name)
        has_thumb = await asyncio.to_thread(thumb.is_file)
        if settings.optimize and has_thumb:
            await self._optimize(thumb, settings)  # (no-op when it existed at preparation time)
        return has_thumb

    async def aclose(self) -> None:
        pending = [s.task for s in self._shots.values()] + list(self._optimizing.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for shot in self._shots.values():  # a task cancelled before it ran never answered
            if not shot.hashed.done():
                shot.hashed.set_result(None)

    # -- internals ----------------------------------------------------------------------------------------
    def _shot(self, name: str) -> _Shot:
        shot = self._shots.get(name)
        if shot is None:
            loop = asyncio.get_running_loop()
            hashed: asyncio.Future[str | None] = loop.create_future()
            task = loop.create_task(self._prepare(name, hashed), name=f"shot-{self.job_id}-{name}")
            shot = self._shots[name] = _Shot(hashed, task)
        return shot

    async def _prepare(self, name: str, hashed: asyncio.Future[str | None]) -> None:
        path = self.reader.screenshot_path(name)
        md5: str | None = None
        try:
            md5 = await self.image_pool.md5(path)
        except OSError as exc:
            log.warning("[job %d] Screenshot %s cannot be read: %s", self.job_id, name, exc.strerror or exc)
        finally:
            hashed.set_result(md5)  # also when cancelled (None): nobody waits for an md5 forever
        if md5 is None:
            return
        settings = self.settings()
        if not settings.optimize:
            return
        await self._optimize(path, settings)
        thumb = self.reader.thumbnail_path(name)
        if await asyncio.to_thread(thumb.is_file):
            await self._optimize(thumb, settings)

    async def _optimize(self, path: Path, settings: UploadSettings) -> None:
        """Once per file; concurrent callers share the work. A failure is reported and the original kept."""
        task = self._optimizing.get(path)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run_optimizer(path, settings),
                                                          name=f"optimize-{self.job_id}-{path.name}")
            self._optimizing[path] = task
        await asyncio.shield(task)

    async def _run_optimizer(self, path: Path, settings: UploadSettings) -> None:
        self.tracker.optipng_queue += 1
        self.tracker.publish()
        try:
            async with self._gate:
                pause = settings.optimize_retry_delay if self.retry_pause is None else self.retry_pause
                await self.image_pool.optimize(path, settings.optimizer, settings.optimize_attempts, pause)
        except (OptimizeError, OSError) as exc:
            self.on_failure(str(exc))
        finally:
            self.tracker.optipng_queue -= 1
