"""Which scheduled job (or directly-chained cluster) goes to which worker (PROTOCOL.md §8, §20).

Pure planning on the store; the server sends the resulting grab_job / grab_jobs messages.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from backend.mockweb.model import SCHEDULED, MockJob, MockWorker
from backend.mockweb.store import MockState


@dataclass
class Assignment:
    worker: MockWorker
    jobs: list[MockJob]  # in execution order
    token: str

    def message(self, state: MockState) -> dict[str, Any]:
        head = self.jobs[0]
        if head.chain is None:
            return {"type": "grab_job", "job": state.job_object(head)}
        return {"type": "grab_jobs", "job_info": {
            "ids": [j.id for j in self.jobs],
            "data": {str(j.id): state.job_object(j) for j in self.jobs},
            "sequence": head.sequence,
            "assigned_worker_id": self.worker.id,
        }}


def job_classes(job: MockJob) -> set[str]:
    return {c.strip() for c in job.settings.get("WORKER_CLASS", "").split(",") if c.strip()}


def worker_matches(job: MockJob, worker: MockWorker) -> bool:
    """Every class the job asks for must be one of the worker's classes."""
    return job_classes(job) <= worker.classes


def worker_available(state: MockState, worker: MockWorker, now: float, connected: set[int]) -> bool:
    return (worker.id in connected and state.online(worker, now) and not worker.error
            and worker.properties.get("WEBSOCKET_API_VERSION") == "1" and now >= worker.rejected_until
            and not state.unfinished_of(worker.id))


def plan(state: MockState, now: float, connected: set[int]) -> list[Assignment]:
    """Assign every schedulable job/cluster to a free matching worker, lowest ids first."""
    free = [w for w in sorted(state.workers.values(), key=lambda w: w.id)
            if worker_available(state, w, now, connected)]
    assignments: list[Assignment] = []
    handled: set[int] = set()
    for job in sorted(state.jobs.values(), key=lambda j: j.id):
        if job.id in handled or job.state != SCHEDULED:
            continue
        cluster = state.chain_jobs(job)
        handled.update(j.id for j in cluster)
        if any(j.state != SCHEDULED for j in cluster):
            continue  # part of the chain is still elsewhere; wait until all are back
        for worker in free:
            if all(worker_matches(j, worker) for j in cluster):
                free.remove(worker)
                assignments.append(Assignment(worker, cluster, secrets.token_hex(8)))
                break
    return assignments
