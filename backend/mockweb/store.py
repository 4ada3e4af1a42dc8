"""The mock web UI's database: jobs and workers and the state transitions openQA applies to them.

Everything here is synchronous and free of I/O; the HTTP/websocket layers call it and then notify
waiters and the scheduler.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backend.mockweb.model import (
    ASSIGNED,
    CANCELLED,
    DONE,
    EXECUTION_STATES,
    SCHEDULED,
    SETUP,
    MockJob,
    MockWorker,
)

_ASSET_SETTINGS = (
    (re.compile(r"^ISO(_\d+)?$"), "iso"),
    (re.compile(r"^HDD_\d+$"), "hdd"),
    (re.compile(r"^UEFI_PFLASH_VARS$"), "hdd"),
    (re.compile(r"^REPO_\d+$"), "repo"),
    (re.compile(r"^(ASSET_\d+|KERNEL|INITRD)$"), "other"),
)


def assets_from_settings(settings: dict[str, str]) -> dict[str, list[str]]:
    """Like openQA's parse_assets_from_settings: which settings name assets (absolute paths are not)."""
    assets: dict[str, list[str]] = {}
    for key, value in sorted(settings.items()):
        if not value or value.startswith("/"):
            continue
        for pattern, asset_type in _ASSET_SETTINGS:
            if pattern.match(key):
                assets.setdefault(asset_type, []).append(value)
                break
    return assets


def flatten(sequence: list[Any]) -> Iterator[int]:
    for item in sequence:
        if isinstance(item, list):
            yield from flatten(item)
        else:
            yield int(item)


def compute_result(job: MockJob) -> str:
    """Result from module results, as the web UI does when set_done carries none."""
    results = [str(m.get("result", "none")) for m in job.modules.values()]
    counted = [r for r in results if r not in ("none", "running", "unk", "na", "")]
    if not counted:
        return "incomplete"
    if any(r in ("fail", "failed") for r in counted):
        return "failed"
    if any(r in ("softfail", "softfailed") for r in counted):
        return "softfailed"
    return "passed"


