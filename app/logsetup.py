"""Logging for the headless face (PROTOCOL.md §19.3, ANCHORS.md §D.2).

* text: ``[2026-01-02T03:04:05.678Z] [info] message``; under systemd (``JOURNAL_STREAM`` names our
  stream) ``<6>[info] message`` — journald adds the time and takes the priority from ``<N>``.
* json: one object per line with ts, level, logger, message and any ``extra`` fields (instance,
  job_id, host, event, ...).
* ``SecretMask`` replaces every registered secret (``add_secret``) with ``***`` — API secrets never
  reach a log, not even inside a traceback.
* ``RateLimit`` lets the same message through at most once per ``interval`` seconds and reports how
  often it was suppressed (fault 25: a full disk logged the same error every 0.2 ms).
* Nothing is written on the caller's thread (the event loop): the root handler puts the record on a
  bounded queue and a writer thread formats and writes it (``QueueHandler``/``QueueListener``). When
  stderr or the journal stalls and the queue is full, lines are dropped and counted, never waited for.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from app import slowcallbacks

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter "secrets" would mangle ordinary words
_secrets: set[str] = set()
_secrets_lock = threading.Lock()

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

_CHATTY_LOGGERS = ("httpx", "httpcore", "websockets", "aiohttp.access")

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}


def add_secret(secret: str | None) -> None:
    """Register a secret (an API secret, a password) that must never appear in a log line."""
    if secret and len(secret) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _secrets.add(secret)


def clear_secrets() -> None:
    with _secrets_lock:
        _secrets.clear()


def mask(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: overlapping secrets
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretMask(logging.Filter):
    """Renders the message (and traceback) of a record and masks registered secrets in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, mask(value))
        return True


_mask_installed = False


def install_secret_mask() -> None:
    """Mask secrets when a record is created, so every handler (the TUI's log pane, a file, pytest's
    capture) sees the masked text, not just ours. Idempotent."""
    global _mask_installed
    if _mask_installed:
        return
    _mask_installed = True
    previous = logging.getLogRecordFactory()
    masker = SecretMask()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        masker.filter(record)
        return record

    logging.setLogRecordFactory(factory)


class RateLimit(logging.Filter):
    """The same (logger, level, message) at most once per ``interval``; the next one that passes
    says how many were suppressed in between: ``... (repeated 1234 times)``."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 2048) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # key -> [last_emitted, suppressed]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = (record.name, record.levelno, message)
        now = self._clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                return False
            suppressed = int(entry[1]) if entry is not None else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > self._max_keys:
                self._prune(now)
        if suppressed:
            record.msg, record.args = f"{message} (repeated {suppressed} times)", None
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, (last, _n) in self._seen.items() if now - last >= self.interval]:
            del self._seen[key]


def _level_name(record: logging.LogRecord) -> str:
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = f"[{_level_name(record)}] {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        if self.journald:
            prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
            # journald reads the prefix per line; continuation lines keep the record's priority.
            return "\n".join(f"<{prio}>{line}" for line in text.split("\n"))
        return f"[{_utc(record.created)}] {text}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": _utc(record.created), "level": _level_name(record),
                                "logger": record.name, "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


def under_journald(stream: IO[str]) -> bool:
    """True when ``stream`` is the journal stream systemd gave us (``JOURNAL_STREAM=dev:inode``)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # no descriptor to compare (a test stream): trust the variable
    return value == f"{st.st_dev}:{st.st_ino}"


class QueuedHandler(logging.handlers.QueueHandler):
    """The root handler: queues records for the writer thread, which writes them with ``sink``.

    ``flush()`` waits until everything queued so far is written (tests, shutdown); ``close()`` also
    stops the writer thread.
    """

    def __init__(self, sink: logging.Handler, maxsize: int = 10_000) -> None:
        super().__init__(queue.Queue(maxsize))
        self.sink = sink
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._listener: _Writer | None = _Writer(self)
        self._listener.start()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """A copy with the message rendered and the traceback as text; ``extra`` fields stay."""
        record = copy.copy(record)
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        with self._dropped_lock:
            dropped = self._dropped
        if dropped:
            record._dropped_before = dropped  # the writer says so right where the lines went missing
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._dropped_lock:
                self._dropped += 1
            return
        if dropped:
            with self._dropped_lock:
                self._dropped -= dropped

    def flush(self) -> None:
        if self._listener is not None and self._listener.running:
            self.queue.join()  # type: ignore[attr-defined]
        self.sink.flush()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self.sink.flush()
        super().close()


class _Writer(logging.handlers.QueueListener):
    def __init__(self, owner: QueuedHandler) -> None:
        super().__init__(owner.queue, owner.sink)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        super().start()
        if self._thread is not None:
            self._thread.name = "qaworker-log-writer"

    def handle(self, record: logging.LogRecord) -> None:
        dropped = getattr(record, "_dropped_before", 0)
        if dropped:
            super().handle(logging.makeLogRecord({
                "name": "qaworker", "levelno": logging.WARNING, "levelname": "WARNING", "created": record.created,
                "msg": f"{dropped} log lines dropped: the log output did not keep up"}))
        super().handle(record)


def setup_logging(level: int | str = logging.INFO, fmt: str = "text", stream: IO[str] | None = None,
                  journald_prefix: bool | None = None, rate_interval: float = 1.0,
                  rate_clock: Callable[[], float] = time.monotonic) -> QueuedHandler:
    """Install the one root handler of the headless face (replacing a previous one); return it.

    ``journald_prefix=None`` decides from ``JOURNAL_STREAM``. Lines are written by a thread: call the
    handler's ``flush()`` before reading ``stream`` back.
    """
    stream = sys.stderr if stream is None else stream
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    if journald_prefix is None:
        journald_prefix = under_journald(stream)
    sink = logging.StreamHandler(stream)
    sink.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(journald_prefix))
    install_secret_mask()
    handler = QueuedHandler(sink)
    handler.set_name("qaworker")
    handler.addFilter(SecretMask())  # also covers extras added after the record was created
    handler.addFilter(RateLimit(rate_interval, clock=rate_clock))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "qaworker"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    numeric = logging.getLevelNamesMapping()[level.upper()] if isinstance(level, str) else level
    root.setLevel(numeric)
    # httpx logs every request at info (status updates every few seconds): keep that out of the
    # journal unless debugging; httpcore's debug output is too much even then.
    quiet = logging.WARNING if numeric > logging.DEBUG else logging.INFO
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    # asyncio debug mode (PYTHONASYNCIODEBUG=1, QAWORKER_SLOW_CALLBACK_MS): say which code was slow
    slowcallbacks.configure()
    return handler
