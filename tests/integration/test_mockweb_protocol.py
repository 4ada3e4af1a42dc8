"""The mock web UI speaks openQA's registration, auth, websocket and scheduling protocol (§3, §5, §6, §8)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from backend.mockweb.probe import Probe
from backend.mockweb.server import MockWebUI


async def online(probe: Probe, **kwargs: object) -> Probe:
    assert (await probe.register(**kwargs)).status_code == 200  # type: ignore[arg-type]
    await probe.connect()
    await probe.send({"type": "worker_status", "status": "free"})
    return probe


# --- auth ---------------------------------------------------------------------------------------
async def test_worker_endpoints_need_a_valid_signature(ui: MockWebUI, probe: Probe) -> None:
    unsigned = await probe.call("POST", "/api/v1/workers", {"host": "h"}, sign=False)
    assert unsigned.status_code == 403 and unsigned.json()["error"] == "no api key"
    async with Probe(ui.url, secret="wrong") as bad:
        wrong = await bad.call("POST", "/api/v1/jobs/1/set_done", {"worker_id": 1})
    assert wrong.status_code == 403 and wrong.json()["error"] == "unknown error (wrong secret?)"
    old = await probe.call("POST", "/api/v1/workers", headers={
        "X-API-Key": "1234567890ABCDEF", "X-API-Microtime": str(int(time.time()) - 1000), "X-API-Hash": "0"})
    assert old.status_code == 403 and old.json()["error"].startswith(
        "timestamp mismatch - check whether clocks")
    # reads need no auth
    assert (await probe.call("GET", "/api/v1/workers", sign=False)).status_code == 200
    assert (await probe.call("HEAD", "/api/v1/workers", {"limit": 0}, sign=False)).status_code == 200


async def test_signed_query_with_escapes_is_accepted(probe: Probe) -> None:
    response = await probe.register(cpu_opmode="32-bit, 64-bit", cpu_flags="fpu vme de",
                                    worker_class="qemu_x86_64,qemu_i686")
    assert response.status_code == 200


async def test_without_auth_anything_goes(tmp_path: Path) -> None:
    async with MockWebUI(tmp_path, require_auth=False) as ui, Probe(ui.url) as probe:
        response = await probe.call("POST", "/api/v1/jobs", {"TEST": "x"}, sign=False)
        assert response.status_code == 200 and ui.jobs[response.json()["id"]].settings == {"TEST": "x"}


async def test_2023_flavour_says_plain_timestamp_mismatch(tmp_path: Path) -> None:
    async with MockWebUI(tmp_path, flavour="2023") as ui, Probe(ui.url) as probe:
        old = await probe.call("POST", "/api/v1/workers", headers={
            "X-API-Key": ui.api_key, "X-API-Microtime": "1000", "X-API-Hash": "0"})
        assert old.json()["error"] == "timestamp mismatch"


# --- registration ---------------------------------------------------------------------------------
async def test_registration_validates_and_stores_properties(ui: MockWebUI, probe: Probe) -> None:
    missing = await probe.call("POST", "/api/v1/workers", {"host": "h", "instance": 1})
    assert missing.status_code == 400 and "cpu_arch missing" in missing.json()["error"]
    wrong_version = await probe.register(websocket_api_version=2)
    assert wrong_version.status_code == 426
    assert wrong_version.json() == {"error": "Incompatible websocket API version"}
    first = await probe.register(host="w1", instance=3, isotovideo_interface_version=59)
    assert first.json() == {"id": first.json()["id"], "service_port_delta": 0}
    again = await probe.register(host="w1", instance=3)
    assert again.json()["id"] == first.json()["id"]
    worker = ui.workers[first.json()["id"]]
    assert worker.registrations == 2
    assert worker.properties["ISOTOVIDEO_INTERFACE_VERSION"] == "59"
    assert worker.properties["WORKER_CLASS"] == "qemu_x86_64"
    listing = (await probe.call("GET", "/api/v1/workers")).json()["workers"]
    rows = [(w["host"], w["instance"], w["status"], w["websocket"]) for w in listing]
    assert rows == [("w1", 3, "idle", 0)]


async def test_2023_registration_has_no_port_delta_and_liveview_on_port_plus_2(tmp_path: Path) -> None:
    async with MockWebUI(tmp_path, flavour="2023") as ui, Probe(ui.url) as probe:
        assert (await probe.register()).json() == {"id": 1}
        await probe.connect()
        await probe.send({"type": "worker_status", "status": "free"})
        assert ui.jobs == {} and (await asyncio.wait_for(probe.ws.recv(), 5))  # type: ignore[union-attr]
        assert ui.workers[1].status_messages[-1]["status"] == "free"
        job_id = ui.schedule_job({"TEST": "t"})
        await probe.receive()
        await probe.send({"type": "accepted", "jobid": job_id})
        await ui.wait_for(lambda: ui.jobs[job_id].state == "setup")
        status = await probe.call("POST", f"/api/v1/jobs/{job_id}/status", json={"status": {
            "worker_id": 1, "cmd_srv_url": "http://localhost:20013/x"}})
        assert status.json()["result"] == 1
        live = f"http://127.0.0.1:{ui.port + 2}"
        progress = await probe.call("POST", f"/liveviewhandler/api/v1/jobs/{job_id}/upload_progress",
                                    base=live, json={"upload_up_to": "boot", "outstanding_images": 1})
        assert progress.json() == {"broadcast_count": 0}
        assert ui.jobs[job_id].progress_posts == [{"upload_up_to": "boot", "outstanding_images": 1}]


async def test_2023_info_message_carries_population(tmp_path: Path) -> None:
    async with MockWebUI(tmp_path, flavour="2023") as ui, Probe(ui.url) as probe:
        await online(probe)
        info = await asyncio.wait_for(probe.ws.recv(), 5)  # type: ignore[union-attr]
        assert '"population": 1' in info


# --- websocket ------------------------------------------------------------------------------------
async def test_websocket_status_info_and_broken_state(ui: MockWebUI, probe: Probe) -> None:
    await online(probe)
    assert await asyncio.wait_for(probe.ws.recv(), 5) == '{"type": "info", "seen": 1}'  # type: ignore[union-attr]
    await probe.send({"type": "worker_status", "status": "broken", "reason": "cache gone"})
    await ui.wait_for(lambda: ui.workers[1].error == "cache gone")
    listing = (await probe.call("GET", "/api/v1/workers")).json()["workers"]
    assert listing[0]["status"] == "broken" and listing[0]["error"] == "cache gone"
    assert listing[0]["websocket"] == 1


async def test_unknown_worker_and_second_connection(ui: MockWebUI, probe: Probe) -> None:
    with pytest.raises(Exception, match="400"):
        await probe.connect("/api/v1/ws/99")
    await probe.register()
    first = await probe.connect()
    async with Probe(ui.url) as other:
        other.worker_id = probe.worker_id
        await other.connect()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(first.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert ui.workers[1].connected


async def test_non_object_json_closes_with_1003(ui: MockWebUI, probe: Probe) -> None:
    await probe.register()
    ws = await probe.connect()
    await ws.send("[1, 2]")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    await ui.wait_for(lambda: not ui.workers[1].connected)


async def test_ws_redirect_like_2023(tmp_path: Path) -> None:
    async with MockWebUI(tmp_path, ws_redirect=True) as ui, Probe(ui.url) as probe:
        await probe.register()
        redirect = await probe.call("GET", "/api/v1/ws/1")
        assert redirect.status_code == 302
        assert redirect.headers["Location"] == f"http://127.0.0.1:{ui.port}/ws/1"
        await online(probe)  # the probe follows the http: Location by hand
        await ui.wait_for(lambda: ui.workers[1].connected and ui.workers[1].status_messages != [])


async def test_quit_makes_the_worker_dead(ui: MockWebUI, probe: Probe) -> None:
    await online(probe)
    await probe.send({"type": "quit"})
    await ui.wait_for(lambda: ui.workers[1].t_seen is None)
    listing = (await probe.call("GET", "/api/v1/workers")).json()["workers"]
    assert listing[0]["status"] == "dead" and listing[0]["error"].startswith("graceful disconnect at ")


# --- scheduling -----------------------------------------------------------------------------------
async def test_grab_job_goes_to_the_matching_worker_only(ui: MockWebUI) -> None:
    async with Probe(ui.url) as plain, Probe(ui.url) as special:
        await online(plain, host="a", worker_class="qemu_x86_64")
        await online(special, host="b", worker_class="qemu_x86_64,special")
        job_id = ui.schedule_job({"TEST": "t", "WORKER_CLASS": "special,qemu_x86_64"},
                                 assets={"iso": ["x.iso"]})
        grab = await special.receive()
        assert grab["type"] == "grab_job"
        job = grab["job"]
        assert job["id"] == job_id and job["assigned_worker_id"] == special.worker_id
        assert job["assets"] == {"iso": ["x.iso"]} and len(job["settings"]["JOBTOKEN"]) >= 8
        with pytest.raises(TimeoutError):
            await plain.receive(timeout=0.3)
        assert ui.jobs[job_id].state == "assigned"
        await special.send({"type": "accepted", "jobid": job_id})
        await ui.wait_for(lambda: ui.jobs[job_id].state == "setup")
        # an unclassed job goes to the free worker
        other = ui.schedule_job({"TEST": "u"})
        assert (await plain.receive())["job"]["id"] == other


async def test_scheduling_can_be_paused(ui: MockWebUI, probe: Probe) -> None:
    ui.scheduling_enabled = False
    await online(probe)
    job_id = ui.schedule_job({"TEST": "t"})
    with pytest.raises(TimeoutError):
        await probe.receive(timeout=0.3)
    ui.scheduling_enabled = True
    assert (await probe.receive())["job"]["id"] == job_id


async def test_chain_is_sent_as_one_grab_jobs(ui: MockWebUI, probe: Probe) -> None:
    ids = ui.schedule_chain([{"TEST": "a"}, {"TEST": "b"}, {"TEST": "c"}, {"TEST": "d"}],
                            sequence=[0, [1, 2], 3])
    await online(probe)
    grab = await probe.receive()
    assert grab["type"] == "grab_jobs"
    info = grab["job_info"]
    assert info["ids"] == ids and info["sequence"] == [ids[0], [ids[1], ids[2]], ids[3]]
    assert set(info["data"]) == {str(i) for i in ids} and info["assigned_worker_id"] == probe.worker_id
    tokens = {info["data"][str(i)]["settings"]["JOBTOKEN"] for i in ids}
    assert len(tokens) == 1
    assert info["data"][str(ids[2])]["settings"]["START_DIRECTLY_AFTER_TEST"] == "b"
    assert all(ui.jobs[i].state == "assigned" for i in ids)


async def test_rejected_jobs_go_back_and_are_offered_again(ui: MockWebUI, probe: Probe) -> None:
    ui.reject_backoff = 0.2
    await online(probe)
    job_id = ui.schedule_job({"TEST": "t"})
    await probe.receive()
    await probe.send({"type": "rejected", "job_ids": [job_id], "reason": "busy"})
    await ui.wait_for(lambda: ui.jobs[job_id].state == "scheduled")
    again = await probe.receive(timeout=5)
    assert again["job"]["id"] == job_id


async def test_reregistration_without_job_id_reschedules_or_abandons(ui: MockWebUI, probe: Probe) -> None:
    await online(probe)
    first = ui.schedule_job({"TEST": "t"})
    await probe.receive()
    await probe.register(job_ids=[first])  # listed: kept
    assert ui.jobs[first].state == "assigned"
    await probe.register()  # not listed: back to scheduled (and offered again)
    assert (await probe.receive())["job"]["id"] == first
    await probe.send({"type": "accepted", "jobid": first})
    await ui.wait_for(lambda: ui.jobs[first].state == "setup")
    await probe.register()
    job = ui.jobs[first]
    assert (job.state, job.result) == ("done", "incomplete")
    assert job.reason == "abandoned: associated worker probehost:1 re-connected but abandoned the job"
    assert job.duplicated_as is not None and ui.jobs[job.duplicated_as].state in ("scheduled", "assigned")


async def test_cancel_and_abort_are_sent_over_the_websocket(ui: MockWebUI, probe: Probe) -> None:
    await online(probe)
    first = ui.schedule_job({"TEST": "t"})
    await probe.receive()
    await probe.send({"type": "accepted", "jobid": first})
    await ui.wait_for(lambda: ui.jobs[first].state == "setup")
    ui.cancel_job(first)
    assert await probe.receive() == {"type": "cancel", "jobid": first}
    assert (ui.jobs[first].state, ui.jobs[first].result) == ("cancelled", "user_cancelled")
    done = await probe.call("POST", f"/api/v1/jobs/{first}/set_done", {"worker_id": probe.worker_id})
    assert done.json()["result"] == "user_cancelled"
    second = ui.schedule_job({"TEST": "u"})
    assert (await probe.receive())["job"]["id"] == second
    ui.abort_job(second)
    assert await probe.receive() == {"type": "abort", "jobid": second}
    assert await ui.send_ws(probe.worker_id or 0, {"type": "livelog_start", "jobid": second})
    assert await probe.receive() == {"type": "livelog_start", "jobid": second}


async def test_stale_jobs_are_abandoned_after_worker_timeout(tmp_path: Path) -> None:
    async with MockWebUI(tmp_path, worker_timeout=0.5) as ui, Probe(ui.url) as probe:
        await online(probe)
        job_id = ui.schedule_job({"TEST": "t"})
        await probe.receive()
        await probe.send({"type": "accepted", "jobid": job_id})
        job = await ui.wait_job_done(job_id, timeout=5)
        assert job.result == "incomplete"
        assert "has not sent any status updates for too long" in (job.reason or "")


async def test_drop_websockets_closes_worker_connections(ui: MockWebUI, probe: Probe) -> None:
    await online(probe)
    await ui.wait_for(lambda: ui.workers[1].connected)
    await ui.drop_websockets()
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(probe.ws.recv(), 5)  # type: ignore[union-attr]
    await ui.wait_for(lambda: not ui.workers[1].connected)


async def test_stop_right_after_a_change_does_not_hang(ui: MockWebUI, probe: Probe) -> None:
    """3.11's wait_for swallowed the stop's cancel when it came in the same step as a change (the stale-job
    timer then waited an hour and stop() with it)."""
    await probe.register()  # a worker with a job: the stale-job timer waits with a deadline now
    await probe.connect()
    await probe.send({"type": "worker_status", "status": "free"})
    job_id = ui.schedule_job({"TEST": "t"})
    assert (await probe.receive())["job"]["id"] == job_id
    await probe.send({"type": "accepted", "jobid": job_id})
    await ui.wait_for(lambda: ui.jobs[job_id].state == "setup")
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    ui.notify()  # wakes the timer's wait ...
    await asyncio.wait_for(ui.stop(), 10)  # ... in the same step as the cancel
    assert loop.time() - start < 5
