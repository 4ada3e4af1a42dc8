"""Artefact uploads: result files, logs, chunked assets (PROTOCOL.md §14.2 step 6, §15).

Nothing here blocks the loop: file contents are read in threads (small files whole, big ones per
block), chunks are built and hashed in a thread, one chunk in memory at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import SlotTuning, bool_or
from backend.config.tuning import resolve
from backend.events import EventBus, UploadProgress
from backend.fsutil import write_atomic
from backend.job.imageopt import Optimizer, choose_optimizer
from backend.job.storable import encode_chunk
from backend.webui.client import ApiClient, ApiError

log = logging.getLogger(__name__)

WHOLE_READ_LIMIT = 64 * 1024 * 1024  # files up to this size are read into memory in a thread
DEFAULT_CHUNK_SIZE = 10_000_000
DEFAULT_UPLOAD_RETRIES = 10
DEFAULT_UPLOAD_DELAY = 5.0
MAX_CHUNK_DELAY = 30.0
SECRET_KEY_RE = re.compile(r"^_SECRET_|_PASSWORD")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


class UploadFailed(Exception):
    """An upload that failed for good; ``str()`` names the file."""


@dataclass(frozen=True)
class UploadSettings:
    chunk_size: int = DEFAULT_CHUNK_SIZE
    retries: int = DEFAULT_UPLOAD_RETRIES
    delay: float = DEFAULT_UPLOAD_DELAY
    local_upload: bool = True
    optimize: bool = True
    use_pngquant: bool = False
    optimize_attempts: int = 5  # OPENQA_WORKER_OPTIMIZE_ATTEMPTS
    optimize_retry_delay: float = 1.0  # OPENQA_WORKER_OPTIMIZE_RETRY_DELAY
    optimizer: Optimizer = Optimizer.OXIPNG  # what optimises screenshots (pngquant when USE_PNGQUANT)

    @classmethod
    def from_tuning(cls, tuning: SlotTuning, job_settings: Mapping[str, Any]) -> UploadSettings:
        """The slot's typed values (validated by the config at load) + the job's OPTIMIZE_IMAGES/USE_PNGQUANT."""
        use_pngquant = bool_or(job_settings.get("USE_PNGQUANT"), False)
        return cls(chunk_size=tuning.upload_chunk_size, retries=tuning.upload_retries, delay=tuning.upload_delay,
                   local_upload=tuning.local_upload, optimize=bool_or(job_settings.get("OPTIMIZE_IMAGES"), True),
                   use_pngquant=use_pngquant, optimize_attempts=tuning.optimize_attempts,
                   optimize_retry_delay=tuning.optimize_retry_delay,
                   optimizer=choose_optimizer(tuning.png_optimizer, use_pngquant))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], env: Mapping[str, str] | None = None) -> UploadSettings:
        """From a job's merged settings (vars.json), leniently; ``env`` is the environment the config read
        (never ``os.environ`` behind its back). Prefer ``from_tuning`` with the slot's ``tuning``."""
        tuning, _ = resolve(SlotTuning, {k: str(v) for k, v in settings.items()}, env=env or {}, strict=False,
                            quiet=True)
        return cls.from_tuning(tuning, settings)

    def chunk_delay(self, attempt: int) -> float:
        """5 s + (attempt-1) s + rand(0..1) s capped at 30 s; scaled down with a smaller base delay."""
        scale = self.delay / DEFAULT_UPLOAD_DELAY
        return min(MAX_CHUNK_DELAY, self.delay + scale * ((attempt - 1) + random.random()))


class ProgressTracker:
    """Counts what is being uploaded and publishes UploadProgress (at most ~10 per second)."""

    def __init__(self, bus: EventBus, instance: int, job_id: int, min_interval: float = 0.1) -> None:
        self.bus, self.instance, self.job_id = bus, instance, job_id
        self.min_interval = min_interval
        self.files_done = self.files_total = self.bytes_done = self.bytes_total = 0
        self.current_file = ""
        self.optipng_queue = 0
        self.last_error = ""
        self._last_publish = 0.0

    def add(self, files: int, size: int) -> None:
        self.files_total += files
        self.bytes_total += size
        self.publish()

    def done(self, size: int, name: str = "", count_file: bool = True) -> None:
        self.files_done += 1 if count_file else 0
        self.bytes_done += size
        self.current_file = name
        self.publish()

    def add_bytes(self, size: int) -> None:
        self.bytes_done += size
        self.publish()

    def error(self, text: str) -> None:
        self.last_error = text
        self.publish(force=True)

    def publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_publish < self.min_interval:
            return
        self._last_publish = now
        self.bus.publish(UploadProgress(
            instance=self.instance, job_id=self.job_id, files_done=self.files_done,
            files_total=self.files_total, bytes_done=self.bytes_done, bytes_total=self.bytes_total,
            current_file=self.current_file, optipng_queue=self.optipng_queue, last_error=self.last_error))


