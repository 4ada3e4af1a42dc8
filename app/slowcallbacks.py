"""Precise slow-callback reports of asyncio's debug mode, and what the test-suite guard builds on.

In debug mode asyncio logs ``Executing <handle> took 0.053 seconds`` for every callback that ran longer
than ``loop.slow_callback_duration``. That line names a handle, not the code that was slow, and on a
loaded machine it also fires when the loop thread merely waited for a CPU. So:

* ``StackSampler`` (a thread per loop) looks at the loop thread every few milliseconds: when one
  callback has run for half the threshold it takes a snapshot of the loop thread's stack (what is
  *really* running), and it keeps a short history of the thread's run-queue wait (Linux schedstat).
* ``SlowCallbackFilter`` (on the ``asyncio`` logger) turns asyncio's line into
  ``slow callback in our code: 53 ms in task 'slot-1' (Slot.run): backend/webui/client.py:109 in
  ApiClient.__init__ → ssl.py:770 in create_default_context`` and attaches a ``SlowCallback`` to the
  record (``record._slow_callback``). Time the loop thread spent waiting for a CPU is subtracted
  before the threshold is applied.
* "our code" is a frame in ``backend/`` or ``app/``: in the sampled stack if there is one, else in the
  task's coroutine chain (where it suspended next) or the callback itself.

``QAWORKER_SLOW_CALLBACK_MS=20`` (read by ``configure``) turns debug mode on with that threshold; the
test suite runs the worker processes it starts with it and fails a test whose worker logged a
"slow callback in our code".
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ENV_THRESHOLD_MS = "QAWORKER_SLOW_CALLBACK_MS"
OURS = "slow callback in our code"
NOT_OURS = "slow callback outside our code"
LOAD = "slow callback only waiting for a CPU"

ROOT = Path(__file__).resolve().parents[1]
OUR_DIRS = tuple(f"{ROOT / name}{os.sep}" for name in ("backend", "app"))

_ASYNCIO_MESSAGE = "Executing %s took %.3f seconds"
_EVENTS_FILE = os.path.normcase(os.path.abspath(asyncio.events.__file__))


@dataclass(frozen=True)
class Frame:
    filename: str
    lineno: int
    name: str

    @property
    def ours(self) -> bool:
        return self.filename.startswith(OUR_DIRS)

    def __str__(self) -> str:
        return f"{short_path(self.filename)}:{self.lineno} in {self.name}"


@dataclass(frozen=True)
class SlowCallback:
    callback: str  # "task 'slot-1' (Slot.run)" or "callback Foo.bar"
    wall: float  # seconds, as asyncio measured it
    cpu_wait: float  # seconds the loop thread waited for a CPU meanwhile (machine load)
    threshold: float
    frames: tuple[Frame, ...] = field(default=())  # innermost last
    sampled: bool = False  # frames are a snapshot taken while the callback ran

    @property
    def blocked(self) -> float:
        """How long the callback held the loop, minus the time the machine did not let it run."""
        return max(0.0, self.wall - self.cpu_wait)

    @property
    def counts(self) -> bool:
        return self.blocked >= self.threshold

    @property
    def ours(self) -> bool:
        return any(f.ours for f in self.frames)

    @property
    def kind(self) -> str:
        if not self.counts:
            return LOAD
        return OURS if self.ours else NOT_OURS

    def where(self) -> str:
        """The innermost frame of ours, and the innermost frame of all when that is deeper."""
        if not self.frames:
            return "(no frames)"
        ours = [f for f in self.frames if f.ours]
        inner = self.frames[-1]
        if not ours:
            return str(inner)
        mine = ours[-1]
        return str(mine) if mine is inner else f"{mine} → {inner}"

    def describe(self) -> str:
        wait = f", {self.cpu_wait * 1000:.0f} ms of it waiting for a CPU" if self.cpu_wait >= 0.001 else ""
        how = "running" if self.sampled else "suspended next at"
        return (f"{self.kind}: {self.blocked * 1000:.0f} ms (wall {self.wall * 1000:.0f} ms{wait}, "
                f"threshold {self.threshold * 1000:.0f} ms) in {self.callback}; {how} {self.where()}")


def short_path(filename: str) -> str:
    for root in (f"{ROOT}{os.sep}", *sorted((p + os.sep for p in sys.path if p and p != str(ROOT)), key=len,
                                            reverse=True)):
        if filename.startswith(root):
            return filename[len(root):]
    return filename


# -- frames of a handle ---------------------------------------------------------------------------------


def _task_of(handle: asyncio.Handle) -> asyncio.Task[Any] | None:
    owner = getattr(handle._callback, "__self__", None)
    return owner if isinstance(owner, asyncio.Task) else None


def _coroutine_frames(coro: Any) -> list[Frame]:
    """Outermost to innermost frame of a suspended coroutine chain (follows what each one awaits)."""
    frames: list[Frame] = []
    seen = 0
    while coro is not None and seen < 100:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None) or getattr(coro, "ag_code", None)
        if frame is not None:
            frames.append(Frame(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_qualname))
        elif code is not None:
            frames.append(Frame(code.co_filename, code.co_firstlineno, code.co_qualname))
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                or getattr(coro, "ag_await", None))
    return frames


def _callable_frames(callback: Any) -> list[Frame]:
    while isinstance(callback, functools.partial):
        callback = callback.func
    func = getattr(callback, "__func__", callback)
    code = getattr(func, "__code__", None)
    if code is None:
        return []
    return [Frame(code.co_filename, code.co_firstlineno, code.co_qualname)]


def handle_frames(handle: asyncio.Handle) -> tuple[str, list[Frame]]:
    """What a handle runs: a label and the frames that tell whose code it is (innermost last)."""
    task = _task_of(handle)
    if task is not None:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        return f"task {task.get_name()!r} ({name})", _coroutine_frames(coro)
    callback = handle._callback
    label = getattr(callback, "__qualname__", None) or repr(callback)
    frames = _callable_frames(callback)
    for arg in handle._args or ():  # e.g. a Future's done-callbacks, context.run(func)
        frames += _callable_frames(arg) if callable(arg) else []
    return f"callback {label}", frames


def stack_frames(frame: FrameType | None) -> list[Frame]:
    """Frames of a loop-thread stack below ``Handle._run`` (the callback's own code), innermost last."""
    frames: list[FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    for index in range(len(frames) - 1, -1, -1):
        code = frames[index].f_code
        if code.co_name == "_run" and os.path.normcase(os.path.abspath(code.co_filename)) == _EVENTS_FILE:
            frames = frames[index + 1:]
            break
    return [Frame(f.f_code.co_filename, f.f_lineno, f.f_code.co_qualname) for f in frames]


# -- run-queue wait (Linux) ---------------------------------------------------------------------------------


def _open_schedstat(native_id: int) -> int | None:
    try:
        return os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
    except OSError:
        return None


def _read_run_delay(fd: int | None) -> float | None:
    """Seconds the thread has spent runnable but not running (schedstat's second field)."""
    if fd is None:
        return None
    try:
        return int(os.pread(fd, 128, 0).split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


# -- the sampler ---------------------------------------------------------------------------------------------


class StackSampler:
    """Watches one loop (running in the thread that creates the sampler) from a daemon thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float, period: float = 0.004) -> None:
        self._loop = weakref.ref(loop)
        self.threshold = threshold
        self.period = period
        self._thread_id = threading.get_ident()
        self._schedstat = _open_schedstat(threading.get_native_id())
        self._lock = threading.Lock()
        self._delays: deque[tuple[float, float]] = deque(maxlen=4096)  # (monotonic, run delay)
        self._sample: tuple[object, list[Frame]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-callback-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1)
        if self._schedstat is not None:
            with self._lock:
                os.close(self._schedstat)
                self._schedstat = None

    def _run(self) -> None:
        seen: object = None
        since = 0.0
        sampled = False
        while not self._stop.wait(self.period):
            loop = self._loop()
            if loop is None or loop.is_closed():
                return
            handle = getattr(loop, "_current_handle", None)
            del loop
            now = time.monotonic()
            with self._lock:
                delay = _read_run_delay(self._schedstat)
            if delay is not None:
                self._delays.append((now, delay))
            if handle is not seen:
                seen, since, sampled = handle, now, False
                continue
            if handle is None or sampled or now - since < self.threshold / 2:
                continue
            frame = sys._current_frames().get(self._thread_id)
            if frame is not None:
                self._sample = (handle, stack_frames(frame))
                sampled = True
            del frame

    def sample_for(self, handle: object) -> list[Frame] | None:
        sample = self._sample
        return sample[1] if sample is not None and sample[0] is handle else None

    def cpu_wait(self, start: float, end: float) -> float:
        """Run-queue wait of the loop thread between two monotonic times (0.0 when unknown)."""
        with self._lock:
            now_delay = _read_run_delay(self._schedstat)
        points = list(self._delays)
        if now_delay is not None:
            points.append((time.monotonic(), now_delay))
        if len(points) < 2:
            return 0.0
        return max(0.0, _interpolate(points, end) - _interpolate(points, start))


def _interpolate(points: list[tuple[float, float]], t: float) -> float:
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]


_samplers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StackSampler] = weakref.WeakKeyDictionary()


def enable(loop: asyncio.AbstractEventLoop, threshold: float) -> StackSampler:
    """Debug mode with ``threshold`` seconds on ``loop`` (to run in the calling thread), plus its sampler."""
    loop.set_debug(True)
    loop.slow_callback_duration = threshold
    sampler = _samplers.get(loop)
    if sampler is None or sampler.threshold != threshold:
        if sampler is not None:
            sampler.stop()
        sampler = _samplers[loop] = StackSampler(loop, threshold)
    return sampler


def disable(loop: asyncio.AbstractEventLoop) -> None:
    sampler = _samplers.pop(loop, None)
    if sampler is not None:
        sampler.stop()


def threshold_from_env(env: dict[str, str] | None = None) -> float | None:
    value = (os.environ if env is None else env).get(ENV_THRESHOLD_MS, "").strip()
    if not value:
        return None
    try:
        ms = float(value)
    except ValueError:
        logging.getLogger(__name__).warning("ignoring %s=%r: not a number of milliseconds", ENV_THRESHOLD_MS, value)
        return None
    return ms / 1000 if ms > 0 else None


def configure(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Apply ``QAWORKER_SLOW_CALLBACK_MS`` to the running loop; sample its stack whenever it is in debug mode
    (e.g. ``PYTHONASYNCIODEBUG=1``). Idempotent; a no-op outside a running loop."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
    threshold = threshold_from_env()
    if threshold is not None:
        enable(loop, threshold)
    elif loop.get_debug() and loop not in _samplers:
        enable(loop, loop.slow_callback_duration)
    install_filter()


# -- the log filter ----------------------------------------------------------------------------------------


def analyse(loop: asyncio.AbstractEventLoop, handle: asyncio.Handle | None, wall: float) -> SlowCallback:
    """Everything known about the slow ``handle`` that just ran for ``wall`` seconds on ``loop``."""
    threshold = loop.slow_callback_duration
    sampler = _samplers.get(loop)
    label, frames = ("unknown callback", [])
    if handle is not None:
        label, frames = handle_frames(handle)
    sample = sampler.sample_for(handle) if sampler is not None and handle is not None else None
    end = time.monotonic()
    wait = sampler.cpu_wait(end - wall, end) if sampler is not None else 0.0
    if sample:
        return SlowCallback(label, wall, wait, threshold, tuple(sample), sampled=True)
    return SlowCallback(label, wall, wait, threshold, tuple(frames))


class SlowCallbackFilter(logging.Filter):
    """Rewrites asyncio's slow-callback warning in the loop thread (where the handle is still current)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _ASYNCIO_MESSAGE or not isinstance(record.args, tuple) or len(record.args) != 2:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return True
        try:
            report = analyse(loop, getattr(loop, "_current_handle", None), float(record.args[1]))
        except Exception as exc:  # a diagnostics bug must not lose the original warning
            record.msg = f"{_ASYNCIO_MESSAGE} (not analysed: {exc!r})"
            return True
        record.msg, record.args = report.describe(), None
        record.slow_callback_ms = round(report.blocked * 1000, 1)
        record._slow_callback = report  # "_": the JSON log leaves it out
        if not report.counts:  # the machine was busy, not our loop: a detail for debugging only
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("asyncio").isEnabledFor(logging.DEBUG)
        return True


_filter = SlowCallbackFilter()


def install_filter() -> None:
    """Idempotent: the filter on the ``asyncio`` logger."""
    logger = logging.getLogger("asyncio")
    if _filter not in logger.filters:
        logger.addFilter(_filter)


_OURS_LINE = re.compile(rf"{re.escape(OURS)}: .*")


def ours_in_log(lines: Iterable[str]) -> list[str]:
    """The "slow callback in our code" reports in a worker's log lines."""
    return [m.group(0) for line in lines if (m := _OURS_LINE.search(line))]
