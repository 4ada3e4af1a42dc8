"""What travels over the control socket comes back as it went: events, the read model, socket names."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from backend import events as ev
from backend.control import paths
from backend.control.codec import decode, decode_event, encode, encode_event, event_types
from backend.events import HostState, ModuleStatus, SlotState
from backend.state import WorkerView


def wire(value):
    return json.loads(json.dumps(value))


SAMPLES = [
    ev.WorkerStarted(version="0.1.0", instances=(1, 2), hosts=("openqa.example.com",)),
    ev.ConnectionChanged(host="h", instance=1, state=HostState.FAILED, reason="503", next_retry_in=4.5),
    ev.SlotStateChanged(instance=1, state=SlotState.BROKEN, reason="load"),
    ev.JobAccepted(instance=1, job_id=9, name="n", host="h", max_job_time=7200.0, pending_job_ids=(10, 11)),
    ev.JobProgress(instance=1, job_id=9, current_module="boot",
                   modules=(ModuleStatus("boot", "installation", "running"), ModuleStatus("shutdown"))),
    ev.JobFinished(instance=1, job_id=9, result="failed", reason="boom", stop_reason="done", duration=12.5),
    ev.LogLines(instance=1, job_id=9, lines=("a", "b")),
    ev.CacheProgress(key="h/x.iso", bytes_done=5, bytes_total=10, waiting_jobs=(9,)),
    ev.Notice(level="warning", message="m", instance=None),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_events_survive_the_wire(event: ev.Event) -> None:
    back = decode_event(wire(encode_event(event)))
    assert back == event
    for name in ("state",):
        if hasattr(event, name):
            assert getattr(back, name) is getattr(event, name)  # enums, not strings: the UI compares with `is`


def test_every_event_class_is_known() -> None:
    assert {"WorkerStarted", "JobFinished", "LogLines", "CacheTotals"} <= set(event_types())


def test_the_read_model_survives_the_wire() -> None:
    view = WorkerView()
    for event in SAMPLES:
        view.apply(event)
    view.apply(ev.JobAccepted(instance=2, job_id=12, name="m", host="h", max_job_time=60.0))
    view.apply(ev.LogLines(instance=2, job_id=12, lines=tuple(f"line {i}" for i in range(600))))
    back = decode(WorkerView, wire(encode(view)))
    assert back.hosts[("h", 1)].state is HostState.FAILED
    assert back.slots[1].state is SlotState.BROKEN and back.slots[1].last_finished.result == "failed"
    assert back.slots[2].job is not None and list(back.slots[2].job.log_tail) == list(view.slots[2].job.log_tail)
    assert back.slots[2].job.log_tail.maxlen == view.slots[2].job.log_tail.maxlen  # still bounded
    assert back.notices.maxlen == view.notices.maxlen and back.notices[-1].message == "m"
    assert encode(back) == encode(view)


def test_unknown_fields_and_events_from_a_newer_worker_are_ignored() -> None:
    data = encode_event(SAMPLES[2])
    data["data"]["colour"] = "blue"
    assert decode_event(data) == SAMPLES[2]
    assert decode_event({"type": "event", "event": "Teleported", "data": {}}) is None
    with pytest.raises((TypeError, ValueError)):
        decode_event({"type": "event", "event": "JobFinished", "data": {"instance": "one", "job_id": 1,
                                                                         "result": "x"}})


def test_socket_names_follow_the_instances() -> None:
    assert paths.instances_spec([1, 2, 3, 4]) == "1-4"
    assert paths.instances_spec([7, 1, 3, 8, 9]) == "1,3,7-9"
    assert paths.socket_name([1]) == "control-1.sock"


def test_where_the_socket_goes(tmp_path) -> None:
    assert paths.socket_path([1], {paths.SOCKET_ENV: "/x/y.sock"}, euid=0) == Path("/x/y.sock")
    assert paths.socket_path([1, 2], {"RUNTIME_DIRECTORY": "/run/qaworker/1"}, euid=990) == \
        Path("/run/qaworker/1/control-1-2.sock")
    assert paths.socket_path([3], {}, euid=0) == Path("/run/qaworker/control-3.sock")
    assert paths.socket_path([3], {"XDG_RUNTIME_DIR": "/run/user/1000"}, euid=1000) == \
        Path("/run/user/1000/qaworker/control-3.sock")
    assert paths.socket_path([3], {}, euid=1000).name == "control-3.sock"


def test_attach_finds_sockets_but_not_other_files(tmp_path) -> None:
    runtime = tmp_path / "qaworker"
    (runtime / "1").mkdir(parents=True)
    (runtime / "control-9.sock").write_text("not a socket")
    holders = []
    for path in (runtime / "control-1-4.sock", runtime / "1" / "control-1.sock"):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        holders.append(s)
    try:
        found = paths.find_sockets({"XDG_RUNTIME_DIR": str(tmp_path)})
        assert runtime / "control-1-4.sock" in found and runtime / "1" / "control-1.sock" in found
        assert runtime / "control-9.sock" not in found
    finally:
        for s in holders:
            s.close()
