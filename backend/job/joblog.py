"""Per-job log files in the pool: ``worker-log.txt`` and worker notes in ``autoinst-log.txt``.

Appends are queued and written by one call at a time in the loop's default pool, so the loop never
waits on the disk and the lines stay in order. No thread of its own: a per-job executor started a
thread on the loop for every job (``Thread.start()`` waits until the new thread runs: tens of ms on a
busy machine), and lines that arrive while a write runs go out together in the next one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from pathlib import Path

log = logging.getLogger("backend.job")


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class JobLog:
    def __init__(self, pool_dir: Path, instance: int, job_id: int) -> None:
        self.pool_dir = pool_dir
        self.prefix = f"[slot {instance}] [job {job_id}]"
        self._queued: deque[tuple[str, str]] = deque()  # appended on the loop, taken by the writing thread
        self._writing: asyncio.Future[None] | None = None  # at most one write in flight: order is kept

    def _write_queued(self) -> None:
        """In a pool thread: everything queued so far, one append per file."""
        texts: dict[str, list[str]] = {}
        while self._queued:
            name, text = self._queued.popleft()
            texts.setdefault(name, []).append(text)
        for name, parts in texts.items():
            try:
                fd = os.open(self.pool_dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, "".join(parts).encode("utf-8", "replace"))
                finally:
                    os.close(fd)
            except OSError as exc:
                log.warning("%s cannot write %s: %s", self.prefix, name, exc)

    def _submit(self, name: str, text: str) -> None:
        self._queued.append((name, text))
        if self._writing is None:
            self._start_write()

    def _start_write(self) -> None:
        self._writing = asyncio.get_running_loop().run_in_executor(None, self._write_queued)
        self._writing.add_done_callback(self._written)

    def _written(self, _: asyncio.Future[None]) -> None:
        self._writing = None
        if self._queued:  # queued after the thread had emptied the queue
            self._start_write()

    def note(self, message: str, level: int = logging.INFO) -> None:
        """Log to the worker log and to the job's worker-log.txt."""
        log.log(level, "%s %s", self.prefix, message)
        self._submit("worker-log.txt", f"[{_stamp()}] [{logging.getLevelName(level).lower()}] {message}\n")

    def autoinst(self, text: str) -> None:
        """Append worker notes to autoinst-log.txt (isotovideo writes there too, O_APPEND)."""
        self._submit("autoinst-log.txt", text if text.endswith("\n") else text + "\n")

    async def flush(self) -> None:
        """Until every line queued so far is written (a cancelled flush leaves the write running)."""
        while self._writing is not None:
            await asyncio.wait({self._writing})

    async def close(self) -> None:
        await self.flush()
