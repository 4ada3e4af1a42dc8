"""qaworker's own ``QAWORKER_*`` process variables: typed once (pydantic-settings), a bad value refused at
start-up with the variable's name, and each one doing what the README says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import ConfigError
from backend.config.environment import read_environment
from backend.config.lookup import config_groups
from backend.control import paths

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize(("variable", "value", "complaint"), [
    ("QAWORKER_SLOW_CALLBACK_MS", "twenty", "valid number"),
    ("QAWORKER_SLOW_CALLBACK_MS", "-5", "greater than or equal to 0"),
    ("QAWORKER_DEMO_FIRST_INSTANCE", "0", "greater than or equal to 1"),
])
def test_a_bad_value_stops_the_worker_before_it_starts_with_the_variables_name(tmp_path, variable, value, complaint):
    (tmp_path / "workers.ini").write_text("[global]\nHOST = http://127.0.0.1:9\n")
    env = {**os.environ, variable: value, "OPENQA_CONFIG": str(tmp_path), "QAWORKER_SYSTEM_CONFIG_DIRS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "app.cli", "--no-ui", "--instance", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"environment {variable}={value!r}" in done.stderr and complaint in done.stderr
    assert "Traceback" not in done.stderr


def test_the_process_environment_and_a_given_mapping_read_alike(monkeypatch):
    monkeypatch.setenv("QAWORKER_SLOW_CALLBACK_MS", "25")
    monkeypatch.setenv("QAWORKER_CONTROL_SOCKET", "")  # empty = not given
    from_process = read_environment()
    assert from_process.slow_callback_seconds == 0.025 and from_process.control_socket is None
    given = read_environment({"QAWORKER_SLOW_CALLBACK_MS": "0", "QAWORKER_CONTROL_GROUP": "qa"})
    assert given.slow_callback_seconds is None  # 0 = off, and the process's 25 is not mixed in
    assert given.control_group == "qa"
    with pytest.raises(ConfigError, match="QAWORKER_SLOW_CALLBACK_MS"):
        read_environment({"QAWORKER_SLOW_CALLBACK_MS": "1e"})


def test_system_config_dirs_replace_etc_openqa_in_the_lookup_order(tmp_path):
    env = {"QAWORKER_SYSTEM_CONFIG_DIRS": f"{tmp_path / 'a'}::{tmp_path / 'b'}", "HOME": str(tmp_path)}
    assert config_groups("workers.ini", env, None)[-1] == [tmp_path / "a", tmp_path / "b"]
    assert config_groups("workers.ini", {"HOME": str(tmp_path)}, None)[-1] == [Path("/etc/openqa"),
                                                                              Path("/usr/etc/openqa")]


def test_control_socket_variable_is_the_exact_path_for_the_worker_and_for_attach(tmp_path):
    sock = tmp_path / "here.sock"
    env = {"QAWORKER_CONTROL_SOCKET": str(sock)}
    assert paths.socket_path([1, 2], env) == sock
    assert paths.find_sockets(env) == [sock]
