"""Per-job log files in the pool: ``worker-log.txt`` and worker notes in ``autoinst-log.txt``.

Appends go through one single-thread executor per job so the loop never waits on the disk and the
lines stay in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("backend.job")


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class JobLog:
    def __init__(self, pool_dir: Path, instance: int, job_id: int) -> None:
        self.pool_dir = pool_dir
        self.prefix = f"[slot {instance}] [job {job_id}]"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"joblog-{job_id}")
        self._pending: set[asyncio.Future] = set()

    def _append(self, name: str, text: str) -> None:
        try:
            fd = os.open(self.pool_dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, text.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("%s cannot write %s: %s", self.prefix, name, exc)

    def _submit(self, name: str, text: str) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._append, name, text)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    def note(self, message: str, level: int = logging.INFO) -> None:
        """Log to the worker log and to the job's worker-log.txt."""
        log.log(level, "%s %s", self.prefix, message)
        self._submit("worker-log.txt", f"[{_stamp()}] [{logging.getLevelName(level).lower()}] {message}\n")

    def autoinst(self, text: str) -> None:
        """Append worker notes to autoinst-log.txt (isotovideo writes there too, O_APPEND)."""
        self._submit("autoinst-log.txt", text if text.endswith("\n") else text + "\n")

    async def flush(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        self._executor.shutdown(wait=False)
