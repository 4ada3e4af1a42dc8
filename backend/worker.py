"""The Worker: all slots of one process, their shared resources, and the command API for the faces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from backend import __version__
from backend import events as ev
from backend.config import WorkerConfig
from backend.engine.isotovideo import detect_interface_version, set_child_subreaper
from backend.engine.watch import prepare as prepare_watch
from backend.events import EventBus
from backend.health import worker_hostname
from backend.job.status import make_image_pool
from backend.slot import Slot
from backend.state import WorkerView
from backend.webui.client import RetryPolicy

log = logging.getLogger(__name__)

QUIT_DEADLINE = 90.0  # seconds a quit may take before jobs are cut short


class Worker:
    """Implements ``backend.api.Runtime``."""

    def __init__(self, config: WorkerConfig, *, bus: EventBus | None = None,
                 request_observer: Callable[[str], Callable[[str, str, int | None, bool], None]] | None = None
                 ) -> None:
        self.config = config
        self.bus = bus or EventBus()
        self.view = WorkerView()
        self.bus.add_listener(self.view.apply)
        self._request_observer = request_observer
        self.slots: list[Slot] = []
        self.cache: Any = None
        self.image_pool: Any = None
        self.interface_version = 0
        self.worker_hostname: str | None = None
        self.draining = False
        self.quitting = False
        self.exit_code = 0
        self._stopped = asyncio.Event()
        self._quit_deadline: asyncio.TimerHandle | None = None
        self._main: asyncio.Task | None = None

    @property
    def stopping(self) -> bool:
        return self.draining or self.quitting

    def request_observer(self, base_url: str) -> Callable[[str, str, int | None, bool], None] | None:
        """The metrics hook for one web UI's API client (None without metrics)."""
        return self._request_observer(base_url) if self._request_observer is not None else None

    # -- Runtime command API -------------------------------------------------------------------------

    def drain(self) -> None:
        if self.stopping:
            return
        self.draining = True
        log.info("finishing the current jobs, then stopping (no new jobs)")
        self.bus.publish(ev.WorkerStopping(mode="drain"))
        for slot in self.slots:
            slot.finish_when_idle()

    def quit(self) -> None:
        if self.quitting:
            return
        self.quitting = True
        log.info("stopping: current jobs end with reason quit")
        self.bus.publish(ev.WorkerStopping(mode="quit"))
        for slot in self.slots:
            for client in slot.clients.values():  # a dead web UI must not hold the exit for long
                client.retry = RetryPolicy(attempts=3, delay=min(client.retry.delay, 2.0),
                                           busy_delay=min(client.retry.busy_delay, 5.0), max_retry_after=5.0)
            slot.quit()
        with contextlib.suppress(RuntimeError):
            self._quit_deadline = asyncio.get_running_loop().call_later(QUIT_DEADLINE, self._force_stop)

    def abort_job(self, instance: int) -> bool:
        for slot in self.slots:
            if slot.instance == instance:
                return slot.abort()
        return False

    async def wait_stopped(self) -> int:
        await self._stopped.wait()
        return self.exit_code

    # -- running ----------------------------------------------------------------------------------------

    async def run(self) -> int:
        self._main = asyncio.current_task()
        try:
            await self._start()
            async with asyncio.TaskGroup() as tg:
                for slot in self.slots:
                    tg.create_task(slot.run(), name=f"slot-{slot.instance}")
        except asyncio.CancelledError:
            log.error("worker stopped forcibly")
            self.exit_code = self.exit_code or 1
        except Exception:
            log.exception("worker failed")
            self.exit_code = 1
        finally:
            await self._shutdown()
        return self.exit_code

    async def _start(self) -> None:
        set_child_subreaper()
        await asyncio.to_thread(prepare_watch)
        self.interface_version = await detect_interface_version(self.config.isotovideo)
        hosts = [h for s in self.config.slots for h in s.hosts]
        configured = self.config.slots[0].settings.get("WORKER_HOSTNAME") if self.config.slots else None
        self.worker_hostname = worker_hostname(hosts, configured)
        self.image_pool = make_image_pool()
        if self.config.cache_dir is not None:
            from backend.cache import AssetCache

            self.cache = AssetCache(self.config.cache_dir, limit_bytes=int(self.config.cache_limit_gib * 1024 ** 3),
                                    min_free_percentage=self.config.cache_min_free_percentage, bus=self.bus)
            await self.cache.open()
        self.slots = [Slot(self, sc) for sc in self.config.slots]
        log.info("qaworker %s: slots %s, web UIs %s, isotovideo %s (interface v%d), WORKER_HOSTNAME %s",
                 __version__, [s.instance for s in self.slots], sorted({h.configured for h in hosts}),
                 self.config.isotovideo, self.interface_version, self.worker_hostname)
        self.bus.publish(ev.WorkerStarted(version=__version__, instances=tuple(s.instance for s in self.slots),
                                          hosts=tuple(dict.fromkeys(h.configured for h in hosts))))
        if self.stopping:
            for slot in self.slots:
                slot.quit() if self.quitting else slot.finish_when_idle()

    async def _shutdown(self) -> None:
        if self._quit_deadline is not None:
            self._quit_deadline.cancel()
        if self.cache is not None:
            with contextlib.suppress(Exception):
                await self.cache.close()
        if self.image_pool is not None:
            self.image_pool.shutdown(wait=False, cancel_futures=True)
        self.bus.publish(ev.WorkerStopped(exit_code=self.exit_code))
        self._stopped.set()

    def _force_stop(self) -> None:
        log.error("quit took longer than %.0f s; ending the remaining jobs now", QUIT_DEADLINE)
        if self._main is not None:
            self._main.cancel()

    def slot_disabled(self, slot: Slot) -> None:
        if all(s.all_disabled for s in self.slots):
            log.error("no web UI accepts this worker; exiting")
            self.exit_code = 1
            for s in self.slots:
                s.finish_when_idle()

    # -- per-job seams for the cache -------------------------------------------------------------------

    def asset_provider(self, conn: Any, job_id: int) -> Any:
        if self.cache is None:
            return None
        from backend.cache.provider import CacheAssetProvider

        return CacheAssetProvider(self.cache, conn.client, conn.host, job_id)

    def tests_dir_provider(self, conn: Any) -> Any:
        if self.cache is None or not conn.host.testpoolserver:
            return None
        from backend.cache.provider import tests_dir_provider

        return tests_dir_provider(self.cache, conn.host)
