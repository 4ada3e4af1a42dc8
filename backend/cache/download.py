"""Streaming asset download with retries (PROTOCOL.md §18.4 ``get_asset``).

One attempt streams GET /tests/<job>/asset/<type>/<name> (redirects followed, conditional with
If-None-Match) into a flock'ed temporary file; writes run in a thread and overlap the next read.
Connection errors, 5xx and size mismatches are retried, 4xx are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from backend.webui.client import ApiClient

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
PROGRESS_INTERVAL = 0.2  # seconds between CacheProgress events of one download


@dataclass(frozen=True, slots=True)
class Fetched:
    modified: bool  # False: 304, the cached file is current
    tmp: Path | None = None  # the complete new body (modified only)
    etag: str | None = None
    size: int = 0


class DownloadFailed(Exception):
    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status

    @property
    def is_client_error(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


class _Retry(Exception):
    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


class Throttle:
    """Calls ``emit(done, total, rate)`` at most every ``interval`` seconds (and on ``flush``)."""

    def __init__(self, emit: Callable[[int, int, float], None], interval: float = PROGRESS_INTERVAL) -> None:
        self._emit = emit
        self._interval = interval
        self._start = time.monotonic()
        self._last = 0.0
        self.done = 0
        self.total = 0

    def restart(self, total: int) -> None:
        self._start = time.monotonic()
        self.done, self.total = 0, total

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._emit(done, self.total, self.rate)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0


def asset_path(job_id: int, asset_type: str, name: str) -> str:
    return f"/tests/{job_id}/asset/{asset_type}/{os.path.basename(name)}"


async def download(client: ApiClient, path: str, dest: Path, tmp_dir: Path, *, etag: str | None,
                   attempts: int, retry_delay: float, before_attempt: Callable[[], Awaitable[None]],
                   make_room: Callable[[int], Awaitable[None]], throttle: Throttle) -> Fetched:
    """Try up to ``attempts`` times; on success the new body has atomically replaced ``dest``.

    Raises DownloadFailed with the last error.
    """
    for attempt in range(1, attempts + 1):
        await before_attempt()
        try:
            return await _attempt(client, path, dest, tmp_dir, etag=etag, make_room=make_room,
                                  throttle=throttle)
        except _Retry as exc:
            if attempt >= attempts:
                raise DownloadFailed(str(exc), exc.status) from exc
            log.warning("download of %s failed: %s (attempt %d/%d, retrying in %.1f s)", path, exc, attempt,
                        attempts, retry_delay)
            await asyncio.sleep(retry_delay)
    raise AssertionError("unreachable")


async def _attempt(client: ApiClient, path: str, dest: Path, tmp_dir: Path, *, etag: str | None,
                   make_room: Callable[[int], Awaitable[None]], throttle: Throttle) -> Fetched:
    headers = {"Accept-Encoding": "identity"}  # Content-Length must be the file size
    if etag:
        headers["If-None-Match"] = etag
    try:
        async with client.stream("GET", path, headers=headers, follow_redirects=True) as response:
            status = response.status_code
            if status == 304:
                return Fetched(modified=False)
            if 400 <= status < 500:
                raise DownloadFailed(f"{status} response: {response.reason_phrase}", status)
            if status >= 300:
                raise _Retry(f"{status} response: {response.reason_phrase}", status)
            length = _content_length(response)
            await make_room(length or 0)
            throttle.restart(length or 0)
            size = await _stream_into_place(response, dest, tmp_dir, length, throttle)
    except httpx.RequestError as exc:
        raise _Retry(f"Connection error: {type(exc).__name__}: {exc}") from exc
    return Fetched(modified=True, etag=response.headers.get("etag"), size=size)


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _open_tmp(tmp_dir: Path, dest: Path) -> tuple[Path, BinaryIO]:
    tmp = tmp_dir / f"{dest.parent.name}.{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    handle = open(tmp, "wb")  # closed by _finish_tmp
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # marks it "in progress" for start-up clean-ups elsewhere
    return tmp, handle


async def _stream_into_place(response: httpx.Response, dest: Path, tmp_dir: Path, length: int | None,
                             throttle: Throttle) -> int:
    tmp, handle = await asyncio.to_thread(_open_tmp, tmp_dir, dest)
    size = 0
    pending: asyncio.Future[int] | None = None
    ok = False
    try:
        async for chunk in response.aiter_raw(CHUNK):
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(asyncio.to_thread(handle.write, chunk))
            size += len(chunk)
            throttle.update(size)
        if pending is not None:
            await pending
            pending = None
        if length is not None and size != length:
            raise _Retry(f"Size of {dest} differs, expected {length} but downloaded {size}")
        ok = True
    finally:
        if pending is not None:  # never close the file under a running write
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)
        # Rename while the tmp file is still locked, so no clean-up elsewhere takes it for stray.
        await asyncio.to_thread(_finish_tmp, handle, tmp, dest if ok else None)
    throttle.update(size)
    return size


def _finish_tmp(handle: BinaryIO, tmp: Path, dest: Path | None) -> None:
    try:
        if dest is None:
            tmp.unlink(missing_ok=True)
        else:
            handle.flush()
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)  # atomic; jobs holding hardlinks to the old file keep its inode
    finally:
        handle.close()
