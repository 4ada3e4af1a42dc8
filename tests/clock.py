"""An event loop whose clock skips the time it would spend idle (``@pytest.mark.virtual_clock``).

Tests of timers (watchdog pings, status cadences, rate limits) then assert exact intervals without
waiting for them: ``await asyncio.sleep(30)`` returns at once with ``loop.time()`` 30 s later.
The clock only jumps when nothing can happen any more: no callback is ready, no socket or pipe of the
loop has data within a short real wait, and no executor job (``asyncio.to_thread``,
``run_in_executor``) is running. Real I/O in the same loop (a server and its client) and threads
therefore work as usual; only a peer outside the process that answers slower than ``settle`` would
see time run fast.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from typing import Any


class _SkippingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._clock_loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        loop = self._clock_loop
        if timeout is None or timeout <= 0 or loop._executor_jobs:
            # nothing to jump to, or a thread will wake us: its work takes real time
            return super().select(timeout)
        events = super().select(min(timeout, loop.settle))
        if not events and timeout > loop.settle:
            loop.skipped += timeout - loop.settle  # idle until the next timer: jump there
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    settle = 0.002  # real seconds of waiting for I/O before the clock may jump

    def __init__(self) -> None:
        self.skipped = 0.0
        self._executor_jobs = 0
        super().__init__(_SkippingSelector(self))

    def time(self) -> float:
        return time.monotonic() + self.skipped

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1

        def done(_future: asyncio.Future[Any]) -> None:
            self._executor_jobs -= 1

        future.add_done_callback(done)
        return future
