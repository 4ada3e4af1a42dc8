"""The small command API the faces use. The Worker implements it; tests use scripted fakes."""

from __future__ import annotations

from typing import Protocol

from backend.events import EventBus
from backend.state import WorkerView


class Runtime(Protocol):
    bus: EventBus
    view: WorkerView

    def drain(self) -> None:
        """Take no new jobs, finish the current ones (and their queued sequences), then exit (SIGHUP)."""

    def quit(self) -> None:
        """Stop every job with reason ``quit`` and exit (SIGTERM)."""

    def abort_job(self, instance: int, job_id: int | None = None) -> bool:
        """Stop the job of one slot as if the web UI had sent ``abort``. False if it has none, or when
        ``job_id`` is given and is not the job running there any more (a dialog asked about that job)."""

    async def wait_stopped(self) -> int:
        """Wait until the worker has stopped; return its exit code."""
