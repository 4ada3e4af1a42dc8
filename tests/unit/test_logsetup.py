"""Log line formats, the secret mask and the repeated-message limiter (fault 25)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.logsetup import RateLimit, add_secret, clear_secrets, setup_logging

SECRET = "1A2B3C4D5E6F7A8B"


@pytest.fixture
def stream(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    chatty = {name: logging.getLogger(name).level
              for name in ("httpx", "httpcore", "websockets", "aiohttp.access")}
    yield buf
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)
    for handler in [h for h in root.handlers if h.get_name() == "qaworker"]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    clear_secrets()


def lines(buf: io.StringIO) -> list[str]:
    """What reached the stream: waits for the writer thread to write everything logged so far."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "qaworker":
            handler.flush()
    return buf.getvalue().splitlines()


def test_text_lines_have_utc_timestamp_and_level(stream):
    setup_logging("info", "text", stream)
    log = logging.getLogger("qaworker.test")
    log.info("slot 1 idle")
    log.warning("slot 2 broken")
    log.debug("not shown")
    out = lines(stream)
    assert len(out) == 2
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] \[info\] slot 1 idle", out[0])
    assert out[1].endswith("] [warn] slot 2 broken")


def test_journald_gets_priority_prefix_and_no_timestamp(stream, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # a StringIO has no fd: trust the variable
    setup_logging(logging.DEBUG, "text", stream)
    log = logging.getLogger("qaworker.test")
    log.info("connected")
    log.error("failed")
    log.debug("detail")
    assert lines(stream) == ["<6>[info] connected", "<3>[error] failed", "<7>[debug] detail"]


def test_journal_stream_of_another_fd_is_ignored(tmp_path, monkeypatch):
    # JOURNAL_STREAM names the journal socket; our stream is a file, so no prefix.
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    with open(tmp_path / "log.txt", "w") as f:
        handler = setup_logging("info", "text", f)
        logging.getLogger("qaworker.test").info("hello")
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "log.txt").read_text()
    assert text.startswith("[") and "[info] hello" in text


def test_explicit_journald_prefix(stream):
    setup_logging("info", "text", stream, journald_prefix=True)
    logging.getLogger("x").warning("disk %s full", "/var")
    assert lines(stream) == ["<4>[warn] disk /var full"]


def test_json_one_object_per_line_with_extra_fields(stream):
    setup_logging("info", "json", stream)
    log = logging.getLogger("qaworker")
    log.info("job %d finished", 42, extra={"instance": 1, "job_id": 42})
    log.warning("line\nbreak")
    first, second = (json.loads(line) for line in lines(stream))
    assert first["message"] == "job 42 finished" and first["level"] == "info"
    assert first["logger"] == "qaworker" and first["instance"] == 1 and first["job_id"] == 42
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["message"] == "line\nbreak" and second["level"] == "warn"


