"""Issue 11 items 3+4: a SIGKILLed (or handed-over) worker's job is picked up by the next start.

Real worker processes (`python -m app.cli --no-ui`), the mock web UI served on 127.0.0.1 and the
simulator as isotovideo. The worker is killed with SIGKILL at interesting moments and started again
on the same slot; the web UI must see the very same job finish as it would have without the kill.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from backend.mockweb.jobs import image_path
from backend.mockweb.server import MockWebUI
from backend.slot.adopthandover import HANDOVER_EXIT
from tests.helpers import free_instance
from tests.integration.harness import job_settings, mock_web, start_worker_process


def pool_of(tmp: Path, instance: int) -> Path:
    return tmp / "base" / "openqa" / "pool" / str(instance)


class Workers:
    """The successive lives of the worker on one slot; every one is ended by the test."""

    def __init__(self, tmp: Path, web: MockWebUI, instance: int, extra: str = "") -> None:
        self.tmp, self.web, self.instance, self.extra = tmp, web, instance, extra
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> asyncio.subprocess.Process:
        proc = await start_worker_process(self.tmp, self.web.url, self.instance, extra=self.extra)
        self.procs.append(proc)
        return proc

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        proc = self.procs[-1]
        proc.send_signal(sig)
        return await asyncio.wait_for(proc.wait(), 30)

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


@contextlib.asynccontextmanager
async def lives(tmp: Path, web: MockWebUI, extra: str = "") -> AsyncIterator[Workers]:
    workers = Workers(tmp, web, free_instance(), extra)
    try:
        yield workers
    finally:
        await workers.close()


def worker_of(web: MockWebUI, instance: int):
    return next((w for w in web.workers.values() if w.instance == instance), None)


async def registered(web: MockWebUI, instance: int, after: int = 0) -> None:
    await web.wait_for(lambda: (w := worker_of(web, instance)) is not None and w.connected
                       and w.registrations > after, 20)


def monitor_pid(pool: Path) -> int:
    return json.loads((pool / ".qaworker" / "job.json").read_text())["monitor"]["monitor_pid"]


def assert_screenshots_exactly_once(web: MockWebUI, job_id: int) -> None:
    job = web.jobs[job_id]
    uploads = collections.Counter(a.md5 for a in job.artefacts if a.kind == "image")
    assert uploads and max(uploads.values()) == 1, uploads  # no image uploaded twice
    referenced = {d["screenshot"]["md5"] for m in job.modules.values() for d in m.get("details", [])
                  if isinstance(d.get("screenshot"), dict)}
    assert referenced, job.modules
    missing = [m for m in referenced if not image_path(web.data_dir / "images", m).exists()]
    assert missing == []  # no screenshot lost


def assert_passed_without_clone(web: MockWebUI, job_id: int, modules: int) -> None:
    job = web.jobs[job_id]
    assert (job.state, job.result, job.reason) == ("done", "passed", None), (job.result, job.reason)
    assert job.duplicated_as is None
    assert len(web.jobs) == 1  # no clone was created
    assert [m.get("result") for m in job.modules.values()] == ["ok"] * modules


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_sigkill_mid_run_restart_finishes_the_same_job(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start()
        await registered(web, workers.instance)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,work,shutdown", SIM_MODULE_SECONDS="1.5",
                                               SIM_SCREENSHOTS="2"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)  # a round went through
        pool = pool_of(tmp_path, workers.instance)
        monitor = monitor_pid(pool)
        assert await workers.kill() == -signal.SIGKILL
        assert not gone(monitor)  # the job outlived its worker
        registrations = worker_of(web, workers.instance).registrations
        await workers.start()
        await registered(web, workers.instance, registrations)
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 4)
        assert_screenshots_exactly_once(web, job_id)
        assert gone(monitor)
        log = (tmp_path / "worker.log").read_text()
        assert f"adopting job {job_id}" in log
        assert "autoinst-log.txt" in {a.name for a in job.artefacts}
        await web.wait_for(lambda: not (pool / ".qaworker" / "job.json").exists(), 10)  # nothing left to adopt


async def test_sigkill_during_an_upload_round(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start()
        await registered(web, workers.instance)
        web.faults.delay(r"/artefact$", 2.0, times=1)  # one image upload stays in flight
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,shutdown", SIM_MODULE_SECONDS="1",
                                               SIM_SCREENSHOTS="3"))
        await web.wait_for(lambda: web.faults.applied >= 1, 30)
        await asyncio.sleep(0.2)
        await workers.kill()
        registrations = worker_of(web, workers.instance).registrations
        await workers.start()
        await registered(web, workers.instance, registrations)
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 3)
        assert_screenshots_exactly_once(web, job_id)


async def test_sigkill_during_setup_reruns_the_setup_for_the_same_job(tmp_path):
    extra = f"CACHEDIRECTORY = {tmp_path / 'cache'}"
    async with mock_web(tmp_path) as web, lives(tmp_path, web, extra) as workers:
        web.add_asset("hdd", "disk.qcow2", size=2 * 1024 * 1024)
        web.faults.delay(r"^/assets/", 3.0, times=1)  # the first download hangs: the job is in setup
        await workers.start()
        await registered(web, workers.instance)
        job_id = web.schedule_job(job_settings(HDD_1="disk.qcow2", SIM_MODULES="boot,shutdown",
                                               SIM_MODULE_SECONDS="0.5"))
        await web.wait_for(lambda: web.faults.applied >= 1, 30)
        record = json.loads((pool_of(tmp_path, workers.instance) / ".qaworker" / "job.json").read_text())
        assert (record["job"]["id"], record["state"], record["monitor"]) == (job_id, "setup", None)
        await workers.kill()
        registrations = worker_of(web, workers.instance).registrations
        await workers.start()
        await registered(web, workers.instance, registrations)
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 2)


async def test_restart_after_the_web_ui_gave_the_job_up_kills_the_old_tree(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start()
        await registered(web, workers.instance)
        settings = job_settings(SIM_MODULES="boot,login,work", SIM_MODULE_SECONDS="3")
        job_id = web.schedule_job(settings)
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        pool = pool_of(tmp_path, workers.instance)
        await web.wait_for(lambda: (pool / ".qaworker" / "job.json").exists()
                           and json.loads((pool / ".qaworker" / "job.json").read_text())["monitor"] is not None, 10)
        monitor = monitor_pid(pool)
        await workers.kill()
        web.state.abandon(web.jobs[job_id], "abandoned: associated worker has not sent any status updates for too long")
        clone_id = web.jobs[job_id].duplicated_as
        assert clone_id is not None
        registrations = worker_of(web, workers.instance).registrations
        await workers.start()
        await registered(web, workers.instance, registrations)
        await web.wait_for(lambda: gone(monitor), 20)  # the abandoned job's tree is ended ...
        assert list((pool / ".preserved").iterdir())  # ... its results kept
        done = await web.wait_job_done(clone_id, 60)  # and the slot takes new work: the clone passes
        assert done.result == "passed"
        log = (tmp_path / "worker.log").read_text()
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
            pool = pool_of(tmp_path, workers.instance)
            (pool / ".qaworker").mkdir(parents=True)
            record = {"version": 1, "webui": web.url, "base_url": web.url, "instance": workers.instance,
                      "pool_dir": str(pool), "worker_id": 1, "worker_pid": 1, "marker": "qaworker-forged",
                      "job": {"id": 4242, "settings": {}}, "state": "running", "accepted_at": time.time(),
                      "monitor": {"monitor_pid": sleeper.pid, "monitor_start": _ticks(sleeper.pid),
                                  "isotovideo_pid": sleeper.pid, "isotovideo_start": _ticks(sleeper.pid)}}
            (pool / ".qaworker" / "job.json").write_text(json.dumps(record))
            await workers.start()
            await registered(web, workers.instance)
            job_id = web.schedule_job(job_settings(SIM_MODULES="boot", SIM_MODULE_SECONDS="0.3"))
            assert (await web.wait_job_done(job_id, 60)).result == "passed"  # the slot works as usual
            assert sleeper.poll() is None  # the process the record named is alive
            log = (tmp_path / "worker.log").read_text()
            assert "does not carry the job's marker" in log and "nothing killed" in log
            worker = worker_of(web, workers.instance)
            assert worker is not None and 4242 not in web.jobs
            await workers.kill(signal.SIGTERM)

            # a corrupt record and one of another slot: both set aside with the reason, nothing killed
            (pool / ".qaworker" / "job.json").write_text("{not json")
            await workers.start()
            await web.wait_for(lambda: "is corrupt" in (tmp_path / "worker.log").read_text(), 20)
            await workers.kill(signal.SIGTERM)
            (pool / ".qaworker" / "job.json").write_text(json.dumps({**record, "instance": workers.instance + 1}))
            await workers.start()
            await web.wait_for(lambda: f"is of slot {workers.instance + 1}" in (tmp_path / "worker.log").read_text(),
                               20)
            assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_sigusr2_hands_the_job_over_to_the_next_start(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start()
        await registered(web, workers.instance)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,shutdown", SIM_MODULE_SECONDS="1.5"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)
        monitor = monitor_pid(pool_of(tmp_path, workers.instance))
        assert await workers.kill(signal.SIGUSR2) == HANDOVER_EXIT
        assert not gone(monitor) and job.state == "running"  # nothing stopped, nothing reported
        registrations = worker_of(web, workers.instance).registrations
        await workers.start()
        await registered(web, workers.instance, registrations)
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 3)
        assert_screenshots_exactly_once(web, job_id)
        assert "hand-over (SIGUSR2)" in (tmp_path / "worker.log").read_text()


async def test_sigterm_while_the_adoption_waits_for_the_web_ui_ends_the_old_tree(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start()
        await registered(web, workers.instance)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login", SIM_MODULE_SECONDS="20"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        pool = pool_of(tmp_path, workers.instance)
        await web.wait_for(lambda: json.loads((pool / ".qaworker" / "job.json").read_text()).get("monitor"), 10)
        monitor = monitor_pid(pool)
        await workers.kill()
        await web.stop()  # the next life cannot ask the web UI whether the job is still its own
        try:
            await workers.start()
            await web.wait_for(lambda: "holding it for the web UI" in (tmp_path / "worker.log").read_text(), 20)
            assert not gone(monitor)
            assert await workers.kill(signal.SIGTERM) == 0  # quit: jobs end, also the one not confirmed yet
            assert gone(monitor)
            assert "not adopting job" in (tmp_path / "worker.log").read_text()
        finally:
            await web.start()


async def _run_once(tmp: Path, settings: dict[str, str], kill_after_first_image: bool) -> tuple[str, str | None]:
    async with mock_web(tmp) as web, lives(tmp, web) as workers:
        await workers.start()
        await registered(web, workers.instance)
        job_id = web.schedule_job(settings)
        job = web.jobs[job_id]
        if kill_after_first_image:
            await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)
            await workers.kill()
            registrations = worker_of(web, workers.instance).registrations
            await workers.start()
            await registered(web, workers.instance, registrations)
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
        await workers.start()
        await registered(web, workers.instance)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,work,more,shutdown", SIM_MODULE_SECONDS="1.5"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: any(a.kind == "image" for a in job.artefacts), 30)
        for _life in range(2):
            await workers.kill()
            registrations = worker_of(web, workers.instance).registrations
            uploaded = len(job.artefacts)
            await workers.start()
            await registered(web, workers.instance, registrations)
            await web.wait_for(lambda n=uploaded: len(job.artefacts) > n or job.state == "done", 30)
        await web.wait_job_done(job_id, 60)
        assert_passed_without_clone(web, job_id, 5)
        assert_screenshots_exactly_once(web, job_id)
        assert (tmp_path / "worker.log").read_text().count(f"adopting job {job_id}") == 2


async def test_sigterm_still_means_quit_for_an_adopted_job(tmp_path):
    async with mock_web(tmp_path) as web, lives(tmp_path, web) as workers:
        await workers.start()
        await registered(web, workers.instance)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login", SIM_MODULE_SECONDS="20"))
        job = web.jobs[job_id]
        await web.wait_for(lambda: job.state == "running", 30)
        pool = pool_of(tmp_path, workers.instance)
        await web.wait_for(lambda: json.loads((pool / ".qaworker" / "job.json").read_text()).get("monitor"), 10)
        monitor = monitor_pid(pool)
        await workers.kill()
        registrations = worker_of(web, workers.instance).registrations
        await workers.start()
        await registered(web, workers.instance, registrations)
        await web.wait_for(lambda: f"adopting job {job_id}" in (tmp_path / "worker.log").read_text(), 20)
        assert await workers.kill(signal.SIGTERM) == 0
        assert (job.result, job.reason) == ("incomplete", "quit: worker has been stopped or restarted")
        assert job.duplicated_as is not None  # as for any job on SIGTERM
        assert gone(monitor)
