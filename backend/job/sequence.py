"""Job sequences from ``grab_jobs`` (PROTOCOL.md §8.3).

``sequence`` is a nested array: in every array the first element is the parent of the elements
after it (and of the heads of nested arrays). Jobs run depth-first; a job whose parent failed (or
was skipped) is skipped, so whole sub-trees go.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class SequenceError(ValueError):
    pass


@dataclass(frozen=True)
class QueuedJob:
    job_id: int
    parent_id: int | None


def flatten_sequence(sequence: list[Any], parent: int | None = None, _depth: int = 0) -> list[QueuedJob]:
    """Depth-first order with each job's relevant parent."""
    if _depth > 100:
        raise SequenceError("job info sequence is nested too deeply")
    order: list[QueuedJob] = []
    head: int | None = None
    for index, item in enumerate(sequence):
        if isinstance(item, list):
            order += flatten_sequence(item, head if head is not None else parent, _depth + 1)
            continue
        job_id = _as_id(item)
        if index == 0:
            head = job_id
            order.append(QueuedJob(job_id, parent))
        else:
            order.append(QueuedJob(job_id, head if head is not None else parent))
    return order


def _as_id(item: Any) -> int:
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise SequenceError(f"invalid job id {item!r} in sequence")
    try:
        return int(item)
    except ValueError as exc:
        raise SequenceError(f"invalid job id {item!r} in sequence") from exc


class JobQueue:
    """The pending part of a sequence; decides which job comes next and which are skipped."""

    def __init__(self, order: Iterable[QueuedJob]) -> None:
        self._pending: list[QueuedJob] = list(order)
        self._failed: set[int] = set()
        self.marked: dict[int, str] = {}  # job id -> stop command received while pending

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending_ids(self) -> list[int]:
        return [q.job_id for q in self._pending]

    def record(self, job_id: int, ok: bool) -> None:
        if not ok:
            self._failed.add(job_id)

    def pop(self) -> tuple[QueuedJob, str | None] | None:
        """Next job and, when it must be skipped, why (``None`` = run it)."""
        if not self._pending:
            return None
        queued = self._pending.pop(0)
        if queued.job_id in self.marked:
            self._failed.add(queued.job_id)
            return queued, self.marked.pop(queued.job_id)
        if queued.parent_id is not None and queued.parent_id in self._failed:
            self._failed.add(queued.job_id)  # skipped counts as failed: the whole sub-tree goes
            return queued, "skipped"
        return queued, None
