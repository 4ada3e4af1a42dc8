"""The auto-restart units (issue 12 row 1): what an admin relies on when moving from
openqa-worker-auto-restart@ + openqa-reload-worker-auto-restart@.path to qaworker."""

from __future__ import annotations

from pathlib import Path

from backend.config import SYSTEM_CONFIG_DIRS

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def read_unit(name: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value (keys such as PathChanged= repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def test_auto_restart_unit_exits_after_jobs_and_always_restarts():
    unit = read_unit("qaworker-auto-restart@.service")
    assert unit["Service.Restart"] == ["always"]
    assert "OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE=1" in unit["Service.Environment"]
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP = drain, then exit
    assert "--instance %i" in unit["Service.ExecStart"][0]
    conflicts = unit["Unit.Conflicts"][0].split()
    assert {"qaworker@%i.service", "openqa-worker-auto-restart@%i.service"} <= set(conflicts)


def test_path_unit_reloads_on_every_config_file_qaworker_reads():
    path = read_unit("qaworker-reload-auto-restart@.path")
    watched = set(path["Path.PathChanged"])
    for directory in SYSTEM_CONFIG_DIRS:
        assert {str(directory / "workers.ini"), str(directory / "workers.ini.d")} <= watched
    reload_service = path["Path.Unit"][0]
    assert (UNITS / reload_service.replace("%i", "")).exists()
    service = read_unit(reload_service.replace("%i", ""))
    command = service["Service.ExecStart"][0].split()
    assert command[-2:] == ["reload", "qaworker-auto-restart@%i.service"]
    assert (UNITS / "qaworker-auto-restart@.service").exists()
