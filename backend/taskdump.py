"""What every task of the loop waits for: logged when a quit takes long, so a hang says where it is.

A hang at quit means some awaited thing never finishes. ``format_tasks`` walks each pending task's
chain of awaited coroutines down to the innermost one, so the log names the exact line every task
waits on (``Task.get_stack`` only shows the outermost frame of a suspended coroutine).
"""

from __future__ import annotations

import asyncio
import logging
from types import CoroutineType, FrameType
from typing import Any

log = logging.getLogger(__name__)

QUIT_REPORT_AFTER = 15.0  # seconds after a quit; a quit normally takes well under a second without uploads


def _await_chain(coro: Any) -> list[str]:
    """``file:line in function`` of each coroutine/generator in the await chain, outermost first."""
    lines: list[str] = []
    seen = 0
    while coro is not None and seen < 50:
        seen += 1
        frame: FrameType | None = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) \
            or getattr(coro, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) \
            or getattr(coro, "ag_await", None)
        if nxt is None and not isinstance(coro, CoroutineType):
            break
        coro = nxt
    return lines


def format_tasks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """One block per pending task: its name, then where it waits (innermost last)."""
    tasks = asyncio.all_tasks(loop)
    blocks = []
    for task in sorted(tasks, key=lambda t: t.get_name()):
        chain = _await_chain(task.get_coro())
        waiter = getattr(task, "_fut_waiter", None)  # the future the task is parked on, if any
        suffix = f"\n    waiting for {waiter!r:.200}" if waiter is not None else ""
        blocks.append(f"  task {task.get_name()}:\n" + "\n".join(f"    {line}" for line in chain) + suffix)
    return f"{len(tasks)} task(s) pending:\n" + "\n".join(blocks)


def report_slow_quit() -> None:
    """call_later target of ``Worker.quit``: the quit is taking long, say what everything waits for."""
    log.warning("quit still not finished after %.0f s; %s", QUIT_REPORT_AFTER, format_tasks())
