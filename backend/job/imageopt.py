"""Screenshot hashing and optimisation off the event loop (PROTOCOL.md §13.3, §13.5).

One ``ImagePool`` per worker process, shared by all slots:

- ``md5`` runs in a thread (hashlib releases the GIL);
- ``optimize`` runs in helper processes (``backend/job/pngworker.py``), one per core, each driven by
  one pool thread that blocks on its pipe. oxipng (pyoxipng, in the helper) is the default;
  ``optipng -o2`` and ``pngquant`` run as the helper's children.

No multiprocessing, no forkserver, no resource tracker: the helpers are plain children of the worker
with ``PR_SET_PDEATHSIG`` (SIGKILL), so they die with it even when it is SIGKILLed, and they exit by
themselves after ``idle_exit`` seconds without work (an idle worker has none).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import hashlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OPTIMIZE_ATTEMPTS = 5  # NEW retries optimisation up to 5 times with a 1 s pause
OPTIMIZE_TIMEOUT = 300.0
IDLE_EXIT = 60.0  # seconds a helper waits for work before it exits
HELPER = Path(__file__).with_name("pngworker.py")

# Chosen by measurement (bench/upload.py part 1, bench/README.md): on 60 screen-like 1024×768 PNGs as
# os-autoinst writes them, one filter (Entropy) and libdeflate level 9 give 0.998× the bytes of
# `optipng -o2` in 0.19× its time — the fastest setting within 2 % of optipng's size. oxipng's own
# presets: -o0 is 6.5 % bigger, -o1/-o2 are smaller but 2-4× slower than this.
OXIPNG_PRESET: dict[str, Any] = {"level": 0, "filter": ["Entropy"], "deflate": 9}


class OptimizeError(RuntimeError):
    """The optimiser failed for good; the text ends up in the 'worker broken' reason."""


class Optimizer(enum.StrEnum):
    OXIPNG = "oxipng"
    OPTIPNG = "optipng"
    PNGQUANT = "pngquant"


OPTIMIZER_SETTING = "QAWORKER_PNG_OPTIMIZER"
_warned: set[str] = set()  # bad values already logged (settings are parsed once per upload round)


def choose_optimizer(setting: str | None, use_pngquant: bool) -> Optimizer:
    """USE_PNGQUANT (a job's explicit, lossy choice) wins; else QAWORKER_PNG_OPTIMIZER (default oxipng)."""
    if use_pngquant:
        return Optimizer.PNGQUANT
    value = (setting or "").strip().lower()
    if value == Optimizer.OPTIPNG:
        return Optimizer.OPTIPNG
    if value not in ("", Optimizer.OXIPNG) and value not in _warned:
        _warned.add(value)
        log.warning("%s=%s is not one of oxipng, optipng: using oxipng", OPTIMIZER_SETTING, setting)
    return Optimizer.OXIPNG


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def md5_file(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class HelperGone(Exception):
    """The helper process ended without answering; ``retired`` = it left on its own while idle."""

    def __init__(self, text: str, retired: bool) -> None:
        super().__init__(text)
        self.retired = retired


class _Helper:
    """One helper process and its pipes; used by exactly one pool thread at a time (blocking calls)."""

    def __init__(self, idle_exit: float) -> None:
        env = {**os.environ, "RAYON_NUM_THREADS": "1"}  # one helper per core already fills the cores
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(os.getpid()), f"{idle_exit:g}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True,
            start_new_session=True)  # the terminal's Ctrl+C/hangup are for the worker, not for the helpers
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self._gone() from None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.kill()
                raise HelperGone(f"optimiser helper timed out after {timeout:.0f} s", retired=False)
            data = os.read(fd, 65536)
            if not data:
                raise self._gone()
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply = json.loads(line)
        return reply if isinstance(reply, dict) else {"error": "bad reply from the optimiser helper"}

    def _gone(self) -> HelperGone:
        code = self.proc.wait()
        if code == 0:
            return HelperGone("optimiser helper retired", retired=True)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return HelperGone(f"optimiser helper died ({how})", retired=False)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """EOF on stdin ends it; a helper busy with a big image is killed."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self, reap: bool = True) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        if reap:
            self.proc.wait()


class ImagePool:
    """See the module docstring. Safe to share between event loops (tests) and slots."""

    def __init__(self, workers: int | None = None, *, idle_exit: float = IDLE_EXIT,
                 timeout: float = OPTIMIZE_TIMEOUT, oxipng_preset: dict[str, Any] | None = None) -> None:
        self.size = workers or available_cores()
        self.idle_exit = idle_exit
        self.timeout = timeout
        self.oxipng_preset = dict(oxipng_preset or OXIPNG_PRESET)
        self._executor = concurrent.futures.ThreadPoolExecutor(self.size, thread_name_prefix="pngopt")
        self._local = threading.local()
        self._helpers: set[_Helper] = set()
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._threads_started = False
        self._gate: threading.Barrier | None = None  # while the threads start (shutdown breaks it)
        self._closed = False

    # -- the loop side ------------------------------------------------------------------------------------
    async def md5(self, path: Path | str) -> str:
        """md5 of the file as it is now (call it before optimising: known_images use the original's)."""
        return await asyncio.to_thread(md5_file, str(path))

    async def optimize(self, path: Path | str, method: Optimizer = Optimizer.OXIPNG,
                       attempts: int = OPTIMIZE_ATTEMPTS, pause: float = 1.0) -> int:
        """Optimise ``path`` in place; returns the new size. Raises OptimizeError after ``attempts``."""
        if self._closed:
            raise OptimizeError("Unable to optimize image: the worker is shutting down")
        if not self._threads_started:
            await asyncio.to_thread(self._start_threads)
        loop = asyncio.get_running_loop()
        try:
            work = loop.run_in_executor(self._executor, self._optimize, str(path), method, attempts, pause)
        except RuntimeError:  # shut down while the threads started
            raise OptimizeError("Unable to optimize image: the worker is shutting down") from None
        return await work

    def pids(self) -> list[int]:
        """The helper processes alive now (for tests and the metrics)."""
        with self._lock:
            return sorted(h.pid for h in self._helpers if h.alive)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the helpers (synchronous: they are plain processes); queued work is dropped with
        ``cancel_futures``. The name and signature are ``concurrent.futures.Executor.shutdown``'s."""
        self._closed = True
        gate = self._gate
        if gate is not None:  # threads still starting: a cancelled gate task would keep the starter waiting
            gate.abort()
        self._executor.shutdown(wait=False, cancel_futures=cancel_futures)
        with self._lock:
            helpers, self._helpers = list(self._helpers), set()
        for helper in helpers:
            if wait:
                helper.close()
            else:
                helper.kill(reap=False)  # not even a waitpid on the caller's (the loop's) thread

    async def aclose(self) -> None:
        await asyncio.to_thread(self.shutdown, True, True)

    # -- the pool threads ----------------------------------------------------------------------------------
    def _start_threads(self) -> None:
        """Every pool thread running before the loop submits to the pool (called in a default-pool thread):
        a submit that finds no idle thread starts one, and ``Thread.start()`` waits until it runs — tens
        of ms on a busy machine, which must not happen on the loop."""
        with self._start_lock:
            if self._threads_started:
                return
            gate = self._gate = threading.Barrier(self.size + 1)
            try:
                for _ in range(self.size):  # each blocks at the gate, so each submit starts a thread
                    self._executor.submit(gate.wait, 30)
                gate.wait(30)
            except (RuntimeError, threading.BrokenBarrierError):  # shut down meanwhile
                gate.abort()
            finally:
                self._gate = None
            self._threads_started = True

    def _helper(self) -> _Helper:
        helper: _Helper | None = getattr(self._local, "helper", None)
        if helper is not None and helper.alive:
            return helper
        if helper is not None:
            self._forget(helper)
        if self._closed:
            raise HelperGone("the worker is shutting down", retired=False)
        helper = _Helper(self.idle_exit)
        with self._lock:
            self._helpers.add(helper)
        self._local.helper = helper
        return helper

    def _forget(self, helper: _Helper) -> None:
        with self._lock:
            self._helpers.discard(helper)
        if getattr(self._local, "helper", None) is helper:
            self._local.helper = None

    def _optimize(self, path: str, method: Optimizer, attempts: int, pause: float) -> int:
        name = Path(path).name
        request = {"path": path, "method": str(method), "timeout": self.timeout}
        if method == Optimizer.OXIPNG:
            request["oxipng"] = self.oxipng_preset
        error, attempt, free_retries = "", 0, 3
        while attempt < max(1, attempts) and not self._closed:
            attempt += 1
            try:
                reply = self._helper().call(request, self.timeout + 5)
            except HelperGone as exc:
                self._forget_current()
                if exc.retired and free_retries > 0:
                    free_retries -= 1  # it left while idle, before reading the request: not a failure
                    attempt -= 1
                    continue
                error = f"{name}: {exc}"
            else:
                if "size" in reply:
                    return int(reply["size"])
                error = str(reply.get("error") or reply)
                if reply.get("permanent"):
                    break  # e.g. optipng is not installed: retrying cannot help
            if attempt < attempts and not self._closed:
                time.sleep(pause)
        raise OptimizeError(f"Unable to optimize image: {error or name + ': the worker is shutting down'}")

    def _forget_current(self) -> None:
        helper = getattr(self._local, "helper", None)
        if helper is not None:
            self._forget(helper)


def make_image_pool(workers: int | None = None) -> ImagePool:
    """The worker's image pool: one optimiser helper per core (started on demand)."""
    return ImagePool(workers)
