"""Run the worker with a face: the Textual dashboard, or headless (``--no-ui``, systemd).

The backend runs in its own task and outlives the dashboard: if the UI crashes or loses its
terminal, the worker falls back to headless logging and keeps running its jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from app import threads
from app.memory import limit_malloc_arenas
from backend.config import WorkerConfig
from backend.worker import Worker

log = logging.getLogger("qaworker")


def run_worker(config: WorkerConfig, *, no_ui: bool = False, log_format: str = "text",
               metrics_port: int | None = None, metrics_address: str = "127.0.0.1") -> int:
    limit_malloc_arenas()  # before any thread starts
    try:
        return threads.run(main_async(config, no_ui=no_ui, log_format=log_format, metrics_port=metrics_port,
                                      metrics_address=metrics_address))
    except KeyboardInterrupt:
        return 130


def preload_faces(*, ui: bool, metrics: bool) -> None:
    """Import what main_async and the faces import lazily, so that no import runs on the loop."""
    import importlib

    modules = ["app.logsetup", "app.headless", "backend.control.services"]
    if metrics:
        modules.append("backend.metrics")
    if ui:
        modules.append("app.tui")
    for name in modules:
        importlib.import_module(name)


async def start_logging(level: int, log_format: str, stream: IO[str] | None = None) -> None:
    """The log writer thread and the slow-callback sampler are started on a thread: a thread start on
    the loop waits for the new thread to run (tens of ms on a busy machine)."""
    from app import slowcallbacks
    from app.logsetup import setup_logging

    loop = asyncio.get_running_loop()
    loop_thread = (threading.get_ident(), threading.get_native_id())

    def start() -> None:  # runs while the loop waits for it
        setup_logging(level, log_format, stream=stream)  # its configure() is a no-op off the loop's thread
        slowcallbacks.configure(loop, loop_thread)

    await asyncio.to_thread(start)


def want_ui(no_ui: bool) -> bool:
    return not no_ui and sys.stdin.isatty() and sys.stdout.isatty()


def tui_log_path(config: WorkerConfig) -> Path:
    log_dir = (config.slots[0].settings.get("LOG_DIR") if config.slots else None) or os.environ.get("XDG_STATE_HOME")
    base = Path(log_dir) if log_dir else Path.home() / ".local" / "state" / "qaworker"
    base.mkdir(parents=True, exist_ok=True)
    return base / "qaworker.log"


def log_level(config: WorkerConfig) -> int:
    """--verbose, else LOG_LEVEL from workers.ini (like the classic worker), else info."""
    if config.verbose:
        return logging.DEBUG
    configured = (config.slots[0].settings.get("LOG_LEVEL") if config.slots else None) or "info"
    level = logging.getLevelName(configured.strip().upper())
    return level if isinstance(level, int) else logging.INFO


def install_signal_handlers(worker: Worker, on_hangup: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.quit)
    loop.add_signal_handler(signal.SIGINT, worker.quit)
    loop.add_signal_handler(signal.SIGHUP, on_hangup or worker.drain)
    loop.add_signal_handler(signal.SIGUSR2, worker.hand_over)  # exit now, jobs left to the next start


async def main_async(config: WorkerConfig, *, no_ui: bool = False, log_format: str = "text",
                     metrics_port: int | None = None, metrics_address: str = "127.0.0.1",
                     worker: Worker | None = None, extra_tasks: tuple = (),
                     on_hangup: Callable[[], None] | None = None) -> int:
    """``on_hangup`` replaces "SIGHUP = drain" and "terminal lost = go on headless" (the demo quits)."""
    ui = want_ui(no_ui)
    # Importing the faces (backend.metrics alone ~700 ms cold) and opening the log file are slow:
    # done on a thread before the loop has anything else to do.
    await asyncio.to_thread(preload_faces, ui=ui, metrics=metrics_port is not None)
    from app.logsetup import add_secret

    if ui:  # no sd_notify from the dashboard; isotovideo must not inherit the socket either
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)
    level = log_level(config)
    if ui:
        stream = await asyncio.to_thread(lambda: tui_log_path(config).open("a", buffering=1))
        await start_logging(level, log_format, stream)
    else:
        await start_logging(level, log_format)
    for warning in config.warnings:  # unknown or unsupported keys (check-config lists them too)
        log.warning("%s", warning)
    for slot in config.slots:
        add_secret(slot.tuning.ipmi_password if slot.tuning else None)  # IPMI_PASSWORD: never in a log line
        for host in slot.hosts:
            if host.api_secret:
                add_secret(host.api_secret)

    metrics = None
    if metrics_port is not None:
        from backend.metrics import Metrics

        metrics = Metrics()
    worker = worker or Worker(config, request_observer=metrics.request_observer if metrics else None)
    background: list[asyncio.Task] = []
    server = None
    if metrics is not None:
        from backend.metrics import loop_lag_probe, serve_metrics

        worker.bus.add_listener(metrics.observe_event)
        server = await serve_metrics(metrics, metrics_address, metrics_port)
        background.append(asyncio.create_task(loop_lag_probe(metrics)))
    background += [asyncio.create_task(t) for t in extra_tasks]
    from backend.control.services import start_services  # history, test screens, control socket (attach)

    services = await start_services(worker)
    install_signal_handlers(worker, on_hangup)
    worker_task = asyncio.create_task(worker.run(), name="worker")
    try:
        if ui:
            await _run_tui_with_fallback(worker, log_format, on_hangup, services.runtime)
        else:
            from app.headless import run_headless

            await run_headless(worker, log_format=log_format)
        return await worker_task
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await services.close()
        if server is not None:
            await server.close()


async def _run_tui_with_fallback(worker: Worker, log_format: str, on_hangup: Callable[[], None] | None = None,
                                 runtime: object = None) -> None:
    from app.headless import run_headless

    try:
        from app.tui import RC_HAND_OVER, RC_TERMINAL_LOST, QaworkerApp

        app = QaworkerApp(runtime or worker)  # type: ignore[arg-type]
        await app.run_async()
        if app.return_code == RC_HAND_OVER:  # SIGUSR2 while the dashboard ran: the terminal is back
            worker.hand_over()  # never returns: exit 75, the jobs run on for the next start
        install_signal_handlers(worker, on_hangup)  # the app resets the signal handlers when it exits
        if worker._stopped.is_set():
            return
        if app.return_code == RC_TERMINAL_LOST and on_hangup is not None:
            on_hangup()
        elif app.return_code == RC_TERMINAL_LOST:
            log.error("the dashboard lost its terminal; continuing headless (qaworker attach brings it back)")
        elif not worker.stopping:
            worker.quit()  # the user quit the dashboard: quit the worker
    except Exception:
        log.exception("the dashboard crashed; continuing headless")
        install_signal_handlers(worker, on_hangup)
    # Log to stderr from here on: the terminal is ours again.
    await start_logging(log_level(worker.config), log_format)
    await run_headless(worker, log_format=log_format)
