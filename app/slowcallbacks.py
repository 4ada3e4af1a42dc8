"""Precise slow-callback reports of asyncio's debug mode, and what the test-suite guard builds on.

In debug mode asyncio logs ``Executing <handle> took 0.053 seconds`` for every callback that ran longer
than ``loop.slow_callback_duration``. That line names a handle, not the code that was slow, and on a
loaded machine it also fires when the loop thread merely waited for a CPU. So:

* ``StackSampler`` (a thread per loop) looks at the loop thread every few milliseconds. Once a callback
  has run for a quarter of the threshold it takes snapshots of the loop thread's stack (what is
  *really* running). It also keeps a short history of the thread's run-queue wait (Linux schedstat),
  and the garbage collector's pauses are recorded (``gc.callbacks``).
* ``SlowCallbackFilter`` (on the ``asyncio`` logger) turns asyncio's line into e.g.
  ``slow callback in our code: 53 ms (wall 60 ms, …) in task 'slot-1' (Slot.run); running
  backend/webui/client.py:109 in ApiClient.__init__ → ssl.py:770 in create_default_context`` and attaches
  the ``SlowCallback`` to the record (``record._slow_callback``).
* What counts: the time the callback held the loop minus the time the loop thread waited for a CPU and
  minus garbage-collector pauses, and minus the share of samples spent in asyncio's own machinery
  (debug mode's source tracebacks, a new thread starting up, fork/exec of a subprocess).
* Kernel time: per callback the loop thread's system time and page faults (``getrusage``), and for a
  callback without a sample how long the sampler itself waited for a CPU. They are reported, not
  subtracted: C code of ours that allocates a big buffer on the loop faults its pages in just so.
* Whose code it is: the stack's deepest coroutine frame is the one that ran synchronous code. Its
  frames from there on decide: a frame in ``backend/`` or ``app/`` makes it ours, a test coroutine
  calling blocking code itself makes it test code. Without a sample (C code held the GIL), the task's
  coroutine chain where it suspended next decides.

``QAWORKER_SLOW_CALLBACK_MS=20`` (read by ``configure``) turns debug mode on with that threshold; the
test suite runs the worker processes it starts with it and fails a test whose worker logged a
"slow callback in our code".
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import itertools
import logging
import os
import re
import resource
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from backend.config.environment import read_environment
from backend.config.errors import ConfigError

ENV_THRESHOLD_MS = "QAWORKER_SLOW_CALLBACK_MS"
OURS = "slow callback in our code"
NOT_OURS = "slow callback outside our code"
TEST_CODE = "slow callback in test code"
LOAD = "slow callback only waiting (for a CPU, the GIL, the garbage collector)"
MACHINERY = "slow callback mostly in asyncio's own machinery"

ROOT = Path(__file__).resolve().parents[1]
OUR_DIRS = tuple(f"{ROOT / name}{os.sep}" for name in ("backend", "app"))
TEST_DIR = f"{ROOT / 'tests'}{os.sep}"

_ASYNCIO_MESSAGE = "Executing %s took %.3f seconds"
_COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _stdlib(name: str) -> str:
    return os.path.normcase(os.path.join(os.path.dirname(os.__file__), name))


_EVENTS_FILE = os.path.normcase(os.path.abspath(asyncio.events.__file__))
# Where asyncio's own machinery spends time that no callback of ours asked for: debug mode's source
# tracebacks (linecache stats and reads source files), a thread start waiting for the new thread to
# be scheduled (to_thread, the child watcher), fork/exec of create_subprocess_exec.
_MACHINERY = (
    (_stdlib("linecache.py"), None), (_stdlib("tokenize.py"), None), (_stdlib("traceback.py"), None),
    (_stdlib(os.path.join("asyncio", "format_helpers.py")), None),
    (_stdlib("threading.py"), "Thread.start"), (_stdlib("subprocess.py"), "Popen._execute_child"),
    (os.path.normcase(os.path.abspath(__file__)), None),  # this module's own bookkeeping (its gc callback)
)


@dataclass(frozen=True)
class Frame:
    filename: str
    lineno: int
    name: str
    coroutine: bool = False

    @classmethod
    def of(cls, frame: FrameType) -> Frame:
        code = frame.f_code
        return cls(code.co_filename, frame.f_lineno, code.co_qualname, bool(code.co_flags & _COROUTINE_FLAGS))

    @classmethod
    def of_code(cls, code: CodeType) -> Frame:
        return cls(code.co_filename, code.co_firstlineno, code.co_qualname, bool(code.co_flags & _COROUTINE_FLAGS))

    @property
    def ours(self) -> bool:
        return self.filename.startswith(OUR_DIRS)

    @property
    def in_tests(self) -> bool:
        return self.filename.startswith(TEST_DIR)

    @property
    def machinery(self) -> bool:
        path = os.path.normcase(self.filename)
        return any(path == file and (name is None or self.name == name) for file, name in _MACHINERY)

    def __str__(self) -> str:
        return f"{short_path(self.filename)}:{self.lineno} in {self.name}"


@dataclass(frozen=True)
class Blame:
    """One stack (a sample, or the suspended coroutine chain) judged."""

    frames: tuple[Frame, ...]  # innermost last
    kind: str  # OURS, NOT_OURS, TEST_CODE or MACHINERY

    @classmethod
    def of(cls, frames: Iterable[Frame], sampled: bool) -> Blame:
        frames = tuple(frames)
        if sampled and any(f.machinery for f in frames):
            return cls(frames, MACHINERY)
        # The deepest coroutine frame ran the synchronous code (in a sample; in a suspended chain every
        # frame is a coroutine, and the slow code ran somewhere in it).
        start = max((i for i, f in enumerate(frames) if f.coroutine), default=0) if sampled else 0
        if frames and frames[start].in_tests and not frames[start].ours:
            return cls(frames, TEST_CODE)
        if any(f.ours for f in frames[start:]):
            return cls(frames, OURS)
        return cls(frames, NOT_OURS)

    def where(self) -> str:
        """The innermost frame of ours, and the innermost frame of all when that is deeper; for an import
        on the loop, the frame that ran the import statement and the module it imported."""
        if not self.frames:
            return "(no frames)"
        first = next((i for i, f in enumerate(self.frames) if f.filename.startswith("<frozen importlib")), None)
        if first is not None and first > 0:
            modules = [f for f in self.frames[first:] if f.name == "<module>"]
            imported = f" imports {short_path(modules[0].filename)}" if modules else " imports"
            return f"{self.frames[first - 1]}{imported} (an import on the loop)"
        inner = self.frames[-1]
        ours = [f for f in self.frames if f.ours] if self.kind == OURS else []
        if not ours:
            return str(inner)
        return str(ours[-1]) if ours[-1] is inner else f"{ours[-1]} → {inner}"


@dataclass(frozen=True)
class SlowCallback:
    """One slow callback: where its time went, and whose code it was.

    ``wall`` is asyncio's measurement. Of it, the loop thread spent ``cpu`` on a CPU (exact: thread CPU
    time from the callback's start) and ``cpu_wait`` waiting for one (schedstat); the rest it slept in
    the kernel, which the sampler splits into blocking calls (file I/O, sleep, DNS: ``io_share``) and
    waits for a lock — in practice the GIL, held by another thread. Counted as the callback's own
    doing: its CPU time without garbage collection, plus its blocking calls.
    """

    callback: str  # "task 'slot-1' (Slot.run)" or "callback Foo.bar"
    wall: float  # seconds, as asyncio measured it
    threshold: float
    cpu: float | None = None  # None: not measured (a loop without the timed ready queue)
    cpu_wait: float = 0.0
    sampler_wait: float = 0.0  # run-queue wait of the sampler thread itself meanwhile (why a sample may be missing)
    gc_pause: float = 0.0
    kernel: float = 0.0  # of ``cpu``, the system time (page faults, syscalls)
    faults: int = 0  # page faults (minor + major)
    io_share: float | None = None  # of the time asleep in the kernel, the share in blocking calls
    blames: tuple[Blame, ...] = field(default=())  # one per stack sample, or the coroutine chain
    sampled: bool = False

    @property
    def asleep(self) -> float:
        return max(0.0, self.wall - self.cpu_wait - (self.cpu or 0.0)) if self.cpu is not None else 0.0

    @property
    def blocking_calls(self) -> float:
        # No sample of the thread's state while it slept: the sampler could not run either, so the
        # GIL was held elsewhere (a blocking call releases it and lets the sampler look).
        return self.asleep * (self.io_share or 0.0)

    @property
    def held(self) -> float:
        """How long the callback itself kept the loop from running anything else."""
        if self.cpu is None:
            return max(0.0, self.wall - self.cpu_wait - self.gc_pause)
        return max(0.0, self.cpu - self.gc_pause) + self.blocking_calls

    @property
    def blocked(self) -> float:
        """``held`` without the share of samples that were in asyncio's own machinery."""
        if not self.blames:
            return self.held
        own = sum(1 for b in self.blames if b.kind != MACHINERY)
        return self.held * own / len(self.blames)

    @property
    def counts(self) -> bool:
        return self.blocked >= self.threshold

    @property
    def main(self) -> Blame | None:
        for kind in (OURS, TEST_CODE, NOT_OURS, MACHINERY):
            for blame in self.blames:
                if blame.kind == kind:
                    return blame
        return None

    @property
    def kind(self) -> str:
        if self.held < self.threshold:
            return LOAD
        main = self.main
        if not self.counts or main is None:
            return MACHINERY if main is not None else NOT_OURS
        return main.kind

    @property
    def ours(self) -> bool:
        return self.kind == OURS

    def describe(self) -> str:
        ms = lambda seconds: f"{seconds * 1000:.0f} ms"  # noqa: E731
        parts = [f"wall {ms(self.wall)}"]
        if self.cpu is not None:
            parts.append(f"{ms(self.cpu)} on a CPU")
            if self.kernel >= 0.0005 or self.faults >= 100:
                parts.append(f"{ms(self.kernel)} of it in the kernel, {self.faults} page faults")
            if self.blocking_calls >= 0.0005:
                parts.append(f"{ms(self.blocking_calls)} in blocking calls")
            if self.asleep - self.blocking_calls >= 0.0005:
                parts.append(f"{ms(self.asleep - self.blocking_calls)} waiting for the GIL or a lock")
        if self.cpu_wait >= 0.0005:
            parts.append(f"{ms(self.cpu_wait)} waiting for a CPU")
        if not self.sampled and self.sampler_wait >= 0.0005:
            parts.append(f"the sampler kept {ms(self.sampler_wait)} off a CPU")
        if self.gc_pause >= 0.0005:
            parts.append(f"{ms(self.gc_pause)} garbage collection")
        if self.blocked < self.held - 0.0005:
            parts.append(f"{ms(self.held - self.blocked)} in asyncio machinery")
        parts.append(f"threshold {ms(self.threshold)}")
        main = self.main
        how = "running" if self.sampled else "not sampled, suspended next at"
        where = main.where() if main is not None else "(no frames)"
        return f"{self.kind}: {ms(self.blocked)} ({', '.join(parts)}) in {self.callback}; {how} {where}"


