"""SIGUSR2 = hand-over: exit at once and leave every job running for the next start to adopt.

The upgrade path (issue 11 item 4): the jobs' monitors live in their own sessions and their records
are on disk, so the process can simply go. What is still in memory is written first (each job's
record, the queued log lines); nothing is stopped, no web UI is told anything — the next start
re-registers with the job ids (PROTOCOL.md §4) before the web UI's worker timeout. SIGTERM keeps
its protocol meaning (quit: the jobs end ``quit`` and are duplicated).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Protocol

from backend.slot.slot import Slot

log = logging.getLogger(__name__)

HANDOVER_EXIT = 75  # EX_TEMPFAIL; the systemd units restart on it (RestartForceExitStatus=75)


class _HasSlots(Protocol):
    slots: list[Slot]


def hand_over(worker: _HasSlots) -> None:
    """Write what the next start needs and exit now (called from the SIGUSR2 handler; never returns)."""
    jobs = _running_jobs(worker.slots)
    log.warning("hand-over (SIGUSR2): exiting now, leaving %s to the next start",
                ", ".join(f"job {job_id} on slot {instance}" for instance, job_id in jobs) or "no job")
    for slot in worker.slots:
        job = slot.runner.job
        if job is not None and job.recorder is not None:
            try:
                job.recorder.write_now()  # blocking, once, on the way out: nothing else runs any more
            except OSError as exc:
                log.error("[slot %d] cannot write the record of job %d: %s", slot.instance, job.id, exc)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # a broken log sink must not keep us from handing over
            pass
    os._exit(HANDOVER_EXIT)


def _running_jobs(slots: Iterable[Slot]) -> list[tuple[int, int]]:
    return [(s.instance, s.runner.job.id) for s in slots if s.runner.job is not None]