class MockState:
    def __init__(self, results_root: Path, worker_timeout: float) -> None:
        self.results_root = results_root
        self.worker_timeout = worker_timeout
        self.jobs: dict[int, MockJob] = {}
        self.workers: dict[int, MockWorker] = {}
        self._next_job = 1
        self._next_worker = 1

    # --- jobs -------------------------------------------------------------------------------
    def add_job(self, settings: dict[str, str], assets: dict[str, list[str]] | None = None) -> MockJob:
        job_id = self._next_job
        self._next_job += 1
        clean = {str(k): str(v) for k, v in settings.items() if k != "JOBTOKEN"}
        job = MockJob(id=job_id, settings=clean,
                      input_assets=assets if assets is not None else assets_from_settings(clean),
                      results_dir=self.results_root / str(job_id))
        self.jobs[job_id] = job
        return job

    def add_chain(self, settings_list: list[dict[str, str]], sequence: list[Any] | None) -> list[MockJob]:
        """Jobs linked by START_DIRECTLY_AFTER_TEST; ``sequence`` holds indexes into settings_list."""
        jobs = [self.add_job(s) for s in settings_list]
        ids = [j.id for j in jobs]
        index_seq = sequence if sequence is not None else list(range(len(jobs)))

        def to_ids(seq: list[Any]) -> list[Any]:
            return [to_ids(x) if isinstance(x, list) else ids[int(x)] for x in seq]

        id_seq = to_ids(index_seq)
        if sorted(flatten(id_seq)) != sorted(ids):
            raise ValueError("sequence must name every job of the chain exactly once")
        self._link_parents(id_seq)
        for job in jobs:
            job.chain = list(flatten(id_seq))
        jobs[0].sequence = id_seq
        order = {jid: n for n, jid in enumerate(flatten(id_seq))}
        return sorted(jobs, key=lambda j: order[j.id])

    def _link_parents(self, seq: list[Any], parent: int | None = None) -> None:
        head = seq[0] if seq and not isinstance(seq[0], list) else None
        for n, item in enumerate(seq):
            if isinstance(item, list):
                self._link_parents(item, head if head is not None else parent)
                continue
            up = parent if n == 0 else head
            if up is not None:
                child, parent_job = self.jobs[int(item)], self.jobs[int(up)]
                child.settings.setdefault("START_DIRECTLY_AFTER_TEST", parent_job.settings.get("TEST", ""))

    def chain_jobs(self, job: MockJob) -> list[MockJob]:
        return [self.jobs[i] for i in job.chain] if job.chain else [job]

    def duplicate(self, job: MockJob) -> MockJob:
        clone = self.add_job(job.settings, dict(job.input_assets))
        clone.origin_id = job.id
        job.duplicated_as = clone.id
        return clone

    def reschedule(self, job: MockJob) -> None:
        """assigned -> scheduled (worker gave it back or never took it)."""
        worker_id = job.assigned_worker_id
        job.state = SCHEDULED
        job.assigned_worker_id = None
        job.settings.pop("JOBTOKEN", None)
        if worker_id in self.workers:
            self.advance_worker(self.workers[worker_id])

    def abandon(self, job: MockJob, reason: str) -> None:
        """A job beyond `assigned` whose worker lost it: duplicate and incomplete it."""
        self.duplicate(job)
        self.finish(job, "incomplete", reason)

    def finish(self, job: MockJob, result: str | None, reason: str | None) -> None:
        if job.result == "none" and result:
            job.result = result
        if job.reason is None and reason:
            job.reason = reason
        job.state = DONE
        job.t_done = time.time()
        job.settings.pop("JOBTOKEN", None)
        if job.assigned_worker_id in self.workers:
            self.advance_worker(self.workers[job.assigned_worker_id])

    def unfinished_of(self, worker_id: int) -> list[MockJob]:
        """Jobs assigned to the worker that did not get set_done yet (incl. cancelled ones)."""
        return [j for j in self.jobs.values() if j.assigned_worker_id == worker_id
                and (j.state in EXECUTION_STATES or j.state == CANCELLED)]

    def advance_worker(self, worker: MockWorker) -> None:
        """Point the worker's current job at its next unfinished job (or none)."""
        pending = self.unfinished_of(worker.id)
        if worker.job_id is not None and any(j.id == worker.job_id for j in pending):
            return
        order = {jid: n for n, jid in enumerate(pending[0].chain or [])} if pending else {}
        pending.sort(key=lambda j: order.get(j.id, j.id))
        worker.job_id = pending[0].id if pending else None

    def assign(self, jobs: list[MockJob], worker: MockWorker, token: str) -> None:
        for job in jobs:
            job.state = ASSIGNED
            job.assigned_worker_id = worker.id
            job.settings["JOBTOKEN"] = token
        worker.job_id = jobs[0].id
        worker.properties["JOBTOKEN"] = token

    def accept(self, worker: MockWorker, job_id: int) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.assigned_worker_id != worker.id or job.state not in EXECUTION_STATES:
            return False
        if job.state == ASSIGNED:
            job.state = SETUP
        worker.job_id = job_id
        return True

    # --- workers ----------------------------------------------------------------------------
    def worker_by_name(self, host: str, instance: int) -> MockWorker:
        for worker in self.workers.values():
            if worker.host == host and worker.instance == instance:
                return worker
        worker = MockWorker(id=self._next_worker, host=host, instance=instance)
        self._next_worker += 1
        self.workers[worker.id] = worker
        return worker

    def online(self, worker: MockWorker, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return worker.t_seen is not None and now - worker.t_seen <= self.worker_timeout

    def status_of(self, worker: MockWorker) -> str:
        if not self.online(worker):
            return "dead"
        if worker.error:
            return "broken"
        return "running" if worker.job_id is not None else "idle"

    def drop_jobs_not_listed(self, worker: MockWorker, job_ids: set[int]) -> None:
        """Registration side effect (§5.2): forget jobs the worker no longer knows about."""
        for job in self.unfinished_of(worker.id):
            if job.id in job_ids:
                continue
            if job.state == ASSIGNED:
                self.reschedule(job)
            else:
                self.abandon(job, f"abandoned: associated worker {worker.name} re-connected but "
                                  "abandoned the job")
        self.advance_worker(worker)

    def stale_jobs(self, now: float) -> list[MockJob]:
        """Jobs whose worker has not been seen for worker_timeout (the scheduler's stale-job check)."""
        return [j for j in self.jobs.values()
                if j.state in EXECUTION_STATES and j.assigned_worker_id in self.workers
                and not self.online(self.workers[j.assigned_worker_id], now)]

    def handle_stale(self, now: float) -> bool:
        stale = self.stale_jobs(now)
        for job in stale:
            if job.state == ASSIGNED:
                self.reschedule(job)
            else:
                worker = self.workers[job.assigned_worker_id]  # type: ignore[index]
                self.abandon(job, f"abandoned: associated worker {worker.name} has not sent any status "
                                  "updates for too long")
        return bool(stale)

    def job_object(self, job: MockJob) -> dict[str, Any]:
        """The job as grab_job / GET /api/v1/jobs/<id> show it (§6.3, §25)."""
        obj: dict[str, Any] = {
            "id": job.id, "name": job.name, "priority": 50, "state": job.state, "result": job.result,
            "reason": job.reason, "clone_id": job.duplicated_as, "origin_id": job.origin_id,
            "t_started": job.t_started, "t_finished": job.t_done, "group_id": None, "group": None,
            "blocked_by_id": None, "settings": dict(job.settings), "test": job.settings.get("TEST", ""),
            "assigned_worker_id": job.assigned_worker_id,
        }
        if job.input_assets:
            obj["assets"] = {k: list(v) for k, v in job.input_assets.items()}
        return obj

    def mark_cancelled(self, job: MockJob, result: str = "user_cancelled") -> None:
        if job.result == "none":
            job.result = result
        if job.state == SCHEDULED:
            job.state = CANCELLED
            job.t_done = time.time()
        elif job.state in EXECUTION_STATES:
            job.state = CANCELLED
