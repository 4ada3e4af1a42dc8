"""The ``qaworker`` command line: check-config output, error exit codes, dispatch to the faces."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import httpx
import pytest

from app.cli import main
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data" / "config"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every lookup group points into tmp_path; no credentials from the outside."""
    for name in ("env", "home", "etc"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("OPENQA_CONFIG", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QAWORKER_SYSTEM_CONFIG_DIRS", str(tmp_path / "etc"))
    for var in ("OPENQA_API_KEY", "OPENQA_API_SECRET", "OPENQA_WORKER_LOG_DIR", "OPENQA_BASEDIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_check_config_prints_masked_settings_per_slot(capsys, tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/workers.ini").write_text(
        "[global]\nHOST = http://127.0.0.1:9526\nIPMI_PASSWORD = hunter2\n[1-4]\nWORKER_CLASS = four\n")
    (tmp_path / "cfg/client.conf").write_text("[127.0.0.1]\nkey = ABCDEFGHIJKL\nsecret = verysecret\n")
    code = main(["check-config", "--config-dir", str(tmp_path / "cfg"), "--instances", "1-4", "-v"])
    out = capsys.readouterr().out
    assert code == 0
    assert "hunter2" not in out and "verysecret" not in out and "ABCDEFGHIJKL" not in out
    assert "key ABCD…" in out and "secret ****" in out
    assert [f"[slot {n}]" in out for n in (1, 2, 3, 4)] == [True] * 4
    assert len(re.findall(r"^ +WORKER_CLASS += four +\(.*workers.ini \[1-4\]\)$", out, re.M)) == 4
    assert len(re.findall(r"^ +LOG_LEVEL += debug +\(command line\)$", out, re.M)) == 4
    assert "/var/lib/openqa/pool/3" in out


def test_check_config_cli_overrides_host_and_credentials(capsys):
    code = main(["check-config", "--host", "localhost:9999", "--apikey", "CLIKEY99", "--apisecret", "x"])
    out = capsys.readouterr().out
    assert code == 0
    assert "web UI http://localhost:9999: key CLIK… secret **** from cli" in out


@pytest.mark.parametrize("argv", [["check-config"], []])
def test_config_error_is_one_line_and_exit_2(capsys, isolated_env, argv):
    (isolated_env / "env/workers.ini").write_text("[global]\nCACHELIMIT = lots\n")
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"qaworker: {isolated_env}/env/workers.ini [global] CACHELIMIT: "
                   "expected a number, got 'lots'\n")


def test_bad_option_values_are_config_errors(capsys):
    assert main(["check-config", "--instances", "1-x"]) == 2
    assert capsys.readouterr().err.startswith("qaworker: --instances: '1-x' is not a number or range")
    assert main(["check-config", "--metrics-port", "70000"]) == 2
    assert capsys.readouterr().err.startswith("qaworker: --metrics-port: ")


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--instances" in out and "check-config" in out
    assert main(["--no-such-option"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_run_passes_the_loaded_config_to_run_worker(monkeypatch):
    calls = []
    fake = types.ModuleType("app.run")
    fake.run_worker = lambda config, **kw: calls.append((config, kw)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.run", fake)
    assert main(["--instances", "2-3", "--no-ui", "--host", "localhost:1", "--metrics-port", "9100",
                 "--log-format", "json", "--no-cleanup", "--isotovideo", "/opt/isotovideo"]) == 0
    (config, kw), = calls
    assert kw == {"no_ui": True, "log_format": "json", "metrics_port": 9100, "metrics_address": "127.0.0.1"}
    assert [s.instance for s in config.slots] == [2, 3]
    assert config.slots[0].hosts[0].base_url == "http://localhost:1"
    assert (config.metrics_port, config.metrics_address, config.log_format) == (9100, "127.0.0.1", "json")
    assert config.no_cleanup and config.isotovideo == "/opt/isotovideo"
    assert main(["run", "--instance", "7"]) == 0
    assert calls[1][0].slots[0].instance == 7 and calls[1][1]["no_ui"] is False


def test_demo_and_mockweb_dispatch(monkeypatch):
    seen = {}
    demo = types.ModuleType("app.demo")
    demo.main = lambda args: seen.setdefault("demo", args) and 5  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.demo", demo)
    assert main(["demo", "--no-ui", "--slots", "3", "--duration", "1.5"]) == 5
    assert (seen["demo"].no_ui, seen["demo"].slots, seen["demo"].duration) == (True, 3, 1.5)

    server = types.ModuleType("backend.mockweb.server")

    async def serve_forever(port: int, data_dir: Path, **kw: object) -> None:
        seen["mockweb"] = (port, data_dir, kw["flavour"], kw["require_auth"])

    server.serve_forever = serve_forever  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "backend.mockweb.server", server)
    assert main(["mockweb", "--port", "9526", "--data-dir", "/tmp/x", "--flavour", "2023"]) == 0
    assert seen["mockweb"] == (9526, Path("/tmp/x"), "2023", True)


def _run_entry(args: list[str], env_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENQA_", "QAWORKER_"))}
    env.update(OPENQA_CONFIG=str(env_dir), HOME=str(env_dir), QAWORKER_SYSTEM_CONFIG_DIRS=str(env_dir))
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=20)


def test_module_entry_point_in_a_subprocess(isolated_env):
    proc = _run_entry(["check-config", "--config-dir", str(DATA / "realstack")], isolated_env / "etc")
    assert proc.returncode == 0, proc.stderr
    assert "web UI http://127.0.0.1:9526: key 0000… secret ****" in proc.stdout
    assert "0000000000000002" not in proc.stdout
    assert "CACHEDIRECTORY              = /var/lib/openqa/cache" in proc.stdout

    (isolated_env / "etc/workers.ini").write_text("[1-x]\nA = 1\n")
    proc = _run_entry(["check-config"], isolated_env / "etc")
    assert proc.returncode == 2
    assert proc.stderr.startswith("qaworker: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(20)
def test_mockweb_command_serves_the_real_mock(isolated_env):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "mockweb", "--port", str(port),
                             "--data-dir", str(isolated_env / "mock")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # blocks until ready (or exit)
        assert f"mock web UI at http://127.0.0.1:{port}" in line, proc.stderr.read() if proc.poll() else line
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/workers", timeout=5)
        assert response.status_code in (200, 403)  # it answers like a web UI (auth may be required)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "qaworker 0.1.0\n"


def test_every_option_of_run_has_help(capsys):
    parser_help = main(["--help"]), capsys.readouterr().out
    assert parser_help[0] == 0
    assert "--log-format {text,json}\n" in parser_help[1] and "json (one object" in parser_help[1]
    from app.cli import run_parser

    undocumented = [a.option_strings for a in run_parser()._actions if not a.help]
    assert undocumented == []


def _mockweb(args: list[str], tmp: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "mockweb", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""  # blocks until ready (or exit)
    return proc, line


@pytest.mark.timeout(30)
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_mockweb_removes_its_temporary_directory_on_exit(isolated_env, signum):
    import signal

    proc, line = _mockweb(["--port", str(free_port())], isolated_env)
    try:
        assert "data dir " in line, proc.stderr.read() if proc.poll() is not None else line
        data_dir = Path(line.split("data dir ")[1].split()[0])
        assert data_dir.is_dir() and data_dir.parent == isolated_env and "(removed on exit)" in line
        proc.send_signal(getattr(signal, signum))
        assert proc.wait(timeout=15) == 0
        assert not data_dir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(30)
def test_mockweb_keeps_a_data_dir_it_was_given(isolated_env):
    given = isolated_env / "mine"
    proc, line = _mockweb(["--port", str(free_port()), "--data-dir", str(given)], isolated_env)
    try:
        assert f"data dir {given}" in line and "removed" not in line
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        assert given.is_dir()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_readme_mockweb_example_stays_off_the_real_web_uis_ports():
    """9526-9529 are openQA's own ports (and the real stack's here): the example must not take them."""
    import re

    readme = (ROOT / "README.md").read_text()
    ports = [int(p) for p in re.findall(r"qaworker mockweb[^\n]*--port (\d+)", readme)]
    assert ports and not [p for p in ports if 9526 <= p <= 9529]


def test_no_notice_when_the_web_ui_is_chosen_explicitly(isolated_env):
    from app.startup import system_config_notice
    from backend.config import CliOptions, load_config

    (isolated_env / "etc/workers.ini").write_text("[global]\nHOST = http://openqa.example.com\n")
    (isolated_env / "etc/client.conf").write_text("[openqa.example.com]\nkey = ABCDEF0123456789\nsecret = x\n")
    plain = CliOptions.parse()
    notice = system_config_notice(load_config(plain), plain)
    assert notice == (f"using {isolated_env}/etc/workers.ini: registering with http://openqa.example.com as "
                      "instance 1 (--host or --config-dir to use another web UI)")
    explicit = CliOptions.parse(host="http://127.0.0.1:1")
    assert system_config_notice(load_config(explicit), explicit) is None
    (isolated_env / "env/workers.ini").write_text("[global]\nHOST = http://mine.example.com\n")
    assert system_config_notice(load_config(plain), plain) is None  # $OPENQA_CONFIG's file: chosen on purpose


@pytest.mark.timeout(30)
def test_plain_qaworker_says_it_registers_with_the_system_config(isolated_env):
    port = free_port()  # nothing listens: the worker keeps retrying, which is fine here
    (isolated_env / "etc/workers.ini").write_text(f"[global]\nHOST = http://127.0.0.1:{port}\n[3]\nWORKER_CLASS = x\n")
    (isolated_env / "etc/client.conf").write_text(f"[127.0.0.1:{port}]\nkey = ABCDEF0123456789\nsecret = x\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENQA_", "QAWORKER_"))}
    env.update(OPENQA_CONFIG=str(isolated_env / "env"), HOME=str(isolated_env / "home"),
               QAWORKER_SYSTEM_CONFIG_DIRS=str(isolated_env / "etc"), PYTHONUNBUFFERED="1",
               OPENQA_BASEDIR=str(isolated_env / "base"))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--no-ui", "--instance", "3",
                             "--isotovideo", "/bin/true"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline() if proc.stderr else ""
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert first.split("] ", 1)[1].strip() == (
        f"[warn] using {isolated_env}/etc/workers.ini: registering with http://127.0.0.1:{port} as instance 3 "
        "(--host or --config-dir to use another web UI)")
