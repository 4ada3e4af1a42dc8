"""The real web UI is restarted while qaworker runs a job: the job still ends correctly (issue 7 §1)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import free_instance
from tests.interop.pairs import own_class

pytestmark = pytest.mark.interop

REALSTACK = Path(os.environ.get("QAWORKER_REALSTACK", Path(__file__).resolve().parents[3] / "shared" / "realstack"))


def _realstack(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=REALSTACK, capture_output=True, text=True, timeout=180)


@pytest.fixture
def restartable():
    if os.geteuid() != 0 or not (REALSTACK / "lib.sh").exists():
        pytest.skip("restarting the real web UI needs root and ../shared/realstack")
    if _realstack(". ./lib.sh; pid_alive webui").returncode != 0:
        pytest.skip("the web UI daemon was not started by realstack/up.sh")


def test_job_survives_a_web_ui_restart(webui, qaworker, restartable):
    instance = free_instance(40, 400)
    worker = qaworker(instance=instance, worker_class=own_class(instance))
    webui.wait_idle(worker.host, worker.instance)
    job_id = webui.schedule(REALSTACK_SLEEP="25", WORKER_CLASS=worker.worker_class)
    webui.wait_state(job_id, "running", timeout=60)
    perl_running = _realstack(". ./lib.sh; pid_alive worker1").returncode == 0
    stopped = _realstack(". ./lib.sh; stop_one webui")
    assert stopped.returncode == 0, stopped.stderr
    time.sleep(3)  # the web UI is really gone for a while: status posts fail and are retried
    started = _realstack("./up.sh" if perl_running else "./up.sh --no-worker")
    assert started.returncode == 0, started.stderr[-2000:]
    job = webui.wait_job(job_id, timeout=120)
    assert (job["state"], job["result"]) == ("done", "passed"), (job, worker.log()[-3000:])
    details = webui.details(job_id)
    assert {m["name"]: m["result"] for m in details["testresults"]} == {"hello": "passed"}
    assert "autoinst-log.txt" in details["logs"]
    webui.wait_idle(worker.host, worker.instance)
