"""Test distribution sync with rsync (PROTOCOL.md §18.4 ``cache_tests``).

NEW semantics: an argv list (no shell), ``--timeout`` so a hung server cannot stall setup, up to 3
tries, retried only for exit codes 10 (socket I/O), 23 (partial transfer), 24 (vanished files).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RETRY_EXIT_CODES = frozenset({10, 23, 24})


@dataclass(frozen=True, slots=True)
class RsyncResult:
    exit_code: int
    tries: int
    output: str  # stdout+stderr of every try, for the log


def rsync_argv(rsync: str, source: str, tests_dir: Path, timeout: int) -> list[str]:
    return [rsync, "-avHP", "--timeout", str(timeout), f"{source.rstrip('/')}/", "--delete", f"{tests_dir}/"]


async def run_rsync(argv: list[str], *, tries: int = 3, pause: float = 3.0) -> RsyncResult:
    outputs: list[str] = []
    code = -1
    for attempt in range(1, tries + 1):
        code, output = await _run_once(argv)
        outputs.append(f"[try {attempt}] {' '.join(argv)}\n{output}")
        if code == 0 or code not in RETRY_EXIT_CODES or attempt >= tries:
            return RsyncResult(code, attempt, "\n".join(outputs))
        log.warning("rsync exited with %d (try %d/%d), retrying in %.1f s", code, attempt, tries, pause)
        await asyncio.sleep(pause)
    return RsyncResult(code, tries, "\n".join(outputs))


async def _run_once(argv: list[str]) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return 127, f"cannot run {argv[0]}: {exc}"
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    code = proc.returncode if proc.returncode is not None else -1
    return (128 - code if code < 0 else code), out.decode(errors="replace")


def _kill_group(pid: int) -> None:
    """Our rsync runs in its own session: end it and anything it spawned (ssh)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
