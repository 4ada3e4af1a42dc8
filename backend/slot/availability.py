"""A slot's availability (PROTOCOL.md §7): the checks, their last result, and when to re-run them.

The checks themselves live in ``backend.health``. The monitor keeps their last result so that an idle
``worker_status`` reports it without re-running them; it re-checks on a schedule while idle (sooner
while broken, so recovery is quick) and whenever the slot asks (before accepting a job, after one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from backend.config import SlotConfig
from backend.health import Availability, check_availability
from backend.job.pool import PoolDir
from backend.slot.ovs import ovs_problem
from backend.slot.services import SlotServices

log = logging.getLogger(__name__)

BROKEN_RECHECK_INTERVAL = 10.0  # while broken: recover quickly


class AvailabilityMonitor:
    def __init__(self, config: SlotConfig, pool: PoolDir, services: SlotServices, *,
                 on_change: Callable[[Availability], None]) -> None:
        self.config = config
        self.pool = pool
        self.services = services
        self.current = Availability(None)
        self._on_change = on_change
        self._lock = asyncio.Lock()  # one check at a time (it takes the pool lock)
        self._checked_once = False

    @property
    def reason(self) -> str | None:
        return self.current.reason

    def fatal_reason(self) -> str | None:
        return self.current.reason if self.current.fatal else None

    async def check(self) -> Availability:
        """Run the checks now; report a change."""
        async with self._lock:
            previous = self.current.reason
            self.current = await self._run_checks()
            changed = self.current.reason != previous or not self._checked_once
            self._checked_once = True
        if changed:
            log.debug("[slot %d] availability: %s", self.config.instance, self.current.reason or "available")
            self._on_change(self.current)
        return self.current

    async def run(self, is_busy: Callable[[], bool]) -> None:
        """Re-check while the slot is idle, until cancelled."""
        while True:
            healthy = self.config.tuning.health_interval
            await asyncio.sleep(BROKEN_RECHECK_INTERVAL if self.current.reason else healthy)
            if not is_busy():
                await self.check()

    async def _run_checks(self) -> Availability:
        services = self.services
        extra = [services.cache.health] if services.cache is not None else []
        try:
            result = await check_availability(self.config, self.pool, worker_hostname=services.worker_hostname,
                                              no_cleanup=services.no_cleanup, extra_checks=extra)
            if result.ok:  # after the local checks (upstream: just before the load; first problem wins)
                result = Availability(await ovs_problem(self.config))
            return result
        except Exception as exc:  # a failing check is itself a broken worker, not a crash
            log.exception("[slot %d] availability check failed", self.config.instance)
            return Availability(f"availability check failed: {exc}")

    def release(self) -> None:
        """The slot stops: give the pool lock back."""
        with contextlib.suppress(Exception):
            self.pool.unlock()
