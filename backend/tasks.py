"""Small structured-concurrency helpers on top of ``asyncio.TaskGroup`` and ``asyncio.timeout``.

Every long-lived task in qaworker has one owner that awaits it. These helpers keep the recurring
patterns in one place:

- ``run_phase``: run one piece of work until it finishes, a stop event fires, or a deadline passes;
  the work and its companions are children of a TaskGroup, so nothing is left running.
- ``guarded``: a child of a TaskGroup that must never take its siblings down: an unexpected
  exception is logged with its traceback and the child is restarted after a pause.
- ``beside``: run several steps at once and get the main one's result, errors unwrapped.
- ``cancel_and_wait``: cancel tasks and await them without swallowing a cancellation aimed at the
  caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class PhaseEnd(Enum):
    FINISHED = "finished"
    STOPPED = "stopped"  # the stop event fired first
    TIMED_OUT = "timed out"  # the deadline passed first


@dataclass(frozen=True)
class PhaseResult(Generic[T]):
    end: PhaseEnd
    value: T | None = None


async def run_phase(work: Coroutine[Any, Any, T], *, stop: asyncio.Event, timeout: float | None,
                    companions: Iterable[Coroutine[Any, Any, Any]] = ()) -> PhaseResult[T]:
    """Run ``work`` until it returns, ``stop`` is set, or ``timeout`` seconds pass.

    ``companions`` run beside the work (heartbeats, watchers) and are cancelled when it ends. An
    exception of the work is re-raised as itself (not as an ExceptionGroup); a cancellation of the
    caller cancels everything and propagates.
    """
    companions = list(companions)
    if stop.is_set():
        work.close()
        for extra in companions:
            extra.close()
        return PhaseResult(PhaseEnd.STOPPED)
    try:
        async with asyncio.timeout(timeout):
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(work)
                helpers = [tg.create_task(c) for c in companions]
                stopper = tg.create_task(_cancel_when_set(stop, task))
                task.add_done_callback(lambda _t: [h.cancel() for h in (*helpers, stopper)])
    except TimeoutError:
        return PhaseResult(PhaseEnd.TIMED_OUT)
    except BaseExceptionGroup as group:
        raise _first(group) from None
    if task.cancelled():
        return PhaseResult(PhaseEnd.STOPPED)
    return PhaseResult(PhaseEnd.FINISHED, task.result())


async def beside(main: Coroutine[Any, Any, T], *others: Coroutine[Any, Any, Any]) -> T:
    """Run ``main`` and ``others`` concurrently in one TaskGroup and return ``main``'s result; the first
    error is re-raised as itself (not as an ExceptionGroup)."""
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(main)
            for other in others:
                tg.create_task(other)
    except BaseExceptionGroup as group:
        raise _first(group) from None
    return task.result()


async def _cancel_when_set(event: asyncio.Event, task: asyncio.Task) -> None:
    await event.wait()
    task.cancel()


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first leaf exception (the one that made the group fail)."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def guarded(name: str, factory: Callable[[], Awaitable[None]], *, restart_delay: float = 5.0,
                  on_error: Callable[[BaseException], None] | None = None) -> None:
    """Run ``factory()`` forever-safe: an unexpected exception is logged and the work restarted.

    For children of a TaskGroup whose failure must not cancel their siblings (a slot's web UI
    connection must not take its running job down). Returns when the work returns normally;
    cancellation propagates.
    """
    while True:
        try:
            await factory()
            return
        except Exception as exc:  # a bug: log it, keep the siblings, try again
            log.exception("%s failed unexpectedly; restarting it in %.0f s", name, restart_delay)
            if on_error is not None:
                on_error(exc)
        await asyncio.sleep(restart_delay)


async def cancel_and_wait(*tasks: asyncio.Task) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    Their own ``CancelledError`` is expected and dropped; one aimed at the caller (it was
    cancelled while waiting) is re-raised. Their other exceptions are logged, not raised: the
    caller is tearing down.
    """
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            log.exception("task %s failed while being cancelled", task.get_name())


class TaskOwner:
    """A set of short-lived tasks owned by one object (message handlers, sends).

    The tasks are kept referenced until done (the loop holds only weak references), their errors are
    logged, and ``aclose()`` cancels and awaits what is left. Use a TaskGroup where the owner's
    lifetime is one ``async with`` block; this is for owners whose callbacks start work from
    synchronous code (a websocket message handler).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task | None:
        if self._closed:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name or f"{self.name}-task")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("%s: task %s failed", self.name, task.get_name(), exc_info=(type(exc), exc, exc.__traceback__))

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        self._closed = True
        await cancel_and_wait(*list(self._tasks))
