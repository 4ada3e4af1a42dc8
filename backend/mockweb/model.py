"""Plain records the mock web UI keeps about jobs, workers and requests (what tests assert on)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

# Web UI job states (PROTOCOL.md §8.4).
SCHEDULED = "scheduled"
ASSIGNED = "assigned"
SETUP = "setup"
RUNNING = "running"
UPLOADING = "uploading"
DONE = "done"
CANCELLED = "cancelled"

EXECUTION_STATES = frozenset({ASSIGNED, SETUP, RUNNING, UPLOADING})
FINAL_STATES = frozenset({DONE})
OK_RESULTS = frozenset({"passed", "softfailed"})


class RequestRecord(NamedTuple):
    method: str
    path: str
    status: int  # 0 when the connection was reset by a fault
    t: float


@dataclass
class ArtefactRecord:
    name: str
    kind: str  # image, thumb, file, ulog, log, asset
    md5: str | None
    size: int
    t: float = field(default_factory=time.time)


@dataclass
class MockJob:
    id: int
    settings: dict[str, str]
    state: str = SCHEDULED
    result: str = "none"
    reason: str | None = None
    assigned_worker_id: int | None = None
    status_posts: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    test_order: list[dict[str, Any]] = field(default_factory=list)
    artefacts: list[ArtefactRecord] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)  # names of assets uploaded by this job
    set_done_params: dict[str, str] | None = None
    duplicated_as: int | None = None
    t_done: float | None = None
    t_started: float | None = None
    upload_states: list[dict[str, str]] = field(default_factory=list)
    progress_posts: list[dict[str, Any]] = field(default_factory=list)
    live_log: str = ""
    input_assets: dict[str, list[str]] = field(default_factory=dict)  # assets the job needs (type -> names)
    chain: list[int] | None = None  # all job ids of its START_DIRECTLY_AFTER_TEST cluster
    sequence: list[Any] | None = None  # nested execution sequence (only on the chain's first job)
    origin_id: int | None = None
    results_dir: Path | None = None

    def uploaded_files(self) -> set[str]:
        """Paths (relative to the job's result dir, e.g. ``autoinst-log.txt``, ``ulogs/x.log``) stored."""
        if self.results_dir is None or not self.results_dir.is_dir():
            return set()
        return {str(p.relative_to(self.results_dir)) for p in self.results_dir.rglob("*") if p.is_file()}

    @property
    def name(self) -> str:
        s = self.settings
        parts = [s.get("DISTRI"), s.get("VERSION"), s.get("FLAVOR"), s.get("ARCH"), s.get("BUILD")]
        prefix = "-".join(p for p in parts if p)
        test = s.get("TEST", f"job{self.id}")
        return f"{prefix}-{test}" if prefix else test

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES or (self.state == CANCELLED and self.assigned_worker_id is None)


@dataclass
class MockWorker:
    id: int
    host: str
    instance: int
    properties: dict[str, str] = field(default_factory=dict)
    connected: bool = False
    status_messages: list[dict[str, Any]] = field(default_factory=list)
    t_seen: float | None = None
    error: str | None = None
    job_id: int | None = None
    registrations: int = 0
    idle_despite_job: bool = False  # last worker_status said idle although jobs were assigned
    rejected_until: float = 0.0  # do not offer jobs again before this (after a `rejected`)
    rejections: list[dict[str, Any]] = field(default_factory=list)  # every `rejected` message received

    @property
    def name(self) -> str:
        return f"{self.host}:{self.instance}"

    @property
    def classes(self) -> set[str]:
        return {c.strip() for c in self.properties.get("WORKER_CLASS", "").split(",") if c.strip()}