def _read_bytes(path: Path) -> bytes:
    return path.read_bytes()


class FilePart:
    """A ``files=`` factory for ApiClient: a fresh structure per attempt.

    Small files are read once in a thread; big ones (videos) are streamed by httpx in 64 KiB blocks
    from the page cache through a handle that is reopened per attempt and closed afterwards.
    """

    def __init__(self, path: Path, filename: str, content: bytes | None) -> None:
        self.path, self.filename, self.content = path, filename, content
        self._fh: Any = None

    @classmethod
    async def load(cls, path: Path, filename: str) -> FilePart:
        size = await asyncio.to_thread(os.path.getsize, path)
        content = await asyncio.to_thread(_read_bytes, path) if size <= WHOLE_READ_LIMIT else None
        return cls(path, filename, content)

    def __call__(self) -> dict[str, Any]:
        self.close()
        # A closable stream even for in-memory content: httpx holds requests in reference cycles,
        # closing drops the buffer without waiting for the garbage collector.
        self._fh = io.BytesIO(self.content) if self.content is not None else open(self.path, "rb")
        return {"file": (self.filename, self._fh)}

    @property
    def size(self) -> int:
        return len(self.content) if self.content is not None else os.path.getsize(self.path)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ArtefactUploader:
    """POST /api/v1/jobs/<id>/artefact for one job."""

    def __init__(self, client: ApiClient, job_id: int, settings: UploadSettings,
                 tracker: ProgressTracker) -> None:
        self.client = client
        self.job_id = job_id
        self.settings = settings
        self.tracker = tracker
        self.path = f"/api/v1/jobs/{job_id}/artefact"

    async def upload(self, path: Path, filename: str, fields: dict[str, str], count_file: bool = True) -> int:
        """Upload one file with the form ``fields``; returns its size. Raises UploadFailed."""
        try:
            part = await FilePart.load(path, filename)
        except OSError as exc:
            raise UploadFailed(f"{filename}: {exc.strerror or exc}") from exc
        self.tracker.current_file = filename
        self.tracker.add(0, part.size)
        try:
            await self.client.request("POST", self.path, data=fields, files=part)
        except ApiError as exc:
            raise UploadFailed(f"{exc} ({filename})") from exc
        finally:
            part.close()
        size = part.size
        self.tracker.done(size, filename, count_file)
        return size

    # -- assets ---------------------------------------------------------------------------------
    async def upload_asset(self, path: Path, scope: str) -> None:
        name = path.name
        if self.settings.local_upload and _host_of(self.client.base_url) in LOCAL_HOSTS:
            await self._upload_local(path, scope)
            return
        await self._upload_chunked(path, name, scope)

    async def _upload_local(self, path: Path, scope: str) -> None:
        absolute = await asyncio.to_thread(path.resolve)
        await asyncio.to_thread(os.chmod, absolute, 0o644)
        try:
            await self.client.request("POST", self.path, data={"asset": scope, "local": str(absolute)},
                                      files={"file": (path.name, b"")}, attempts=1)
        except ApiError as exc:  # as upstream: only logged, the upload counts as done
            log.warning("Local upload of asset %s failed: %s", path.name, exc)
        self.tracker.done(0, path.name)

    async def _upload_chunked(self, path: Path, name: str, scope: str) -> None:
        size = await asyncio.to_thread(os.path.getsize, path)
        chunk_size = self.settings.chunk_size
        total = math.ceil(size / chunk_size)
        self.tracker.add(0, size)
        if total == 0:
            log.info("Asset %s is empty: nothing to upload", name)
            return
        total_cksum = await asyncio.to_thread(_sha256_b64, path)
        log.info("Uploading %s using multiple chunks: %d chunks of %d bytes each", name, total, chunk_size)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        # One dedicated thread builds every chunk: its malloc arena is reused instead of growing
        # one arena per default-executor thread (measured: RSS +250 MiB -> bounded). It is started
        # and ended off the loop: Thread.start() waits until the thread runs, shutdown(wait) joins it.
        builder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chunk")
        try:
            await asyncio.to_thread(lambda: builder.submit(int).result())
            for index in range(1, total + 1):
                start = (index - 1) * chunk_size
                end = min(start + chunk_size, size)
                body = await loop.run_in_executor(builder, _build_chunk, path, name, start, end, index, total,
                                                  total_cksum)
                await self._send_chunk(body, name, scope, index, total)
                del body
                self.tracker.add_bytes(end - start)
                if index % 10 == 0:
                    speed = end / 1024 / max(time.monotonic() - started, 1e-6)
                    log.info("Processing chunk %d/%d, avg. speed ~%.3f KiB/s", index, total, speed)
        finally:
            builder.shutdown(wait=False)  # its last chunk is done (or cancelled): the thread just exits
        self.tracker.done(0, name)

    async def _send_chunk(self, body: bytes, name: str, scope: str, index: int, total: int) -> None:
        attempts = self.settings.retries
        error = ""
        for attempt in range(1, attempts + 1):
            # httpx keeps the request (and so the body) in reference cycles until the garbage
            # collector runs; a closed BytesIO drops its 20 MB buffer right away (measured).
            stream = io.BytesIO(body)
            try:
                response = await self.client.request(
                    "POST", self.path, data={"asset": scope}, files={"file": (name, stream)}, attempts=1,
                    expect_success=False)
                error = _chunk_error(response)
            except ApiError as exc:
                error = str(exc)
            finally:
                stream.close()
            if not error:
                return
            log.warning("Upload of chunk %d/%d of %s failed (attempt %d/%d): %s", index, total, name, attempt,
                        attempts, error)
            if attempt < attempts:
                await asyncio.sleep(self.settings.chunk_delay(attempt))
        await self._notify_failure(name, scope)
        raise UploadFailed(f"Failed uploading asset {name}: chunk {index}/{total}: {error}")

    async def _notify_failure(self, name: str, scope: str) -> None:
        try:
            await self.client.request("POST", f"/api/v1/jobs/{self.job_id}/upload_state",
                                      data={"filename": name, "scope": scope, "state": "fail"}, attempts=3)
        except ApiError as exc:
            log.warning("Unable to report the failed upload of %s: %s", name, exc)


