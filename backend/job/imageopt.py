"""Screenshot hashing and optimisation, run in a process pool (PROTOCOL.md §13.3, §13.5).

The functions here are blocking on purpose: they run in worker processes of the pool made by
``make_image_pool`` (shared by all slots), never on the event loop.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

OPTIMIZE_ATTEMPTS = 5  # NEW retries optimisation up to 5 times with a 1 s pause
OPTIMIZE_TIMEOUT = 300.0


class OptimizeError(RuntimeError):
    """optipng/pngquant failed for good; the text ends up in the 'worker broken' reason."""


def make_image_pool(workers: int | None = None) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool sized to the cores. forkserver: never fork a process that runs threads."""
    count = workers or max(1, os.cpu_count() or 1)
    context = multiprocessing.get_context("forkserver")
    return concurrent.futures.ProcessPoolExecutor(max_workers=count, mp_context=context,
                                                  initializer=_ignore_terminal_signals)


def _ignore_terminal_signals() -> None:
    """Pool workers share the worker's process group: a Ctrl+C or a hangup of the terminal is for the
    worker to handle (quit/drain), not a reason for the pool to die under a running upload."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def md5_file(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def optimizer_command(path: str, use_pngquant: bool) -> list[str]:
    if use_pngquant:
        return ["pngquant", "--force", "--output", path, path]
    return ["optipng", "-quiet", "-o2", path]


def optimize_image(path: str, use_pngquant: bool = False, attempts: int = OPTIMIZE_ATTEMPTS,
                   pause: float = 1.0) -> int:
    """Optimise ``path`` in place; returns the new size. Raises OptimizeError after ``attempts``."""
    cmd = optimizer_command(path, use_pngquant)
    if shutil.which(cmd[0]) is None:
        raise OptimizeError(f"Unable to optimize image: {cmd[0]} not found")
    error = ""
    for attempt in range(1, max(1, attempts) + 1):
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=OPTIMIZE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        else:
            # pngquant exits 98/99 when it cannot make the file smaller: the file is left as is.
            if proc.returncode == 0 or (use_pngquant and proc.returncode in (98, 99)):
                return os.path.getsize(path)
            output = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            error = output or f"exit code {proc.returncode}"
        if attempt < attempts:
            time.sleep(pause)
    raise OptimizeError(f"Unable to optimize image: {Path(path).name}: {error}")
