"""The worker's side of the job monitor (``backend.engine.monitor``): its pids and its exit record.

``Monitored`` names one monitor + isotovideo pair by pid *and* start time (clock ticks since boot from
``/proc/<pid>/stat``), so a later worker can tell "still our job" from "a pid reused by another
program". ``is_alive`` checks both, plus the job marker in the environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from backend.engine.monitor import EXIT_FILE, proc_start_ticks
from backend.engine.procs import MARKER_ENV

log = logging.getLogger(__name__)

STARTED_TIMEOUT = 30.0  # the monitor answers in milliseconds; this only bounds a wedged start


class MonitorStartError(OSError):
    """The monitor could not start isotovideo."""


@dataclass(frozen=True)
class Monitored:
    monitor_pid: int
    monitor_start: int
    isotovideo_pid: int
    isotovideo_start: int
    exit_file: Path

    def returncode(self, monitor_rc: int) -> int:
        """isotovideo's exit status from the exit record (blocking); the monitor's own status without one."""
        record = read_exit_record(self.exit_file)
        if record is not None and record["monitor_pid"] == self.monitor_pid:
            return int(record["returncode"])
        log.warning("monitor %d left no exit record; using its own exit status %d", self.monitor_pid, monitor_rc)
        return monitor_rc


def read_exit_record(path: Path) -> dict | None:
    """The monitor's exit record, or None when absent or not a complete record (blocking)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if not all(isinstance(data.get(k), int) and not isinstance(data.get(k), bool)
               for k in ("monitor_pid", "isotovideo_pid", "returncode")):
        return None
    return data


def _read_line(fd: int) -> str:
    try:
        chunks = []
        while data := os.read(fd, 256):
            chunks.append(data)
        return b"".join(chunks).decode("ascii", "replace").strip()
    finally:
        os.close(fd)


async def read_started(fd: int, monitor_pid: int, monitor_dir: Path) -> Monitored:
    """Read the monitor's "<isotovideo pid> <start ticks>" line (until EOF, in a thread)."""
    try:
        async with asyncio.timeout(STARTED_TIMEOUT):
            line = await asyncio.to_thread(_read_line, fd)
    except TimeoutError:
        line = ""
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise MonitorStartError(line.removeprefix("error ") or "the job monitor did not start isotovideo")
    monitor_start = await asyncio.to_thread(proc_start_ticks, monitor_pid)
    return Monitored(monitor_pid, monitor_start or 0, int(parts[0]), int(parts[1]), monitor_dir / EXIT_FILE)


def process_matches(pid: int, start_ticks: int, marker: str) -> str | None:
    """None when ``pid`` is the very process we started (same start time, our job marker), else why not.

    Blocking (reads /proc). A zombie counts as gone.
    """
    if pid <= 1 or pid == os.getpid():
        return f"pid {pid} cannot be a job process"
    ticks = proc_start_ticks(pid)
    if ticks is None:
        return f"pid {pid} is gone"
    if ticks != start_ticks:
        return f"pid {pid} now belongs to another process (start time {ticks}, recorded {start_ticks})"
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return f"pid {pid} has exited"
        with open(f"/proc/{pid}/environ", "rb") as fh:
            environ = fh.read().split(b"\0")
    except (OSError, IndexError):
        return f"pid {pid} cannot be inspected"
    if f"{MARKER_ENV}={marker}".encode() not in environ:
        return f"pid {pid} does not carry the job's marker"
    return None
