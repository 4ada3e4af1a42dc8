"""Issue 11 item 2: the job cgroup's figures reach the read model and the slot's summary line."""

from __future__ import annotations

from backend import events as ev
from backend.state import WorkerView
from widgets.job import summary_text


def _view_with_job() -> WorkerView:
    view = WorkerView()
    view.apply(ev.SlotStateChanged(instance=3, state=ev.SlotState.RUNNING, job_id=42))
    view.apply(ev.JobAccepted(instance=3, job_id=42, name="boot", host="http://webui", max_job_time=7200))
    return view


def test_figures_show_in_the_summary_and_leave_with_the_job() -> None:
    view = _view_with_job()
    slot = view.slots[3]
    assert "RAM" not in summary_text(slot, slot.job.started_at).plain  # no cgroup: no figure at all
    view.apply(ev.JobResources(instance=3, job_id=42, memory_bytes=3 << 30, cpu_seconds=65.4, processes=5))
    line = summary_text(slot, slot.job.started_at).plain
    assert "3.0 GiB RAM, 1:05 CPU" in line
    view.apply(ev.JobResources(instance=3, job_id=41, memory_bytes=1, cpu_seconds=1, processes=1))  # a late one
    assert slot.job.memory_bytes == 3 << 30  # of another job: ignored
    view.apply(ev.JobFinished(instance=3, job_id=42, result="passed"))
    assert "RAM" not in summary_text(slot, 0).plain
