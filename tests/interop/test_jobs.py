"""Jobs end to end on the real web UI with the real isotovideo (null backend) — issue 3."""

from __future__ import annotations

import signal

import pytest

from tests.interop.conftest import wait_until

pytestmark = pytest.mark.interop


def _idle(webui, worker):
    wait_until(lambda: (w := webui.worker(worker.host, worker.instance)) and w["status"] == "idle",
               message="worker idle")


def test_job_passes_with_module_results(webui, qaworker):
    worker = qaworker()
    _idle(webui, worker)
    job_id = webui.schedule_for(worker)
    job = webui.wait_job(job_id)
    assert (job["state"], job["result"]) == ("done", "passed"), worker.log()[-3000:]
    details = webui.details(job_id)
    modules = {m["name"]: m["result"] for m in details["testresults"]}
    assert modules == {"hello": "passed"}
    assert {"autoinst-log.txt", "worker-log.txt", "vars.json"} <= set(details["logs"])
    assert "realstack-hello.txt" in details["ulogs"]


def test_failing_job(webui, qaworker):
    worker = qaworker()
    _idle(webui, worker)
    job = webui.wait_job(webui.schedule_for(worker, REALSTACK_FAIL="1"))
    assert (job["state"], job["result"]) == ("done", "failed")


def test_cancel_mid_run(webui, qaworker):
    worker = qaworker()
    _idle(webui, worker)
    job_id = webui.schedule_for(worker, REALSTACK_SLEEP="60")
    webui.wait_state(job_id, "running")
    webui.api("POST", f"/api/v1/jobs/{job_id}/cancel").raise_for_status()
    job = webui.wait_job(job_id, timeout=60)
    assert job["result"] == "user_cancelled"
    _idle(webui, worker)


def test_quit_mid_run_leaves_incomplete_with_clone(webui, qaworker):
    worker = qaworker()
    _idle(webui, worker)
    job_id = webui.schedule_for(worker, REALSTACK_SLEEP="60")
    webui.wait_state(job_id, "running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    job = webui.wait_job(job_id, timeout=30)
    assert job["result"] == "incomplete"
    assert job["reason"].startswith("quit"), job
    assert job.get("clone_id"), "the web UI should have a clone of the quit job"
    webui.api("POST", f"/api/v1/jobs/{job['clone_id']}/cancel")
