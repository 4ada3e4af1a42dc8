"""Issue 11 item 2: the job cgroup's memory/CPU in /metrics while the job runs, gone after it."""

from __future__ import annotations

from backend import events as ev
from backend.metrics import Metrics


def test_job_cgroup_gauges_follow_the_running_job() -> None:
    metrics = Metrics()
    metrics.observe_event(ev.JobAccepted(instance=2, job_id=7, name="x", host="h", max_job_time=60))
    metrics.observe_event(ev.JobResources(instance=2, job_id=7, memory_bytes=512 << 20, cpu_seconds=12.5,
                                          processes=3))
    text = metrics.render().decode()
    assert 'qaworker_job_memory_bytes{instance="2"} 5.36870912e+08' in text
    assert 'qaworker_job_cpu_seconds{instance="2"} 12.5' in text
    metrics.observe_event(ev.JobFinished(instance=2, job_id=7, result="passed"))
    text = metrics.render().decode()
    assert 'qaworker_job_memory_bytes{instance="2"}' not in text  # not the last job's figure forever
    assert 'qaworker_job_cpu_seconds{instance="2"}' not in text
