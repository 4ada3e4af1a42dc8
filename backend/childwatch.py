"""Child processes watched through pidfds instead of one waiter thread each (Python 3.11).

Python 3.11's default ``ThreadedChildWatcher`` starts a thread for every subprocess, and
``Thread.start()`` waits on the loop until the new thread runs: tens of ms on a loaded machine, once per
job (bench/scale.py: the slowest callbacks of the loop were isotovideo's spawn). ``PidfdChildWatcher``
(Linux >= 5.3) waits on a pidfd in the loop's selector instead; Python 3.12 uses it by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator


def _applicable(loop: asyncio.AbstractEventLoop) -> bool:
    """Only 3.11's selector loop on a kernel with pidfds (uvloop and 3.12+ watch children themselves)."""
    if sys.version_info >= (3, 12) or not isinstance(loop, asyncio.SelectorEventLoop):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


@contextlib.contextmanager
def pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Watch ``loop``'s subprocesses through pidfds while the block runs; afterwards the default again."""
    if not _applicable(loop):
        yield
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)  # closes a previous (threaded) watcher: its threads are daemons
    try:
        yield
    finally:
        asyncio.set_child_watcher(None)  # the next loop gets a fresh default watcher
