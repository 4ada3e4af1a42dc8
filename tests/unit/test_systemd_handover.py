"""The units and ``qaworker-reap-jobs`` agree on what stop, restart, hand-over and crash mean (issue 11 item 4)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backend.slot.adopthandover import HANDOVER_EXIT
from backend.slot.adoptreap import keep_jobs, main, stop_job_queued

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def service_section(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.parametrize("unit", ["qaworker@.service", "qaworker.service"])
def test_units_let_jobs_outlive_a_hand_over_but_not_a_stop(unit):
    service = service_section(unit)
    assert service["KillMode"] == ["process"]  # the job trees are not killed when the main process exits
    assert str(HANDOVER_EXIT) in service["RestartForceExitStatus"]  # a hand-over is followed by the next start
    assert str(HANDOVER_EXIT) in service["SuccessExitStatus"]
    (stop_post,) = service["ExecStopPost"]
    assert stop_post.startswith("/usr/bin/qaworker-reap-jobs --unit %n --pool /var/lib/openqa/pool/")


def fake_systemctl(tmp_path: Path, jobs: str) -> dict[str, str]:
    """A fake `systemctl` on PATH printing ``jobs`` for list-jobs (systemd does not run here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = list-jobs ] && printf '%s' '{jobs}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_a_queued_stop_job_means_a_real_stop(tmp_path, monkeypatch):
    for key, value in fake_systemctl(tmp_path, "123 qaworker@1.service stop running\n"
                                               "124 other.service start waiting\n").items():
        monkeypatch.setenv(key, value)
    assert stop_job_queued("qaworker@1.service")
    assert not stop_job_queued("qaworker@2.service")
    assert not stop_job_queued("other.service")  # a start job is no stop


@pytest.mark.parametrize(("env", "stopping", "keep"), [
    ({"EXIT_CODE": "exited", "EXIT_STATUS": "75", "SERVICE_RESULT": "success"}, False, True),  # hand-over
    ({"EXIT_CODE": "killed", "EXIT_STATUS": "KILL", "SERVICE_RESULT": "signal"}, False, True),  # crash
    ({"EXIT_CODE": "exited", "EXIT_STATUS": "0", "SERVICE_RESULT": "success"}, True, False),  # systemctl stop
    ({"EXIT_CODE": "killed", "EXIT_STATUS": "KILL", "SERVICE_RESULT": "timeout"}, True, False),  # stop timed out
])
def test_keep_jobs(env, stopping, keep):
    assert keep_jobs(env, stopping)[0] is keep


def test_reap_command_keeps_jobs_after_a_hand_over(tmp_path, monkeypatch, capsys):
    for key, value in fake_systemctl(tmp_path, "").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EXIT_CODE", "exited")
    monkeypatch.setenv("EXIT_STATUS", "75")
    assert main(["--unit", "qaworker@1.service", "--pool", str(tmp_path / "pool" / "1")]) == 0
    assert "keeping the job trees: hand-over" in capsys.readouterr().out
