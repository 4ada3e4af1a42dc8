"""Live view support: live log fields, the autoinst-log tail, developer-mode upload progress.

PROTOCOL.md §13.2 (live fields), §17.1 (live log/screen), §17.2 (upload progress to the live view
handler). The file readers are blocking (bounded reads) and are called from a thread.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backend.webui.client import ApiClient, ApiError

log = logging.getLogger(__name__)

LIVE_CHUNK = 100_000  # bytes per live log field and post
LIVE_FILES = {  # status field -> file in the pool directory
    "log": "autoinst-log.txt",
    "serial_log": "serial0",
    "serial_terminal": "virtio_console.log",
    "serial_terminal_user": "virtio_console_user.log",
}
TAIL_CHUNK = 256 * 1024  # bound of one LogLines read
PROGRESS_ATTEMPTS = 3  # non-critical: do not hold up the upload round for minutes


def _trim_utf8(data: bytes) -> bytes:
    """Cut an incomplete UTF-8 sequence off the end so a chunk never splits a character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # lead byte: complete only if the sequence fits
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


def read_from(path: Path, offset: int, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of ``path`` from ``offset``; None if it cannot be opened."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(limit)
    except OSError:
        return None


class LiveLog:
    """Per-file offsets for the four live log fields and the last live screen sent."""

    def __init__(self, pool_dir: Path) -> None:
        self.pool_dir = pool_dir
        self.offsets: dict[str, int] = dict.fromkeys(LIVE_FILES, 0)
        self._last_screen: tuple[str, int] | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field_name, file_name in LIVE_FILES.items():
            offset = self.offsets[field_name]
            data = read_from(self.pool_dir / file_name, offset, LIVE_CHUNK)
            if data is None:
                out[field_name] = {}
                continue
            if len(data) == LIVE_CHUNK:
                data = _trim_utf8(data)
            out[field_name] = {"offset": offset, "data": data.decode("utf-8", errors="replace")}
            self.offsets[field_name] = offset + len(data)
        screen = self.screen()
        if screen is not None:
            out["screen"] = screen
        return out

    def screen(self) -> dict[str, str] | None:
        """``qemuscreenshot/last.png`` when it points to a new file since the last call."""
        link = self.pool_dir / "qemuscreenshot" / "last.png"
        try:
            target = os.readlink(link) if link.is_symlink() else str(link)
            key = (target, link.stat().st_mtime_ns)
            if key == self._last_screen:
                return None
            png = link.read_bytes()
        except OSError:
            return None
        self._last_screen = key
        return {"name": Path(target).name, "png": base64.b64encode(png).decode()}


class LogTail:
    """Incremental, bounded reader of autoinst-log.txt that yields complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def read_lines(self, limit: int = TAIL_CHUNK) -> list[str]:
        data = read_from(self.path, self.offset, limit)
        if not data:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > limit:  # a giant unterminated line: emit it rather than grow forever
            lines.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]


@dataclass(frozen=True)
class ProgressInfo:
    upload_up_to: str | None
    upload_up_to_current_module: bool
    outstanding_files: int
    outstanding_images: int

    def payload(self) -> dict[str, Any]:
        return {"upload_up_to": self.upload_up_to,
                "upload_up_to_current_module": 1 if self.upload_up_to_current_module else "",
                "outstanding_files": self.outstanding_files,
                "outstanding_images": self.outstanding_images}


class UploadProgressPoster:
    """Posts upload progress to the live view handler while a developer session is open (§17.2)."""

    def __init__(self, client: ApiClient, base_url: str, job_id: int) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.path = f"/liveviewhandler/api/v1/jobs/{job_id}/upload_progress"
        self.active = False  # a developer session has been started for the job
        self._last: ProgressInfo | None = None

    def activate(self) -> bool:
        """The web UI says a developer session runs; True the first time (the handler repeats it per browser)."""
        first, self.active = not self.active, True
        return first

    async def post(self, info: ProgressInfo) -> bool:
        """Post only during a developer session and when the values changed; failures are logged, never raised."""
        if not self.active or info == self._last:
            return False
        try:
            response = await self.client.request("POST", self.path, json=info.payload(), base_url=self.base_url,
                                                 attempts=min(PROGRESS_ATTEMPTS, self.client.retry.attempts))
        except ApiError as exc:
            log.warning("Failed to post upload progress to liveviewhandler. (%s)", exc)
            return False
        self._last = info
        log.debug("upload progress %s posted to the live view handler, which passed it to %s browser(s)",
                  info.payload(), _broadcast_count(response))
        return True


def _broadcast_count(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return "?"
    return body.get("broadcast_count", "?") if isinstance(body, dict) else "?"
