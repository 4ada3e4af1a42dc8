"""build_command, perl detection, command-server message folding and the PNG encoder."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from backend.engine.cmdsrv import CommandServerStatus, apply_message
from backend.engine.isotovideo import build_command, needs_shell
from backend.engine.png import encode_png, screenshot_png


@pytest.fixture
def perl_script(tmp_path: Path) -> str:
    p = tmp_path / "isotovideo"
    p.write_text("#!/usr/bin/perl -w\nprint 1;\n")
    p.chmod(0o755)
    return str(p)


def test_default_runs_perl_isotovideo_with_debug_flag(perl_script: str) -> None:
    assert build_command(perl_script, {}) == (["perl", perl_script, "-d"], False)


def test_non_perl_executables_are_executed_directly(tmp_path: Path) -> None:
    sim = tmp_path / "qaworker-simulator"
    sim.write_text("#!/usr/bin/python3\n")
    sim.chmod(0o755)
    assert build_command(str(sim), {}) == ([str(sim), "-d"], False)
    # a configured command line (no such file) is split, never given to a shell
    assert build_command("/venv/bin/python /src/simulator.py", {}) == (
        ["/venv/bin/python", "/src/simulator.py", "-d"], False)


def test_non_executable_file_without_shebang_is_run_with_perl(tmp_path: Path) -> None:
    p = tmp_path / "isotovideo"
    p.write_text("use strict;\n")
    assert build_command(str(p), {})[0][0] == "perl"


@pytest.mark.parametrize("value, argv", [
    ("/opt/os-autoinst/isotovideo -d", ["/opt/os-autoinst/isotovideo", "-d"]),
    ("perl /x/isotovideo -d --foo=bar", ["perl", "/x/isotovideo", "-d", "--foo=bar"]),
])
def test_job_setting_isotovideo_without_metacharacters_is_split(perl_script: str, value: str,
                                                                 argv: list[str]) -> None:
    assert build_command(perl_script, {"ISOTOVIDEO": value}) == (argv, False)


@pytest.mark.parametrize("value", [
    "isotovideo -d; rm -rf /tmp/x", "isotovideo -d | tee log", "echo $HOME", "isotovideo > out",
    "a && b", "FOO=1 isotovideo -d", "echo `id`", "x 'quoted arg'", "ls *.pm",
])
def test_job_setting_isotovideo_with_metacharacters_uses_shell(perl_script: str, value: str) -> None:
    assert needs_shell(value)
    assert build_command(perl_script, {"ISOTOVIDEO": value}) == (["/bin/sh", "-c", value], True)


def test_empty_isotovideo_setting_is_ignored(perl_script: str) -> None:
    assert build_command(perl_script, {"ISOTOVIDEO": "  "})[0][0] == "perl"


def test_status_reply_and_broadcasts_fold_into_state() -> None:
    s = CommandServerStatus(connected=True)
    s = apply_message(s, {"running": "boot", "current_test_full_name": "installation-boot",
                          "test_execution_paused": 0, "current_api_function": "assert_screen"})
    assert (s.running, s.current_test_full_name, s.test_execution_paused) == ("boot", "installation-boot", "")
    s = apply_message(s, {"set_current_test": "login", "current_test_full_name": "installation-login"})
    assert s.running == "login"
    s = apply_message(s, {"paused": 1, "reason": "reached module login"})
    assert s.test_execution_paused == "reached module login"
    s = apply_message(s, {"resume_test_execution": None})
    assert s.test_execution_paused == ""
    s = apply_message(s, {"stopping_test_execution": "test execution ended"})
    assert s.stopping_test_execution == "test execution ended"
    assert apply_message(s, {"check_screen": {"mustmatch": ["x"]}}) is s  # unrelated: unchanged


def test_png_encoder_produces_valid_chunks() -> None:
    data = encode_png(2, 1, [b"\xff\x00\x00\x00\xff\x00"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        if kind == b"IDAT":
            assert zlib.decompress(body) == b"\0\xff\x00\x00\x00\xff\x00"
        pos += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    with pytest.raises(ValueError):
        encode_png(3, 1, [b"\0" * 6])


def test_screenshots_are_deterministic_and_not_trivially_compressible() -> None:
    a = screenshot_png(320, 240, 7)
    assert a == screenshot_png(320, 240, 7)
    assert a != screenshot_png(320, 240, 8)
    assert len(a) > 320 * 240 // 4  # written like os-autoinst (Sub, zlib 1, RLE): optimisers have work to do
