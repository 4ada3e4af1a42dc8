"""workers.ini + client.conf + env + CLI → WorkerConfig (PROTOCOL.md §2), with real files in tmp dirs."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.config import (
    CliOptions,
    ConfigError,
    default_worker_class,
    masked,
    parse_ini_text,
    parse_instance_spec,
)
from tests.unit.config_helpers import DATA, load, sandbox_env, write


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    return sandbox_env(tmp_path)


# --------------------------------------------------------------------------- lookup (§2.1)


def test_openqa_config_dir_wins_over_system_dirs(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nQEMURAM = 1\n")
    write(tmp_path / "etc/workers.ini", "[global]\nQEMURAM = 2\n")
    config = load(sandbox)
    assert config.slots[0].settings["QEMURAM"] == "1"
    assert config.config_files == [tmp_path / "env/workers.ini"]


def test_empty_openqa_config_falls_through_to_etc_then_usr_etc(sandbox, tmp_path):
    write(tmp_path / "usr_etc/workers.ini", "[global]\nQEMURAM = 3\n")
    assert load(sandbox).slots[0].settings["QEMURAM"] == "3"
    write(tmp_path / "etc/workers.ini", "[global]\nQEMURAM = 2\n")
    # /etc has the main file: /usr/etc is not read at all
    config = load(sandbox)
    assert config.slots[0].settings["QEMURAM"] == "2"
    assert config.config_files == [tmp_path / "etc/workers.ini"]


def test_dropins_are_layered_in_sorted_order_and_only_ini_files(sandbox):
    config = load(sandbox, config_dir=DATA / "new", instance=5)
    assert [p.name for p in config.config_files] == ["workers.ini", "10-gpu.ini", "20-override.ini"]
    assert config.slots[0].settings["CACHELIMIT"] == "30"  # 20-override.ini beats workers.ini
    assert config.cache_limit_gib == 30.0
    assert config.slots[0].worker_classes == ["qemu_x86_64", "gpu"]


def test_dropins_alone_count_as_a_group(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini.d/a.ini", "[global]\nQEMURAM = 5\n")
    write(tmp_path / "etc/workers.ini", "[global]\nQEMURAM = 6\n")
    assert load(sandbox).slots[0].settings["QEMURAM"] == "5"


def test_config_dir_option_replaces_the_search(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nQEMURAM = 1\n")
    config = load(sandbox, config_dir=DATA / "2023")
    assert "QEMURAM" not in config.slots[0].settings
    assert config.slots[0].worker_classes == ["qemu_x86_64", "special"]


def test_client_conf_from_home_only_when_openqa_config_has_none(sandbox, tmp_path):
    write(tmp_path / "home/.config/openqa/client.conf", "[localhost]\nkey = HOMEKEY1\nsecret = homesecret\n")
    write(tmp_path / "etc/client.conf", "[localhost]\nkey = ETCKEY11\nsecret = etcsecret\n")
    assert load(sandbox).slots[0].hosts[0].api_key == "HOMEKEY1"
    write(tmp_path / "env/client.conf", "[other.host]\nkey = X\nsecret = Y\n")
    # the first group with a file wins even without a matching section: no fall-through
    host = load(sandbox).slots[0].hosts[0]
    assert (host.api_key, host.api_secret) == (None, None)


def test_workers_ini_ignores_the_home_directory(sandbox, tmp_path):
    write(tmp_path / "home/.config/openqa/workers.ini", "[global]\nQEMURAM = 7\n")
    assert "QEMURAM" not in load(sandbox).slots[0].settings


# --------------------------------------------------------------------------- merge rules (§2.2)


def test_ranges_lists_and_exact_sections(sandbox):
    config = load(sandbox, config_dir=DATA / "new", instances="1-3,5,8")
    by_slot = {s.instance: s for s in config.slots}
    assert sorted(by_slot) == [1, 2, 3, 5, 8]
    assert by_slot[2].settings["QEMUCPUS"] == "4" and "QEMUCPUS" not in by_slot[3].settings
    assert by_slot[8].settings["QEMURAM"] == "4096"  # [1-3,8] overrides [global]
    assert by_slot[5].settings["QEMURAM"] == "2048"
    assert [s.pool_dir for s in config.slots] == [Path(f"/var/lib/openqa/pool/{n}") for n in (1, 2, 3, 5, 8)]


def test_plus_equals_appends_and_class_sections_only_add(sandbox):
    slot = load(sandbox, config_dir=DATA / "new", instance=1).slots[0]
    assert slot.settings["WORKER_CLASS"] == "qemu_x86_64,tap"
    assert slot.settings["NICTYPE"] == "tap"  # from [class:tap]
    assert slot.settings["QEMUCPU"] == "host"  # from [class:qemu_x86_64]
    assert slot.settings["QEMURAM"] == "4096"  # [class:tap] does not override
    assert slot.origins["NICTYPE"].endswith("workers.ini [class:tap]")


def test_keys_upper_cased_values_trimmed_last_value_wins(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\n  qemuram =   1024  \nQemuRam = 2048   \nX = a=b %c\n")
    settings = load(sandbox).slots[0].settings
    assert settings["QEMURAM"] == "2048"
    assert settings["X"] == "a=b %c"


def test_plus_equals_across_dropins_and_without_previous_value(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nWORKER_CLASS = a\n[1]\nEXTRA += x\n")
    write(tmp_path / "env/workers.ini.d/1.ini", "[global]\nWORKER_CLASS += b\n")
    write(tmp_path / "env/workers.ini.d/2.ini", "[1]\nWORKER_CLASS += c\n")
    settings = load(sandbox).slots[0].settings
    assert settings["WORKER_CLASS"] == "a,b,c"
    assert settings["EXTRA"] == "x"


def test_defaults_and_host_removed(sandbox):
    slot = load(sandbox).slots[0]
    assert slot.settings["CRITICAL_LOAD_AVG_THRESHOLD"] == "40"
    assert slot.settings["RETRY_DELAY"] == "5"
    assert slot.settings["RETRY_DELAY_IF_WEBUI_BUSY"] == "60"
    assert "HOST" not in slot.settings
    assert [h.base_url for h in slot.hosts] == ["http://localhost"]
    assert slot.settings["WORKER_HOSTNAME"] == "localhost"  # all web UIs local
    assert slot.settings["WORKER_CLASS"] == default_worker_class()


@pytest.mark.parametrize(("arch", "expected"), [
    ("x86_64", "qemu_x86_64,qemu_i686,qemu_i586"),
    ("aarch64", "qemu_aarch64"),
    ("ppc64le", "qemu_ppc64le,qemu_ppc64,qemu_ppc"),
    ("s390x", "qemu_s390x,qemu_s390"),
    ("riscv64", "qemu_riscv64"),
])
def test_worker_class_derived_from_arch(arch, expected):
    assert default_worker_class(arch) == expected


def test_arch_setting_drives_the_default_worker_class(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nARCH = s390x\n")
    assert load(sandbox).slots[0].settings["WORKER_CLASS"] == "qemu_s390x,qemu_s390"


def test_host_list_sections_share_dir_and_retry_delays(sandbox):
    config = load(sandbox, config_dir=DATA / "new")
    remote, local = config.slots[0].hosts
    assert (remote.configured, remote.base_url) == ("http://openqa.example.com", "http://openqa.example.com")
    assert remote.share_dir == Path("/mnt/openqa/share")
    assert remote.testpoolserver == "rsync://openqa.example.com/tests"
    assert (remote.retry_delay, remote.retry_delay_if_webui_busy) == (11.0, 60.0)
    assert (local.base_url, local.hostname) == ("http://localhost:9526", "localhost:9526")
    assert local.is_local
    assert local.share_dir == Path("/var/lib/openqa/share") and local.settings == {}


def test_relative_share_directory_is_resolved_against_cwd(sandbox, tmp_path, monkeypatch):
    write(tmp_path / "env/workers.ini", "[global]\nHOST = localhost\n[localhost]\nSHARE_DIRECTORY = share\n")
    monkeypatch.chdir(tmp_path)
    assert load(sandbox).slots[0].hosts[0].share_dir == tmp_path / "share"


def test_https_url_host_normalised(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nHOST = HTTPS://OpenQA.Example.com:8443/ \n")
    host = load(sandbox).slots[0].hosts[0]
    assert host.base_url == "https://openqa.example.com:8443"
    assert host.configured == "HTTPS://OpenQA.Example.com:8443/"


def test_2023_config_means_the_same(sandbox):
    slot = load(sandbox, config_dir=DATA / "2023").slots[0]
    assert slot.settings["WORKER_HOSTNAME"] == "127.0.0.1"
    assert slot.hosts[0].api_key == "1111222233334444"


# --------------------------------------------------------------------------- env and paths (§1.4, §2.4)


def test_env_overrides_and_paths(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini",
          "[global]\nLOG_DIR = /var/log/x\nTERMINATE_AFTER_JOBS_DONE = 0\nCACHEDIRECTORY = /c\n")
    env = {**sandbox, "OPENQA_WORKER_LOG_DIR": str(tmp_path / "logs"),
           "OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE": "1", "OPENQA_BASEDIR": str(tmp_path / "base"),
           "OPENQA_CACHE_DIR": str(tmp_path / "cache"), "OPENQA_WORKER_CONNECT_RETRIES": "3",
           "UNRELATED": "x"}
    config = load(env, instance=4)
    slot = config.slots[0]
    assert slot.settings["LOG_DIR"] == str(tmp_path / "logs")
    assert slot.settings["TERMINATE_AFTER_JOBS_DONE"] == "1"
    assert config.prjdir == tmp_path / "base/openqa"
    assert slot.pool_dir == tmp_path / "base/openqa/pool/4"
    assert slot.hosts[0].share_dir == tmp_path / "base/openqa/share"
    assert config.cache_dir == tmp_path / "cache"
    assert config.env["OPENQA_WORKER_CONNECT_RETRIES"] == "3" and "UNRELATED" not in config.env


def test_empty_env_override_is_ignored(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nLOG_DIR = /var/log/x\n")
    assert load({**sandbox, "OPENQA_WORKER_LOG_DIR": ""}).slots[0].settings["LOG_DIR"] == "/var/log/x"


# --------------------------------------------------------------------------- precedence CLI > env > file


def test_precedence_for_credentials(sandbox):
    base = {**sandbox, "OPENQA_CONFIG": str(DATA / "2023")}
    assert load(base).slots[0].hosts[0].api_key == "1111222233334444"
    env = {**base, "OPENQA_API_KEY": "ENVKEY0000", "OPENQA_API_SECRET": "ENVSECRET"}
    host = load(env).slots[0].hosts[0]
    assert (host.api_key, host.api_secret, host.credentials_from) == ("ENVKEY0000", "ENVSECRET", "env")
    host = load(env, apikey="CLIKEY0000").slots[0].hosts[0]
    # each value on its own: CLI key, env secret
    assert (host.api_key, host.api_secret) == ("CLIKEY0000", "ENVSECRET")


def test_precedence_for_settings(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nHOST = openqa.example.com\nLOG_LEVEL = info\n")
    config = load(sandbox, host="localhost:1 http://127.0.0.1:2", verbose=True, isotovideo="bin/iso")
    slot = config.slots[0]
    assert [h.base_url for h in slot.hosts] == ["http://localhost:1", "http://127.0.0.1:2"]
    assert slot.settings["LOG_LEVEL"] == "debug" and slot.origins["LOG_LEVEL"] == "command line"
    assert config.isotovideo == str(Path.cwd() / "bin/iso")


# --------------------------------------------------------------------------- client.conf (§2.6)


@pytest.mark.parametrize("section", ["127.0.0.1", "127.0.0.1:9526", "http://127.0.0.1:9526"])
def test_client_conf_section_spellings(sandbox, tmp_path, section):
    write(tmp_path / "env/workers.ini", "[global]\nHOST = http://127.0.0.1:9526\n")
    write(tmp_path / "env/client.conf", f"[{section}]\nkey = K{section}\nsecret = S\n")
    host = load(sandbox).slots[0].hosts[0]
    assert (host.api_key, host.api_secret) == (f"K{section}", "S")


def test_client_conf_last_value_wins_and_dropins(sandbox, tmp_path):
    write(tmp_path / "env/client.conf", "[localhost]\nkey = first\nsecret = s1\nkey = second   \n")
    assert load(sandbox).slots[0].hosts[0].api_key == "second"
    write(tmp_path / "env/client.conf.d/z.conf", "[localhost]\nsecret = from-dropin\n")
    assert load(sandbox).slots[0].hosts[0].api_secret == "from-dropin"


def test_realstack_files(sandbox):
    config = load(sandbox, config_dir=DATA / "realstack")
    host = config.slots[0].hosts[0]
    assert host.base_url == "http://127.0.0.1:9526"
    assert (host.api_key, host.api_secret) == ("0000000000000001", "0000000000000002")
    assert config.cache_dir == Path("/var/lib/openqa/cache") and config.cache_limit_gib == 5.0
    assert config.slots[0].worker_classes == ["realstack"]


def test_missing_credentials_are_allowed(sandbox):
    host = load(sandbox).slots[0].hosts[0]
    assert (host.api_key, host.api_secret) == (None, None)


# --------------------------------------------------------------------------- errors: one clear line


@pytest.mark.parametrize(("text", "message"), [
    ("[global]\nCACHELIMIT = lots\n", "workers.ini [global] CACHELIMIT: expected a number, got 'lots'"),
    ("[global]\n[1]\nRETRY_DELAY = soon\n", "workers.ini [1] RETRY_DELAY: expected a number, got 'soon'"),
    ("[1-4]\nUPLOAD_RETRIES = 2.5\n", "workers.ini [1-4] UPLOAD_RETRIES: expected a whole number, got '2.5'"),
    ("[global]\nHOST = localhost\n[localhost]\nRETRY_DELAY = x\n",
     "workers.ini [localhost] RETRY_DELAY: expected a number, got 'x'"),
    ("[1-x]\nA = 1\n", "workers.ini: [1-x]: bad instance section name: '1-x' is not a number or range"),
    ("[5-3]\nA = 1\n", "workers.ini: [5-3]: bad instance section name: '5-3' is not a valid range"),
    ("[global]\nthis is not ini\n",
     "workers.ini: line 2: expected '[section]' or 'KEY = value', got 'this is not ini'"),
    ("HOST = x\n", "workers.ini: line 1: HOST is outside of any [section]"),
    ("[global\nA = 1\n", "workers.ini: line 1: bad section header '[global'"),
    ("[global]\nHOST = http://\n", "HOST: not a web UI host: 'http://'"),
])
def test_bad_files_give_one_line_errors(sandbox, tmp_path, text, message):
    path = write(tmp_path / "env/workers.ini", text)
    with pytest.raises(ConfigError) as info:
        load(sandbox)
    text = str(info.value)
    assert "\n" not in text
    assert message in text
    if "HOST:" not in message:
        assert text.startswith(str(path))


def test_bad_value_in_dropin_names_the_dropin(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nCACHELIMIT = 5\n")
    dropin = write(tmp_path / "env/workers.ini.d/bad.ini", "[global]\nCACHELIMIT = lots\n")
    with pytest.raises(ConfigError, match=f"^{dropin} \\[global\\] CACHELIMIT: expected a number"):
        load(sandbox)


def test_origins_name_the_environment_variable(sandbox):
    slot = load({**sandbox, "OPENQA_WORKER_LOG_DIR": "/x"}).slots[0]
    assert slot.origins["LOG_DIR"] == "environment OPENQA_WORKER_LOG_DIR"
    assert slot.origins["RETRY_DELAY"] == "default"


def test_undecodable_file(sandbox, tmp_path):
    (tmp_path / "env/workers.ini").write_bytes(b"[global]\nA = \xff\xfe\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load(sandbox)


@pytest.mark.parametrize(("cli", "message"), [
    ({"instances": "1-x"}, "--instances: '1-x' is not a number or range"),
    ({"instances": "4-1"}, "--instances: '4-1' is not a valid range"),
    ({"instances": "1-2", "instance": 3}, "use either --instance or --instances"),
])
def test_bad_instance_options(sandbox, cli, message):
    with pytest.raises(ConfigError, match=message):
        load(sandbox, **cli)


def test_cli_options_validation_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^--instance: Input should be greater than or equal to 1, got 0$"):
        CliOptions.parse(instance=0)
    with pytest.raises(ConfigError, match=r"^--log-format: "):
        CliOptions.parse(log_format="xml")


def test_host_sections_that_look_numeric_are_not_instances(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini",
          "[global]\nHOST = 10.0.0.1:9526\n[10.0.0.1:9526]\nSHARE_DIRECTORY = /s\n")
    assert load(sandbox).slots[0].hosts[0].share_dir == Path("/s")


# --------------------------------------------------------------------------- masking


def test_masked_hides_secrets(sandbox, tmp_path):
    shutil.copytree(DATA / "new", tmp_path / "cfg")
    with (tmp_path / "cfg/workers.ini").open("a") as f:
        f.write("\n[global]\nIPMI_PASSWORD = hunter2\nMY_SECRET_TOKEN = t0k3n\n")
    env = {**sandbox, "OPENQA_API_SECRET": "envsecret", "OPENQA_API_KEY": "ENVKEY123"}
    view = masked(load(env, config_dir=tmp_path / "cfg"))
    dumped = repr(view)
    for secret in ("hunter2", "t0k3n", "envsecret", "FEDCBA9876543210", "ENVKEY123"):
        assert secret not in dumped
    slot = view["slots"]["1"]
    assert slot["settings"]["IPMI_PASSWORD"] == "****"
    assert slot["settings"]["MY_SECRET_TOKEN"] == "****"
    assert slot["hosts"][0]["api_key"] == "ENVK…"
    assert slot["hosts"][0]["api_secret"] == "****"
    assert view["env"]["OPENQA_API_SECRET"] == "****"


# --------------------------------------------------------------------------- properties


@given(st.sets(st.integers(min_value=1, max_value=300), min_size=1, max_size=20))
def test_instance_lists_and_ranges_round_trip(numbers):
    ordered = sorted(numbers)
    parts = []
    for _, group in itertools.groupby(enumerate(ordered), lambda pair: pair[1] - pair[0]):
        run = [n for _, n in group]  # consecutive numbers
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    assert parse_instance_spec(" , ".join(parts)) == ordered


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40))
def test_any_value_survives_trimmed(value):
    data = parse_ini_text(f"[global]\nKEY = {value}\n", Path("x.ini"))
    assert data.sections["global"][0].value == value.strip()