def short_path(filename: str) -> str:
    roots = sorted((p + os.sep for p in sys.path if p and p != str(ROOT)), key=len, reverse=True)
    for root in (f"{ROOT}{os.sep}", *roots):
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
    for _ in range(100):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None) or getattr(coro, "ag_code", None)
        if frame is not None:
            frames.append(Frame.of(frame))
        elif code is not None:
            frames.append(Frame.of_code(code))
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                or getattr(coro, "ag_await", None))
    return frames


def _callable_frames(callback: Any) -> list[Frame]:
    while isinstance(callback, functools.partial):
        callback = callback.func
    code = getattr(getattr(callback, "__func__", callback), "__code__", None)
    return [Frame.of_code(code)] if code is not None else []


def handle_frames(handle: asyncio.Handle) -> tuple[str, list[Frame]]:
    """What a handle runs: a label and the frames that tell whose code it is (innermost last)."""
    task = _task_of(handle)
    if task is not None:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        return f"task {task.get_name()!r} ({name})", _coroutine_frames(coro)
    callback = handle._callback
    frames = _callable_frames(callback)
    for arg in handle._args or ():  # e.g. a Future's done-callbacks, context.run(func)
        frames += _callable_frames(arg) if callable(arg) else []
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return f"callback {name}", frames