def _chunk_error(response: Any) -> str:
    """'' when the chunk was accepted (JSON status ok), else a short error text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and body.get("status") == "ok":
        return ""
    detail = body.get("error") if isinstance(body, dict) else response.text[:200]
    return f"{response.status_code} response: {detail or response.reason_phrase}"


def _host_of(base_url: str) -> str:
    host = base_url.split("://", 1)[-1].split("/", 1)[0]
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.rsplit(":", 1)[0]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode().rstrip("=")


def _sha256_b64(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return _b64(digest.digest())


def _build_chunk(path: Path, name: str, start: int, end: int, index: int, total: int,
                 total_cksum: str) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    return encode_chunk({"file": name, "start": str(start), "end": str(end), "index": str(index),
                         "total": str(total), "cksum": _b64(hashlib.sha1(data).digest()),
                         "total_cksum": total_cksum, "content": binascii.hexlify(data)})


# -- final uploads: what and under which name (§14.2 step 6c) -----------------------------------
FIXED_LOGS = ("autoinst-log.txt", "worker-log.txt", "worker_packages.txt", "sut_packages.txt", "vars.json",
              "serial0", "video_time.vtt", "serial_terminal.txt", "virtio_console.log", "virtio_console1.log",
              "virtio_console_user.log")


def log_upload_name(name: str) -> str:
    """serial0 -> serial0.txt, virtio_console<X>.log -> serial_terminal<X>.txt, other .log -> .txt."""
    if name == "serial0":
        return "serial0.txt"
    match = re.fullmatch(r"virtio_console(.*)\.log", name)
    if match:
        return f"serial_terminal{match.group(1)}.txt"
    if name.endswith(".log"):
        return name[:-4] + ".txt"
    return name


def final_log_files(pool_dir: Path) -> list[Path]:
    """The existing log files to upload at the end, in upstream order (videos first)."""
    videos = sorted(p for p in pool_dir.glob("video.*") if p.is_file())
    return videos + [pool_dir / n for n in FIXED_LOGS if (pool_dir / n).is_file()]


def redact_vars(path: Path, hide_regex: str | None = None) -> None:
    """Replace secret values in vars.json in place (raises on any error: then it is not uploaded)."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("vars.json is not an object")
    extra = re.compile(hide_regex) if hide_regex else None
    for key in data:
        if SECRET_KEY_RE.search(key) or (extra is not None and extra.search(key)):
            data[key] = "[redacted]"
    write_atomic(path, json.dumps(data, indent=4, sort_keys=True))  # not via vars.json.tmp: could be a planted link
