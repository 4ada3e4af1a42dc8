"""Status posts and result upload rounds during a job (PROTOCOL.md §13, §14.2, §17).

One ``JobReporter`` per job. A single periodic task runs rounds strictly one after another:
read the pool directory (in a thread), post the status with the screenshots' md5s, then upload
images and text files with bounded concurrency.

Screenshots are hashed and optimised as soon as isotovideo has written them (``ScreenshotWatcher``,
inotify), in the worker's ``ImagePool``: once per file, the md5 always of the unoptimised bytes.
A round only waits for what is not done yet, so the final upload holds just the last module's
images, mostly optimised already. Uploads still follow the status post that references them, so
``known_images`` keeps saving the uploads of images the web UI already has (§13.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import SlotTuning
from backend.events import DeveloperSession, EventBus, JobProgress, LiveViewers, LogLines, ModuleStatus
from backend.job.finaluploads import upload_final_files
from backend.job.imageopt import ImagePool
from backend.job.imageopt import make_image_pool as make_image_pool
from backend.job.results import ReadResult, ResultsReader, attach_md5
from backend.job.shots import ScreenshotPrep
from backend.job.shotwatch import ScreenshotWatcher
from backend.job.upload import ArtefactUploader, ProgressTracker, UploadFailed, UploadSettings
from backend.livehandler import LiveLog, LogTail, ProgressInfo, UploadProgressPoster
from backend.tasks import cancel_and_wait
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
    image_pool: ImagePool
    request_stop: Callable[[str, str], None]
    upload_concurrency: int = 4
    tuning: SlotTuning | None = None  # the slot's typed settings (env-only ones included)

    def upload_settings(self) -> UploadSettings:
        if self.tuning is not None:
            return UploadSettings.from_tuning(self.tuning, self.settings)
        return UploadSettings.from_settings(self.settings)


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
        self.upload_error: str | None = None
        self.reader = ResultsReader(ctx.pool_dir)
        self._live = LiveLog(ctx.pool_dir)
        self._tail = LogTail(ctx.pool_dir / "autoinst-log.txt")
        self.tracker = ProgressTracker(ctx.bus, ctx.instance, ctx.job_id)
        self._progress = UploadProgressPoster(ctx.client, ctx.livehandler_base, ctx.job_id)
        self._images: dict[str, str] = {}  # md5 -> screenshot name, still to send
        self._files: set[str] = set()  # text/audio files still to send
        self._known_images: set[str] = set()  # md5s the web UI has (or we sent)
        self._sent_files: set[str] = set()
        self._failed: dict[str, str] = {}  # file name -> last upload error
        self._viewers = 0
        self._started = False
        self._stopping = False
        self._broken = False
        self.on_change: Callable[[], None] = lambda: None  # what the web UI has changed (the job record)
        self._wake = asyncio.Event()
        self._halted = asyncio.Event()  # set once when stopping: no further periodic round
        self._lock = asyncio.Lock()
        self.shots = ScreenshotPrep(ctx.job_id, self.reader, ctx.image_pool, self.tracker,
                                    self.ctx.upload_settings, self._optimize_failed)
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.shot_watcher = ScreenshotWatcher(ctx.pool_dir, self._screenshot_written)

    # -- control ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self._viewers > 0:
            self._touch_live_log(True)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._periodic(), name=f"reporter-{self.ctx.job_id}")
        self._watch_task = loop.create_task(self.shot_watcher.run(), name=f"shots-{self.ctx.job_id}")

    def trigger(self) -> None:
        if self._started and not self._halted.is_set():
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
        ctx = self.ctx
        ctx.bus.publish(DeveloperSession(instance=ctx.instance, job_id=ctx.job_id, active=True))
        if self._progress.activate():  # a round now, not at the next interval (Perl waits up to 10 s): the
            self.trigger()  # browser gets the upload progress while the live view handler still has it connected

    @property
    def live_viewers(self) -> int:
        return self._viewers

    @property
    def current_interval(self) -> float:
        return self.live_interval if self._viewers > 0 else self.interval

    def hold_rounds(self) -> None:
        """The job is stopping: start no further periodic round (one under way goes on)."""
        self._halted.set()
        self._wake.set()

    async def stop_periodic(self) -> None:
        self.hold_rounds()
        await self._stop_watching()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def aclose(self) -> None:
        """End everything this reporter started (call once the job is over; idempotent)."""
        await self.stop_periodic()
        await self.shots.aclose()

    async def _stop_watching(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None:
            await cancel_and_wait(task)

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

    def upload_state(self) -> tuple[str, list[str], list[str]]:
        """(module the web UI was told about, md5s it has, files it has): kept in the job record."""
        return self.reader.current_module, sorted(self._known_images), sorted(self._sent_files)

    def restore_upload_state(self, module: str, images: list[str], files: list[str]) -> None:
        self.reader.current_module = module
        self._known_images.update(images)
        self._sent_files.update(files)

    # -- the periodic loop ----------------------------------------------------------------------------
    async def _periodic(self) -> None:
        while not self._halted.is_set():
            self._wake.clear()
            started = time.monotonic()
            async with self._lock:
                try:
                    await self._round(final=False)
                except Exception:  # a bad round must not end the loop
                    log.exception("[job %d] status/upload round failed", self.ctx.job_id)
            if self._halted.is_set():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.current_interval):
                    await self._wake.wait()
            spacing = MIN_ROUND_SPACING - (time.monotonic() - started)
            if spacing > 0 and not self._halted.is_set():
                with contextlib.suppress(TimeoutError):  # a stop must not wait out the spacing
                    async with asyncio.timeout(spacing):
                        await self._halted.wait()

    @property
    def _status_path(self) -> str:
        return f"/api/v1/jobs/{self.ctx.job_id}/status"

    def _touch_live_log(self, present: bool) -> None:
        marker = self.ctx.pool_dir / "live_log"
        try:
            marker.touch() if present else marker.unlink(missing_ok=True)
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
        md5s = await self.shots.md5s(read.screenshots)
        attach_md5(read.results, md5s)
        reply = await self._post_status(self._status_body(read, snap.live), stopping)
        if reply is None or not reply.get("result"):
            return  # nothing stored: keep the working list and the queues as they are
        self.reader.commit(read)
        self._queue(read, md5s, reply)
        self.on_change()
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

    # -- screenshots ----------------------------------------------------------------------------------
    @property
    def optimize_pause(self) -> float | None:
        """Seconds between optimisation attempts (None: OPENQA_WORKER_OPTIMIZE_RETRY_DELAY); tests shorten it."""
        return self.shots.retry_pause

    @optimize_pause.setter
    def optimize_pause(self, value: float | None) -> None:
        self.shots.retry_pause = value

    def _screenshot_written(self, name: str) -> None:
        if not self._halted.is_set():
            self.shots.start(name)

    # -- image and file uploads ---------------------------------------------------------------------
    async def _upload_round(self, read: ReadResult) -> None:
        images, files = dict(self._images), sorted(self._files)
        await self._post_progress(read, len(files), len(images))
        if images or files:
            settings = self.ctx.upload_settings()
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
        await self._post_progress(read, len(self._files), len(self._images))

    async def _post_progress(self, read: ReadResult, files: int, images: int) -> None:
        if not self._stopping:
            await self._progress.post(ProgressInfo(read.upload_up_to, read.upload_up_to_current_module, files, images))

    async def _send_image(self, uploader: ArtefactUploader, settings: UploadSettings, gate: asyncio.Semaphore,
                          md5: str, name: str) -> None:
        path = self.reader.screenshot_path(name)
        thumb = self.reader.thumbnail_path(name)
        has_thumb = await self.shots.ready(name, settings)  # hashed and optimised, mostly long ago
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
        self.on_change()

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
        self.on_change()

    def _upload_failed(self, name: str, error: str) -> None:
        log.warning("[job %d] Upload of %s failed (kept for the next round): %s", self.ctx.job_id, name,
                    error)
        self._failed.pop(name, None)
        self._failed[name] = error
        self.tracker.error(error)

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
        return await upload_final_files(self.ctx.client, self.ctx.job_id, self.ctx.pool_dir, self.ctx.settings,
                                        self.tracker, reason, self.ctx.upload_settings(),
                                        self.ctx.upload_concurrency)
