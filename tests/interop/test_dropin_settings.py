"""Issue 12 rows 1, 2, 3, 6, 7 on the real web UI with the real isotovideo: the workers.ini settings an
admin moving from the Perl worker keeps, doing what they do there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import PERL_CLASS, wait_until

pytestmark = pytest.mark.interop

MOJOENV_CASEDIR = str(Path(__file__).resolve().parent / "distri_mojoenv")


def _idle(webui, worker):
    wait_until(lambda: (w := webui.worker(worker.host, worker.instance)) and w["status"] == "idle",
               message="worker idle")


def _file(webui, job_id: int, name: str) -> str:
    response = webui.http.get(f"{webui.url}/tests/{job_id}/file/{name}", follow_redirects=True)
    response.raise_for_status()
    return response.text


def _perl_lock(path: Path, call: str) -> str:
    """Minion's own lock API on the same file, as the Perl worker uses it (Minion::Backend::SQLite)."""
    script = f"use Minion; my $m = Minion->new(SQLite => 'sqlite:{path}'); print(({call}) ? 1 : 0);"
    return subprocess.run(["perl", "-e", script], capture_output=True, text=True, timeout=60, check=True).stdout


def test_terminate_after_jobs_done_exits_after_the_job(webui, qaworker):
    worker = qaworker(extra_ini="TERMINATE_AFTER_JOBS_DONE = 1")
    _idle(webui, worker)
    job_id = webui.schedule_for(worker)
    assert worker.wait(90) == 0, worker.log()[-3000:]
    job = webui.wait_job(job_id)
    assert (job["state"], job["result"]) == ("done", "passed")
    # the web UI was told (ws quit): the worker is not "idle" there any more
    wait_until(lambda: webui.worker(worker.host, worker.instance)["status"] != "idle", timeout=30,
               message="web UI sees the worker gone")
    print(f"row 1: job {job_id} {job['result']}, worker exit 0, web UI status "
          f"{webui.worker(worker.host, worker.instance)['status']}")


def test_lock_shared_with_minion(webui, qaworker, tmp_path):
    cache = tmp_path / "cache"
    lock = cache / "worker-locks.sqlite"
    cache.mkdir()
    # a Perl worker on this host holds the only place of the lock (Minion's own code, same file)
    assert _perl_lock(lock, "$m->lock('interop_lock', 3600, {limit => 1})") == "1"
    worker = qaworker(extra_ini=f"CACHEDIRECTORY = {cache}\nLOCK_NAME = interop_lock\nLOCK_LIMIT = 1\n")
    _idle(webui, worker)
    job_id = webui.schedule_for(worker, REALSTACK_SLEEP="8")
    wait_until(lambda: "Limited by configured lock 'interop_lock'" in worker.log(), timeout=60,
               message="the job rejected for the lock")
    broken = wait_until(lambda: (w := webui.worker(worker.host, worker.instance)) and w["status"] == "broken" and w,
                        timeout=30, message="worker broken with the lock reason")
    assert webui.job(job_id)["state"] == "scheduled"
    # the Perl side gives its place back: the re-check (10 s) finds it and the job runs
    assert _perl_lock(lock, "$m->unlock('interop_lock')") == "1"
    webui.wait_state(job_id, "running", timeout=60)
    # while our job runs, the Perl worker cannot take the place (Minion probe: duration 0 takes nothing)
    assert _perl_lock(lock, "$m->lock('interop_lock', 0, {limit => 1})") == "0"
    job = webui.wait_job(job_id, timeout=90)
    assert job["result"] == "passed"
    wait_until(lambda: _perl_lock(lock, "$m->lock('interop_lock', 0, {limit => 1})") == "1", timeout=30,
               message="the place given back at the job's end")
    print(f"row 2: worker status while limited: {broken['status']} ({broken.get('error')}); job {job_id} "
          f"{job['result']} after Minion unlock; Minion lock refused while it ran, free after it")


