"""Issue 11 items 3+4: a SIGKILLed (or handed-over) worker's job is picked up by the next start.

Real worker processes (`python -m app.cli --no-ui`), the mock web UI served on 127.0.0.1 and the
simulator as isotovideo. The worker is killed with SIGKILL at interesting moments and started again
on the same slot; the web UI must see the very same job finish as it would have without the kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.slot.adopthandover import HANDOVER_EXIT
from tests.integration.adopt_support import (
    assert_passed_without_clone,
    assert_screenshots_exactly_once,
    gone,
    job_record,
    lives,
    monitor_pid,
    recorded_monitor,
    worker_of,
)
from tests.integration.harness import job_settings, mock_web


async def test_sigkill_mid_run_restart_finishes_the_same_job(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start_registered()
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,work,shutdown", SIM_MODULE_SECONDS="1.5",
                                               SIM_SCREENSHOTS="2"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)  # a round went through
        pool = workers.pool
        monitor = monitor_pid(pool)
        assert await workers.kill() == -signal.SIGKILL
        assert not gone(monitor)  # the job outlived its worker
        await workers.start_registered()
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 4)
        assert_screenshots_exactly_once(web, job_id)
        assert gone(monitor)
        log = workers.log()
        assert f"adopting job {job_id}" in log
        assert "autoinst-log.txt" in {a.name for a in job.artefacts}
        await web.wait_for(lambda: not (pool / ".qaworker" / "job.json").exists(), 10)  # nothing left to adopt


async def test_sigkill_during_an_upload_round(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start_registered()
        web.faults.delay(r"/artefact$", 2.0, times=1)  # one image upload stays in flight
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,shutdown", SIM_MODULE_SECONDS="1",
                                               SIM_SCREENSHOTS="3"))
        await web.wait_for(lambda: web.faults.applied >= 1, 30)
        await asyncio.sleep(0.2)
        await workers.restart()
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 3)
        assert_screenshots_exactly_once(web, job_id)


async def test_sigkill_during_setup_reruns_the_setup_for_the_same_job(tmp_path):
    extra = f"CACHEDIRECTORY = {tmp_path / 'cache'}"
    async with mock_web(tmp_path) as web, lives(tmp_path, web, extra) as workers:
        web.add_asset("hdd", "disk.qcow2", size=2 * 1024 * 1024)
        web.faults.delay(r"^/assets/", 3.0, times=1)  # the first download hangs: the job is in setup
        await workers.start_registered()
        job_id = web.schedule_job(job_settings(HDD_1="disk.qcow2", SIM_MODULES="boot,shutdown",
                                               SIM_MODULE_SECONDS="0.5"))
        await web.wait_for(lambda: web.faults.applied >= 1, 30)
        record = job_record(workers.pool)
        assert (record["job"]["id"], record["state"], record["monitor"]) == (job_id, "setup", None)
        await workers.restart()
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 2)


async def test_restart_after_the_web_ui_gave_the_job_up_kills_the_old_tree(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start_registered()
        settings = job_settings(SIM_MODULES="boot,login,work", SIM_MODULE_SECONDS="3")
        job_id = web.schedule_job(settings)
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        pool = workers.pool
        monitor = await recorded_monitor(web, pool)
        await workers.kill()
        web.state.abandon(web.jobs[job_id], "abandoned: associated worker has not sent any status updates for too long")
        clone_id = web.jobs[job_id].duplicated_as
        assert clone_id is not None
        await workers.start_registered()
        await web.wait_for(lambda: gone(monitor), 20)  # the abandoned job's tree is ended ...
        assert list((pool / ".preserved").iterdir())  # ... its results kept
        done = await web.wait_job_done(clone_id, 60)  # and the slot takes new work: the clone passes
        assert done.result == "passed"
        log = workers.log()
        assert f"not adopting job {job_id}" in log


def _sleeper() -> subprocess.Popen:
    """An unrelated program (no job marker, not in the pool) whose pid a record will name."""
    env = {k: v for k, v in os.environ.items() if k != "QAWORKER_JOB_MARKER"}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True)


def _ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[19])


async def test_forged_records_never_kill_unrelated_processes(tmp_path):
    sleeper = _sleeper()
    try:
        async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
            pool = workers.pool
            (pool / ".qaworker").mkdir(parents=True)
            record = {"version": 1, "webui": web.url, "base_url": web.url, "instance": workers.instance,
                      "pool_dir": str(pool), "worker_id": 1, "worker_pid": 1, "marker": "qaworker-forged",
                      "job": {"id": 4242, "settings": {}}, "state": "running", "accepted_at": time.time(),
                      "monitor": {"monitor_pid": sleeper.pid, "monitor_start": _ticks(sleeper.pid),
                                  "isotovideo_pid": sleeper.pid, "isotovideo_start": _ticks(sleeper.pid)}}
            (pool / ".qaworker" / "job.json").write_text(json.dumps(record))
            await workers.start_registered()
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot", SIM_MODULE_SECONDS="0.3"))
            assert (await web.wait_job_done(job_id, 60)).result == "passed"  # the slot works as usual
            assert sleeper.poll() is None  # the process the record named is alive
            log = workers.log()
            assert "does not carry the job's marker" in log and "nothing killed" in log
            worker = worker_of(web, workers.instance)
            assert worker is not None and 4242 not in web.jobs
            await workers.kill(signal.SIGTERM)

            # a corrupt record and one of another slot: both set aside with the reason, nothing killed
            (pool / ".qaworker" / "job.json").write_text("{not json")
            await workers.start()
            await web.wait_for(lambda: "is corrupt" in workers.log(), 20)
            await workers.kill(signal.SIGTERM)
            (pool / ".qaworker" / "job.json").write_text(json.dumps({**record, "instance": workers.instance + 1}))
            await workers.start()
            await web.wait_for(lambda: f"is of slot {workers.instance + 1}" in workers.log(),
                               20)
            assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_sigusr2_hands_the_job_over_to_the_next_start(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start_registered()
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,shutdown", SIM_MODULE_SECONDS="1.5"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)
        monitor = monitor_pid(workers.pool)
        assert await workers.kill(signal.SIGUSR2) == HANDOVER_EXIT
        assert not gone(monitor) and job.state == "running"  # nothing stopped, nothing reported
        await workers.start_registered()
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 3)
        assert_screenshots_exactly_once(web, job_id)
        assert "hand-over (SIGUSR2)" in workers.log()


async def test_sigterm_while_the_adoption_waits_for_the_web_ui_ends_the_old_tree(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start_registered()
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login", SIM_MODULE_SECONDS="20"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        monitor = await recorded_monitor(web, workers.pool)
        await workers.kill()
        await web.stop()  # the next life cannot ask the web UI whether the job is still its own
        try:
            await workers.start()
            await web.wait_for(lambda: "holding it for the web UI" in workers.log(), 20)
            assert not gone(monitor)
            assert await workers.kill(signal.SIGTERM) == 0  # quit: jobs end, also the one not confirmed yet
            assert gone(monitor)
            assert "not adopting job" in workers.log()
        finally:
            await web.start()


async def _run_once(tmp: Path, settings: dict[str, str], kill_after_first_image: bool) -> tuple[str, str | None]:
    async with mock_web(tmp) as web, lives(tmp, web) as workers:
        await workers.start_registered()
        job_id = web.schedule_job(settings)
        job = web.jobs[job_id]
        if kill_after_first_image:
            await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)
            await workers.restart()
        await web.wait_job_done(job_id, 60)
        assert job.duplicated_as is None
        return job.result, job.reason


@pytest.mark.parametrize("outcome", [{"SIM_FAIL_MODULE": "login"}, {"SIM_CRASH": "work"}], ids=["failed", "died"])
async def test_a_restart_does_not_change_the_jobs_result_or_reason(tmp_path, outcome):
    settings = job_settings(SIM_MODULES="boot,login,work,shutdown", SIM_MODULE_SECONDS="1.2", **outcome)
    without = await _run_once(tmp_path / "plain", settings, kill_after_first_image=False)
    with_restart = await _run_once(tmp_path / "killed", settings, kill_after_first_image=True)
    assert without[0] in ("failed", "incomplete")
    assert with_restart == without


async def test_an_adopted_job_survives_a_second_sigkill(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start_registered()
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,work,more,shutdown", SIM_MODULE_SECONDS="1.5"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)
        for _life in range(2):
            await workers.kill()
            uploaded = len(job.artefacts)
            await workers.start_registered()
            await web.wait_for(lambda n=uploaded: len(job.artefacts) > n or job.state == "done", 30)
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 5)
        assert_screenshots_exactly_once(web, job_id)
        assert workers.log().count(f"adopting job {job_id}") == 2


async def test_sigterm_still_means_quit_for_an_adopted_job(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start_registered()
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login", SIM_MODULE_SECONDS="20"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: job.state == "running", 30)
        monitor = await recorded_monitor(web, workers.pool)
        await workers.restart()
        await web.wait_for(lambda: f"adopting job {job_id}" in workers.log(), 20)
        assert await workers.kill(signal.SIGTERM) == 0
        assert (job.result, job.reason) == ("incomplete", "quit: worker has been stopped or restarted")
        assert job.duplicated_as is not None  # as for any job on SIGTERM
        assert gone(monitor)
