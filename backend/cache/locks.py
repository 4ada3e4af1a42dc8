"""Cross-process file locks (flock) that never block the event loop.

flock locks belong to an open file description, so two AssetCache objects in one process exclude each
other exactly like two processes do. Blocking waits run in a daemon thread: a waiter that is cancelled
never leaks the lock (the thread drops it as soon as it gets it) and never holds up interpreter exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def try_lock(path: Path, *, shared: bool = False) -> int | None:
    """Take the lock without waiting; the fd to release, or None when someone else holds it."""
    fd = _open(path)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the last fd of the description drops the flock


def is_locked(path: Path) -> bool:
    """True when someone holds ``path`` (blocking-free probe)."""
    fd = try_lock(path)
    release(fd)
    return fd is None


async def acquire(path: Path) -> int:
    """Wait for an exclusive lock on ``path`` without blocking the loop; returns the fd."""
    fd = try_lock(path)
    if fd is not None:
        return fd
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()
    abandoned = threading.Event()

    def deliver(fd: int) -> None:
        if future.cancelled() or abandoned.is_set():
            release(fd)
        else:
            future.set_result(fd)

    def fail(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    def wait() -> None:
        try:
            fd = _open(path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException as exc:  # report, never lose an error in a thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fail, exc)
            return
        try:
            loop.call_soon_threadsafe(deliver, fd)
        except RuntimeError:  # loop closed meanwhile
            release(fd)

    threading.Thread(target=wait, name=f"flock {path.name}", daemon=True).start()
    try:
        return await future
    except asyncio.CancelledError:
        abandoned.set()
        if future.done() and not future.cancelled() and future.exception() is None:
            release(future.result())
        raise


@contextlib.asynccontextmanager
async def locked(path: Path) -> AsyncIterator[None]:
    fd = await acquire(path)
    try:
        yield
    finally:
        release(fd)
