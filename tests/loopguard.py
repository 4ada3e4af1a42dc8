"""The slow-callback guard of the test suite (hooked up in tests/conftest.py).

Integration, e2e and fault tests run their event loop in asyncio debug mode with a 20 ms threshold;
the worker processes they start (harness.start_worker_process, the demo) get the same through
``PYTHONASYNCIODEBUG=1`` and ``QAWORKER_SLOW_CALLBACK_MS``. A test fails when a callback of our code
(a frame in backend/ or app/, see app/slowcallbacks.py) held the loop for longer than that, in this
process or in a worker process it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from app import slowcallbacks
from tests.clock import VirtualClockLoop

THRESHOLD_MS = 20
GUARDED_DIRS = ("integration", "e2e", "faults")
TESTS = Path(__file__).resolve().parent


def guarded(path: Path) -> bool:
    try:
        relative = path.resolve().relative_to(TESTS)
    except ValueError:
        return False
    return len(relative.parts) > 1 and relative.parts[0] in GUARDED_DIRS


class _Guarded(asyncio.BaseEventLoop):
    """Debug mode with the guard's threshold and stack sampler, for the loop's whole life (pytest-asyncio's
    runner calls ``set_debug(False)`` unless --asyncio-debug is given: that is ignored here)."""

    def __init__(self) -> None:
        super().__init__()
        slowcallbacks.enable(self, THRESHOLD_MS / 1000)

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(True)

    def close(self) -> None:
        slowcallbacks.disable(self)
        super().close()


class GuardedLoop(_Guarded, asyncio.SelectorEventLoop):
    pass


class GuardedVirtualClockLoop(_Guarded, VirtualClockLoop):
    pass


def subprocess_env() -> dict[str, str]:
    """Environment for a worker process a test starts: the same guard inside it."""
    return {"PYTHONASYNCIODEBUG": "1", slowcallbacks.ENV_THRESHOLD_MS: str(THRESHOLD_MS)}


def under_pytest() -> bool:
    return "PYTEST_CURRENT_TEST" in os.environ


class Findings(logging.Handler):
    """Collects this process's slow callbacks of our code, and scans the logs of worker processes."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lock = threading.Lock()
        self._found: list[str] = []
        self._logs: dict[Path, int] = {}  # worker log -> bytes already scanned

    def emit(self, record: logging.LogRecord) -> None:
        report = getattr(record, "_slow_callback", None)
        try:
            guarded = isinstance(asyncio.get_running_loop(), _Guarded)  # not a loop a test made on purpose
        except RuntimeError:
            guarded = False
        if guarded and isinstance(report, slowcallbacks.SlowCallback) and report.ours:
            with self._lock:
                self._found.append(f"in the test process: {report.describe()}")

    def watch_log(self, path: Path) -> None:
        """A worker log to scan from now on (from its current end: earlier runs were checked already)."""
        with self._lock:
            self._logs.setdefault(path, path.stat().st_size if path.exists() else 0)

    def take(self) -> list[str]:
        with self._lock:
            found, self._found = self._found, []
            logs = dict(self._logs)
        for path, offset in logs.items():
            try:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                with self._lock:
                    self._logs.pop(path, None)
                continue
            complete = data.rfind(b"\n") + 1  # a line being written is scanned next time
            with self._lock:
                self._logs[path] = offset + complete
            text = data[:complete].decode(errors="replace").splitlines()
            found += [f"in worker process ({path}): {line}" for line in slowcallbacks.ours_in_log(text)]
        return found


findings = Findings()


def install() -> None:
    slowcallbacks.install_filter()
    logger = logging.getLogger("asyncio")
    if findings not in logger.handlers:
        logger.addHandler(findings)


def watch_log(path: Path) -> None:
    findings.watch_log(path)


@dataclass(frozen=True)
class Known:
    """A slow callback found in a file its owner still has to fix: reported at the end, not failed on."""

    owner: str
    where: str  # regular expression, searched in the report
    why: str

    def matches(self, report: str) -> bool:
        return re.search(self.where, report) is not None


# Remove an entry when its owner fixed it; QAWORKER_LOOPGUARD_STRICT=1 fails on these too.
KNOWN: tuple[Known, ...] = ()


def strict() -> bool:
    return os.environ.get("QAWORKER_LOOPGUARD_STRICT", "") not in ("", "0")


known_hits: Counter[Known] = Counter()
known_examples: dict[Known, str] = {}


def unknown(found: list[str]) -> list[str]:
    """The findings that fail the test: all of them in strict mode, else those not in KNOWN (counted)."""
    if strict():
        return found
    new = []
    for report in found:
        entry = next((k for k in KNOWN if k.matches(report)), None)
        if entry is None:
            new.append(report)
        else:
            known_hits[entry] += 1
            known_examples.setdefault(entry, report)
    return new


def summary_lines() -> list[str]:
    lines = []
    for entry, count in known_hits.most_common():
        lines.append(f"{count}x [{entry.owner}] {entry.why}")
        lines.append(f"    e.g. {known_examples[entry]}")
    return lines


def failure_message(found: list[str]) -> str:
    head = (f"{len(found)} slow callback(s) of our code held the event loop for over {THRESHOLD_MS} ms "
            "(asyncio debug mode; move the blocking work off the loop):")
    return "\n".join([head, *(f"  - {line}" for line in found)])
