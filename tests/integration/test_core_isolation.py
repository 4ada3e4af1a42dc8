"""The core's promises over real sockets and processes: no bounced jobs between two jobs, a bug in one
slot costs only that slot's job, a cancelled worker really stops, idle status reuses the last check."""

from __future__ import annotations

import asyncio

import pytest

from backend.slot import availability as availability_module
from backend.slot.runner import JobRunner
from backend.worker import Worker
from tests.helpers import free_instance
from tests.integration.harness import (
    assert_no_leftovers,
    job_settings,
    make_config,
    mock_web,
    running_worker,
    wait_registered,
)


async def test_job_offered_right_after_set_done_is_taken_not_rejected(tmp_path):
    """The mock offers the next job the moment set_done frees the worker; the slot must take it."""
    async with mock_web(tmp_path) as web, running_worker(make_config(tmp_path, [web.url])):
        await wait_registered(web)
        ids = [web.schedule_job(job_settings(SIM_MODULE_SECONDS="0.05", SIM_MODULES="boot")) for _ in range(5)]
        for job_id in ids:
            job = await web.wait_job_done(job_id, 60)
            assert job.result == "passed", (job_id, job.reason)
        rejections = [r for w in web.workers.values() for r in w.rejections]
        assert rejections == []


async def test_bug_in_one_slot_costs_only_its_job(tmp_path, monkeypatch):
    buggy, healthy = free_instance(), free_instance()
    original = JobRunner._job_context
    bitten: list[int] = []

    def job_context(self, conn, info):
        if self.instance == buggy and not bitten:
            bitten.append(info.id)
            raise RuntimeError("injected bug in the runner")
        return original(self, conn, info)

    monkeypatch.setattr(JobRunner, "_job_context", job_context)
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], instances=[buggy, healthy])
        async with running_worker(config) as worker:
            await wait_registered(web, 2)
            long_job = web.schedule_job(job_settings(SIM_MODULE_SECONDS="1", SIM_MODULES="boot,login,shutdown"))
            first = web.schedule_job(job_settings())
            done_first = await web.wait_job_done(first, 60)
            done_long = await web.wait_job_done(long_job, 60)
            victim = done_first if bitten and bitten[0] == first else done_long
            survivor = done_long if victim is done_first else done_first
            assert victim.result == "incomplete"
            assert victim.reason.startswith("exception: qaworker bug: RuntimeError: injected bug"), victim.reason
            assert survivor.result == "passed"
            # the buggy slot keeps serving: its next job passes
            after = [web.schedule_job(job_settings()) for _ in range(2)]
            for job_id in after:
                assert (await web.wait_job_done(job_id, 60)).result == "passed"
            assert not worker.stopping
        await assert_no_leftovers()


async def test_cancelling_the_worker_propagates_and_leaves_nothing(tmp_path):
    async with mock_web(tmp_path) as web:
        worker = Worker(make_config(tmp_path, [web.url]))
        task = asyncio.create_task(worker.run())
        await wait_registered(web)
        job_id = web.schedule_job(job_settings(SIM_MODULE_SECONDS="5"))
        await web.wait_for(lambda: web.jobs[job_id].state == "running", 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert worker._stopped.is_set()
        await assert_no_leftovers()


async def test_idle_worker_status_reports_the_last_check_without_rerunning_it(tmp_path, monkeypatch):
    calls = []
    real = availability_module.check_availability

    async def counting(*args, **kwargs):
        calls.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(availability_module, "check_availability", counting)
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url], settings={"QAWORKER_HEALTH_INTERVAL": "3600"})
        async with running_worker(config) as worker:
            await wait_registered(web)
            worker_state = next(iter(web.workers.values()))
            before_checks, before_status = len(calls), len(worker_state.status_messages)
            conn = next(iter(worker.slots[0].connections.values()))
            for _ in range(5):
                conn.send_status_soon()
                await web.wait_for(lambda n=len(worker_state.status_messages): len(worker_state.status_messages) > n,
                                   10)
            assert len(worker_state.status_messages) >= before_status + 5
            assert worker_state.status_messages[-1].get("status") == "free"
            assert len(calls) == before_checks
