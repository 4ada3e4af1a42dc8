"""Small pure pieces of the upload code: names, redaction, settings, backoff, live log reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.job.upload import UploadSettings, final_log_files, log_upload_name, redact_vars
from backend.livehandler import LIVE_CHUNK, LiveLog, LogTail, ProgressInfo


@pytest.mark.parametrize(("name", "target"), [
    ("serial0", "serial0.txt"), ("virtio_console.log", "serial_terminal.txt"),
    ("virtio_console1.log", "serial_terminal1.txt"), ("virtio_console_user.log", "serial_terminal_user.txt"),
    ("worker-log.txt", "worker-log.txt"), ("other.log", "other.txt"), ("video.ogv", "video.ogv"),
])
def test_log_names_are_mapped_like_upstream(name: str, target: str) -> None:
    assert log_upload_name(name) == target


def test_final_log_files_lists_videos_first_and_only_existing_files(tmp_path: Path) -> None:
    for name in ("autoinst-log.txt", "video.ogv", "serial0", "unrelated.txt"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in final_log_files(tmp_path)] == ["video.ogv", "autoinst-log.txt", "serial0"]


def test_vars_json_redaction(tmp_path: Path) -> None:
    path = tmp_path / "vars.json"
    path.write_text(json.dumps({"A": 1, "_SECRET_X": "s", "DB_PASSWORD": "p", "TOKEN_Y": "t"}))
    redact_vars(path, "^TOKEN_")
    assert json.loads(path.read_text()) == {"A": 1, "_SECRET_X": "[redacted]", "DB_PASSWORD": "[redacted]",
                                            "TOKEN_Y": "[redacted]"}
    path.write_text("not json")
    with pytest.raises(ValueError):
        redact_vars(path)


def test_upload_settings_defaults_and_backoff() -> None:
    s = UploadSettings.from_settings({}, env={})
    assert (s.chunk_size, s.retries, s.delay, s.local_upload, s.optimize, s.use_pngquant) == (
        10_000_000, 10, 5.0, True, True, False)
    assert 5.0 <= s.chunk_delay(1) <= 6.0
    assert 9.0 <= s.chunk_delay(5) <= 10.0
    assert s.chunk_delay(40) == 30.0
    settings = {"OPTIMIZE_IMAGES": "0", "LOCAL_UPLOAD": "0", "UPLOAD_CHUNK_SIZE": "1000"}
    s = UploadSettings.from_settings(settings, env={"OPENQA_UPLOAD_DELAY": "0.5"})
    assert (s.optimize, s.local_upload, s.chunk_size, s.delay) == (False, False, 1000, 0.5)
    assert s.chunk_delay(1) <= 0.6


def test_live_log_never_splits_a_utf8_character(tmp_path: Path) -> None:
    text = "x" * (LIVE_CHUNK - 1) + "ä" + "end"
    (tmp_path / "autoinst-log.txt").write_text(text)
    live = LiveLog(tmp_path)
    first = live.fields()["log"]
    second = live.fields()["log"]
    assert first["data"] + second["data"] == text
    assert second["offset"] == LIVE_CHUNK - 1
    assert "\ufffd" not in first["data"] + second["data"]


def test_log_tail_returns_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "autoinst-log.txt"
    tail = LogTail(path)
    assert tail.read_lines() == []
    path.write_text("a\nb")
    assert tail.read_lines() == ["a"]
    with path.open("a") as fh:
        fh.write("c\r\nd\n")
    assert tail.read_lines() == ["bc", "d"]


def test_progress_payload_shape() -> None:
    expected = {"upload_up_to": "boot", "upload_up_to_current_module": 1, "outstanding_files": 1,
                "outstanding_images": 2}
    assert ProgressInfo("boot", True, 1, 2).payload() == expected
