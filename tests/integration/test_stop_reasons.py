"""abort / obsolete of a running job without base_state.json: set_done carries the bare command as the
reason, as upstream does (issue 12 row 11)."""

from __future__ import annotations

from tests.integration.harness import (
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    wait_registered,
)


async def _stop_running_job(tmp_path, command: str):
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="5"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        worker_id = web.jobs[job_id].assigned_worker_id
        assert await web.send_ws(worker_id, {"type": command, "jobid": job_id})
        await web.wait_for(lambda: web.jobs[job_id].set_done_params is not None, 30)
        await assert_no_leftovers()
        return web.jobs[job_id]


async def test_abort_sends_reason_abort(tmp_path):
    job = await _stop_running_job(tmp_path, "abort")
    assert job.set_done_params.get("result") == "incomplete"
    assert job.set_done_params.get("reason") == "abort"


async def test_obsolete_sends_reason_obsolete_and_newbuild(tmp_path):
    job = await _stop_running_job(tmp_path, "obsolete")
    assert job.set_done_params.get("reason") == "obsolete"
    assert str(job.set_done_params.get("newbuild")) == "1"
