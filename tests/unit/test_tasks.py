"""The structured-concurrency helpers: nothing is left running, nothing is swallowed."""

from __future__ import annotations

import asyncio

import pytest

from backend.tasks import PhaseEnd, TaskOwner, cancel_and_wait, guarded, run_phase


def others() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_phase_returns_the_work_result():
    stop = asyncio.Event()
    result = await run_phase(asyncio.sleep(0.01, result=42), stop=stop, timeout=5)
    assert (result.end, result.value) == (PhaseEnd.FINISHED, 42)
    assert not others()


async def test_stop_event_cancels_work_and_companions():
    stop = asyncio.Event()
    cancelled = []

    async def work():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append("work")
            raise

    async def companion():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append("companion")
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    result = await run_phase(work(), stop=stop, timeout=5, companions=[companion()])
    assert result.end is PhaseEnd.STOPPED and result.value is None
    assert sorted(cancelled) == ["companion", "work"]
    assert not others()


async def test_already_stopped_phase_does_not_start():
    stop = asyncio.Event()
    stop.set()
    started = []

    async def work():
        started.append(1)

    assert (await run_phase(work(), stop=stop, timeout=5)).end is PhaseEnd.STOPPED
    assert not started


async def test_timeout_cancels_the_work():
    result = await run_phase(asyncio.sleep(60), stop=asyncio.Event(), timeout=0.05)
    assert result.end is PhaseEnd.TIMED_OUT
    assert not others()


async def test_work_exception_is_raised_as_itself_and_companions_end():
    async def work():
        await asyncio.sleep(0.01)
        raise KeyError("broken")

    with pytest.raises(KeyError, match="broken"):
        await run_phase(work(), stop=asyncio.Event(), timeout=5, companions=[asyncio.sleep(60)])
    assert not others()


async def test_cancelling_the_caller_cancels_everything_and_propagates():
    inner_cancelled = asyncio.Event()

    async def work():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            inner_cancelled.set()
            raise

    outer = asyncio.create_task(run_phase(work(), stop=asyncio.Event(), timeout=None))
    await asyncio.sleep(0.02)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner_cancelled.is_set()


async def test_guarded_restarts_after_a_bug_and_returns_when_done():
    calls = []
    errors = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"bug {len(calls)}")

    await guarded("flaky", flaky, restart_delay=0.01, on_error=errors.append)
    assert len(calls) == 3
    assert [str(e) for e in errors] == ["bug 1", "bug 2"]


async def test_guarded_does_not_swallow_cancellation():
    task = asyncio.create_task(guarded("sleeper", lambda: asyncio.sleep(60), restart_delay=0.01))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancel_and_wait_reraises_a_cancellation_aimed_at_the_caller():
    async def stubborn():  # takes a while to honour its cancellation
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)
            raise

    child = asyncio.create_task(stubborn())
    await asyncio.sleep(0)

    async def teardown():
        await cancel_and_wait(child)
        return "finished"

    outer = asyncio.create_task(teardown())
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    # a plain teardown of cancelled children returns normally
    other = asyncio.create_task(asyncio.sleep(60))
    await cancel_and_wait(other)
    assert other.cancelled()


async def test_task_owner_logs_errors_and_closes(caplog):
    owner = TaskOwner("handlers")

    async def bad():
        raise ValueError("handler bug")

    owner.spawn(bad(), name="bad-handler")
    sleeper = owner.spawn(asyncio.sleep(60), name="sleeper")
    await asyncio.sleep(0.01)
    assert "handler bug" in caplog.text and "bad-handler" in caplog.text
    await owner.aclose()
    assert sleeper is not None and sleeper.cancelled()
    assert owner.spawn(asyncio.sleep(0)) is None  # closed: nothing new starts


async def test_beside_runs_steps_at_once_returns_the_main_result_and_unwraps_errors():
    from backend.tasks import beside

    order: list[str] = []

    async def step(name: str, delay: float, result: str | None = None) -> str | None:
        order.append(f"{name} start")
        await asyncio.sleep(delay)
        order.append(f"{name} end")
        return result

    assert await beside(step("main", 0.05, "value"), step("other", 0.01)) == "value"
    assert order == ["main start", "other start", "other end", "main end"]  # overlapped, main awaited

    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):  # as itself, not as an ExceptionGroup
        await beside(step("main", 1.0), broken())
