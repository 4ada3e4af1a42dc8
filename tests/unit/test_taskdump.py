"""A slow quit logs what every task waits for, down to the innermost awaited coroutine."""

from __future__ import annotations

import asyncio

from backend.taskdump import format_tasks


async def _parked_here(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _parked_here(event)


async def test_format_tasks_names_each_pending_task_and_the_line_it_waits_on():
    event = asyncio.Event()
    task = asyncio.create_task(_outer(event), name="stuck-one")
    await asyncio.sleep(0)
    try:
        text = format_tasks()
    finally:
        event.set()
        await task
    block = text.split("task stuck-one:\n", 1)[1].split("\n  task ", 1)[0]
    frames = [line.strip() for line in block.splitlines() if " in " in line]
    assert [f.rsplit(" in ", 1)[1] for f in frames[:2]] == ["_outer", "_parked_here"]
    assert frames[0].startswith(__file__)
    assert "waiting for <Future pending" in block
    assert format_tasks().count("  task ") == 1  # only this test's own task is left