def test_sync_assets_hook(webui, qaworker):
    worker = qaworker(extra_ini="SYNC_ASSETS_HOOK = echo synced-by-hook in $(pwd)")
    _idle(webui, worker)
    job_id = webui.schedule_for(worker)
    job = webui.wait_job(job_id)
    assert job["result"] == "passed", worker.log()[-3000:]
    log = _file(webui, job_id, "worker-log.txt")
    line = next(line for line in log.splitlines() if "SYNC_ASSETS_HOOK: synced-by-hook" in line)
    assert re.search(r"synced-by-hook in /\S+/pool/\d+$", line), line
    print(f"row 3: job {job_id} passed; worker-log.txt: {line.strip()}")


def test_failing_sync_assets_hook_is_a_setup_failure(webui, qaworker):
    worker = qaworker(extra_ini="SYNC_ASSETS_HOOK = echo mirror down >&2; exit 4")
    _idle(webui, worker)
    job = webui.wait_job(webui.schedule_for(worker))
    expected = ("incomplete", "setup failure: SYNC_ASSETS_HOOK exited with 4: mirror down")
    assert (job["result"], job["reason"]) == expected, worker.log()[-3000:]
    print(f"row 3: failing hook -> {job['result']} ({job['reason']})")


def test_packages_cmd_is_uploaded(webui, qaworker):
    worker = qaworker(extra_ini="PACKAGES_CMD = echo os-autoinst-interop; echo perl-Mojolicious-interop")
    _idle(webui, worker)
    job_id = webui.schedule_for(worker)
    assert webui.wait_job(job_id)["result"] == "passed"
    assert "worker_packages.txt" in webui.details(job_id)["logs"]
    assert _file(webui, job_id, "worker_packages.txt") == "os-autoinst-interop\nperl-Mojolicious-interop\n"
    print(f"row 6: job {job_id} logs include worker_packages.txt")


def test_isotovideo_gets_the_mojo_environment(webui, qaworker):
    worker = qaworker()
    _idle(webui, worker)
    job_id = webui.schedule_for(worker, CASEDIR=MOJOENV_CASEDIR, TEST="qaworker-mojoenv")
    job = webui.wait_job(job_id)
    assert job["result"] == "passed", worker.log()[-3000:]
    log = _file(webui, job_id, "autoinst-log.txt")
    seen = dict(re.findall(r"qaworker-env (\w+)=([^\s\x1b]+)", log))  # the log has colour codes
    assert seen == {"MOJO_INACTIVITY_TIMEOUT": "300", "MOJO_CONNECT_TIMEOUT": "300",
                    "MOJO_REACTOR": "Mojo::Reactor::Poll"}, log[-3000:]
    print(f"row 7: job {job_id} autoinst-log.txt: {seen}")


def test_restarted_job_is_aborted_with_reason_abort(webui, qaworker):
    # restarting a running job makes the web UI send `abort`; without base_state.json the worker says why
    worker = qaworker()
    _idle(webui, worker)
    job_id = webui.schedule_for(worker, REALSTACK_SLEEP="60")
    webui.wait_state(job_id, "running")
    webui.api("POST", f"/api/v1/jobs/{job_id}/restart").raise_for_status()
    job = webui.wait_job(job_id, timeout=60)
    wait_until(lambda: "set_done" in worker.log() or "abort" in worker.log(), timeout=30, message="abort seen")
    print(f"row 11: restarted job {job_id}: {job['state']}/{job['result']} reason {job.get('reason')!r}; worker log: "
          f"{[line for line in worker.log().splitlines() if 'abort' in line][-2:]}")
    assert job["result"] == "user_restarted"
    assert job.get("reason") == "abort", job


def test_perl_worker_also_says_abort(webui, perl_worker):
    # the baseline the row-11 test asserts: the Perl worker's reason for the same restart
    job_id = webui.schedule(REALSTACK_SLEEP="60", WORKER_CLASS=PERL_CLASS)
    webui.wait_state(job_id, "running", timeout=90)
    webui.api("POST", f"/api/v1/jobs/{job_id}/restart").raise_for_status()
    job = webui.wait_job(job_id, timeout=90)
    print(f"row 11 (Perl worker): restarted job {job_id}: {job['result']} reason {job.get('reason')!r}")
    assert (job["result"], job.get("reason")) == ("user_restarted", "abort")
