"""check-config: where every value came from, warnings about keys qaworker does not act on, and the
README table that the registry generates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.cli import main
from backend.config import format_masked, known_setting, masked
from backend.config.readme import README, render
from backend.config.registry import ALL_SETTINGS, UNSUPPORTED
from tests.unit.config_helpers import DATA, load, sandbox_env, write


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    return sandbox_env(tmp_path)


def _line(out: str, key: str) -> str:
    """The one line of ``out`` for ``key`` in a slot's "read by qaworker" block."""
    block = out.split("  read by qaworker:", 1)[1]
    found = re.findall(rf"^ +{key} += .*$", block, re.M)
    assert found, f"{key} not in {block}"
    return found[0]


def test_every_value_says_where_it_came_from(sandbox, tmp_path):
    path = write(tmp_path / "env/workers.ini", "[global]\nUPLOAD_RETRIES = 3\n[1]\nQAWORKER_STOP_GRACE = 7\n"
                                                "IPMI_PASSWORD = hunter2\n")
    env = {**sandbox, "OPENQA_WORKER_CONNECT_INTERVAL": "2", "OPENQA_WORKER_STATUS_MAX_INTERVAL": "200"}
    out = format_masked(masked(load(env, verbose=True)))
    assert re.search(rf"= 3 +\({re.escape(str(path))} \[global\]\)$", _line(out, "UPLOAD_RETRIES"))
    assert re.search(rf"= 7 +\({re.escape(str(path))} \[1\]\)$", _line(out, "QAWORKER_STOP_GRACE"))
    assert _line(out, "OPENQA_WORKER_CONNECT_INTERVAL").endswith("(environment OPENQA_WORKER_CONNECT_INTERVAL)")
    assert _line(out, "STATUS_MAX_INTERVAL").endswith("(environment OPENQA_WORKER_STATUS_MAX_INTERVAL)")
    assert re.search(r"= 60 +\(default\)$", _line(out, "STATUS_MIN_INTERVAL"))
    assert re.search(r"LOG_LEVEL += debug +\(command line\)$", out, re.M)
    assert re.search(r"CACHELIMIT += 50 +\(default\)$", out, re.M)  # worker-wide block
    assert "hunter2" not in out and re.search(r"IPMI_PASSWORD += \*\*\*\* ", _line(out, "IPMI_PASSWORD"))
    assert re.search(r"LOCK_NAME += unset +\(default\)$", _line(out, "LOCK_NAME"))  # implemented: no marker
    # every typed setting has a line, and the web UI block has the host's retry policy with origins
    for name in ("QAWORKER_HEALTH_INTERVAL", "VNCPORT_OFFSET", "OPENQA_WORKER_EPHEMERAL_RECHECK_INTERVAL"):
        _line(out, name)
    assert re.search(r"^ {4}RETRY_DELAY += 5 +\(default\)$", out.split("web UI http://localhost", 1)[1], re.M)


def test_warnings_one_line_each_with_file_section_and_key(sandbox, tmp_path, capsys, monkeypatch):
    path = write(tmp_path / "env/workers.ini",
                 "[global]\nHOST = http://127.0.0.1:9526\nQEMURAM = 2048\nCACHESERVICEURL = http://x:9530\n"
                 "VNCPORT_OFFSET = 3\nSHARE_DIRECTORY = /s\nWORKER_CLASS = qemu_x86_64\n"
                 "[class:qemu_x86_64]\nQEMUCPU = host\n[2]\nNICTYPE = tap\n[glboal]\nA = 1\n"
                 "[http://127.0.0.1:9526]\nTESTPOOLSERVER = rsync://x/t\nSHARE_DIR = /typo\n"
                 "[https://unused.example]\nANYTHING = 1\n")
    for key, value in {**sandbox, "OPENQA_WORKER_CONECT_INTERVAL": "3", "OPENQA_WORKER_CONNECT_INTERVAL": "1",
                       "OPENQA_CACHE_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(key, value)
    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    passed = "not a setting qaworker knows; it is still passed into every job's settings (vars.json)"
    assert lines == [
        f"qaworker: warning: {path} [global] QEMURAM: {passed}, as upstream does",
        f"qaworker: warning: {path} [global] CACHESERVICEURL: not used: qaworker's asset cache runs in the "
        "worker process (no cache service to talk to)",
        f"qaworker: warning: {path} [global] VNCPORT_OFFSET: read from the environment only; this workers.ini "
        "value only goes into vars.json",
        f"qaworker: warning: {path} [global] SHARE_DIRECTORY: only read from a [<host>] section; here it only "
        "goes into vars.json",
        f"qaworker: warning: {path} [class:qemu_x86_64] QEMUCPU: {passed}, as upstream does",
        f"qaworker: warning: {path} [2] NICTYPE: {passed}, as upstream does",  # any instance section counts
        f"qaworker: warning: {path} [glboal]: section not used (not [global], an instance number, [class:NAME] "
        "or one of the HOST web UIs)",
        f"qaworker: warning: {path} [http://127.0.0.1:9526] SHARE_DIR: ignored in a [<host>] section (it may "
        "hold SHARE_DIRECTORY, TESTPOOLSERVER, RETRY_DELAY, RETRY_DELAY_IF_WEBUI_BUSY, RETRIES)",
        "qaworker: warning: environment OPENQA_CACHE_ATTEMPTS: not used: qaworker's asset cache runs in the "
        "worker process (no cache service to talk to)",
        "qaworker: warning: environment OPENQA_WORKER_CONECT_INTERVAL: not a variable qaworker knows; ignored",
    ]
    assert "QEMURAM" in out and "= 2048" in out  # still shown (and passed on), just flagged


def test_credentials_in_proxy_urls_are_masked(sandbox):
    env = {**sandbox, "HTTPS_PROXY": "http://alice:s3cret@proxy.example:3128", "no_proxy": "localhost"}
    out = format_masked(masked(load(env)))
    assert "s3cret" not in out and "alice" not in out
    assert "env HTTPS_PROXY=http://****@proxy.example:3128" in out and "env no_proxy=localhost" in out


def test_known_configs_have_no_warnings(sandbox):
    assert load(sandbox, config_dir=DATA / "realstack").warnings == []
    assert load(sandbox, config_dir=DATA / "2023").warnings == []
    assert load(sandbox).warnings == []  # no files at all


def test_registry_names_are_unique_and_every_setting_is_explained():
    names = [s.name for s in (*ALL_SETTINGS, *UNSUPPORTED)]
    assert len(names) == len(set(names))
    for setting in (*ALL_SETTINGS, *UNSUPPORTED):
        assert setting.meaning and known_setting(setting.name) == setting
    assert known_setting("EXTERNAL_VIDEO_ENCODER_CMD") is not None and known_setting("QEMURAM") is None


def test_readme_table_matches_the_registry():
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README settings table is stale: run python -m backend.config.readme"
    for setting in ALL_SETTINGS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{setting.name}"))
        assert f"| {setting.default_text()} |" in row
        assert ("parsed; behaviour: see issue 12" in row) == (setting.status == "parsed; behaviour: see issue 12")


def test_render_needs_the_markers():
    with pytest.raises(ValueError, match="no generated settings block"):
        render("# a README without the block\n")
