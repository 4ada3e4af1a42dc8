"""Status posts, artefacts, chunked assets, set_done, downloads and fault injection of the mock web UI."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.mockweb import storable
from backend.mockweb.probe import Probe, chunk_blob, chunks
from backend.mockweb.server import MockWebUI
from tests.helpers import free_port

ROOT = str(Path(__file__).resolve().parents[2])


async def running_job(ui: MockWebUI, probe: Probe, settings: dict[str, str] | None = None) -> int:
    await probe.register()
    await probe.connect()
    await probe.send({"type": "worker_status", "status": "free"})
    job_id = ui.schedule_job(settings or {"TEST": "t"})
    grab = await probe.receive()
    assert grab["job"]["id"] == job_id
    await probe.send({"type": "accepted", "jobid": job_id})
    await ui.wait_for(lambda: ui.jobs[job_id].state == "setup")
    setup = await status(probe, job_id, {"setup": 1})
    assert setup.json() == {"result": 1} and ui.jobs[job_id].state == "running"
    return job_id


async def status(probe: Probe, job_id: int, body: dict[str, object]) -> httpx.Response:
    return await probe.call("POST", f"/api/v1/jobs/{job_id}/status",
                            json={"status": {"worker_id": probe.worker_id, **body}})


async def artefact(probe: Probe, job_id: int, name: str, content: bytes, **fields: str) -> httpx.Response:
    return await probe.call("POST", f"/api/v1/jobs/{job_id}/artefact", data=fields,
                            files={"file": (name, content)})


PNG = b"\x89PNG\r\n\x1a\n" + b"fake image" * 10
MD5 = hashlib.md5(PNG).hexdigest()


async def test_status_artefacts_and_set_done_round_trip(ui: MockWebUI, probe: Probe) -> None:
    job_id = await running_job(ui, probe)
    details = [{"result": "ok", "screenshot": {"name": "boot-1.png", "md5": MD5}}, {"text": "boot-2.txt"}]
    first = await status(probe, job_id, {
        "cmd_srv_url": "http://localhost:20013/t", "test_execution_paused": 0,
        "test_order": [{"name": "boot", "category": "installation", "flags": {}, "script": "boot.pm"}],
        "result": {"boot": {"result": "ok", "details": details}}, "log": {"offset": 0, "data": "line 1\n"}})
    assert first.json() == {"result": 1, "known_images": [], "known_files": [], "job_result": "passed"}
    assert (await artefact(probe, job_id, "boot-1.png", PNG, image="1", thumb="0", md5=MD5)).text == "OK"
    assert (await artefact(probe, job_id, "boot-1.png", b"thumb", image="1", thumb="1", md5=MD5)).text == "OK"
    assert (await artefact(probe, job_id, "boot-2.txt", b"text", image="0", thumb="0")).text == "OK"
    assert (await artefact(probe, job_id, "autoinst-log.txt", b"log")).text == "OK"
    assert (await artefact(probe, job_id, "y2logs.tar", b"tar", ulog="1")).text == "OK"
    bad_md5 = await artefact(probe, job_id, "x.png", PNG, image="1", md5="nope")
    assert bad_md5.status_code == 400
    second = await status(probe, job_id, {"result": {"boot": {"result": "ok", "details": details}}})
    assert second.json()["known_images"] == [MD5] and second.json()["known_files"] == ["boot-2.txt"]
    assert (await status(probe, job_id, {"uploading": 1})).json() == {"result": 1}
    job = ui.jobs[job_id]
    assert job.state == "uploading" and job.live_log == "line 1\n"
    assert [a.kind for a in job.artefacts] == ["image", "thumb", "file", "log", "ulog"]
    assert job.uploaded_files() == {"boot-2.txt", "autoinst-log.txt", "ulogs/y2logs.tar"}
    image = ui.data_dir / "images" / MD5[:3] / MD5[3:6] / f"{MD5[6:]}.png"
    assert image.read_bytes() == PNG and (image.parent / ".thumbs" / image.name).read_bytes() == b"thumb"
    done = await probe.call("POST", f"/api/v1/jobs/{job_id}/set_done", {"worker_id": probe.worker_id})
    assert done.json() == {"result": "passed", "reason": None}
    assert (job.state, job.result) == ("done", "passed") and "JOBTOKEN" not in job.settings
    assert job.set_done_params == {"worker_id": str(probe.worker_id)} and job.t_done is not None
    assert ui.workers[probe.worker_id or 0].job_id is None
    listed = (await probe.call("GET", "/api/v1/jobs", sign=False)).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    shown = (await probe.call("GET", f"/api/v1/jobs/{job_id}", sign=False)).json()["job"]
    assert (shown["state"], shown["result"]) == ("done", "passed")
    detail = (await probe.call("GET", f"/api/v1/jobs/{job_id}/details", sign=False)).json()["job"]
    assert detail["testresults"][0]["name"] == "boot" and detail["testresults"][0]["result"] == "passed"
    assert detail["testresults"][0]["details"] == details


async def test_status_errors_and_set_done_refusals(ui: MockWebUI, probe: Probe) -> None:
    job_id = await running_job(ui, probe)
    assert (await probe.call("POST", f"/api/v1/jobs/{job_id}/status", json={})).json() == {
        "error": "No status information provided"}
    unknown = await status(probe, 999, {})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "Got status update for non-existing job: 999"
    wrong = await probe.call("POST", f"/api/v1/jobs/{job_id}/status", json={"status": {"worker_id": 77}})
    assert wrong.status_code == 400
    assert wrong.json()["error"] == (f"Got status update for job {job_id} with unexpected worker ID 77 "
                                     f"(expected {probe.worker_id}, job is running)")
    other = await probe.call("POST", f"/api/v1/jobs/{job_id}/set_done", {"worker_id": 77})
    assert other.status_code == 400 and other.json()["error"] == (
        f"Refusing to set result because job is currently assigned to worker {probe.worker_id}).")
    scheduled = ui.schedule_job({"TEST": "waiting", "WORKER_CLASS": "nobody"})
    nobody = await status(probe, scheduled, {})
    assert nobody.json()["error"].endswith(
        "there is not even a worker assigned to this job (job is scheduled)")
    rescheduled = await probe.call("POST", f"/api/v1/jobs/{scheduled}/set_done", {"worker_id": 1})
    assert rescheduled.json()["error"] == "Refusing to set result because job has already been re-scheduled."
    missing = await artefact(probe, 999, "x.txt", b"x")
    assert missing.status_code == 404 and missing.json()["error"] == "Specified job 999 does not exist"
    assert (await artefact(probe, scheduled, "x.txt", b"x")).json() == {"error": "No worker assigned"}


async def test_set_done_results(ui: MockWebUI, probe: Probe) -> None:
    job_id = await running_job(ui, probe)
    await status(probe, job_id, {"result": {"a": {"result": "ok"}, "b": {"result": "softfail"}}})
    reply = await probe.call("POST", f"/api/v1/jobs/{job_id}/set_done",
                             {"reason": "timeout: setup exceeded MAX_SETUP_TIME",
                              "worker_id": probe.worker_id})
    assert reply.json() == {"result": "softfailed", "reason": "timeout: setup exceeded MAX_SETUP_TIME"}
    second = ui.schedule_job({"TEST": "second"})
    assert (await probe.receive())["job"]["id"] == second
    await probe.send({"type": "accepted", "jobid": second})
    await ui.wait_for(lambda: ui.jobs[second].state == "setup")
    reply = await probe.call("POST", f"/api/v1/jobs/{second}/set_done",
                             {"result": "incomplete", "newbuild": 1, "worker_id": probe.worker_id})
    assert reply.json()["result"] == "obsoleted"
    third = ui.schedule_job({"TEST": "third"})
    assert (await probe.receive())["job"]["id"] == third
    skipped = await probe.call("POST", f"/api/v1/jobs/{third}/set_done",
                               {"result": "skipped", "worker_id": probe.worker_id})
    assert skipped.json() == {"result": "skipped", "reason": None} and ui.jobs[third].state == "done"


async def test_duplicate_clones_the_job(ui: MockWebUI, probe: Probe) -> None:
    job_id = await running_job(ui, probe, {"TEST": "t", "BUILD": "7"})
    reply = (await probe.call("POST", f"/api/v1/jobs/{job_id}/duplicate", {"dup_type_auto": 1})).json()
    clone = reply["id"]
    assert reply["result"] == [{str(job_id): clone}] and ui.jobs[job_id].duplicated_as == clone
    assert ui.jobs[clone].settings == {"TEST": "t", "BUILD": "7"} and ui.jobs[clone].origin_id == job_id


async def test_upload_progress_needs_a_running_job(ui: MockWebUI, probe: Probe) -> None:
    path = "/liveviewhandler/api/v1/jobs/{}/upload_progress"
    assert (await probe.call("POST", path.format(5), json={"x": 1})).json() == {
        "error": "The job ID does not refer to a running job"}
    job_id = await running_job(ui, probe)
    assert (await probe.call("POST", path.format(job_id), content=b"x")).status_code == 400
    ok = await probe.call("POST", path.format(job_id), json={"outstanding_files": 0})
    assert ok.json() == {"broadcast_count": 0}
    assert ui.jobs[job_id].progress_posts == [{"outstanding_files": 0}]


# --- chunked assets -------------------------------------------------------------------------------
async def test_chunked_asset_upload_assembles_and_verifies(ui: MockWebUI, probe: Probe) -> None:
    job_id = await running_job(ui, probe)
    data = os.urandom(250_000)
    for blob in chunks("disk.qcow2", data, 100_000):
        reply = await artefact(probe, job_id, "disk.qcow2", blob, asset="public")
        assert reply.json() == {"status": "ok"}
    assert ui.asset_path("hdd", "disk.qcow2").read_bytes() == data
    # private assets get the job id prefix; Perl-style integer encodings work too
    private = chunk_blob("x.iso", b"hi", 0, 2, 1, 1, perl_ints=True)
    assert (await artefact(probe, job_id, "x.iso", private, asset="private")).json() == {"status": "ok"}
    assert ui.asset_path("iso", f"{job_id:08d}-x.iso").read_bytes() == b"hi"
    assert ui.jobs[job_id].assets == ["disk.qcow2", f"{job_id:08d}-x.iso"]
    assert not list((ui.data_dir / "share" / "factory" / "tmp").rglob("*.qcow2"))


async def test_bad_chunks_are_refused_and_upload_state_cleans_up(ui: MockWebUI, probe: Probe) -> None:
    job_id = await running_job(ui, probe)
    data = os.urandom(3000)
    good = chunks("a.img", data, 1000)
    assert (await artefact(probe, job_id, "a.img", good[0], asset="public")).json() == {"status": "ok"}
    corrupt = storable.dumps({**storable.loads(good[1]), "content": (b"\xff" * 1000).hex()})
    reply = await artefact(probe, job_id, "a.img", corrupt, asset="public")
    assert reply.status_code == 500 and reply.json()["error"].startswith("Failed receiving asset: ")
    garbage = await artefact(probe, job_id, "a.img", b"not storable", asset="public")
    assert garbage.status_code == 500
    tmp = ui.data_dir / "share" / "factory" / "tmp" / "public" / f"{job_id:08d}" / "a.img.CHUNKS"
    assert tmp.is_dir()
    state = await probe.call("POST", f"/api/v1/jobs/{job_id}/upload_state",
                             data={"filename": "a.img", "scope": "public", "state": "fail"})
    assert state.text == "OK" and not tmp.exists()
    assert ui.jobs[job_id].upload_states == [{"filename": "a.img", "scope": "public", "state": "fail"}]
    # a wrong whole-file checksum on the last chunk fails the asset
    last = storable.loads(chunks("b.img", data, 3000)[0])
    wrong_total = storable.dumps({**last, "total_cksum": "A" * 43})
    assert (await artefact(probe, job_id, "b.img", wrong_total, asset="public")).status_code == 500
    assert not ui.asset_path("other", "b.img").exists()


async def test_local_asset_upload_copies_the_file(ui: MockWebUI, probe: Probe, tmp_path: Path) -> None:
    job_id = await running_job(ui, probe)
    source = tmp_path / "local.qcow2"
    source.write_bytes(b"local data")
    reply = await artefact(probe, job_id, "local.qcow2", b"", asset="public", local=str(source))
    assert reply.json() == {"status": "ok"}
    assert ui.asset_path("hdd", "local.qcow2").read_bytes() == b"local data"


# --- downloads ------------------------------------------------------------------------------------
async def test_asset_download_redirect_etag_and_304(ui: MockWebUI, probe: Probe) -> None:
    ui.add_asset("iso", "x.iso", size=300_000)
    job_id = ui.schedule_job({"TEST": "t", "ISO": "x.iso", "WORKER_CLASS": "none"})
    assert ui.jobs[job_id].input_assets == {"iso": ["x.iso"]}
    redirect = await probe.call("GET", f"/tests/{job_id}/asset/iso/x.iso", sign=False)
    assert redirect.status_code == 302 and redirect.headers["Location"] == "/assets/iso/x.iso"
    got = await probe.call("GET", "/assets/iso/x.iso", sign=False)
    assert got.status_code == 200 and got.content == ui.asset_path("iso", "x.iso").read_bytes()
    assert got.headers["Content-Length"] == "300000"
    etag = got.headers["ETag"]
    again = await probe.call("GET", "/assets/iso/x.iso", sign=False, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert ui.download_count("iso", "x.iso") == 1
    changed = ui.add_asset("iso", "x.iso", size=10)
    os.utime(changed, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    fresh = await probe.call("GET", "/assets/iso/x.iso", sign=False, headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag
    assert ui.download_count("iso", "x.iso") == 2
    assert (await probe.call("GET", f"/tests/{job_id}/asset/iso/other.iso")).status_code == 404
    assert (await probe.call("GET", "/tests/999/asset/iso/x.iso")).status_code == 404
    assert (await probe.call("GET", "/assets/iso/missing.iso")).status_code == 404


# --- fault injection ------------------------------------------------------------------------------
async def test_fault_injection(ui: MockWebUI, probe: Probe) -> None:
    ui.faults.fail("/api/v1/workers$", 503, times=2, retry_after=3)
    for _ in range(2):
        failed = await probe.register()
        assert failed.status_code == 503 and failed.headers["Retry-After"] == "3"
    assert (await probe.register()).status_code == 200
    ui.faults.fail_every("/api/v1/workers", 3, 502)
    codes = [(await probe.call("GET", "/api/v1/workers")).status_code for _ in range(6)]
    assert codes == [200, 200, 502, 200, 200, 502]
    ui.faults.clear()
    ui.faults.delay("/api/v1/workers", 0.3)
    start = time.monotonic()
    assert (await probe.call("GET", "/api/v1/workers")).status_code == 200
    assert time.monotonic() - start >= 0.3
    ui.faults.reset("/api/v1/workers")
    with pytest.raises(httpx.TransportError):
        await probe.call("GET", "/api/v1/workers")
    assert (await probe.call("GET", "/api/v1/workers")).status_code == 200
    ui.faults.fail("/status$", 490, body={"error": "Failed modules: boot"})
    failed_status = await probe.call("POST", "/api/v1/jobs/1/status", json={})
    assert failed_status.status_code == 490 and failed_status.json() == {"error": "Failed modules: boot"}
    statuses = [(r.method, r.path, r.status) for r in ui.requests]
    assert ("GET", "/api/v1/workers", 0) in statuses and ("POST", "/api/v1/workers", 503) in statuses


async def test_wait_for_times_out(ui: MockWebUI) -> None:
    with pytest.raises(TimeoutError):
        await ui.wait_for(lambda: False, timeout=0.2)
    job_id = ui.schedule_job({"TEST": "t"})
    waiter = asyncio.create_task(ui.wait_job_done(job_id, timeout=5))
    await asyncio.sleep(0.05)
    ui.cancel_job(job_id)  # a scheduled job is cancelled right away
    assert (await waiter).result == "user_cancelled"


async def test_standalone_entry_point(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.mockweb", "--port", str(port),
        "--data-dir", str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert f"http://127.0.0.1:{port}" in line.decode()
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/api/v1/workers")).json() == {"workers": []}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_overlapping_uploads_of_the_same_file_all_succeed(ui: MockWebUI, probe: Probe) -> None:
    """Issue 15 item 4: two slots' uploads of the same thumbnail overlapped on one `<name>.part` file."""
    from backend.mockweb.jobs import image_path

    job_id = await running_job(ui, probe)
    bodies = [PNG + bytes([i]) * 400_000 for i in range(32)]
    answers = await asyncio.gather(*(artefact(probe, job_id, "boot-1.png", body, image="1", thumb="1", md5=MD5)
                                     for body in bodies))
    assert [a.status_code for a in answers] == [200] * len(bodies), [a.text for a in answers if a.status_code != 200]
    stored = image_path(ui.data_dir / "images", MD5, thumb=True)
    assert stored.read_bytes() in bodies  # one whole upload, not a mix
    assert sorted(p.name for p in stored.parent.iterdir()) == [stored.name]  # no temporary file left
