"""What every qaworker run adds next to its Worker: the job history, the test screens and the control socket.

``start_services(worker)`` starts them (each failure costs only that service, never the worker) and
returns ``Services``, whose ``runtime`` is what a dashboard in the same process gets: the Worker's
Runtime plus ``history`` and ``screens``, the same shape ``RemoteRuntime`` has.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.control.paths import socket_path
from backend.control.server import ControlServer
from backend.history import HistoryRecorder, HistoryStore, history_path

log = logging.getLogger("qaworker.control")


class LocalRuntime:
    """The Worker's Runtime API (delegated) plus the services the faces read."""

    def __init__(self, worker: Any, history: Any = None, screens: Any = None) -> None:
        self.worker = worker
        self.history = history
        self.screens = screens

    @property
    def bus(self):
        return self.worker.bus

    @property
    def view(self):
        return self.worker.view

    def drain(self) -> None:
        self.worker.drain()

    def quit(self) -> None:
        self.worker.quit()

    def abort_job(self, instance: int, job_id: int | None = None) -> bool:
        return self.worker.abort_job(instance, job_id)

    async def wait_stopped(self) -> int:
        return await self.worker.wait_stopped()


@dataclass
class Services:
    runtime: LocalRuntime
    history: HistoryRecorder
    screens: Any = None
    control: ControlServer | None = None

    async def close(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.screens is not None:
            await self.screens.close()
        await self.history.close()


async def start_services(worker: Any, *, control: bool = True, socket: Path | None = None,
                         description: str = "") -> Services:
    config = worker.config
    instances = [s.instance for s in config.slots]
    base_urls = {h.configured: h.base_url for s in config.slots for h in s.hosts}
    store = HistoryStore(history_path(config.slots[0].pool_dir)) if config.slots else None
    history = HistoryRecorder(worker.bus, store, base_urls)
    await history.start()
    screens = None
    try:
        from backend.screen import ScreenWatcher

        screens = ScreenWatcher(worker.view, {s.instance: s.pool_dir for s in config.slots})
        screens.start()
    except ImportError as exc:  # Pillow missing: everything else works
        log.warning("test screens unavailable: %s", exc)
    services = Services(LocalRuntime(worker, history, screens), history, screens)
    if control:
        path = socket or socket_path(instances)
        server = ControlServer(worker, path, instances, history=history, screens=screens,
                               description=description or f"qaworker pid {os.getpid()}")
        try:
            await server.start()
            services.control = server
        except (OSError, LookupError) as exc:
            log.error("no control socket (qaworker attach will not find this worker): %s", exc)
            await server.close()
    return services
