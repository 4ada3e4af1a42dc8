"""Test distribution sync with rsync (PROTOCOL.md §18.4 ``cache_tests``).

NEW semantics: an argv list (no shell), ``--timeout`` so a hung server cannot stall setup, up to 3
tries, retried only for exit codes 10 (socket I/O), 23 (partial transfer), 24 (vanished files).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from backend.engine.child import run_captured

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
    """One rsync run in its own session; a cancel kills it and anything it spawned (ssh)."""
    try:
        result = await run_captured(argv, merge_stderr=True)
    except OSError as exc:
        return 127, f"cannot run {argv[0]}: {exc}"
    code = result.returncode
    return (128 - code if code < 0 else code), result.stdout.decode(errors="replace")