def stack_frames(frame: FrameType | None) -> list[Frame] | None:
    """Frames of a loop-thread stack below ``Handle._run`` (the callback's own code), innermost last; None
    when no callback runs any more (the loop is already logging it, or between callbacks)."""
    frames: list[FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    for index in range(len(frames) - 1, -1, -1):
        code = frames[index].f_code
        if code.co_name == "_run" and os.path.normcase(os.path.abspath(code.co_filename)) == _EVENTS_FILE:
            return [Frame.of(f) for f in frames[index + 1:]]
    return None


# -- what the loop thread does (Linux /proc) and garbage collection -----------------------------------------


def _open_proc(native_id: int, name: str) -> int | None:
    try:
        return os.open(f"/proc/self/task/{native_id}/{name}", os.O_RDONLY)
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


def _asleep_in(stat_fd: int | None, wchan_fd: int | None) -> str | None:
    """"io" when the thread sleeps in a blocking call, "lock" when on a futex (the GIL, a lock), None when
    it runs (or we cannot tell)."""
    if stat_fd is None or wchan_fd is None:
        return None
    try:
        state = os.pread(stat_fd, 512, 0).rsplit(b")", 1)[1].split()[0]
        if state not in (b"S", b"D"):
            return None
        wchan = os.pread(wchan_fd, 128, 0)
    except (OSError, IndexError):
        return None
    return "lock" if b"futex" in wchan else "io"


class _GcPauses:
    """Start and end (monotonic) of the last garbage collections, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: deque[tuple[float, float]] = deque(maxlen=256)
        self._started: float | None = None
        self.installed = False

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic()
        elif self._started is not None:
            self.pauses.append((self._started, time.monotonic()))
            self._started = None

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self)
            self.installed = True

    def within(self, start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in list(self.pauses))


_gc_pauses = _GcPauses()


# -- the sampler ---------------------------------------------------------------------------------------------


class StackSampler:
    """Watches one loop (running in the thread that creates the sampler) from a daemon thread."""

    max_samples = 8

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float, period: float = 0.004,
                 loop_thread: tuple[int, int] | None = None) -> None:
        self._loop = weakref.ref(loop)
        self.threshold = threshold
        self.period = min(period, threshold / 4)
        # (ident, native id) of the loop's thread: the caller's unless given
        self._thread_id, native = loop_thread or (threading.get_ident(), threading.get_native_id())
        self._schedstat = _open_proc(native, "schedstat")
        self._stat = _open_proc(native, "stat")
        self._wchan = _open_proc(native, "wchan")
        self._lock = threading.Lock()
        self._delays: deque[tuple[float, float]] = deque(maxlen=4096)  # (monotonic, run delay)
        self._own_delays: deque[tuple[float, float]] = deque(maxlen=4096)  # the same for the sampler thread
        self._own_schedstat: int | None = None
        self._samples: tuple[object, list[list[Frame]]] | None = None
        self._states: tuple[object, dict[str, int]] | None = None  # handle -> {"io": n, "lock": n}
        self._stop = threading.Event()
        _gc_pauses.install()
        self._thread = threading.Thread(target=self._run, name="slow-callback-sampler", daemon=True)
        self._thread.start()
        # opened here, not in the thread: by the time the sampler exists all its descriptors do
        own = _open_proc(self._thread.native_id, "schedstat") if self._thread.native_id is not None else None
        with self._lock:
            self._own_schedstat = own

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1)
        with self._lock:
            for fd in (self._schedstat, self._stat, self._wchan, self._own_schedstat):
                if fd is not None:
                    os.close(fd)
            self._schedstat = self._stat = self._wchan = self._own_schedstat = None

    def _run(self) -> None:
        seen: object = None
        since = last = 0.0
        while not self._stop.wait(self.period):
            loop = self._loop()
            if loop is None or loop.is_closed():
                return
            handle = getattr(loop, "_current_handle", None)
            del loop
            now = time.monotonic()
            with self._lock:
                delay = _read_run_delay(self._schedstat)
                own = _read_run_delay(self._own_schedstat)
            if delay is not None:
                self._delays.append((now, delay))
            if own is not None:
                self._own_delays.append((now, own))
            if handle is not seen:
                seen, since, last = handle, now, 0.0
                continue
            if handle is None or now - since < self.threshold / 4:
                continue
            with self._lock:
                asleep = _asleep_in(self._stat, self._wchan)
            if asleep is not None:
                states = self._states
                if states is None or states[0] is not handle:
                    states = self._states = (handle, {"io": 0, "lock": 0})
                states[1][asleep] += 1
            if now - last < 2 * self.period:
                continue
            frame = sys._current_frames().get(self._thread_id)
            if frame is None:
                continue
            frames = stack_frames(frame)
            del frame
            if frames is None:
                continue
            last = now
            current = self._samples
            if current is not None and current[0] is handle:
                if len(current[1]) < self.max_samples:
                    current[1].append(frames)
            else:
                self._samples = (handle, [frames])

    def samples_for(self, handle: object) -> list[list[Frame]]:
        samples = self._samples
        return list(samples[1]) if samples is not None and samples[0] is handle else []

    def io_share(self, handle: object) -> float | None:
        """Of the samples that found the loop thread asleep during ``handle``, the share in blocking calls."""
        states = self._states
        if states is None or states[0] is not handle:
            return None
        total = states[1]["io"] + states[1]["lock"]
        return states[1]["io"] / total if total else None

    def cpu_wait(self, start: float, end: float) -> float:
        """Run-queue wait of the loop thread between two monotonic times (0.0 when unknown)."""
        with self._lock:
            now_delay = _read_run_delay(self._schedstat)
        return _wait_between(list(self._delays), now_delay, start, end)

    def own_wait(self, start: float, end: float) -> float:
        """Run-queue wait of the sampler thread itself between two monotonic times (0.0 when unknown)."""
        with self._lock:
            now_delay = _read_run_delay(self._own_schedstat)
        return _wait_between(list(self._own_delays), now_delay, start, end)


def _wait_between(points: list[tuple[float, float]], now_delay: float | None, start: float, end: float) -> float:
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


class _TimedReady(deque):  # type: ignore[type-arg]
    """The loop's ready queue, noting the loop thread's CPU time as each callback starts (``_run_once``
    takes the next handle with ``popleft`` right before running it)."""

    started: tuple[object, float, resource.struct_rusage] | None = None

    def popleft(self) -> Any:
        handle = super().popleft()
        self.started = (handle, time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD))
        return handle

    def cpu_of(self, handle: object) -> float | None:
        started = self.started
        return time.thread_time() - started[1] if started is not None and started[0] is handle else None

    def kernel_of(self, handle: object) -> tuple[float, int]:
        """System time and page faults of the loop thread since ``handle`` started ((0.0, 0) unknown): CPU time
        that no stack sample can explain is often the kernel's (page faults, memory reclaim)."""
        started = self.started
        if started is None or started[0] is not handle:
            return 0.0, 0
        now, then = resource.getrusage(resource.RUSAGE_THREAD), started[2]
        faults = now.ru_minflt + now.ru_majflt - then.ru_minflt - then.ru_majflt
        return max(0.0, now.ru_stime - then.ru_stime), faults


def _time_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    ready = getattr(loop, "_ready", None)
    if isinstance(ready, deque) and not isinstance(ready, _TimedReady):
        loop._ready = _TimedReady(ready)  # type: ignore[attr-defined]


_samplers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StackSampler] = weakref.WeakKeyDictionary()


