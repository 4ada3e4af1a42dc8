"""A child process started off the loop: ``subprocess.Popen`` runs in a thread, the exit is seen
through a pidfd in the loop's selector and reaped with a non-blocking ``waitpid``.

``asyncio.create_subprocess_exec`` forks and then reads the exec's error pipe on the loop thread; that
read releases the GIL to every other thread (image helpers, uploads, to_thread work), so the loop got
it back only after them: ``bench/scale.py --blame`` booked 73 ms per isotovideo spawn at 1 job/s and up
to 436 ms at 3 jobs/s to that one callback. Here the loop never waits for a fork or an exec.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from backend.engine import procs


class ThreadSpawnedChild:
    """What the worker needs of a child: ``pid``, ``returncode`` and an awaitable ``wait()``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid: int = popen.pid
        self._reaped: asyncio.Future[int] | None = None

    @classmethod
    async def start(cls, argv: Sequence[str], **popen_kwargs: Any) -> ThreadSpawnedChild:
        """``subprocess.Popen(argv, **popen_kwargs)`` in a thread; OSError as Popen raises it.

        Cancelled while the thread forks, the child (and its process group, when it leads one) is
        killed as soon as it exists and left to the zombie sweep (``procs``): nothing runs unowned."""
        spawned = asyncio.get_running_loop().run_in_executor(None, _popen_registered, list(argv), popen_kwargs)
        try:
            return cls(await asyncio.shield(spawned))
        except asyncio.CancelledError:
            spawned.add_done_callback(_kill_unowned)
            raise

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """The exit status (negative signal number when killed by a signal); any number of waiters."""
        if self._reaped is None:
            self._reaped = asyncio.ensure_future(self._reap())
        return await asyncio.shield(self._reaped)

    async def _reap(self) -> int:
        if self._popen.returncode is None:
            await wait_pid_exit(self.pid)
            # A zombie now: poll() does one waitpid(WNOHANG) and keeps Popen's own bookkeeping right.
            if self._popen.poll() is None:  # only while another thread holds Popen's waitpid lock
                await asyncio.to_thread(self._popen.wait)
        procs.unregister_asyncio_child(self.pid)
        return self._popen.returncode


def _popen_registered(argv: list[str], kwargs: dict[str, Any]) -> subprocess.Popen[bytes]:
    popen: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)
    procs.register_asyncio_child(popen.pid)  # its exit status is ours: the sweeps leave it alone
    return popen


def _kill_unowned(spawned: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    if spawned.cancelled() or spawned.exception() is not None:
        return
    pid = spawned.result().pid
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    procs.unregister_asyncio_child(pid)  # the sweep reaps the zombie


async def wait_pid_exit(pid: int) -> None:
    """Wait until process ``pid`` has ended (a zombie counts): a readable pidfd, no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)
