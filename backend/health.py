"""Availability ("broken worker") checks of one slot (PROTOCOL.md §7, ANCHORS §C 24, 27, 29, 30).

Order, stopping at the first problem (so the pool lock is only taken once checks 1-2 pass, as in the
classic worker):

1. ``extra_checks`` (the asset cache's health, §7 check 1) - non-fatal;
2. a leftover QEMU using the pool (``<pool>/qemu.pid`` of a live QEMU); a stale pid file is deleted
   unless ``no_cleanup`` - non-fatal;
3. the pool directory lock - **fatal** (another worker owns the slot);
4. ``WORKER_HOSTNAME`` determinable - non-fatal;
5. load average over ``CRITICAL_LOAD_AVG_THRESHOLD`` (default 40, 0 disables) with the rising-edge rule -
   non-fatal;
6. qaworker addition (fault 24): free space in the pool directory below ``QAWORKER_POOL_MIN_FREE_MB``
   (worker setting, MiB, default 1024, 0 disables) - non-fatal; better broken than a job that dies with
   "No space left on device".

The other two §7 checks live elsewhere: the ``tap`` D-Bus check (check 5: backend/slot/ovs.py, run by
the availability monitor, backend/slot/availability.py) and the ``LOCK_NAME`` / ``LOCK_LIMIT`` /
``LOCK_EXPIRATION`` throttle (check 7: backend/slot/joblock.py, the Perl worker's sqlite lock table).
``Slot._take_lock`` takes a place when a job is offered; without one the slot rejects the offer and reports
itself unavailable with ``Limited by configured lock '<name>'`` (``Slot._idle_reason``) until a re-check
finds a free place.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.config import HostConfig, SlotConfig
from backend.engine.isotovideo import qemu_still_running
from backend.job.pool import PoolDir, PoolLockError

log = logging.getLogger(__name__)

MIN_FREE_SETTING = "QAWORKER_POOL_MIN_FREE_MB"
WORKER_HOSTNAME_REASON = "Unable to determine worker address (WORKER_HOSTNAME)"
_DEFAULT_LOADAVG = Path("/proc/loadavg")


@dataclass
class Availability:
    reason: str | None  # None = available
    fatal: bool = False  # fatal: queued jobs are skipped ("worker broken: <reason>")

    @property
    def ok(self) -> bool:
        return self.reason is None


def worker_hostname(hosts: list[HostConfig], configured: str | None) -> str | None:
    """§4 step 2: explicit value; ``localhost`` when every web UI is local; else the FQDN if it has a dot.

    May do a DNS lookup (``getfqdn``) when a web UI is remote: call it at startup or in a thread.
    """
    if configured:
        return configured
    if all(h.is_local for h in hosts):
        return "localhost"
    fqdn = socket.getfqdn() or os.uname().nodename
    return fqdn if "." in fqdn else None


def leftover_qemu(pool_dir: Path, *, no_cleanup: bool) -> int | None:
    """PID of a live QEMU using the pool; a stale qemu.pid is removed (unless no_cleanup)."""
    pid_file = pool_dir / "qemu.pid"
    if not pid_file.exists():
        return None
    pid = qemu_still_running(pool_dir)
    if pid is not None:
        return pid
    if not no_cleanup:
        log.info("Removing stale %s (the process is no QEMU or gone)", pid_file)
        pid_file.unlink(missing_ok=True)
    return None


def read_load(loadavg_file: Path) -> tuple[str, str, str] | None:
    """The 1/5/15-minute load as written in the file, None if unreadable or malformed."""
    try:
        fields = loadavg_file.read_text().split()[:3]
    except OSError as exc:
        log.warning("Unable to determine average load: %s", exc)
        return None
    try:
        if len(fields) == 3 and all(math.isfinite(float(f)) for f in fields):
            return fields[0], fields[1], fields[2]
    except ValueError:
        pass
    log.error("Unable to parse system load from file '%s'", loadavg_file)
    return None


def load_problem(slot: SlotConfig, loadavg_file: Path) -> str | None:
    """§7 check 6: broken while the load is over the threshold and not clearly falling."""
    threshold = slot.tuning.critical_load_avg_threshold  # validated by the config
    if not threshold:
        return None
    load = read_load(loadavg_file)
    if load is None:
        return None
    l1, l5, l15 = (float(v) for v in load)
    if max(l1, l5, l15) > threshold and (l1 > l5 or l1 > l15 or min(l1, l5, l15) > threshold):
        return (f"The average load ({' '.join(load)}) is exceeding the configured threshold of {threshold:g}. "
                "The worker will temporarily not accept new jobs until the load is lower again.")
    return None


def disk_problem(slot: SlotConfig, pool_dir: Path) -> str | None:
    """qaworker addition: too little free space where the job's disks and results go."""
    min_free_mb = slot.tuning.pool_min_free_mb
    if min_free_mb <= 0:
        return None
    try:
        st = os.statvfs(pool_dir)
    except OSError as exc:
        return f"Unable to determine free disk space of the pool directory {pool_dir}: {exc.strerror}"
    free_mb = st.f_bavail * st.f_frsize // (1024 * 1024)
    if free_mb < min_free_mb:
        return (f"Not enough free disk space in the pool directory {pool_dir}: {free_mb} MiB free, "
                f"{min_free_mb} MiB required ({MIN_FREE_SETTING})")
    return None


def _local_checks(slot: SlotConfig, pool: PoolDir, worker_hostname: str | None, no_cleanup: bool,
                  loadavg_file: Path) -> Availability:
    pid = leftover_qemu(pool.path, no_cleanup=no_cleanup)
    if pid is not None:
        return Availability(f"A QEMU instance using the current pool directory is still running (PID: {pid})")
    try:
        pool.lock()
    except PoolLockError as exc:
        return Availability(str(exc), fatal=True)
    if not worker_hostname:
        return Availability(WORKER_HOSTNAME_REASON)
    reason = load_problem(slot, loadavg_file) or disk_problem(slot, pool.path)
    return Availability(reason)


async def check_availability(
    slot: SlotConfig, pool: PoolDir, *, worker_hostname: str | None, no_cleanup: bool,
    extra_checks: Sequence[Callable[[], Awaitable[str | None]]] = (), loadavg_file: Path | None = None,
) -> Availability:
    """Evaluate §7 for one slot; the first problem wins. Takes the pool lock on the way (kept)."""
    for check in extra_checks:
        reason = await check()
        if reason:
            return Availability(reason)
    if loadavg_file is None or loadavg_file == _DEFAULT_LOADAVG:  # QAWORKER_LOADAVG_FILE / OPENQA_LOAD_AVG_FILE
        loadavg_file = slot.tuning.loadavg_file
    return await asyncio.to_thread(_local_checks, slot, pool, worker_hostname, no_cleanup, loadavg_file)
