"""Pure rules of the mock web UI: fault injection bookkeeping, class matching, results, chains."""

from __future__ import annotations

from pathlib import Path

from backend.mockweb.faults import FaultInjector
from backend.mockweb.model import MockJob, MockWorker
from backend.mockweb.scheduler import plan, worker_matches
from backend.mockweb.store import MockState, assets_from_settings, compute_result


def test_fault_rules_are_consumed_in_order() -> None:
    faults = FaultInjector()
    faults.delay("/status$", 0.5, times=2)
    faults.fail("/status$", 503, times=1, retry_after=2)
    first = faults.action_for("/api/v1/jobs/1/status")
    assert first is not None
    assert (first.delay, first.status, first.headers) == (0.5, 503, {"Retry-After": "2"})
    second = faults.action_for("/api/v1/jobs/1/status")
    assert second is not None and (second.delay, second.status) == (0.5, None)
    assert faults.action_for("/api/v1/jobs/1/status") is None
    assert faults.action_for("/api/v1/workers") is None and faults.rules == []


def test_worker_class_matching() -> None:
    worker = MockWorker(id=1, host="h", instance=1, properties={"WORKER_CLASS": "qemu_x86_64,tap"})
    assert worker_matches(MockJob(id=1, settings={}), worker)
    assert worker_matches(MockJob(id=1, settings={"WORKER_CLASS": "tap, qemu_x86_64"}), worker)
    assert not worker_matches(MockJob(id=1, settings={"WORKER_CLASS": "qemu_x86_64,special"}), worker)


def test_result_computed_from_modules() -> None:
    job = MockJob(id=1, settings={})
    assert compute_result(job) == "incomplete"
    job.modules = {"a": {"result": "ok"}, "b": {"result": "none"}}
    assert compute_result(job) == "passed"
    job.modules["c"] = {"result": "softfail"}
    assert compute_result(job) == "softfailed"
    job.modules["d"] = {"result": "fail"}
    assert compute_result(job) == "failed"


def test_asset_settings_like_openqa() -> None:
    assert assets_from_settings({"ISO": "a.iso", "HDD_1": "b.qcow2", "HDD_2": "/abs/c.qcow2",
                                 "ASSET_1": "d.txt", "TEST": "x"}) == {
        "iso": ["a.iso"], "hdd": ["b.qcow2"], "other": ["d.txt"]}


def test_chain_plan_needs_one_worker_matching_all_jobs(tmp_path: Path) -> None:
    state = MockState(tmp_path, 1800)
    chain = state.add_chain([{"TEST": "a"}, {"TEST": "b", "WORKER_CLASS": "big"}], None)
    small = state.worker_by_name("small", 1)
    big = state.worker_by_name("big", 1)
    for worker, classes in ((small, "qemu"), (big, "qemu,big")):
        worker.properties.update({"WORKER_CLASS": classes, "WEBSOCKET_API_VERSION": "1"})
        worker.t_seen = 1e12
    (assignment,) = plan(state, 1e12, {small.id, big.id})
    assert assignment.worker is big and [j.id for j in assignment.jobs] == [j.id for j in chain]
    message = assignment.message(state)
    assert message["type"] == "grab_jobs" and message["job_info"]["sequence"] == [j.id for j in chain]