def enable(loop: asyncio.AbstractEventLoop, threshold: float, loop_thread: tuple[int, int] | None = None
           ) -> StackSampler:
    """Debug mode with ``threshold`` seconds on ``loop`` (running in the calling thread, or the one named by
    ``loop_thread`` = (ident, native id)), plus its sampler."""
    loop.set_debug(True)
    loop.slow_callback_duration = threshold
    _time_callbacks(loop)
    sampler = _samplers.get(loop)
    if sampler is None or sampler.threshold != threshold:
        if sampler is not None:
            sampler.stop()
        sampler = _samplers[loop] = StackSampler(loop, threshold, loop_thread=loop_thread)
    install_filter()
    return sampler


def disable(loop: asyncio.AbstractEventLoop) -> None:
    sampler = _samplers.pop(loop, None)
    if sampler is not None:
        sampler.stop()


def threshold_from_env(env: dict[str, str] | None = None) -> float | None:
    """``QAWORKER_SLOW_CALLBACK_MS`` in seconds; a bad value was refused at start-up (app/cli.py), so here
    it is only logged and ignored (a library caller, a test)."""
    try:
        return read_environment(env).slow_callback_seconds
    except ConfigError as exc:
        logging.getLogger(__name__).warning("ignoring %s", exc)
        return None


