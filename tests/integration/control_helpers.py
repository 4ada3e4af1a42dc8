"""Helpers for the control-socket tests."""

from __future__ import annotations

import asyncio

from backend.events import EventBus
from backend.state import WorkerView


class BusRuntime:
    """Just a bus and a read model: the stall test floods events without needing jobs."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.view = WorkerView()
        self.bus.add_listener(self.view.apply)
        self.commands: list[str] = []

    def drain(self) -> None:
        self.commands.append("drain")

    def quit(self) -> None:
        self.commands.append("quit")

    def abort_job(self, instance: int, job_id: int | None = None) -> bool:
        self.commands.append(f"abort {instance} {job_id}")
        return True

    async def wait_stopped(self) -> int:
        await asyncio.Event().wait()
        return 0


async def until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll a condition the code under test offers no event for (client counts, received lists)."""
    for _ in range(max(1, int(timeout / interval))):
        if predicate():
            return
        await asyncio.sleep(interval)
    if not predicate():
        raise AssertionError(f"not within {timeout} s: {what}")
