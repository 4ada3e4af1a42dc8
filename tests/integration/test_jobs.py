"""Jobs end to end over real sockets and real subprocesses: mock web UI + simulator (issue 3)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.harness import (
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    wait_registered,
)


def module_results_during_run(job) -> dict[str, float]:
    """First time each module arrived with a final result in a status post (not only at the end)."""
    first: dict[str, float] = {}
    for t, status in job.status_posts:
        for name, result in (status.get("result") or {}).items():
            if isinstance(result, dict) and result.get("result") not in (None, "running") and name not in first:
                first[name] = t
    return first


async def test_passing_job(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,console,shutdown"))
        job = await web.wait_job_done(job_id, 60)
        assert (job.state, job.result) == ("done", "passed")
        assert not job.reason
        arrived = module_results_during_run(job)
        assert set(arrived) >= {"boot", "login", "console"}
        # module results arrived while the job still ran, before the final status
        assert arrived["boot"] < job.t_done - 0.3
        assert {"autoinst-log.txt", "worker-log.txt", "vars.json"} <= job.uploaded_files()
        await assert_no_leftovers()


async def test_failing_module(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job = await web.wait_job_done(web.schedule_job(job_settings(SIM_FAIL_MODULE="login")), 60)
        assert job.result == "failed"
        assert job.modules["login"]["result"] == "fail"
        await assert_no_leftovers()


async def test_crash_is_died_incomplete(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job = await web.wait_job_done(web.schedule_job(job_settings(SIM_CRASH="login")), 60)
        assert job.result == "incomplete"
        assert job.reason == "backend died: QEMU exited unexpectedly"
        await assert_no_leftovers()


async def test_job_timeout(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job = await web.wait_job_done(web.schedule_job(job_settings(SIM_HANG="login", MAX_JOB_TIME="3")), 60)
        assert job.result == "timeout_exceeded"
        assert job.reason == "timeout: test execution exceeded MAX_JOB_TIME"
        await assert_no_leftovers()


async def test_timeout_scale_stretches_max_job_time(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        settings = job_settings(MAX_JOB_TIME="1", TIMEOUT_SCALE="10", SIM_MODULE_SECONDS="0.5")
        job = await web.wait_job_done(web.schedule_job(settings), 60)
        assert job.result == "passed"


async def test_cancel_during_run(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="5"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        web.cancel_job(job_id)
        job = await web.wait_job_done(job_id, 30)
        assert job.result == "user_cancelled"
        assert job.set_done_params.get("result") == "user_cancelled"
        assert "autoinst-log.txt" in job.uploaded_files()
        await assert_no_leftovers()


async def test_abort_skips_uploads(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="5"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        web.abort_job(job_id)
        await web.wait_for(lambda: web.jobs[job_id].set_done_params is not None, 30)
        job = web.jobs[job_id]
        assert job.set_done_params.get("result") == "incomplete"
        assert "autoinst-log.txt" not in job.uploaded_files()
        await assert_no_leftovers()


async def test_sequence_failed_parent_skips_children(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        ids = web.schedule_chain([job_settings(SIM_FAIL_MODULE="boot"), job_settings(), job_settings()])
        parent, child, grandchild = ids
        for job_id in ids:
            await web.wait_job_done(job_id, 60)
        assert web.jobs[parent].result == "failed"
        assert web.jobs[child].result == "skipped"
        assert web.jobs[grandchild].result == "skipped"
        # skipped jobs were never accepted
        accepted = [m["jobid"] for w in web.workers.values() for m in w.status_messages if m.get("type") == "accepted"]
        assert accepted == [parent]


async def test_sequence_passing_parent_runs_children_in_order(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        ids = web.schedule_chain([job_settings(), job_settings(), job_settings()])
        for job_id in ids:
            await web.wait_job_done(job_id, 60)
        assert [web.jobs[i].result for i in ids] == ["passed"] * 3
        accepted = [m["jobid"] for w in web.workers.values() for m in w.status_messages if m.get("type") == "accepted"]
        assert accepted == ids


async def test_four_slots_busy_at_once(tmp_path):
    from tests.helpers import free_instance

    instances = sorted({free_instance() for _ in range(8)})[:4]
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], instances=instances)
        async with running_worker(config):
            await wait_registered(web, count=4)
            ids = [web.schedule_job(job_settings(SIM_MODULE_SECONDS="1.5")) for _ in range(4)]
            await web.wait_for(lambda: sum(web.jobs[i].state == "running" for i in ids) == 4, 30)
            for job_id in ids:
                assert (await web.wait_job_done(job_id, 60)).result == "passed"
            workers = {web.jobs[i].assigned_worker_id for i in ids}
            assert len(workers) == 4
        await assert_no_leftovers()


@pytest.mark.parametrize("delay", [0.0])
async def test_worker_quit_mid_job_is_incomplete_and_duplicated(tmp_path, delay):
    async with mock_web(tmp_path) as web:
        async with running_worker(make_config(tmp_path, [web.url])) as worker:
            await wait_registered(web)
            job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="5"))
            await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
            await asyncio.sleep(delay)
            worker.quit()
            assert await asyncio.wait_for(worker.wait_stopped(), 30) == 0
        job = web.jobs[job_id]
        assert job.result == "incomplete"
        assert job.reason == "quit: worker has been stopped or restarted"
        assert job.duplicated_as is not None
        assert not any(w.connected for w in web.workers.values())
        await assert_no_leftovers()


async def test_screenshots_of_a_module_arrive_before_the_next_module_finishes(tmp_path):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,login,console", SIM_MODULE_SECONDS="1.5",
                                               SIM_SCREENSHOTS="2"))
        job = await web.wait_job_done(job_id, 60)
        assert job.result == "passed"
        finished = module_results_during_run(job)
        images = {a.name: a.t for a in job.artefacts if a.kind == "image"}
        boot_images = [t for name, t in images.items() if name.startswith("boot-")]
        assert len(boot_images) == 2
        assert max(boot_images) < finished["login"], "boot's screenshots came only after login had finished"
        thumbs = [a for a in job.artefacts if a.kind == "thumb"]
        assert len(thumbs) == len(images)


async def test_the_logs_go_up_beside_the_final_status(tmp_path):
    """§14.2 steps 6-8 overlapped for a job whose isotovideo ended by itself: the final status post does
    not wait for the log uploads (each artefact is held 0.3 s by the web UI); set_done waits for both."""
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        web.faults.delay(r"/artefact$", 0.3, times=None)
        job_id = web.schedule_job(job_settings(SIM_MODULES="boot,shutdown"))
        job = await web.wait_job_done(job_id, 60)
        assert (job.state, job.result) == ("done", "passed")
        logs = [a.t for a in job.artefacts if a.kind == "log"]
        assert len(logs) >= 3
        final_status = max(t for t, status in job.status_posts if "result" in status and "uploading" not in status)
        assert final_status < max(logs)  # posted while logs were still going up
        assert max(logs) <= job.t_done  # set_done came after every log
        await assert_no_leftovers()
