"""One slot (worker instance): its web UI connections, its availability, its jobs.

The slot turns web UI messages into decisions (PROTOCOL.md §6.3, §8): accept or reject offers, pass
stop and live commands to its ``JobRunner``, and report ``free`` / ``working`` / ``broken``.

Everything the slot runs is a child of one TaskGroup in ``Slot.run``: the connections and the
availability monitor (each ``guarded``: a bug in one is logged and it restarts, the running job is
not touched), the queue task of the current offer, and the short message handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

from backend import events as ev
from backend.config import SlotConfig
from backend.engine.sweep import sweep_pool
from backend.events import HostState, SlotState
from backend.health import Availability
from backend.ipmi import IpmiAutoShutdown, ipmi_enabled
from backend.job import outcome as oc
from backend.job.capabilities import capabilities
from backend.job.hooks import forget_worker_packages, write_worker_packages
from backend.job.pool import PoolDir
from backend.job.sequence import QueuedJob, SequenceError, flatten_sequence
from backend.slot.adopt import find_adoption
from backend.slot.availability import AvailabilityMonitor
from backend.slot.joblock import make_throttle
from backend.slot.runner import JobRunner, Offer
from backend.slot.services import SlotServices
from backend.tasks import cancel_and_wait, guarded
from backend.webui.client import ApiClient, RetryPolicy
from backend.webui.connection import WebUIConnection
from backend.webui.messages import (
    GrabJob,
    GrabJobs,
    Incompatible,
    JobInfo,
    LiveCommand,
    StopCommand,
    parse_job,
)

log = logging.getLogger(__name__)

WIND_DOWN_WAIT = 60.0  # how long an offer waits for the previous job's tidy-up


class Slot:
    def __init__(self, config: SlotConfig, services: SlotServices, clients: dict[str, ApiClient]) -> None:
        self.config = config
        self.services = services
        self.instance = config.instance
        self.pool = PoolDir(config.pool_dir)
        self.clients = clients
        self.availability = AvailabilityMonitor(config, self.pool, services, on_change=self._availability_changed)
        self.runner = JobRunner(config, self.pool, services, fatal_reason=self.availability.fatal_reason,
                                on_state=self._publish_job_state, on_idle=self._after_offer)
        self.connections = {name: self._connection(name, client) for name, client in clients.items()}
        self.all_disabled = False
        cache_dir = services.cache.cache_dir if services.cache is not None else None
        self.throttle = make_throttle(self.instance, config.tuning, config.pool_dir, cache_dir)  # LOCK_NAME
        self._lock_recheck: asyncio.Task | None = None
        self._caps: dict[str, str] | None = None
        self._finished = asyncio.Event()
        self._finish_requested = False  # drain/quit/all disabled: end once the queue task is done
        self._grab_lock = asyncio.Lock()
        self._tg: asyncio.TaskGroup | None = None

    @classmethod
    async def create(cls, config: SlotConfig, services: SlotServices) -> Slot:
        """Build the slot; its API clients are built in a thread (httpx loads an SSL context)."""
        clients = await asyncio.to_thread(_make_clients, config, services)
        return cls(config, services, clients)

    def _connection(self, name: str, client: ApiClient) -> WebUIConnection:
        tuning = self.config.tuning
        low, high = sorted((tuning.status_min_interval, tuning.status_max_interval))
        return WebUIConnection(
            client.host, self.instance, client, self.services.bus,
            capabilities=self._capabilities, held_job_ids=self.runner.held_job_ids,
            status_message=lambda: self._status_message(name), on_message=self._on_message,
            reconnect_delay=tuning.connect_interval, status_interval=(low, high),
            worker_hostname=self.services.worker_hostname)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until drained, quit or disabled everywhere; on cancellation, end the job now."""
        # Before the first job: nothing of an earlier life in the pool (what live restore adopted is
        # claimed in sweep.CLAIMS before this point and spared).
        await sweep_pool(self.config.pool_dir, f"[slot {self.instance}] at start:", cgroups=self.services.cgroups,
                         instance=self.instance)
        if self.config.tuning.packages_cmd:  # once per start, like upstream (uploaded with every job's logs)
            await write_worker_packages(self.config.tuning.packages_cmd, self.config.pool_dir, self.instance)
        else:
            await forget_worker_packages(self.config.pool_dir, self.instance)
        await self.availability.check()
        # a job an earlier life left running here is held before registering (§4), then resumed
        adoption = await asyncio.to_thread(find_adoption, self.config.pool_dir, self.instance, self.connections)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                if adoption is not None:
                    self.runner.adopt(adoption, self._spawn_required)
                services = [tg.create_task(guarded(f"[slot {self.instance}] connection to {c.name}", c.run),
                                           name=f"conn-{self.instance}-{c.name}")
                            for c in self.connections.values()]
                services.append(tg.create_task(
                    guarded(f"[slot {self.instance}] availability monitor",
                            lambda: self.availability.run(lambda: self.runner.busy)),
                    name=f"availability-{self.instance}"))
                services.append(tg.create_task(self._watch_connections(), name=f"watch-{self.instance}"))
                if ipmi_enabled(self.config.tuning):  # issue 12 row 5
                    shutdown = IpmiAutoShutdown(self.instance, self.config.tuning, lambda: self.runner.busy)
                    services.append(tg.create_task(guarded(f"[slot {self.instance}] IPMI power-off", shutdown.run),
                                                   name=f"ipmi-{self.instance}"))
                await self._finished.wait()
                await self.runner.wait_idle(timeout=None)  # only set when idle; a quit ends the job first
                await asyncio.gather(*(c.close(send_quit=True) for c in self.connections.values()))
                await cancel_and_wait(*services)
        finally:
            self._tg = None
            await asyncio.gather(*(c.aclose() for c in self.clients.values()), return_exceptions=True)
            self.availability.release()
            if self.throttle is not None:  # cancelled mid-job: do not keep a place for an hour
                await asyncio.shield(self.throttle.release())
            self._publish_state(SlotState.OFFLINE, "stopped")

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def finish_when_idle(self) -> None:
        """Drain/quit: end the slot as soon as it has no job (now, or when the busy queue task ends)."""
        self._finish_requested = True
        if not self.busy:
            self._finished.set()

    def _ending(self) -> bool:
        return self._finish_requested or self.services.flags.stopping or self.all_disabled

    def quit(self) -> None:
        """Stop the job now (reason quit); a web UI that is gone must not hold the exit for long."""
        for client in self.clients.values():
            client.retry = dataclasses.replace(client.retry, attempts=min(client.retry.attempts, 3),
                                               delay=min(client.retry.delay, 2.0),
                                               busy_delay=min(client.retry.busy_delay, 5.0), max_retry_after=5.0)
        self.runner.quit()
        self.finish_when_idle()

    def abort(self, job_id: int | None = None) -> bool:
        return self.runner.abort(job_id)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task | None:
        """A child of the slot's TaskGroup that logs its own errors (never fails its siblings)."""
        if self._tg is None:
            coro.close()
            return None
        return self._tg.create_task(_logged(coro, f"[slot {self.instance}] {name}"), name=name)

    def _spawn_required(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        task = self._spawn(coro, name)
        assert task is not None, "the slot is not running"
        return task

    async def _watch_connections(self) -> None:
        """When every web UI has disabled this slot and it has no job, the slot is done."""
        await asyncio.gather(*(c.gone.wait() for c in self.connections.values()))
        if all(c.state is HostState.DISABLED for c in self.connections.values()):
            self.all_disabled = True
            log.error("[slot %d] every web UI refused this worker; stopping when idle", self.instance)
            self.services.on_all_disabled()
            self.finish_when_idle()

    # -- availability ----------------------------------------------------------------------------

    def _availability_changed(self, availability: Availability) -> None:
        if not self.busy and not self.services.flags.stopping:
            self._publish_idle_state()
        for conn in self.connections.values():
            conn.send_status_soon()

    async def _after_offer(self) -> None:
        """The last job of an offer is done: re-check, report, and end the slot if it is stopping.

        A drain or quit that comes while this runs (the slot still counts as busy) found the slot busy
        and left the ending to this method, so the stop is checked after every await and once more at
        the very end, when nothing can come in between any more.
        """
        try:
            if self.throttle is not None:
                await self.throttle.release()
            if self.config.tuning.terminate_after_jobs_done and not self.services.flags.stopping:
                self.services.on_jobs_done(self.instance)  # the worker drains: the check below ends this slot
            if self._ending():
                return  # no "idle, waiting for jobs" on the way out: the slot goes offline
            await self.availability.check()
            if self._ending():
                return
            self._publish_idle_state()
            for conn in self.connections.values():
                conn.send_status_soon()
        finally:
            if self._ending():
                self._finished.set()

    # -- registration data ------------------------------------------------------------------------

    async def _capabilities(self) -> dict[str, str]:
        if self._caps is None:
            self._caps = await capabilities(self.config.settings, self.services.interface_version)
        return {**self._caps, "instance": str(self.instance)}

    async def _status_message(self, conn_name: str) -> dict[str, Any]:
        if self.busy:
            return self.runner.status_fields(conn_name)
        reason = self._idle_reason()  # the last result: idle status messages do not re-run the checks
        if reason:
            return {"type": "worker_status", "status": "broken", "reason": reason}
        return {"type": "worker_status", "status": "free"}

    # -- messages from the web UI ------------------------------------------------------------------

    def _on_message(self, conn: WebUIConnection, message: Any) -> None:
        match message:
            case GrabJob() | GrabJobs():
                self._spawn(self._on_grab(conn, message), f"grab-{self.instance}")
            case StopCommand():
                self._on_stop_command(conn, message)
            case LiveCommand():
                self._on_live_command(conn, message)
            case Incompatible():
                log.error("[slot %d] %s says this worker is incompatible; stopping", self.instance, conn.name)
                self.services.on_incompatible()

    async def _on_grab(self, conn: WebUIConnection, message: GrabJob | GrabJobs) -> None:
        """One offer at a time: availability is checked afresh before accepting (§7)."""
        async with self._grab_lock:
            if self.runner.winding_down:
                # set_done of the last job is answered and the web UI offers the next one while we
                # tidy up: decide once that is done instead of bouncing the job back.
                await self.runner.wait_idle(timeout=WIND_DOWN_WAIT)
            if not self.busy and not self.services.flags.stopping:
                await self.availability.check()
            offer = self._offer_from(conn, message)
            if offer is not None and not self._refuse(conn, all_ids_of(offer)) and await self._take_lock(conn, offer):
                self.runner.start(offer, self._spawn_required)

    async def _take_lock(self, conn: WebUIConnection, offer: Offer) -> bool:
        """LOCK_NAME: a place in the host-wide lock, else reject and stay unavailable until one is free."""
        if self.throttle is None or await self.throttle.take():
            return True
        self._reject(conn, all_ids_of(offer), self.throttle.reason or "")
        self._availability_changed(self.availability.current)  # report broken (the reason) right away
        if self._lock_recheck is None or self._lock_recheck.done():
            self._lock_recheck = self._spawn(self._wait_for_lock(), f"lock-recheck-{self.instance}")
        return False

    async def _wait_for_lock(self) -> None:
        assert self.throttle is not None
        await self.throttle.wait_until_free()
        self._availability_changed(self.availability.current)

    def _offer_from(self, conn: WebUIConnection, message: GrabJob | GrabJobs) -> Offer | None:
        if isinstance(message, GrabJob):
            job = parse_job(message.job)
            if isinstance(job, str):
                job_id = message.job.get("id") if isinstance(message.job, dict) else None
                self._reject(conn, [job_id] if isinstance(job_id, int) else [], job)
                return None
            return Offer(conn, [QueuedJob(job.id, None)], {job.id: job}, single=True)
        return self._sequence_offer(conn, message)

    def _sequence_offer(self, conn: WebUIConnection, message: GrabJobs) -> Offer | None:
        info = message.job_info
        raw_ids = [int(k) for k in info.data if str(k).isdigit()]
        if not isinstance(info.sequence, list):
            self._reject(conn, raw_ids, "job info lacks execution sequence")
            return None
        jobs: dict[int, JobInfo] = {}
        for key, raw in info.data.items():
            job = parse_job(raw)
            if isinstance(job, str) or str(job.id) != str(key):
                log.warning("[slot %d] grab_jobs with inconsistent job data, ignored", self.instance)
                return None
            jobs[job.id] = job
        try:
            order = flatten_sequence(info.sequence)
        except SequenceError as exc:
            self._reject(conn, raw_ids, str(exc))
            return None
        for queued in order:
            if queued.job_id not in jobs:
                self._reject(conn, raw_ids, f"job data for job {queued.job_id} is missing")
                return None
        return Offer(conn, order, jobs, single=False)

    def _refuse(self, conn: WebUIConnection, ids: list[int]) -> bool:
        """True when the offered jobs must not be taken (and reject them where the protocol says so)."""
        if self.services.flags.stopping:
            self._reject(conn, ids, "currently stopping")
            return True
        if self.busy:
            job_host = self.runner.job_host
            if job_host != conn.name:
                self._reject(conn, ids, f"already busy with a job from {job_host}")
                return True
            known = set(self.runner.held_job_ids())
            if self.runner.job is not None:
                known.add(self.runner.job.id)
            if not set(ids) <= known:
                self._reject(conn, ids, f"already busy with job(s) {', '.join(map(str, sorted(known)))}")
            return True  # all known: a duplicate delivery, ignore silently
        if self.availability.reason:
            self._reject(conn, ids, self.availability.reason)
            return True
        return False

    def _reject(self, conn: WebUIConnection, ids: list[int], reason: str) -> None:
        log.warning("[slot %d] rejecting job(s) %s from %s: %s", self.instance, ids, conn.name, reason)
        self._spawn(_send(conn, {"type": "rejected", "job_ids": ids, "reason": reason}), f"reject-{self.instance}")

    def _on_stop_command(self, conn: WebUIConnection, message: StopCommand) -> None:
        if conn.name != self.runner.job_host:
            log.info("[slot %d] ignoring %s for job %s from %s: not working for it", self.instance, message.type,
                     message.jobid, conn.name)
            return
        if message.jobid is None or not self.runner.stop_job(int(message.jobid), oc.StopReason(message.type)):
            log.info("[slot %d] ignoring %s for unknown job %s", self.instance, message.type, message.jobid)

    def _on_live_command(self, conn: WebUIConnection, message: LiveCommand) -> None:
        job = self.runner.job
        if job is None or message.jobid != job.id or conn.name != self.runner.job_host:
            log.info("[slot %d] ignoring %s for job %s (not the current job)", self.instance, message.type,
                     message.jobid)
            return
        self.runner.live_command(message.type)

    # -- events ------------------------------------------------------------------------------------

    def _idle_reason(self) -> str | None:
        return self.availability.reason or (self.throttle.reason if self.throttle is not None else None)

    def _publish_idle_state(self) -> None:
        if reason := self._idle_reason():
            self._publish_state(SlotState.BROKEN, reason)
        else:
            self._publish_state(SlotState.IDLE)

    def _publish_job_state(self, state: SlotState, job_id: int | None) -> None:
        self._publish_state(state, job_id=job_id)
        if state is SlotState.RUNNING and self.throttle is not None:
            self._spawn(self.throttle.job_started(), f"lock-cut-{self.instance}")
        if state is SlotState.RUNNING and self.runner.job_host in self.connections:
            self.connections[self.runner.job_host].send_status_soon()

    def _publish_state(self, state: SlotState, reason: str = "", job_id: int | None = None) -> None:
        self.services.bus.publish(ev.SlotStateChanged(instance=self.instance, state=state, reason=reason,
                                                      job_id=job_id))


def all_ids_of(offer: Offer) -> list[int]:
    return [q.job_id for q in offer.order]


def _make_clients(config: SlotConfig, services: SlotServices) -> dict[str, ApiClient]:
    clients = {}
    for host in config.hosts:
        observer = services.request_observer(host.base_url)
        clients[host.configured] = ApiClient(host, retry=RetryPolicy.from_host(host), observer=observer,
                                             proxies=services.proxies)
    return clients


async def _logged(coro: Coroutine[Any, Any, None], what: str) -> None:
    try:
        await coro
    except Exception:
        log.exception("%s failed", what)


async def _send(conn: WebUIConnection, message: dict[str, Any]) -> None:
    await conn.send(message)

