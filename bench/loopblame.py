"""Per-callback accounting of an event loop, for benchmarks: what the loop spends its time on.

``LoopAccounting.install()`` wraps ``asyncio.Handle._run`` (every callback and task step the loop runs) with
two ``perf_counter`` calls and books the time under the callback's name: a task step under its coroutine's
qualified name, anything else under the callback's. Garbage-collector pauses are booked from
``gc.callbacks``. ``report()`` prints the top entries by total time and the slowest single runs. About 1 µs
per callback; bench-only (never installed by the worker).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Account:
    calls: int = 0
    total: float = 0.0
    worst: float = 0.0
    over_20ms: int = 0
    cpu: float = 0.0  # thread CPU time of the runs (wall minus waiting for a CPU)
    worst_cpu: float = 0.0  # CPU time of the slowest run

    def add(self, took: float, cpu: float = 0.0) -> None:
        self.calls += 1
        self.total += took
        self.cpu += cpu
        if took > self.worst:
            self.worst, self.worst_cpu = took, cpu
        self.over_20ms += took > 0.02


def suspended_at(handle: asyncio.Handle) -> str:
    """Where a task step's coroutine chain is suspended (its deepest coroutine frame), else ''."""
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)
    if not isinstance(owner, asyncio.Task):
        return ""
    coro: Any = owner.get_coro()
    where = ""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        where = f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_qualname}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return where


def callback_name(handle: asyncio.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', type(coro).__name__)}"
    func = getattr(callback, "__func__", callback)
    name = getattr(func, "__qualname__", None) or type(callback).__name__
    module = getattr(func, "__module__", "") or ""
    return f"{module.rsplit('.', 1)[-1]}.{name}" if module else name


@dataclass
class LoopAccounting:
    accounts: dict[str, Account] = field(default_factory=lambda: defaultdict(Account))
    gc_pauses: dict[int, Account] = field(default_factory=lambda: defaultdict(Account))
    slow_steps: dict[str, Account] = field(default_factory=lambda: defaultdict(Account))  # > SLOW, by place
    slow: float = 0.01
    _original: Any = None
    _gc_start: float = 0.0
    _gc_cpu: float = 0.0

    def install(self) -> None:
        original = self._original = asyncio.Handle._run
        accounts, perf, thread_time = self.accounts, time.perf_counter, time.thread_time

        def timed_run(handle: asyncio.Handle) -> None:
            resumed = suspended_at(handle)
            start, cpu_start = perf(), thread_time()
            try:
                original(handle)
            finally:
                took, cpu = perf() - start, thread_time() - cpu_start
                accounts[callback_name(handle)].add(took, cpu)
                if took > self.slow:
                    place = f"{resumed or callback_name(handle)} -> {suspended_at(handle) or 'end'}"
                    self.slow_steps[place].add(took, cpu)

        asyncio.Handle._run = timed_run  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.Handle._run = self._original  # type: ignore[method-assign]
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def reset(self) -> None:
        self.slow_steps.clear()
        self.accounts.clear()
        self.gc_pauses.clear()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start, self._gc_cpu = time.perf_counter(), time.thread_time()
        else:
            self.gc_pauses[info.get("generation", -1)].add(time.perf_counter() - self._gc_start,
                                                           time.thread_time() - self._gc_cpu)

    def report(self, span: float, top: int = 15) -> str:
        rows = sorted(self.accounts.items(), key=lambda kv: kv[1].total, reverse=True)
        busy = sum(a.total for a in self.accounts.values())
        cpu = sum(a.cpu for a in self.accounts.values())
        out = [f"loop busy {busy:.2f} s of {span:.1f} s ({busy / max(span, 1e-9) * 100:.1f}%; CPU {cpu:.2f} s), "
               f"{sum(a.calls for a in self.accounts.values())} callbacks (wall ms / CPU ms)",
               "| callback | calls | total | share of busy | slowest | > 20 ms |",
               "| --- | --- | --- | --- | --- | --- |"]
        for name, a in rows[:top]:
            out.append(f"| {name} | {a.calls} | {a.total * 1000:.0f} / {a.cpu * 1000:.0f} ms | "
                       f"{a.total / max(busy, 1e-9) * 100:.1f}% | {a.worst * 1000:.1f} / {a.worst_cpu * 1000:.1f} ms | "
                       f"{a.over_20ms} |")
        slowest = sorted(self.accounts.items(), key=lambda kv: kv[1].worst, reverse=True)[:5]
        out.append("slowest single runs: " + "; ".join(
            f"{n} {a.worst * 1000:.1f} ms (CPU {a.worst_cpu * 1000:.1f})" for n, a in slowest))
        out.append(f"steps over {self.slow * 1000:.0f} ms, from where the task resumed to where it suspended next:")
        for place, a in sorted(self.slow_steps.items(), key=lambda kv: kv[1].total, reverse=True)[:top]:
            out.append(f"  {a.calls} x, total {a.total * 1000:.0f} ms (CPU {a.cpu * 1000:.0f}), slowest "
                       f"{a.worst * 1000:.1f} ms (CPU {a.worst_cpu * 1000:.1f}): {place}")
        for gen, a in sorted(self.gc_pauses.items()):
            out.append(f"gc generation {gen}: {a.calls} pauses, total {a.total * 1000:.0f} ms (CPU "
                       f"{a.cpu * 1000:.0f}), slowest {a.worst * 1000:.1f} ms (CPU {a.worst_cpu * 1000:.1f})")
        return "\n".join(out)
