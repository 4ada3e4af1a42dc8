"""Config files that are there but cannot be used, and half-configured credentials: errors naming
the file or the host, never a silent fall-back to /etc/openqa (issue 15 items 2 and 6)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from app.cli import main
from backend.config import ConfigError, read_ini_files
from tests.unit.config_helpers import check_config_unprivileged, load, sandbox_env, world_readable_dir, write

PRODUCTION = "[global]\nHOST = http://production.example.com\nWORKER_CLASS = production\n"


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    return sandbox_env(tmp_path)


@pytest.fixture
def shared() -> tuple[Path, dict[str, str]]:
    """A sandbox an unprivileged user can enter, with a "production" config in its /etc/openqa."""
    with world_readable_dir() as base:
        env = sandbox_env(base)
        for name in ("env", "home", "etc", "usr_etc"):
            (base / name).chmod(0o755)
        write(base / "etc/workers.ini", PRODUCTION).chmod(0o644)
        yield base, env


def _one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("qaworker: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    assert "production" not in proc.stdout


def test_unreadable_workers_ini_in_openqa_config_is_an_error_not_etc(shared):
    base, env = shared
    path = write(base / "env/workers.ini", "[global]\nWORKER_CLASS = mine\n")
    path.chmod(0o000)
    proc = check_config_unprivileged([], env)
    _one_line_error(proc, f"{path}: cannot be read: Permission denied")
    path.chmod(0o644)  # the same file readable: it is used, /etc/openqa is not
    proc = check_config_unprivileged([], env)
    assert proc.returncode == 0, proc.stderr
    assert "= mine" in proc.stdout and "production" not in proc.stdout


def test_unreadable_file_with_config_dir(shared):
    base, env = shared
    (base / "cfg").mkdir(mode=0o755)
    path = write(base / "cfg/client.conf", "[localhost]\nkey = K\nsecret = S\n")
    path.chmod(0o000)
    _one_line_error(check_config_unprivileged(["--config-dir", str(base / "cfg")], env),
                    f"{path}: cannot be read: Permission denied")


def test_unsearchable_openqa_config_directory(shared):
    base, env = shared
    (base / "env").chmod(0o000)
    _one_line_error(check_config_unprivileged([], env), f"{base / 'env'}: cannot be read: Permission denied")


def test_unreadable_dropin(shared):
    base, env = shared
    write(base / "env/workers.ini", "[global]\n").chmod(0o644)
    dropin = write(base / "env/workers.ini.d/50-x.ini", "[global]\nA = 1\n")
    (base / "env/workers.ini.d").chmod(0o755)
    dropin.chmod(0o000)
    _one_line_error(check_config_unprivileged([], env), f"{dropin}: cannot be read: Permission denied")


def test_a_directory_in_place_of_the_file(sandbox, tmp_path):
    (tmp_path / "env/workers.ini").mkdir()
    write(tmp_path / "etc/workers.ini", PRODUCTION)
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'env/workers.ini'}: cannot be read: is a directory$"):
        load(sandbox)


def test_a_dangling_symlink(sandbox, tmp_path):
    (tmp_path / "env/client.conf").symlink_to(tmp_path / "gone.conf")
    with pytest.raises(ConfigError, match=f"cannot be read: dangling symbolic link to {tmp_path / 'gone.conf'}$"):
        load(sandbox)


def test_a_directory_or_dangling_link_among_the_dropins(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\n")
    (tmp_path / "env/workers.ini.d/10-dir.ini").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"10-dir.ini: cannot be read: is a directory$"):
        load(sandbox)
    (tmp_path / "env/workers.ini.d/10-dir.ini").rmdir()
    (tmp_path / "env/workers.ini.d/20-link.ini").symlink_to("/nonexistent/x.ini")
    with pytest.raises(ConfigError, match=r"20-link.ini: cannot be read: dangling symbolic link to /nonexistent"):
        load(sandbox)
    (tmp_path / "env/workers.ini.d/20-link.ini").unlink()
    (tmp_path / "env/workers.ini.d/notes.txt").mkdir()  # not a drop-in name: not looked at
    assert load(sandbox).config_files == [tmp_path / "env/workers.ini"]


def test_missing_config_dir_is_an_error(tmp_path, sandbox):
    with pytest.raises(ConfigError, match=f"^--config-dir {tmp_path / 'nope'}: no such directory$"):
        load(sandbox, config_dir=tmp_path / "nope")


def test_a_missing_openqa_config_directory_still_falls_through(sandbox, tmp_path):
    """Nothing there at all is upstream's fall-through, not an unreadable file."""
    write(tmp_path / "etc/workers.ini", "[global]\nQEMURAM = 1\n")
    assert load({**sandbox, "OPENQA_CONFIG": str(tmp_path / "absent")}).slots[0].settings["QEMURAM"] == "1"


