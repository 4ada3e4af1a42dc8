"""The headless face (``qaworker --no-ui``): one readable log line per event, plus sd_notify.

``format_event`` is the pure formatter; ``EventLogger`` adds the coalescing that keeps busy jobs
from flooding the journal: test progress is logged when the module (or the pause state) changes,
uploads when they complete or hit a new error, cache downloads when they start, finish or fail, and
job log lines not at all (they are in the job's autoinst-log.txt). Signal handlers belong to
app/run.py; this module never imports textual.
"""

from __future__ import annotations

import asyncio
import logging

from backend import events as ev
from backend.api import Runtime
from backend.events import HostState, SlotState
from backend.sdnotify import Notifier, SystemdReporter
from backend.state import WorkerView
from backend.tasks import cancel_and_wait

log = logging.getLogger("qaworker")

_NOTICE_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                  "warn": logging.WARNING, "error": logging.ERROR}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable, keeps type checkers calm


def human_duration(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _slot(instance: int | None) -> str:
    return f"[slot {instance}] " if instance is not None else ""


def _job(instance: int, job_id: int) -> str:
    return f"[slot {instance}] job {job_id}"


def _connection(event: ev.ConnectionChanged) -> str | None:
    prefix = f"[{event.host} #{event.instance}]"
    match event.state:
        case HostState.CONNECTED:
            worker = f", worker id {event.worker_id}" if event.worker_id is not None else ""
            return f"{prefix} connected{worker}"
        case HostState.REGISTERING:
            return f"{prefix} registering"
        case HostState.ESTABLISHING_WS:
            return f"{prefix} establishing websocket connection"
        case HostState.FAILED:
            retry = f"; retrying in {human_duration(event.next_retry_in)}" if event.next_retry_in else ""
            return f"{prefix} failed: {event.reason or 'unknown error'}{retry}"
        case HostState.DISABLED:
            return f"{prefix} disabled: {event.reason or 'no longer used'}"
        case _:
            return None


def _slot_state(event: ev.SlotStateChanged) -> str:
    job = f" (job {event.job_id})" if event.job_id is not None else ""
    match event.state:
        case SlotState.BROKEN:
            return f"[slot {event.instance}] broken: {event.reason or 'unknown reason'}"
        case SlotState.IDLE:
            return f"[slot {event.instance}] idle, waiting for jobs"
        case SlotState.STOPPING:  # the job's end (normal or not); "stopping" is the worker's own word
            return f"[slot {event.instance}] job {event.job_id} ending{': ' + event.reason if event.reason else ''}"
        case SlotState.OFFLINE:
            return f"[slot {event.instance}] offline: {event.reason or 'no web UI connection'}"
        case _:
            reason = f": {event.reason}" if event.reason else ""
            return f"[slot {event.instance}] {event.state.value}{job}{reason}"


def _progress(event: ev.JobProgress) -> str:
    head = _job(event.instance, event.job_id)
    if event.paused:  # the reason may say "paused at …" itself (the simulator's does): not twice
        said = event.paused.strip()
        return f"{head} {said}" if said.lower().startswith("paused") else f"{head} paused: {said}"
    done = sum(1 for m in event.modules if m.result not in ("pending", "running"))
    count = f" ({done}/{len(event.modules)} modules done)" if event.modules else ""
    failed = [m.name for m in event.modules if m.result == "failed"]
    failures = f"; failed: {', '.join(failed)}" if failed else ""
    if event.current_module:
        return f"{head} running module {event.current_module}{count}{failures}"
    return f"{head} {event.isotovideo_status or 'progress'}{count}{failures}"


def _upload(event: ev.UploadProgress) -> str:
    head = _job(event.instance, event.job_id)
    if event.last_error:
        return f"{head} upload error: {event.last_error}"
    size = f", {human_bytes(event.bytes_done)}" if event.bytes_total or event.bytes_done else ""
    if event.files_total and event.files_done >= event.files_total:
        return f"{head} uploaded {_plural(event.files_done, 'file')}{size}"
    return f"{head} uploading {event.files_done}/{_plural(event.files_total, 'file')}{size}"


def _cache(event: ev.CacheProgress) -> str:
    jobs = f" for job {', '.join(map(str, event.waiting_jobs))}" if event.waiting_jobs else ""
    if event.error:
        return f"[cache] {event.key} failed: {event.error}"
    if event.done:
        size = f" ({human_bytes(event.bytes_done or event.bytes_total)})" if event.bytes_done or \
            event.bytes_total else ""
        return f"[cache] {event.key} ready{size}"
    total = f" ({human_bytes(event.bytes_total)})" if event.bytes_total else ""
    return f"[cache] downloading {event.key}{total}{jobs}"


def format_event(event: ev.Event, view: WorkerView) -> str | None:
    """One human line for an event, or None when the event is not worth a line on its own."""
    match event:
        case ev.WorkerStarted():
            slots = ",".join(map(str, event.instances)) or "none"
            hosts = ", ".join(event.hosts) or "none"
            return f"qaworker {event.version} started: slots {slots}; web UIs {hosts}"
        case ev.WorkerStopping():
            if event.mode == "drain":
                return f"stopping after the current jobs ({view.running_jobs} running); no new jobs"
            return f"stopping now ({event.mode}); {view.running_jobs} running jobs are stopped"
        case ev.WorkerStopped():
            return f"stopped (exit code {event.exit_code})"
        case ev.ConnectionChanged():
            return _connection(event)
        case ev.SlotStateChanged():
            return _slot_state(event)
        case ev.JobAccepted():
            queued = f"; queued after it: {', '.join(map(str, event.pending_job_ids))}" \
                if event.pending_job_ids else ""
            return f"{_job(event.instance, event.job_id)} ({event.name}) accepted from {event.host}{queued}"
        case ev.JobProgress():
            return _progress(event)
        case ev.JobFinished():
            reason = f" ({event.reason})" if event.reason else ""
            took = f" after {human_duration(event.duration)}" if event.duration > 0 else ""
            return f"{_job(event.instance, event.job_id)} finished: {event.result}{reason}{took}"
        case ev.JobSkipped():
            return f"{_job(event.instance, event.job_id)} skipped: {event.reason}"
        case ev.LogLines():
            return None  # the job log lives in autoinst-log.txt, not in the worker's journal
        case ev.UploadProgress():
            return _upload(event)
        case ev.LiveViewers():
            return f"{_job(event.instance, event.job_id)} live viewers: {event.viewers}"
        case ev.DeveloperSession():
            action = "started" if event.active else "ended"
            return f"{_job(event.instance, event.job_id)} developer session {action}"
        case ev.CacheProgress():
            return _cache(event)
        case ev.CacheTotals() | ev.JobResources() | ev.CacheQueue():
            return None  # totals and job figures are for the dashboard and metrics
        case ev.Notice():
            if event.instance is not None and event.job_id is not None:
                return f"{_job(event.instance, event.job_id)}: {event.message}"
            return f"{_slot(event.instance)}{event.message}"
        case _:
            return None


def event_level(event: ev.Event) -> int:
    match event:
        case ev.Notice():
            return _NOTICE_LEVELS.get(event.level.lower(), logging.INFO)
        case ev.ConnectionChanged(state=HostState.FAILED) | ev.SlotStateChanged(state=SlotState.BROKEN):
            return logging.WARNING
        case ev.UploadProgress(last_error=error) | ev.CacheProgress(error=error) if error:
            return logging.WARNING
        case ev.JobFinished(result=result) if result in ("incomplete", "timeout_exceeded"):
            return logging.WARNING
        case ev.WorkerStopped(exit_code=code) if code:
            return logging.ERROR
        case _:
            return logging.INFO


def _extra(event: ev.Event) -> dict[str, object]:
    """Structured fields for the JSON log format."""
    extra: dict[str, object] = {"event": type(event).__name__}
    for name in ("instance", "job_id", "host"):
        value = getattr(event, name, None)
        if value is not None:
            extra[name] = value
    return extra


class EventLogger:
    """Decides which events get a line (coalescing the frequent ones) and logs them."""

    def __init__(self, view: WorkerView, logger: logging.Logger = log) -> None:
        self.view = view
        self.logger = logger
        self._progress: dict[tuple[int, int], tuple[str, str]] = {}  # (module, paused)
        self._upload: dict[tuple[int, int], tuple[bool, str]] = {}  # (completed, last error)
        self._downloads: set[str] = set()

    def wanted(self, event: ev.Event) -> bool:
        match event:
            case ev.JobProgress():
                key, now = (event.instance, event.job_id), (event.current_module, event.paused)
                changed = self._progress.get(key) != now
                self._progress[key] = now
                return changed and bool(event.current_module or event.paused)
            case ev.UploadProgress():
                key = (event.instance, event.job_id)
                complete = bool(event.files_total) and event.files_done >= event.files_total
                before = self._upload.get(key, (False, ""))
                self._upload[key] = (complete, event.last_error)
                new_error = bool(event.last_error) and event.last_error != before[1]
                return new_error or (complete and not before[0] and not event.last_error)
            case ev.CacheProgress():
                if event.done or event.error:
                    self._downloads.discard(event.key)
                    return True
                if event.key in self._downloads:
                    return False
                self._downloads.add(event.key)
                return True
            case ev.JobFinished():
                self._progress.pop((event.instance, event.job_id), None)
                self._upload.pop((event.instance, event.job_id), None)
                return True
            case _:
                return True

    def handle(self, event: ev.Event) -> None:
        if not self.wanted(event):
            return
        line = format_event(event, self.view)
        if line:
            self.logger.log(event_level(event), line, extra=_extra(event))


async def run_headless(runtime: Runtime, *, notifier: Notifier | None = None, log_format: str = "text",
                       contact_window: float = 600.0) -> int:
    """Log the runtime's events and report to systemd until the worker stopped; return its exit code.

    ``log_format`` is decided by app/logsetup.setup_logging; every line carries structured extras
    (event, instance, job_id, host) that the JSON format shows.
    """
    del log_format  # the formatter installed by setup_logging already encodes the choice
    sub = runtime.bus.subscribe()  # before any await: no event may slip past us
    own_notifier = notifier is None
    if notifier is None:
        notifier = Notifier(unset_environment=True)
    reporter = SystemdReporter(runtime, notifier, contact_window=contact_window)
    logger = EventLogger(runtime.view)

    async def log_events() -> None:
        async for event in sub:
            _safe_handle(logger, event)

    tasks = [asyncio.create_task(log_events(), name="headless-log"),
             asyncio.create_task(reporter.run(), name="sd-notify")]
    try:
        code = await runtime.wait_stopped()
    finally:
        # Let both tasks see the final events (WorkerStopped) before we tear them down.
        await asyncio.sleep(0)
        while True:
            try:
                event = sub.get_nowait()
            except asyncio.QueueEmpty:
                break
            if event is not None:
                _safe_handle(logger, event)
        sub.close()
        await cancel_and_wait(*tasks)  # a cancellation of run_headless itself propagates
        if own_notifier:
            notifier.close()
    return code


def _safe_handle(logger: EventLogger, event: ev.Event) -> None:
    try:
        logger.handle(event)
    except Exception:  # a formatting bug must never stop the worker's log
        log.exception("could not log event %r", event)
