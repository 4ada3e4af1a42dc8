"""The job cgroup's memory/CPU figures as events (metrics and dashboard read them from the bus)."""

from __future__ import annotations

import asyncio

from backend import events as ev
from backend.engine.cgroup import JobCgroup
from backend.events import EventBus

USAGE_INTERVAL = 5.0  # seconds between two samples: the figures change slowly, cgroupfs reads are cheap


async def report_usage(cgroup: JobCgroup, bus: EventBus, instance: int, job_id: int,
                       interval: float = USAGE_INTERVAL) -> None:
    """Publish ``JobResources`` at once and then every ``interval`` until cancelled or the cgroup is gone."""
    while True:
        usage = await asyncio.to_thread(cgroup.usage)  # cgroupfs I/O: off the loop
        if usage is None:
            return
        if usage.processes == 0:  # isotovideo has not entered yet (its sh wrapper is starting): no figure
            await asyncio.sleep(min(interval, 0.5))
            continue
        bus.publish(ev.JobResources(instance=instance, job_id=job_id, memory_bytes=usage.memory_bytes,
                                    cpu_seconds=usage.cpu_seconds, processes=usage.processes))
        await asyncio.sleep(interval)