def test_read_error_after_lookup_names_the_file(tmp_path):
    (tmp_path / "workers.ini").mkdir()
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'workers.ini'}: cannot be read: Is a directory$"):
        read_ini_files([tmp_path / "workers.ini"])


# --------------------------------------------------------------------------- credentials (issue 15 item 6)


@pytest.mark.parametrize(("client_conf", "env", "cli", "message"), [
    ("[localhost]\nkey = K1234\n", {}, {},
     "web UI localhost: API key from {conf} [localhost] but no API secret"),
    ("[localhost]\nsecret = S1234\n", {}, {},
     "web UI localhost: API secret from {conf} [localhost] but no API key"),
    ("", {"OPENQA_API_KEY": "K1234"}, {}, "web UI localhost: API key from OPENQA_API_KEY/OPENQA_API_SECRET but no"),
    ("", {}, {"apisecret": "S1234"}, "web UI localhost: API secret from --apikey/--apisecret but no API key"),
])
def test_half_configured_credentials_name_the_host(sandbox, tmp_path, client_conf, env, cli, message):
    conf = write(tmp_path / "env/client.conf", client_conf or "# empty\n")
    with pytest.raises(ConfigError) as info:
        load({**sandbox, **env}, **cli)
    assert str(info.value).startswith(message.format(conf=conf))
    assert "\n" not in str(info.value) and "K1234" not in str(info.value) and "S1234" not in str(info.value)


def test_key_and_secret_may_come_from_different_places(sandbox, tmp_path):
    write(tmp_path / "env/client.conf", "[localhost]\nsecret = FROMFILE\n")
    host = load({**sandbox, "OPENQA_API_KEY": "ENVKEY"}).slots[0].hosts[0]
    assert (host.api_key, host.api_secret, host.credentials_from) == ("ENVKEY", "FROMFILE", "env")


def test_only_the_broken_host_is_named(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nHOST = http://ok.example http://half.example:9526\n")
    write(tmp_path / "env/client.conf", "[ok.example]\nkey = A\nsecret = B\n[half.example]\nkey = C\n")
    with pytest.raises(ConfigError, match=r"^web UI http://half.example:9526: API key from .*client.conf "
                                          r"\[half.example\] but no API secret"):
        load(sandbox)


def test_check_config_and_run_refuse_with_one_line(capsys, monkeypatch, sandbox, tmp_path):
    for key, value in sandbox.items():
        monkeypatch.setenv(key, value)
    for var in ("OPENQA_API_KEY", "OPENQA_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    write(tmp_path / "env/client.conf", "[localhost]\nkey = K1234\n")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qaworker: web UI localhost: API key from ") and err.count("\n") == 1
    started = []
    fake = types.ModuleType("app.run")
    fake.run_worker = lambda config, **kw: started.append(config) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.run", fake)
    assert main(["--no-ui"]) == 2 and started == []
    assert capsys.readouterr().err.count("\n") == 1

