"""Prometheus metrics (ANCHORS.md §D.3): one non-global registry per runtime, served by aiohttp.

``Metrics.observe_event`` is a synchronous bus listener (``bus.add_listener(metrics.observe_event)``);
``Metrics.observe_request`` matches ``backend.webui.client.Observer``. Serve them on localhost only
(metrics must not be public) with ``serve_metrics``.

Cache hits/misses/evictions arrive as running totals (``CacheTotals``); they are turned into counter
increments, and a total that goes down (cache service restarted) counts as a reset.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from backend import __version__
from backend import events as ev
from backend.events import HostState, SlotState
from backend.metrics_influx import MinionFigures
from backend.tasks import cancel_and_wait

log = logging.getLogger(__name__)

JOB_BUCKETS = (30, 60, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, math.inf)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)


class Metrics:
    """All qaworker metrics in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.jobs = Counter("qaworker_jobs", "Jobs finished, by result", ["result"], registry=r)
        self.job_duration = Histogram("qaworker_job_duration_seconds", "Job run time from accept to done",
                                      buckets=JOB_BUCKETS, registry=r)
        self.jobs_running = Gauge("qaworker_jobs_running", "Jobs currently assigned to slots", registry=r)
        self.slot_state = Gauge("qaworker_slot_state", "1 for the current state of each slot",
                                ["instance", "state"], registry=r)
        self.api_requests = Counter("qaworker_api_requests", "Web UI API requests by answer status "
                                    "('error' = no answer)", ["method", "endpoint", "status"], registry=r)
        self.api_retries = Counter("qaworker_api_retries", "API requests that will be retried",
                                   ["endpoint"], registry=r)
        self.upload_bytes = Counter("qaworker_upload_bytes", "Result bytes uploaded", registry=r)
        self.upload_failures = Counter("qaworker_upload_failures", "Upload errors reported", registry=r)
        self.ws_connected = Gauge("qaworker_websocket_connected", "1 while the web UI connection is up",
                                  ["host", "instance"], registry=r)
        self.last_contact = Gauge("qaworker_last_contact_timestamp_seconds",
                                  "Unix time of the last successful contact with a web UI", ["host"],
                                  registry=r)
        self.cache_bytes = Gauge("qaworker_cache_bytes", "Bytes used by the asset cache", registry=r)
        self.cache_limit = Gauge("qaworker_cache_limit_bytes", "Asset cache size limit", registry=r)
        self.cache_hits = Counter("qaworker_cache_hits", "Asset cache hits", registry=r)
        self.cache_misses = Counter("qaworker_cache_misses", "Asset cache misses", registry=r)
        self.cache_evictions = Counter("qaworker_cache_evictions", "Assets evicted from the cache",
                                       registry=r)
        self.loop_lag = Gauge("qaworker_event_loop_lag_seconds", "Last measured event loop scheduling delay",
                              registry=r)
        # A histogram cannot share the gauge's name (it owns <name>_bucket/_sum/_count).
        self.loop_lag_hist = Histogram("qaworker_event_loop_lag_observed_seconds",
                                       "Distribution of event loop scheduling delays", buckets=LAG_BUCKETS,
                                       registry=r)
        self.job_memory = Gauge("qaworker_job_memory_bytes", "Memory of the running job's cgroup (memory.current; "
                                "its processes' RSS without the memory controller)", ["instance"], registry=r)
        self.job_cpu = Gauge("qaworker_job_cpu_seconds", "CPU time used so far by the running job's cgroup",
                             ["instance"], registry=r)
        self.build_info = Gauge("qaworker_build_info", "qaworker version", ["version"], registry=r)
        self.build_info.labels(version=__version__).set(1)
        self._accepted_at: dict[tuple[int, int], float] = {}
        self._upload_seen: dict[tuple[int, int], tuple[int, str]] = {}  # bytes_done, last_error
        self._cache_seen = (0, 0, 0)
        self.minion = MinionFigures()  # GET /influxdb/minion

    # -- hooks ------------------------------------------------------------------------------------

    def observe_event(self, event: ev.Event) -> None:
        self.minion.observe(event)
        match event:
            case ev.JobAccepted():
                self._accepted_at[(event.instance, event.job_id)] = event.ts
                self.jobs_running.set(len(self._accepted_at))
            case ev.JobFinished():
                self._job_finished(event)
            case ev.SlotStateChanged():
                for state in SlotState:
                    self.slot_state.labels(instance=str(event.instance), state=state.value).set(
                        1 if state is event.state else 0)
            case ev.ConnectionChanged():
                up = event.state is HostState.CONNECTED
                self.ws_connected.labels(host=event.host, instance=str(event.instance)).set(1 if up else 0)
                if up:
                    self.last_contact.labels(host=event.host).set(event.ts)
            case ev.UploadProgress():
                self._upload(event)
            case ev.CacheTotals():
                self._cache(event)
            case ev.JobResources():
                self.job_memory.labels(instance=str(event.instance)).set(event.memory_bytes)
                self.job_cpu.labels(instance=str(event.instance)).set(event.cpu_seconds)
            case _:
                pass

    def observe_request(self, method: str, endpoint: str, status: int | None, retried: bool,
                        host: str | None = None) -> None:
        self.api_requests.labels(method=method, endpoint=endpoint,
                                 status=str(status) if status is not None else "error").inc()
        if retried:
            self.api_retries.labels(endpoint=endpoint).inc()
        if host is not None and status is not None and status < 500:
            self.last_contact.labels(host=host).set(time.time())

    def request_observer(self, host: str):
        """An ``Observer`` for one web UI's ApiClient that also records the last contact with it."""

        def observe(method: str, endpoint: str, status: int | None, retried: bool) -> None:
            self.observe_request(method, endpoint, status, retried, host=host)

        return observe

    def set_loop_lag(self, seconds: float) -> None:
        self.loop_lag.set(seconds)
        self.loop_lag_hist.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- helpers ----------------------------------------------------------------------------------

    def _job_finished(self, event: ev.JobFinished) -> None:
        key = (event.instance, event.job_id)
        self.jobs.labels(result=event.result or "none").inc()
        accepted = self._accepted_at.pop(key, None)
        duration = event.duration if event.duration > 0 else (event.ts - accepted if accepted else 0.0)
        if duration > 0:
            self.job_duration.observe(duration)
        self._upload_seen.pop(key, None)
        self.jobs_running.set(len(self._accepted_at))
        for gauge in (self.job_memory, self.job_cpu):  # no job, no figure (not the last job's)
            try:
                gauge.remove(str(event.instance))
            except KeyError:
                pass

    def _upload(self, event: ev.UploadProgress) -> None:
        key = (event.instance, event.job_id)
        done, error = self._upload_seen.get(key, (0, ""))
        # bytes_done restarting below the last value means a new upload round.
        delta = event.bytes_done - done if event.bytes_done >= done else event.bytes_done
        if delta > 0:
            self.upload_bytes.inc(delta)
        if event.last_error and event.last_error != error:
            self.upload_failures.inc()
        self._upload_seen[key] = (event.bytes_done, event.last_error)

    def _cache(self, event: ev.CacheTotals) -> None:
        self.cache_bytes.set(event.used_bytes)
        self.cache_limit.set(event.limit_bytes)
        now = (event.hits, event.misses, event.evictions)
        for counter, new, old in zip((self.cache_hits, self.cache_misses, self.cache_evictions), now,
                                     self._cache_seen, strict=True):
            delta = new - old if new >= old else new
            if delta > 0:
                counter.inc(delta)
        self._cache_seen = now


