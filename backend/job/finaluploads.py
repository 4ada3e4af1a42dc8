"""The final uploads of a job, in upstream's order (PROTOCOL.md §14.2 step 6): ulogs, assets (done and
cancel only), then the logs (videos first, vars.json redacted).

Within the ulogs and the logs, up to ``concurrency`` files are in flight at once: they are small and each
costs a round trip the web UI spends mostly waiting (bench/vs_perl.py: 7 logs one by one were most of
uploading -> done). A failed upload still stops the rest of its group, as upstream's loop does: no file
is started after it, the ones in flight finish. Assets stay one at a time (big, chunked, in order)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from backend.job import outcome as oc
from backend.job.upload import (
    ArtefactUploader,
    ProgressTracker,
    UploadFailed,
    UploadSettings,
    final_log_files,
    log_upload_name,
    redact_vars,
)
from backend.webui.client import ApiClient

log = logging.getLogger(__name__)


async def upload_final_files(client: ApiClient, job_id: int, pool_dir: Path, settings: Mapping[str, str],
                             tracker: ProgressTracker, reason: str,
                             upload_settings: UploadSettings | None = None, concurrency: int = 4) -> str | None:
    """Returns None, or "api failure: <error>" for the first upload that failed for good."""
    if reason in oc.SKIP_UPLOADS:
        return None
    uploader = ArtefactUploader(client, job_id, upload_settings or UploadSettings.from_settings(settings), tracker)
    errors = [await _upload_ulogs(uploader, pool_dir, tracker, concurrency)]
    if reason in oc.UPLOAD_ASSETS:
        errors.append(await _upload_assets(uploader, pool_dir, tracker))
    errors.append(await _upload_logs(uploader, pool_dir, settings, tracker, concurrency))
    tracker.publish(force=True)
    error = next((e for e in errors if e), None)
    if error:
        tracker.error(error)
        return f"api failure: {error}"
    return None


async def _upload_ulogs(uploader: ArtefactUploader, pool_dir: Path, tracker: ProgressTracker,
                        concurrency: int) -> str | None:
    ulogs = await asyncio.to_thread(_regular_files, pool_dir / "ulogs")
    tracker.add(len(ulogs), 0)

    async def upload(path: Path) -> None:
        await uploader.upload(path, path.name, {"ulog": "1"})

    return await upload_group(ulogs, upload, concurrency)


async def _upload_assets(uploader: ArtefactUploader, pool_dir: Path, tracker: ProgressTracker) -> str | None:
    for scope, folder in (("private", "assets_private"), ("public", "assets_public")):
        assets = await asyncio.to_thread(_regular_files, pool_dir / folder)
        tracker.add(len(assets), 0)
        for path in assets:
            try:
                await uploader.upload_asset(path, scope)
            except (UploadFailed, OSError) as exc:
                return str(exc)
    return None


async def _upload_logs(uploader: ArtefactUploader, pool_dir: Path, settings: Mapping[str, str],
                       tracker: ProgressTracker, concurrency: int) -> str | None:
    paths = await asyncio.to_thread(final_log_files, pool_dir)
    tracker.add(len(paths), 0)

    async def upload(path: Path) -> None:
        if path.name == "vars.json":
            try:
                await asyncio.to_thread(redact_vars, path, settings.get("_HIDE_SECRETS_REGEX"))
            except Exception as exc:  # never upload secrets: skip the file instead
                log.warning("[job %d] Not uploading vars.json, redaction failed: %s", uploader.job_id, exc)
                return
        await uploader.upload(path, log_upload_name(path.name), {})

    return await upload_group(paths, upload, concurrency)


async def upload_group(paths: Sequence[Path], upload: Callable[[Path], Awaitable[None]],
                       concurrency: int) -> str | None:
    """``upload`` every path in order, ``concurrency`` at a time; after the first ``UploadFailed`` no
    further path is started. Returns that failure's text, or None."""
    pending = iter(paths)
    failures: list[str] = []

    async def lane() -> None:
        for path in pending:  # the lanes share one iterator: each path is taken once, in order
            if failures:
                return
            try:
                await upload(path)
            except UploadFailed as exc:
                failures.append(str(exc))
                return

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, len(paths)))):
            group.create_task(lane())
    return failures[0] if failures else None


def _regular_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        return []
