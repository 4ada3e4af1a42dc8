"""Status posts and result upload rounds during a job (PROTOCOL.md §13, §14.2, §17).

One ``JobReporter`` per job. A single periodic task runs rounds strictly one after another:
read the pool directory (in a thread), hash new screenshots (process pool), post the status,
then optimise (process pool) and upload images and text files with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.events import DeveloperSession, EventBus, JobProgress, LiveViewers, LogLines, ModuleStatus
from backend.job import outcome as oc
from backend.job.imageopt import OPTIMIZE_ATTEMPTS, OptimizeError, md5_file, optimize_image
from backend.job.imageopt import make_image_pool as make_image_pool
from backend.job.results import ReadResult, ResultsReader, attach_md5
from backend.job.upload import (
    ArtefactUploader,
    ProgressTracker,
    UploadFailed,
    UploadSettings,
    final_log_files,
    log_upload_name,
    redact_vars,
)
from backend.livehandler import LiveLog, LogTail, ProgressInfo, UploadProgressPoster
from backend.webui.client import ApiClient, ApiError

log = logging.getLogger(__name__)

STATUS_INTERVAL = 10.0
LIVE_STATUS_INTERVAL = 1.0
MIN_ROUND_SPACING = 0.3


@dataclass
class ReporterContext:
    client: ApiClient
    job_id: int
    worker_id: int
    instance: int
    pool_dir: Path
    settings: dict[str, str]
    cmd_srv_url: str
    worker_hostname: str
    livehandler_base: str
    bus: EventBus
    image_pool: concurrent.futures.Executor
    request_stop: Callable[[str, str], None]
    upload_concurrency: int = 4


@dataclass
class _Snapshot:
    read: ReadResult
    live: dict[str, Any] | None
    log_lines: list[str]


class JobReporter:
    """Drives §13 for one job; see the module docstring."""

    def __init__(self, ctx: ReporterContext) -> None:
        self.ctx = ctx
        self.interval = STATUS_INTERVAL
        self.live_interval = LIVE_STATUS_INTERVAL
        self.optimize_pause = 1.0  # between optimisation attempts (NEW: 5 attempts, 1 s apart)
        self.upload_error: str | None = None
        self.reader = ResultsReader(ctx.pool_dir)
        self._live = LiveLog(ctx.pool_dir)
        self._tail = LogTail(ctx.pool_dir / "autoinst-log.txt")
        self.tracker = ProgressTracker(ctx.bus, ctx.instance, ctx.job_id)
        self._progress = UploadProgressPoster(ctx.client, ctx.livehandler_base, ctx.job_id)
        self._md5: dict[str, str] = {}  # screenshot name -> md5 of the unoptimised file
        self._images: dict[str, str] = {}  # md5 -> screenshot name, still to send
        self._files: set[str] = set()  # text/audio files still to send
        self._known_images: set[str] = set()  # md5s the web UI has (or we sent)
        self._sent_files: set[str] = set()
        self._optimized: set[Path] = set()
        self._failed: dict[str, str] = {}  # file name -> last upload error
        self._viewers = 0
        self._developer = False
        self._started = False
        self._stopping = False
        self._periodic_stop = False
        self._broken = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        # Few optimisations in flight per job, so slots sharing the pool interleave fairly.
        self._optimize_gate = asyncio.Semaphore(max(2, os.cpu_count() or 2))
        self._task: asyncio.Task[None] | None = None

    # -- control ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self._viewers > 0:
            self._touch_live_log(True)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._periodic(), name=f"reporter-{self.ctx.job_id}")

    def trigger(self) -> None:
        if self._started and not self._periodic_stop:
            self._wake.set()

    def set_live_viewers(self, count: int) -> None:
        old, self._viewers = self._viewers, max(0, count)
        ctx = self.ctx
        ctx.bus.publish(LiveViewers(instance=ctx.instance, job_id=ctx.job_id, viewers=self._viewers))
        if not self._started:
            return  # remembered; applied by start()
        if old == 0 and self._viewers > 0:
            self._touch_live_log(True)
            self.trigger()
        elif old > 0 and self._viewers == 0:
            self._touch_live_log(False)

    def enable_developer_session(self) -> None:
        self._developer = True
        ctx = self.ctx
        ctx.bus.publish(DeveloperSession(instance=ctx.instance, job_id=ctx.job_id, active=True))

    @property
    def live_viewers(self) -> int:
        return self._viewers

    @property
    def current_interval(self) -> float:
        return self.live_interval if self._viewers > 0 else self.interval

    async def stop_periodic(self) -> None:
        self._periodic_stop = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def post_uploading(self) -> None:
        self._stopping = True
        try:
            await self.ctx.client.request("POST", self._status_path,
                                          json={"status": {"uploading": 1, "worker_id": self.ctx.worker_id}})
        except ApiError as exc:
            log.warning("[job %d] Unable to announce uploading: %s", self.ctx.job_id, exc)

    async def final_status(self) -> None:
        self._stopping = True
        async with self._lock:
            await self._round(final=True)

    def modules(self) -> tuple[ModuleStatus, ...]:
        return self.reader.modules()

    # -- the periodic loop ----------------------------------------------------------------------------
    async def _periodic(self) -> None:
        while not self._periodic_stop:
            self._wake.clear()
            started = time.monotonic()
            async with self._lock:
                try:
                    await self._round(final=False)
                except Exception:  # a bad round must not end the loop
                    log.exception("[job %d] status/upload round failed", self.ctx.job_id)
            if self._periodic_stop:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.current_interval)
            except TimeoutError:
                pass
            spacing = MIN_ROUND_SPACING - (time.monotonic() - started)
            if spacing > 0 and not self._periodic_stop:
                await asyncio.sleep(spacing)

    @property
    def _status_path(self) -> str:
        return f"/api/v1/jobs/{self.ctx.job_id}/status"

    def _touch_live_log(self, present: bool) -> None:
        marker = self.ctx.pool_dir / "live_log"
        try:
            if present:
                marker.touch()
            else:
                marker.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("[job %d] Unable to %s %s: %s", self.ctx.job_id, "create" if present else "remove",
                        marker, exc)

    # -- one round ------------------------------------------------------------------------------------
    def _read_files(self, final: bool, stopping: bool, live: bool) -> _Snapshot:
        read = self.reader.read(final=final, stopping=stopping)
        return _Snapshot(read, self._live.fields() if live else None, self._tail.read_lines())

    async def _round(self, final: bool) -> None:
        stopping = self._stopping
        live = self._viewers > 0 and not final
        snap = await asyncio.to_thread(self._read_files, final, stopping, live)
        read = snap.read
        self._publish_progress(read, snap.log_lines)
        if read.no_tests_scheduled:
            if not stopping:
                self.ctx.request_stop("no tests scheduled", "")
            return
        md5s = await self._hash(read.screenshots)
        attach_md5(read.results, md5s)
        reply = await self._post_status(self._status_body(read, snap.live), stopping)
        if reply is None or not reply.get("result"):
            return  # nothing stored: keep the working list and the queues as they are
        self.reader.commit(read)
        self._queue(read, md5s, reply)
        await self._upload_round(read)

    def _status_body(self, read: ReadResult, live: dict[str, Any] | None) -> dict[str, Any]:
        status: dict[str, Any] = {"worker_id": self.ctx.worker_id, "cmd_srv_url": self.ctx.cmd_srv_url,
                                  "worker_hostname": self.ctx.worker_hostname,
                                  "test_execution_paused": read.paused}
        if read.test_order is not None:
            status["test_order"] = read.test_order
        if read.results:
            status["result"] = read.results
        if live:
            status.update(live)
        return {"status": status}

    async def _post_status(self, body: dict[str, Any], stopping: bool) -> dict[str, Any] | None:
        try:
            response = await self.ctx.client.request("POST", self._status_path, json=body)
        except ApiError as exc:
            if stopping or self._stopping:
                log.warning("[job %d] Unable to make final image uploads. Maybe the web UI considers this "
                            "job already dead. (%s)", self.ctx.job_id, exc)
            else:
                log.error("[job %d] Aborting job because web UI doesn't accept new images anymore (likely "
                          "considers this job dead): %s", self.ctx.job_id, exc)
                self.ctx.request_stop("api-failure", str(exc))
            return None
        try:
            reply = response.json()
        except ValueError:
            reply = None
        return reply if isinstance(reply, dict) else {"result": 1}

    def _queue(self, read: ReadResult, md5s: dict[str, str], reply: dict[str, Any]) -> None:
        self._known_images.update(str(m) for m in reply.get("known_images") or ())
        known_files = {str(f) for f in reply.get("known_files") or ()}
        for name in read.screenshots:
            md5 = md5s.get(name)
            if md5 and md5 not in self._known_images:
                self._images.setdefault(md5, name)
        for md5 in [m for m in self._images if m in self._known_images]:
            self._failed.pop(self._images.pop(md5), None)
        self._sent_files.update(known_files)
        self._files.update(f for f in read.files if f not in self._sent_files)
        for name in [f for f in self._files if f in self._sent_files]:
            self._files.discard(name)
            self._failed.pop(name, None)

    async def _hash(self, names: list[str]) -> dict[str, str]:
        """md5 of every named screenshot, computed once per file in the process pool."""
        missing = sorted({n for n in names if n not in self._md5})
        if missing:
            paths = [str(self.reader.screenshot_path(n)) for n in missing]
            futures = [self._in_pool(md5_file, p) for p in paths]
            for name, outcome in zip(missing, await asyncio.gather(*futures, return_exceptions=True),
                                     strict=True):
                if isinstance(outcome, str):
                    self._md5[name] = outcome
                else:
                    log.warning("[job %d] Screenshot %s cannot be read: %s", self.ctx.job_id, name, outcome)
        return {n: self._md5[n] for n in names if n in self._md5}

    # -- image and file uploads ---------------------------------------------------------------------
    async def _upload_round(self, read: ReadResult) -> None:
        images, files = dict(self._images), sorted(self._files)
        if self._developer and not self._stopping:
            await self._progress.post(ProgressInfo(read.upload_up_to, read.upload_up_to_current_module,
                                                   len(files), len(images)))
        if images or files:
            settings = UploadSettings.from_settings(self.ctx.settings)
            uploader = ArtefactUploader(self.ctx.client, self.ctx.job_id, settings, self.tracker)
            self.tracker.add(len(images) + len(files), 0)
            gate = asyncio.Semaphore(max(1, self.ctx.upload_concurrency))
            await asyncio.gather(*(self._send_image(uploader, settings, gate, md5, name)
                                   for md5, name in images.items()),
                                 *(self._send_file(uploader, gate, name) for name in files))
            self.tracker.publish(force=True)
        if self._failed:
            error = next(reversed(self._failed.values()))
            self.upload_error = f"Unable to upload images: {error}"
        else:
            self.upload_error = None
        if self._developer and not self._stopping:
            await self._progress.post(ProgressInfo(read.upload_up_to, read.upload_up_to_current_module,
                                                   len(self._files), len(self._images)))

    async def _send_image(self, uploader: ArtefactUploader, settings: UploadSettings, gate: asyncio.Semaphore,
                          md5: str, name: str) -> None:
        path = self.reader.screenshot_path(name)
        thumb = self.reader.thumbnail_path(name)
        has_thumb = await asyncio.to_thread(thumb.is_file)
        if settings.optimize:
            await self._optimize(path, settings)
            if has_thumb:
                await self._optimize(thumb, settings)
        async with gate:
            try:
                await uploader.upload(path, name, {"image": "1", "thumb": "0", "md5": md5})
                if has_thumb:
                    thumb_fields = {"image": "1", "thumb": "1", "md5": md5}
                    await uploader.upload(thumb, name, thumb_fields, count_file=False)
            except UploadFailed as exc:
                self._upload_failed(name, str(exc))
                return
        self._images.pop(md5, None)
        self._known_images.add(md5)
        self._failed.pop(name, None)

    async def _send_file(self, uploader: ArtefactUploader, gate: asyncio.Semaphore, name: str) -> None:
        path = self.reader.testresults / name
        if not await asyncio.to_thread(path.is_file):
            log.warning("[job %d] Result file %s does not exist; not uploading it", self.ctx.job_id, name)
            self._files.discard(name)
            return
        async with gate:
            try:
                await uploader.upload(path, name, {"image": "0", "thumb": "0"})
            except UploadFailed as exc:
                self._upload_failed(name, str(exc))
                return
        self._files.discard(name)
        self._sent_files.add(name)
        self._failed.pop(name, None)

    def _upload_failed(self, name: str, error: str) -> None:
        log.warning("[job %d] Upload of %s failed (kept for the next round): %s", self.ctx.job_id, name,
                    error)
        self._failed.pop(name, None)
        self._failed[name] = error
        self.tracker.error(error)

    async def _optimize(self, path: Path, settings: UploadSettings) -> None:
        """Optimise once per file in the pool; a failure marks the worker broken (NEW), upload goes on."""
        if path in self._optimized:
            return
        self.tracker.optipng_queue += 1
        self.tracker.publish()
        try:
            async with self._optimize_gate:
                await self._in_pool(optimize_image, str(path), settings.use_pngquant, OPTIMIZE_ATTEMPTS,
                                    self.optimize_pause)
        except (OptimizeError, OSError) as exc:
            self._optimize_failed(str(exc))
        finally:
            self.tracker.optipng_queue -= 1
        self._optimized.add(path)

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the shared process pool; a thread if that pool broke (a killed child)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.ctx.image_pool, fn, *args)
        except concurrent.futures.process.BrokenProcessPool:
            log.warning("[job %d] image process pool is broken; using a thread for %s", self.ctx.job_id,
                        fn.__name__)
            return await asyncio.to_thread(fn, *args)

    def _optimize_failed(self, error: str) -> None:
        log.error("[job %d] %s", self.ctx.job_id, error)
        if not self._broken and not self._stopping:
            self._broken = True
            self.ctx.request_stop("worker broken",
                                  f"{error} - You may disable optimizations via OPTIMIZE_IMAGES=0.")

    # -- events ---------------------------------------------------------------------------------------
    def _publish_progress(self, read: ReadResult, lines: list[str]) -> None:
        ctx = self.ctx
        if lines:
            ctx.bus.publish(LogLines(instance=ctx.instance, job_id=ctx.job_id, lines=tuple(lines)))
        ctx.bus.publish(JobProgress(
            instance=ctx.instance, job_id=ctx.job_id, current_module=read.current_module,
            modules=self.reader.modules(), paused=str(read.paused) if read.paused else "",
            isotovideo_status=read.isotovideo_status))

    # -- the end of the job (§14.2 step 6) -----------------------------------------------------------
    async def final_uploads(self, reason: str) -> str | None:
        """Upload ulogs, assets (done/cancel only) and logs. Returns None or "api failure: <error>"."""
        if reason in oc.SKIP_UPLOADS:
            return None
        settings = UploadSettings.from_settings(self.ctx.settings)
        uploader = ArtefactUploader(self.ctx.client, self.ctx.job_id, settings, self.tracker)
        errors = [await self._upload_ulogs(uploader)]
        if reason in oc.UPLOAD_ASSETS:
            errors.append(await self._upload_assets(uploader))
        errors.append(await self._upload_logs(uploader))
        self.tracker.publish(force=True)
        error = next((e for e in errors if e), None)
        if error:
            self.tracker.error(error)
            return f"api failure: {error}"
        return None

    async def _upload_ulogs(self, uploader: ArtefactUploader) -> str | None:
        ulogs = await asyncio.to_thread(_regular_files, self.ctx.pool_dir / "ulogs")
        self.tracker.add(len(ulogs), 0)
        for path in ulogs:
            try:
                await uploader.upload(path, path.name, {"ulog": "1"})
            except UploadFailed as exc:
                return str(exc)
        return None

    async def _upload_assets(self, uploader: ArtefactUploader) -> str | None:
        for scope, folder in (("private", "assets_private"), ("public", "assets_public")):
            assets = await asyncio.to_thread(_regular_files, self.ctx.pool_dir / folder)
            self.tracker.add(len(assets), 0)
            for path in assets:
                try:
                    await uploader.upload_asset(path, scope)
                except (UploadFailed, OSError) as exc:
                    return str(exc)
        return None

    async def _upload_logs(self, uploader: ArtefactUploader) -> str | None:
        paths = await asyncio.to_thread(final_log_files, self.ctx.pool_dir)
        self.tracker.add(len(paths), 0)
        for path in paths:
            if path.name == "vars.json":
                try:
                    await asyncio.to_thread(redact_vars, path, self.ctx.settings.get("_HIDE_SECRETS_REGEX"))
                except Exception as exc:  # never upload secrets: skip the file instead
                    log.warning("[job %d] Not uploading vars.json, redaction failed: %s", self.ctx.job_id,
                                exc)
                    continue
            try:
                await uploader.upload(path, log_upload_name(path.name), {})
            except UploadFailed as exc:
                return str(exc)
        return None


def _regular_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        return []
