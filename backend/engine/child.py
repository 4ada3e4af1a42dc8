"""A child process started off the loop: ``subprocess.Popen`` runs in a thread, the exit is seen
through a pidfd in the loop's selector and reaped with a non-blocking ``waitpid``.

``asyncio.create_subprocess_exec`` forks and then reads the exec's error pipe on the loop thread; that
read releases the GIL to every other thread (image helpers, uploads, to_thread work), so the loop got
it back only after them: ``bench/scale.py --blame`` booked 73 ms per isotovideo spawn at 1 job/s and up
to 436 ms at 3 jobs/s to that one callback. Here the loop never waits for a fork or an exec: isotovideo starts through
``ThreadSpawnedChild``, and every helper command whose output the worker reads (rsync, the admin hooks,
lscpu, ``isotovideo --version``, ipmitool, busctl) through ``run_captured``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

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


@dataclass(frozen=True, slots=True)
class Captured:
    returncode: int  # negative: killed by that signal
    stdout: bytes
    stderr: bytes  # empty when merged into stdout


async def run_captured(argv: Sequence[str], *, merge_stderr: bool = False, cwd: os.PathLike[str] | str | None = None,
                       env: Mapping[str, str] | None = None, output_limit: int | None = None,
                       kill_grace: float = 0.0) -> Captured:
    """Run ``argv`` to its end and collect its output; the loop never forks, execs or blocks on it.

    The fork and exec happen in a thread (``ThreadSpawnedChild``), the pipes are read through the loop's
    selector, and the exit is seen through a pidfd. The child gets its own session and ``/dev/null`` as
    stdin. Cancelled (a caller's timeout, a stop), its process group gets SIGTERM, SIGKILL after
    ``kill_grace`` seconds, and is reaped before the cancel goes on. ``output_limit`` bytes of each
    stream are kept; the rest is read and dropped, so a chatty child never stalls on a full pipe.
    OSError when it cannot be started, as ``subprocess.Popen`` raises it.
    """
    stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
    child = await ThreadSpawnedChild.start(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, cwd=cwd,
        env=dict(env) if env is not None else None, start_new_session=True)
    streams = [child._popen.stdout] + ([] if merge_stderr else [child._popen.stderr])
    readers = [asyncio.ensure_future(_read_to_eof(stream, output_limit)) for stream in streams if stream]
    try:
        # shielded: a cancel must not close the pipes under a child that is still running (it would die of
        # SIGPIPE instead of getting its SIGTERM and the grace to act on it)
        outputs = await asyncio.shield(asyncio.gather(*readers))
        returncode = await child.wait()
    except BaseException:
        try:
            await _end_group(child, kill_grace)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.wait(readers)
        raise
    return Captured(returncode, outputs[0], b"" if merge_stderr else outputs[1])


async def _read_to_eof(stream: IO[bytes], limit: int | None) -> bytes:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), stream)
    data = bytearray()
    try:
        while chunk := await reader.read(65536):
            if limit is None:
                data += chunk
            elif len(data) < limit:
                data += chunk[: limit - len(data)]
    finally:
        transport.close()  # closes the pipe (the file object no longer owns a usable fd)
    return bytes(data)


async def _end_group(child: ThreadSpawnedChild, grace: float) -> None:
    """SIGTERM (or at once SIGKILL) to the child's process group, SIGKILL after ``grace``; then reap it.
    Shielded: the caller's cancel must not leave it running or unreaped."""
    async def end() -> None:
        signals = (signal.SIGTERM, signal.SIGKILL) if grace > 0 else (signal.SIGKILL,)
        for sig in signals:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace if sig == signal.SIGTERM else None):
                    await child.wait()
                return

    task = asyncio.ensure_future(end())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # a second cancel: still reap the child first, then go on cancelling
        raise
