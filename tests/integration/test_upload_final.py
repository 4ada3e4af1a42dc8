"""Final uploads at the end of a job: ulogs, assets (chunked / local), logs (§14.2 step 6, §15)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from pathlib import Path

from app.threads import started_pool
from tests.integration.upload_support import Harness

FAST = {"LOCAL_UPLOAD": "0", "QAWORKER_UPLOAD_DELAY": "0.01"}


def _write_logs(pool: Path) -> None:
    pool.mkdir(parents=True, exist_ok=True)
    (pool / "autoinst-log.txt").write_text("autoinst\n")
    (pool / "worker-log.txt").write_text("worker\n")
    (pool / "serial0").write_text("serial\n")
    (pool / "virtio_console.log").write_text("console\n")
    (pool / "virtio_console1.log").write_text("console1\n")
    (pool / "virtio_console_user.log").write_text("user console\n")
    (pool / "video.ogv").write_bytes(b"OggS" + os.urandom(1000))
    secrets = {"DISTRI": "x", "_SECRET_TOKEN": "s3cret", "ROOT_PASSWORD": "pw", "MY_KEY": "hide me"}
    (pool / "vars.json").write_text(json.dumps(secrets))
    (pool / "ulogs").mkdir()
    (pool / "ulogs" / "journal.txt").write_text("journal\n")
    (pool / "ulogs" / "dmesg.txt").write_text("dmesg\n")


async def test_done_uploads_ulogs_assets_and_logs_with_their_names(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings.update({**FAST, "_HIDE_SECRETS_REGEX": "^MY_"})
    _write_logs(h.pool)
    big = os.urandom(25 * 1024 * 1024)  # 3 chunks of 10 MB
    (h.pool / "assets_public").mkdir()
    (h.pool / "assets_public" / "disk.qcow2").write_bytes(big)
    (h.pool / "assets_private").mkdir()
    (h.pool / "assets_private" / "small.iso").write_bytes(b"tiny iso")

    assert await h.reporter.final_uploads("done") is None

    assert h.web.names(ulog="1") == ["dmesg.txt", "journal.txt"]
    assets = {(a.fields["asset"], a.filename): a.content for a in h.web.uploads() if "asset" in a.fields}
    assert assets[("public", "disk.qcow2")] == big
    assert assets[("private", "small.iso")] == b"tiny iso"
    order = [a.filename for a in h.web.artefacts]
    assert order.index("small.iso") < order.index("disk.qcow2")  # private before public
    logs = {a.filename: a.content for a in h.web.artefacts if not a.fields}
    assert set(logs) == {"video.ogv", "autoinst-log.txt", "worker-log.txt", "vars.json", "serial0.txt",
                         "serial_terminal.txt", "serial_terminal1.txt", "serial_terminal_user.txt"}
    assert logs["serial_terminal.txt"] == b"console\n"
    assert logs["serial_terminal_user.txt"] == b"user console\n"
    variables = json.loads(logs["vars.json"])
    assert variables == {"DISTRI": "x", "_SECRET_TOKEN": "[redacted]", "ROOT_PASSWORD": "[redacted]",
                         "MY_KEY": "[redacted]"}


async def test_died_uploads_no_assets_and_quit_uploads_nothing(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings.update(FAST)
    _write_logs(h.pool)
    (h.pool / "assets_public").mkdir()
    (h.pool / "assets_public" / "disk.qcow2").write_bytes(b"disk")
    for reason in ("quit", "abort", "api-failure"):
        assert await h.reporter.final_uploads(reason) is None
    assert h.web.artefacts == []
    assert await h.reporter.final_uploads("died") is None
    assert "disk.qcow2" not in h.web.names()
    assert "autoinst-log.txt" in h.web.names()


async def test_a_failed_log_upload_turns_into_an_api_failure_naming_the_file(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.upload_concurrency = 1  # one at a time: exactly upstream's order and stop
    _write_logs(h.pool)
    h.web.fail_names["serial0.txt"] = 404
    error = await h.reporter.final_uploads("done")
    assert error is not None
    assert error.startswith("api failure: 404 response: No worker assigned")
    assert "serial0.txt" in error
    names = h.web.names()
    assert "worker-log.txt" in names  # uploaded before the failure
    assert "serial_terminal.txt" not in names  # the rest of that group is not attempted
    assert "journal.txt" in names  # other groups are unaffected


async def test_logs_go_up_several_at_a_time_and_all_arrive_intact(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings.update(FAST)
    _write_logs(h.pool)
    h.web.artefact_delay = 0.05
    assert await h.reporter.final_uploads("done") is None
    assert 2 <= h.web.max_in_flight <= h.reporter.ctx.upload_concurrency
    logs = {a.filename: a.content for a in h.web.artefacts if not a.fields}
    assert logs["autoinst-log.txt"] == b"autoinst\n" and logs["serial0.txt"] == b"serial\n"
    assert logs["video.ogv"] == (h.pool / "video.ogv").read_bytes()
    assert len(logs) == 8 and h.web.names(ulog="1") == ["dmesg.txt", "journal.txt"]


async def test_chunk_failures_are_retried_per_chunk(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings.update({**FAST, "UPLOAD_CHUNK_SIZE": "1000"})
    data = os.urandom(3500)
    (h.pool / "assets_public").mkdir(parents=True)
    (h.pool / "assets_public" / "a.qcow2").write_bytes(data)
    h.web.fail_chunks = {2: 2, 4: 1}
    assert await h.reporter.final_uploads("done") is None
    assert h.web.uploads(asset="public")[0].content == data
    assert h.web.upload_states == []


async def test_a_chunked_asset_starts_and_ends_its_chunk_thread_off_the_loop(harness: Harness, monkeypatch) -> None:
    h = harness
    asyncio.get_running_loop().set_default_executor(started_pool(4))  # as the worker's loop has (app.threads.run)
    h.reporter.ctx.settings.update({**FAST, "UPLOAD_CHUNK_SIZE": "1000"})
    data = os.urandom(3500)
    (h.pool / "assets_public").mkdir(parents=True)
    (h.pool / "assets_public" / "a.qcow2").write_bytes(data)
    started_by: list[str] = []
    joined_by: list[str] = []
    start, join = threading.Thread.start, threading.Thread.join

    def recording_start(thread: threading.Thread) -> None:
        started_by.append(threading.current_thread().name)
        start(thread)

    def recording_join(thread: threading.Thread, timeout: float | None = None) -> None:
        joined_by.append(threading.current_thread().name)
        join(thread, timeout)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    monkeypatch.setattr(threading.Thread, "join", recording_join)
    assert await h.reporter.final_uploads("done") is None
    monkeypatch.undo()
    assert h.web.uploads(asset="public")[0].content == data
    assert started_by, "no chunk thread was started"
    loop_thread = threading.current_thread().name
    assert loop_thread not in started_by and loop_thread not in joined_by  # both wait: never on the loop


async def test_a_chunk_that_keeps_failing_aborts_the_asset_and_tells_the_web_ui(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings.update({**FAST, "UPLOAD_CHUNK_SIZE": "1000", "UPLOAD_RETRIES": "3"})
    (h.pool / "assets_private").mkdir(parents=True)
    (h.pool / "assets_private" / "b.qcow2").write_bytes(os.urandom(2500))
    h.web.fail_chunks = {2: 10}
    error = await h.reporter.final_uploads("cancel")
    assert error is not None and "b.qcow2" in error and error.startswith("api failure: ")
    assert h.web.fail_chunks[2] == 7  # exactly UPLOAD_RETRIES attempts
    assert h.web.upload_states == [{"filename": "b.qcow2", "scope": "private", "state": "fail"}]


async def test_local_web_ui_gets_the_asset_path_instead_of_chunks(harness: Harness) -> None:
    h = harness
    (h.pool / "assets_public").mkdir(parents=True)
    asset = h.pool / "assets_public" / "local.qcow2"
    asset.write_bytes(b"local data")
    asset.chmod(0o600)
    assert await h.reporter.final_uploads("done") is None
    [upload] = h.web.uploads(asset="public")
    assert upload.fields["local"] == str(asset.resolve())
    assert upload.content == b""
    assert stat.S_IMODE(asset.stat().st_mode) == 0o644


async def test_empty_asset_uploads_nothing(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings.update(FAST)
    (h.pool / "assets_public").mkdir(parents=True)
    (h.pool / "assets_public" / "empty.qcow2").write_bytes(b"")
    assert await h.reporter.final_uploads("done") is None
    assert h.web.artefacts == []
