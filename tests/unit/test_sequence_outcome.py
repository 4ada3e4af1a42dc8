"""Sequence semantics of grab_jobs (§8.3) and the final result/reason decision (§14.2-§14.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.job import outcome as oc
from backend.job.sequence import JobQueue, QueuedJob, SequenceError, flatten_sequence


def test_protocol_example_order_and_parents():
    order = flatten_sequence([0, [1, [2, 3], [4, 5]], 6, 7, [8, 9, [10, 11]], 12])
    assert [q.job_id for q in order] == list(range(13))
    parents = {q.job_id: q.parent_id for q in order}
    assert parents == {0: None, 1: 0, 2: 1, 3: 2, 4: 1, 5: 4, 6: 0, 7: 0, 8: 0, 9: 8, 10: 8, 11: 10, 12: 0}


def test_failed_parent_skips_the_whole_subtree_only():
    queue = JobQueue(flatten_sequence([0, [1, [2, 3], [4, 5]], 6]))
    decisions = {}
    while (item := queue.pop()) is not None:
        queued, skip = item
        decisions[queued.job_id] = skip
        queue.record(queued.job_id, ok=queued.job_id != 1 and skip is None)
    assert decisions == {0: None, 1: None, 2: "skipped", 3: "skipped", 4: "skipped", 5: "skipped", 6: None}


def test_marked_pending_job_is_skipped_with_the_command():
    queue = JobQueue([QueuedJob(1, None), QueuedJob(2, 1)])
    queue.marked[2] = "cancel"
    assert queue.pop() == (QueuedJob(1, None), None)
    queue.record(1, True)
    assert queue.pop() == (QueuedJob(2, 1), "cancel")


def test_invalid_sequence_entries():
    with pytest.raises(SequenceError):
        flatten_sequence([1, {"x": 2}])
    with pytest.raises(SequenceError):
        flatten_sequence(_deep(150))


def _deep(n):
    seq: list = [1]
    for _ in range(n):
        seq = [seq]
    return seq


NO_STATE = oc.BaseState(False)


@pytest.mark.parametrize(("stop", "base", "expected"), [
    (oc.StopRequest(oc.DONE), NO_STATE, oc.SetDone(None, None)),
    (oc.StopRequest(oc.DIED), NO_STATE,
     oc.SetDone("incomplete", "died: terminated prematurely, see log output for details")),
    (oc.StopRequest(oc.CANCEL), NO_STATE, oc.SetDone("user_cancelled", None)),
    (oc.StopRequest(oc.OBSOLETE), NO_STATE, oc.SetDone("incomplete", "obsolete", newbuild=True)),
    (oc.StopRequest(oc.ABORT), NO_STATE, oc.SetDone("incomplete", "abort")),
    (oc.StopRequest(oc.OBSOLETE), oc.BaseState(True, "tests", "gone"),
     oc.SetDone("incomplete", "tests obsolete: gone", newbuild=True)),
    (oc.StopRequest(oc.QUIT), NO_STATE, oc.SetDone("incomplete", "quit: worker has been stopped or restarted")),
    (oc.StopRequest(oc.TIMEOUT, "timeout: setup exceeded MAX_SETUP_TIME"), NO_STATE,
     oc.SetDone("timeout_exceeded", "timeout: setup exceeded MAX_SETUP_TIME")),
    (oc.StopRequest(oc.SETUP_FAILURE, "asset failure: Cannot find HDD_1 asset hdd/x.qcow2!"), NO_STATE,
     oc.SetDone("incomplete", "asset failure: Cannot find HDD_1 asset hdd/x.qcow2!")),
    (oc.StopRequest(oc.API_FAILURE, "404 response: Not found"), NO_STATE,
     oc.SetDone("incomplete", "api failure: 404 response: Not found")),
    (oc.StopRequest(oc.DIED), oc.BaseState(True, "backend", "QEMU exited unexpectedly\nmore"),
     oc.SetDone("incomplete", "backend died: QEMU exited unexpectedly")),
    (oc.StopRequest(oc.DONE), oc.BaseState(True, "tests", "oops", "incomplete"),
     oc.SetDone("incomplete", "tests done: oops")),
    (oc.StopRequest(oc.DIED), oc.BaseState(True, corrupted=True),
     oc.SetDone("incomplete", "terminated prematurely: Encountered corrupted state file, see log output for details")),
    (oc.StopRequest(oc.DONE), oc.BaseState(True, corrupted=True),
     oc.SetDone(None, "done: terminated with corrupted state file")),
])
def test_decide(stop, base, expected):
    assert oc.decide(stop, base) == expected


def test_done_with_upload_error_is_api_failure():
    decision = oc.decide(oc.StopRequest(oc.DONE), NO_STATE, upload_error="Unable to upload images: x.png")
    assert decision == oc.SetDone("incomplete", "api failure: Unable to upload images: x.png")


def test_qemu_hint_from_log():
    base = oc.BaseState(True, "backend", "QEMU exited unexpectedly")
    tail = "blah\nFailed to allocate KVM HPT of order 33: Cannot allocate memory\n"
    decision = oc.decide(oc.StopRequest(oc.DIED), base, log_tail=tail)
    assert decision.reason.startswith("QEMU terminated: Failed to allocate KVM")


def test_set_done_params_order_and_worker_id():
    params = oc.SetDone("timeout_exceeded", "timeout: x").params(7)
    assert params == [("reason", "timeout: x"), ("result", "timeout_exceeded"), ("worker_id", 7)]


def test_read_base_state(tmp_path: Path):
    assert oc.read_base_state(tmp_path) == NO_STATE
    (tmp_path / "base_state.json").write_text('{"component":"isotovideo","msg":"isotovideo received signal TERM"}')
    assert oc.read_base_state(tmp_path).component == "isotovideo"
    (tmp_path / "base_state.json").write_text("{broken")
    assert oc.read_base_state(tmp_path).corrupted


def test_a_full_disk_is_named_in_the_died_reason():
    decision = oc.decide(oc.StopRequest(oc.DIED), NO_STATE, no_space=True)
    assert decision.reason == "died: terminated prematurely: No space left on device, see log output for details"