# -- HTTP endpoint --------------------------------------------------------------------------------


@dataclass
class MetricsServer:
    runner: web.AppRunner
    address: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve_metrics(metrics: Metrics, address: str = "127.0.0.1", port: int = 9527) -> MetricsServer:
    """Serve ``GET /metrics`` and ``GET /influxdb/minion`` on the running loop; ``port=0`` picks a free port
    (see ``.port``)."""

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def influx(request: web.Request) -> web.Response:  # the classic cache service's endpoint
        base = f"{request.scheme}://{request.host}"
        return web.Response(text=metrics.minion.render(base), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    app.router.add_get("/influxdb/minion", influx)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = port
    server = site._server  # aiohttp keeps the asyncio server here; only way to learn port 0's pick
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", address, bound)
    return MetricsServer(runner, address, bound)


# -- event loop lag -------------------------------------------------------------------------------


class LagProbe:
    """Measures how late ``asyncio.sleep(interval)`` wakes up: the loop's scheduling delay.

    Reusable by benchmarks: ``samples`` keeps the last ``max_samples`` delays in seconds.
    """

    def __init__(self, interval: float = 0.25, metrics: Metrics | None = None,
                 max_samples: int = 100_000) -> None:
        self.interval = interval
        self.metrics = metrics
        self.samples: deque[float] = deque(maxlen=max_samples)
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - start - self.interval)
            self.samples.append(lag)
            if self.metrics is not None:
                self.metrics.set_loop_lag(lag)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name="loop-lag-probe")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (0-100) of the samples; 0.0 when there are none."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    @property
    def max(self) -> float:
        return max(self.samples, default=0.0)


async def loop_lag_probe(metrics: Metrics, interval: float = 0.25) -> None:
    """Run forever feeding ``metrics.set_loop_lag``; start it as a task and cancel it to stop."""
    await LagProbe(interval, metrics).run()
