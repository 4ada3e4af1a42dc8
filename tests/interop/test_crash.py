"""qaworker dies (SIGKILL) or hands over (SIGUSR2) while the real isotovideo runs a job (issue 11).

The real web UI and real isotovideo of ../shared/realstack: the next qaworker, started on the same slot
within 5 s, must finish the very same job (``done passed``, no ``clone_id``) and leave no process of the
old life behind; after the web UI gave the job up, it must kill the old tree and run the clone instead.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import free_instance
from tests.interop.conftest import QaworkerProcess, RealWebUI, wait_until
from tests.interop.pairs import own_class

pytestmark = pytest.mark.interop

POOL_ROOT = Path("/var/lib/openqa/pool")


def record_of(instance: int) -> dict | None:
    try:
        return json.loads((POOL_ROOT / str(instance) / ".qaworker" / "job.json").read_text())
    except (OSError, ValueError):
        return None


def marked(marker: str) -> list[int]:
    """Live processes carrying the job marker (the old life's job tree)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("QAWORKER_JOB_MARKER") == marker:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def descendants_left(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def running_with_monitor(webui: RealWebUI, job_id: int, instance: int) -> dict:
    webui.wait_state(job_id, "running", timeout=60)
    return wait_until(lambda: (r := record_of(instance)) and r.get("monitor") and r["job"]["id"] == job_id and r,
                      timeout=30, message="the job record with the monitor")


def end_life(worker: QaworkerProcess, sig: int) -> tuple[int, list[int]]:
    """Signal the worker; return its exit status and the pids of its own children at that moment."""
    children = [c.pid for c in psutil.Process(worker.proc.pid).children(recursive=True)]
    worker.signal(sig)
    rc = worker.wait(30)
    worker.log_path.rename(worker.log_path.with_suffix(".life1.log"))
    return rc, children


def take_over(webui: RealWebUI, qaworker, sig: int) -> None:
    instance = free_instance(40, 400)
    worker = qaworker(instance=instance, worker_class=own_class(instance))
    webui.wait_idle(worker.host, worker.instance)
    job_id = webui.schedule(REALSTACK_SLEEP="12", WORKER_CLASS=worker.worker_class)
    record = running_with_monitor(webui, job_id, instance)
    monitor = record["monitor"]["monitor_pid"]
    rc, children = end_life(worker, sig)
    killed_at = time.monotonic()
    assert psutil.pid_exists(monitor), "the job did not outlive its worker"
    old_workers = [p for p in children if p != monitor and p not in marked(record["marker"])]
    second = qaworker(instance=instance, worker_class=worker.worker_class)
    restart = time.monotonic() - killed_at
    assert restart < 5
    job = webui.wait_job(job_id, timeout=120)
    details = webui.details(job_id)
    try:
        wait_until(lambda: not marked(record["marker"]) and not descendants_left(old_workers), timeout=15,
                   message="no process of the old life")
    except AssertionError:
        pass
    left = marked(record["marker"]) + descendants_left(old_workers)
    name = {signal.SIGKILL: "SIGKILL", signal.SIGUSR2: "SIGUSR2 hand-over"}[sig]
    print(f"\n{name} of qaworker (exit {rc}) during job {job_id}, restart after {restart:.1f} s: job {job_id} "
          f"{job['state']} {job['result']} reason={job.get('reason')} clone_id={job.get('clone_id')} "
          f"leftover processes={len(left)}")
    assert (job["state"], job["result"], job.get("clone_id")) == ("done", "passed", None), (job, second.log()[-3000:])
    assert {m["name"]: m["result"] for m in details["testresults"]} == {"hello": "passed"}
    assert "autoinst-log.txt" in details["logs"]
    assert f"adopting job {job_id}" in second.log()
    assert left == [], [(p, psutil.Process(p).cmdline()) for p in left if psutil.pid_exists(p)]


def test_sigkill_mid_job_restart_finishes_the_same_job(webui, qaworker):
    take_over(webui, qaworker, signal.SIGKILL)


def test_sigusr2_hand_over_finishes_the_same_job(webui, qaworker):
    take_over(webui, qaworker, signal.SIGUSR2)


def test_restart_after_the_web_ui_abandoned_the_job_runs_its_clone(webui, qaworker):
    instance = free_instance(40, 400)
    worker = qaworker(instance=instance, worker_class=own_class(instance))
    webui.wait_idle(worker.host, worker.instance)
    job_id = webui.schedule(REALSTACK_SLEEP="30", WORKER_CLASS=worker.worker_class)
    record = running_with_monitor(webui, job_id, instance)
    end_life(worker, signal.SIGKILL)
    # Someone registers as this slot without naming the job: the web UI abandons and clones it (§5.2).
    params = {"host": worker.host, "instance": str(instance), "cpu_arch": "x86_64", "mem_max": "1024",
              "worker_class": worker.worker_class, "websocket_api_version": "1"}
    assert webui.api("POST", "/api/v1/workers", params=params).status_code == 200
    abandoned = webui.wait_job(job_id, timeout=30)
    clone_id = abandoned.get("clone_id")
    assert abandoned["result"] == "incomplete" and clone_id, abandoned
    second = qaworker(instance=instance, worker_class=worker.worker_class)
    clone = webui.wait_job(clone_id, timeout=120)
    print(f"\nabandoned job {job_id} ({abandoned.get('reason')}): clone {clone_id} {clone['state']} "
          f"{clone['result']} on the restarted qaworker; old tree left={len(marked(record['marker']))}")
    assert (clone["state"], clone["result"]) == ("done", "passed"), (clone, second.log()[-3000:])
    assert marked(record["marker"]) == []
    assert f"not adopting job {job_id}" in second.log()
    assert list((POOL_ROOT / str(instance) / ".preserved").iterdir())