def test_request_chatter_kept_out_unless_debugging(stream):
    setup_logging("info", "text", stream)
    logging.getLogger("httpx").info('HTTP Request: POST http://h/api/v1/jobs/1/status "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("proxy problem")
    assert [line.split("] ", 1)[1] for line in lines(stream)] == ["[warn] proxy problem"]
    setup_logging("debug", "text", stream)
    logging.getLogger("httpx").info("HTTP Request: GET /")
    assert lines(stream)[-1].endswith("[info] HTTP Request: GET /")


def test_bad_format_is_refused(stream):
    with pytest.raises(ValueError, match="text"):
        setup_logging("info", "xml", stream)


def test_setup_twice_keeps_one_handler(stream):
    setup_logging("info", "text", stream)
    setup_logging("info", "text", stream)
    logging.getLogger("x").info("once")
    assert len(lines(stream)) == 1


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_never_reach_the_log(stream, fmt):
    setup_logging("debug", fmt, stream)
    add_secret(SECRET)
    add_secret("ab")  # too short to mask safely: ignored, ordinary text stays readable
    log = logging.getLogger("backend.webui")
    log.info("signing with %s", SECRET)
    log.debug(f"header X-API-Secret: {SECRET}", extra={"host": f"http://k:{SECRET}@h"})
    try:
        raise RuntimeError(f"bad secret {SECRET}")
    except RuntimeError:
        log.exception("request failed about abba")
    text = "\n".join(lines(stream))
    assert SECRET not in text
    assert text.count("***") >= (4 if fmt == "json" else 3)  # json shows the "host" extra too
    assert "abba" in text and "Traceback" in text


def test_secret_mask_covers_other_handlers(stream, caplog):
    setup_logging("info", "text", stream)
    add_secret(SECRET)
    with caplog.at_level(logging.INFO):
        logging.getLogger("backend.webui").info("secret=%s", SECRET)
    assert caplog.messages == ["secret=***"]  # e.g. the TUI's log pane handler


def test_identical_messages_rate_limited_with_summary(stream):
    now = [100.0]
    setup_logging("info", "text", stream, rate_interval=0.3, rate_clock=lambda: now[0])
    log = logging.getLogger("backend.job")
    for _ in range(1000):  # a full disk logs the same error in a tight loop
        log.error("cannot write autoinst-log.txt: No space left on device")
    log.error("another message")
    now[0] += 0.29
    log.error("cannot write autoinst-log.txt: No space left on device")  # still within the interval
    now[0] += 0.01
    log.error("cannot write autoinst-log.txt: No space left on device")
    out = lines(stream)
    assert len(out) == 3
    assert out[0].endswith("[error] cannot write autoinst-log.txt: No space left on device")
    assert out[1].endswith("another message")
    assert out[2].endswith("No space left on device (repeated 1000 times)")


def test_lines_are_written_by_a_thread_not_the_caller(monkeypatch):
    """A stalled stderr/journal must not stall the event loop: logging returns at once."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    release = threading.Event()
    writers: list[str] = []

    class StalledStream(io.StringIO):
        def write(self, text: str) -> int:
            writers.append(threading.current_thread().name)
            release.wait(10)
            return super().write(text)

    out = StalledStream()
    handler = setup_logging("info", "text", out)
    try:
        log = logging.getLogger("qaworker.test")
        log.info("first")  # the writer thread blocks on this one
        log.info("second")
        assert out.getvalue() == ""  # we got here although nothing could be written
        release.set()
        handler.flush()
        assert [line.split("] ", 2)[-1] for line in out.getvalue().splitlines()] == ["first", "second"]
        assert set(writers) == {"qaworker-log-writer"}
    finally:
        release.set()
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_a_full_queue_drops_lines_and_says_how_many(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    release = threading.Event()

    class StalledStream(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(10)
            return super().write(text)

    out = StalledStream()
    handler = setup_logging("info", "text", out, rate_interval=0)
    try:
        log = logging.getLogger("qaworker.test")
        for n in range(handler.queue.maxsize + 500):  # the writer holds one, the queue the next maxsize
            log.info("line %d", n)
        release.set()
        handler.flush()
        log.info("after")
        handler.flush()
        text = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
        dropped = handler.queue.maxsize + 500 - (len(text) - 2)  # the lines written, without the notice and "after"
        assert 499 <= dropped <= 500  # the writer thread may have taken the first line off the queue
        kept = handler.queue.maxsize + 500 - dropped
        assert text[kept:] == [f"[warn] {dropped} log lines dropped: the log output did not keep up", "[info] after"]
    finally:
        release.set()
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_rate_limit_keys_on_level_and_logger():
    now = [0.0]
    limiter = RateLimit(1.0, clock=lambda: now[0])

    def record(name: str, level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    assert limiter.filter(record("a", logging.ERROR, "x"))
    assert not limiter.filter(record("a", logging.ERROR, "x"))
    assert limiter.filter(record("b", logging.ERROR, "x"))
    assert limiter.filter(record("a", logging.WARNING, "x"))
    now[0] = 0.99
    assert not limiter.filter(record("a", logging.ERROR, "x"))
    now[0] = 1.0
    passed = record("a", logging.ERROR, "x")
    assert limiter.filter(passed) and passed.getMessage() == "x (repeated 2 times)"
    now[0] = 5.0
    fresh = record("a", logging.ERROR, "x")
    assert limiter.filter(fresh) and fresh.getMessage() == "x"


def test_logsetup_imports_no_textual():
    code = ("import sys, app.logsetup, app.headless, backend.metrics, backend.sdnotify; "
            "sys.exit(any(m.startswith('textual') for m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, timeout=20).returncode == 0