def configure(loop: asyncio.AbstractEventLoop | None = None, loop_thread: tuple[int, int] | None = None) -> None:
    """Apply ``QAWORKER_SLOW_CALLBACK_MS`` to the running loop; sample its stack whenever it is in debug mode
    (e.g. ``PYTHONASYNCIODEBUG=1``). Idempotent; a no-op outside a running loop. From another thread, pass
    ``loop`` and ``loop_thread`` (while the loop waits for that thread)."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
    threshold = threshold_from_env()
    if threshold is not None:
        enable(loop, threshold, loop_thread)
    elif loop.get_debug() and loop not in _samplers:
        enable(loop, loop.slow_callback_duration, loop_thread)
    install_filter()


# -- the log filter ----------------------------------------------------------------------------------------


def analyse(loop: asyncio.AbstractEventLoop, handle: asyncio.Handle | None, wall: float) -> SlowCallback:
    """Everything known about the slow ``handle`` that just ran for ``wall`` seconds on ``loop``."""
    threshold = loop.slow_callback_duration
    ready = getattr(loop, "_ready", None)
    cpu = ready.cpu_of(handle) if isinstance(ready, _TimedReady) else None
    sampler = _samplers.get(loop)
    label, frames = handle_frames(handle) if handle is not None else ("unknown callback", [])
    end = time.monotonic()
    measured = {"cpu": cpu, "gc_pause": _gc_pauses.within(end - wall, end)}
    if isinstance(ready, _TimedReady) and handle is not None:
        measured["kernel"], measured["faults"] = ready.kernel_of(handle)
    if sampler is not None:
        measured.update(cpu_wait=sampler.cpu_wait(end - wall, end), io_share=sampler.io_share(handle),
                        sampler_wait=sampler.own_wait(end - wall, end))
    samples = sampler.samples_for(handle) if sampler is not None and handle is not None else []
    if samples:
        blames = tuple(Blame.of(sample, sampled=True) for sample in samples)
        return SlowCallback(label, wall, threshold, blames=blames, sampled=True, **measured)
    return SlowCallback(label, wall, threshold, blames=(Blame.of(frames, sampled=False),), **measured)


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
        if report.kind in (LOAD, MACHINERY):  # not a callback's doing: a detail for debugging only
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
