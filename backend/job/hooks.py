"""Admin commands from workers.ini that the worker runs around jobs (issue 12 rows 3 and 6).

``SYNC_ASSETS_HOOK`` runs in the pool before a job's assets are cached; a failure ends the job
``setup failure: ...``. ``PACKAGES_CMD`` runs once when a slot starts; its output becomes
``<pool>/worker_packages.txt``, which the pool cleanup keeps and every job uploads with its logs; a slot that
starts without it removes an earlier configuration's file rather than upload a stale list with every job.
Both run through ``/bin/sh -c`` in their own session (``run_captured``: forked off the loop), so a cancellation
(MAX_SETUP_TIME, a stop, a quit) kills the whole command tree instead of leaving it behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from backend.engine.child import run_captured
from backend.fsutil import write_atomic
from backend.job.setupbase import SETUP_FAILURE, SetupError

log = logging.getLogger(__name__)

PACKAGES_FILE = "worker_packages.txt"
PACKAGES_TIMEOUT = 600.0  # a package listing that hangs must not keep the slot from registering for ever
OUTPUT_LIMIT = 4 * 1024 * 1024  # bytes of a command's output kept (a runaway command must not eat memory)
KILL_GRACE = 2.0


@dataclass(frozen=True)
class ShellResult:
    returncode: int
    output: str  # stdout + stderr, interleaved


async def run_shell(command: str, cwd: Path) -> ShellResult:
    """``/bin/sh -c command`` in ``cwd``; cancelling ends its process group (TERM, then KILL)."""
    result = await run_captured(["/bin/sh", "-c", command], cwd=cwd, merge_stderr=True, output_limit=OUTPUT_LIMIT,
                                kill_grace=KILL_GRACE)
    return ShellResult(result.returncode, result.stdout.decode("utf-8", "replace"))


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


async def run_sync_assets_hook(command: str, pool_dir: Path, note: Callable[[str, int], None]) -> None:
    """Run SYNC_ASSETS_HOOK in the pool; ``SetupError`` (setup failure) when it fails or cannot start."""
    note(f"Running SYNC_ASSETS_HOOK: {command}", logging.INFO)
    try:
        result = await run_shell(command, pool_dir)
    except OSError as exc:
        raise SetupError(SETUP_FAILURE, f"SYNC_ASSETS_HOOK could not be started: {exc}") from exc
    for line in result.output.splitlines()[-50:]:
        note(f"SYNC_ASSETS_HOOK: {line}", logging.INFO)
    if result.returncode != 0:
        detail = _last_line(result.output)
        how = f"was killed by signal {-result.returncode}" if result.returncode < 0 else \
            f"exited with {result.returncode}"
        raise SetupError(SETUP_FAILURE, f"SYNC_ASSETS_HOOK {how}" + (f": {detail}" if detail else ""))


def sync_assets_step(command: str | None, pool_dir: Path, note: Callable[[str, int], None]
                     ) -> Callable[[], Awaitable[None]] | None:
    """The setup step that runs SYNC_ASSETS_HOOK (None when it is not configured)."""
    if not command:
        return None
    return lambda: run_sync_assets_hook(command, pool_dir, note)


async def write_worker_packages(command: str, pool_dir: Path, instance: int) -> bool:
    """Run PACKAGES_CMD and store its output as ``<pool>/worker_packages.txt``; False (logged) on failure."""
    await asyncio.to_thread(pool_dir.mkdir, parents=True, exist_ok=True)
    try:
        async with asyncio.timeout(PACKAGES_TIMEOUT):
            result = await run_shell(command, pool_dir)
    except (OSError, TimeoutError) as exc:
        log.warning("[slot %d] PACKAGES_CMD %r failed: %s", instance, command, exc or "timed out")
        return False
    await asyncio.to_thread(write_atomic, pool_dir / PACKAGES_FILE, result.output)
    if result.returncode != 0:
        log.warning("[slot %d] PACKAGES_CMD %r exited with %d: %s", instance, command, result.returncode,
                    _last_line(result.output))
        return False
    log.info("[slot %d] PACKAGES_CMD output written to %s", instance, pool_dir / PACKAGES_FILE)
    return True


async def forget_worker_packages(pool_dir: Path, instance: int) -> None:
    """PACKAGES_CMD is not set (any more): remove the list an earlier start left in the pool."""
    path = pool_dir / PACKAGES_FILE
    try:
        removed = await asyncio.to_thread(_unlink_if_present, path)
    except OSError as exc:
        log.warning("[slot %d] Unable to remove the stale %s: %s", instance, path, exc)
        return
    if removed:
        log.info("[slot %d] PACKAGES_CMD is not set: removed the stale %s", instance, path)


def _unlink_if_present(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
