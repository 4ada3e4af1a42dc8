"""The Worker: all slots of one process, their shared resources, and the command API for the faces.

``Worker.run`` is the one awaitable of the backend (hypercorn's shape): it starts the shared
resources, serves every slot as a child of one TaskGroup, and returns the exit code. A quit gives
the jobs ``QUIT_DEADLINE`` seconds (an ``asyncio.timeout`` rescheduled by ``quit()``); after that
the slots are cancelled, which still kills every isotovideo tree. A failing slot is logged and
started afresh; it never takes the other slots' jobs down. A cancellation of ``run`` itself is
not swallowed: it tears down and propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from backend import __version__
from backend import events as ev
from backend.cache import AssetCache
from backend.childwatch import pidfd_child_watcher
from backend.config import SlotConfig, WorkerConfig
from backend.engine.cgroup import Cgroups
from backend.engine.isotovideo import detect_interface_version, set_child_subreaper
from backend.engine.watch import prepare as prepare_watch
from backend.events import EventBus
from backend.health import worker_hostname
from backend.job.status import make_image_pool
from backend.slot import Slot, SlotServices, StopFlags
from backend.slot.adopthandover import hand_over
from backend.state import WorkerView
from backend.taskdump import QUIT_REPORT_AFTER, report_slow_quit

log = logging.getLogger(__name__)

QUIT_DEADLINE = 90.0  # seconds a quit may take before jobs are cut short
SLOT_RESTART_DELAY = 5.0  # after a slot failed unexpectedly

RequestObserverFactory = Callable[[str], Callable[[str, str, int | None, bool], None]]


class Worker:
    """Implements ``backend.api.Runtime``."""

    def __init__(self, config: WorkerConfig, *, bus: EventBus | None = None,
                 request_observer: RequestObserverFactory | None = None) -> None:
        self.config = config
        self.bus = bus or EventBus()
        self.view = WorkerView()
        self.bus.add_listener(self.view.apply)
        self._request_observer = request_observer
        self.flags = StopFlags()
        self.slots: list[Slot] = []
        self.services: SlotServices | None = None
        self.exit_code = 0
        self._stopped = asyncio.Event()
        self._deadline: asyncio.Timeout | None = None
        self._slow_quit: asyncio.TimerHandle | None = None  # logs what every task waits for (backend/taskdump.py)

    @property
    def stopping(self) -> bool:
        return self.flags.stopping

    @property
    def quitting(self) -> bool:
        return self.flags.quitting

    # -- Runtime command API -------------------------------------------------------------------------

    def drain(self) -> None:
        if self.stopping:
            return
        self.flags.draining = True  # the faces log the WorkerStopping event
        self.bus.publish(ev.WorkerStopping(mode="drain"))
        for slot in self.slots:
            slot.finish_when_idle()

    def quit(self) -> None:
        if self.flags.quitting:
            return
        self.flags.quitting = True  # the faces log the WorkerStopping event
        self.bus.publish(ev.WorkerStopping(mode="quit"))
        for slot in self.slots:
            slot.quit()
        with contextlib.suppress(RuntimeError):  # no loop yet: nothing runs that could hang
            self._slow_quit = asyncio.get_running_loop().call_later(QUIT_REPORT_AFTER, report_slow_quit)
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + QUIT_DEADLINE)

    def hand_over(self) -> None:
        """SIGUSR2: exit at once, the jobs keep running for the next start (backend.slot.adopthandover)."""
        hand_over(self)

    def abort_job(self, instance: int, job_id: int | None = None) -> bool:
        """Abort the job of a slot (only if it is still ``job_id``, when given)."""
        for slot in self.slots:
            if slot.instance == instance:
                return slot.abort(job_id)
        return False

    async def wait_stopped(self) -> int:
        await self._stopped.wait()
        return self.exit_code

    # -- running ----------------------------------------------------------------------------------------

    async def run(self) -> int:
        with pidfd_child_watcher(asyncio.get_running_loop()):  # no waiter thread per job process
            return await self._run()

    async def _run(self) -> int:
        try:
            await self._start()
            async with asyncio.timeout(None) as self._deadline:
                if self.flags.quitting:
                    self._deadline.reschedule(asyncio.get_running_loop().time() + QUIT_DEADLINE)
                async with asyncio.TaskGroup() as tg:
                    for index in range(len(self.slots)):
                        tg.create_task(self._serve_slot(index), name=f"slot-{self.slots[index].instance}")
        except TimeoutError:
            log.error("quit took longer than %.0f s; the remaining jobs were cut short", QUIT_DEADLINE)
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
        interface_version = await detect_interface_version(self.config.isotovideo)
        hosts = [h for s in self.config.slots for h in s.hosts]
        configured = self.config.slots[0].settings.get("WORKER_HOSTNAME") if self.config.slots else None
        hostname = await asyncio.to_thread(worker_hostname, hosts, configured)  # may ask DNS (getfqdn)
        cache = None
        if self.config.cache_dir is not None:
            tuning = self.config.tuning
            assert tuning is not None
            cache = AssetCache(self.config.cache_dir, limit_bytes=int(tuning.cache_limit_gib * 1024 ** 3),
                               min_free_percentage=tuning.cache_min_free_percentage, bus=self.bus,
                               rsync_tries=tuning.rsync_retries, rsync_retry_delay=tuning.rsync_retry_period,
                               rsync_timeout=max(1, round(tuning.rsync_timeout)),  # rsync: 0 = no timeout
                               workers=tuning.cache_workers, metrics_download_size=tuning.metrics_download_size)
            await cache.open()
        self.services = SlotServices(
            bus=self.bus, prjdir=self.config.prjdir, isotovideo=self.config.isotovideo,
            no_cleanup=self.config.no_cleanup, env=self.config.env, proxies=self.config.proxies,
            interface_version=interface_version,
            worker_hostname=hostname, image_pool=make_image_pool(), flags=self.flags, cache=cache,
            cgroups=await asyncio.to_thread(Cgroups.setup, self.config.tuning.cgroup if self.config.tuning else "auto"),
            test_sync_attempts=self.config.tuning.cache_test_sync_attempts if self.config.tuning else 3,
            request_observer=self._observer_for, on_incompatible=self.quit, on_all_disabled=self._slot_disabled,
            on_jobs_done=self._jobs_done)
        self.slots = list(await asyncio.gather(*(Slot.create(sc, self.services) for sc in self.config.slots)))
        log.info("qaworker %s: slots %s, web UIs %s, isotovideo %s (interface v%d), WORKER_HOSTNAME %s",
                 __version__, [s.instance for s in self.slots], sorted({h.configured for h in hosts}),
                 self.config.isotovideo, interface_version, hostname)
        self.bus.publish(ev.WorkerStarted(version=__version__, instances=tuple(s.instance for s in self.slots),
                                          hosts=tuple(dict.fromkeys(h.configured for h in hosts))))
        for slot in self.slots:  # a stop asked for while starting
            if self.flags.quitting:
                slot.quit()
            elif self.flags.draining:
                slot.finish_when_idle()

    async def _serve_slot(self, index: int) -> None:
        """Run one slot; an unexpected failure is logged and the slot starts afresh (unless stopping)."""
        while True:
            slot = self.slots[index]
            try:
                await slot.run()
                return
            except Exception:
                log.exception("[slot %d] failed unexpectedly; the other slots go on", slot.instance)
                self.bus.publish(ev.Notice(level="error", instance=slot.instance,
                                           message=f"slot {slot.instance} failed unexpectedly and restarts"))
            if self.stopping:
                return
            await asyncio.sleep(SLOT_RESTART_DELAY)
            assert self.services is not None
            self.slots[index] = await Slot.create(self._slot_config(slot.instance), self.services)

    def _slot_config(self, instance: int) -> SlotConfig:
        return next(sc for sc in self.config.slots if sc.instance == instance)

    async def _shutdown(self) -> None:
        if self._slow_quit is not None:
            self._slow_quit.cancel()
        services = self.services
        if services is not None and services.cache is not None:
            try:
                await services.cache.close()
            except Exception:
                log.exception("closing the asset cache failed")
        if services is not None:
            await services.image_pool.aclose()  # reaps the optimiser helpers, off the loop
            await asyncio.to_thread(services.cgroups.remove_empty_slots)
        self.bus.publish(ev.WorkerStopped(exit_code=self.exit_code))
        self._stopped.set()

    def _observer_for(self, base_url: str) -> Callable[[str, str, int | None, bool], None] | None:
        """The metrics hook for one web UI's API client (None without metrics)."""
        return self._request_observer(base_url) if self._request_observer is not None else None

    def _jobs_done(self, instance: int) -> None:
        """TERMINATE_AFTER_JOBS_DONE: exit once the queue is empty (a Restart=always unit starts us anew)."""
        log.info("[slot %d] jobs done and TERMINATE_AFTER_JOBS_DONE is set: exiting once every slot is idle",
                 instance)
        self.drain()

    def _slot_disabled(self) -> None:
        if all(s.all_disabled for s in self.slots):
            log.error("no web UI accepts this worker; exiting")
            self.exit_code = 1
            for s in self.slots:
                s.finish_when_idle()
