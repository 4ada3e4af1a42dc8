"""The typed values qaworker acts on: upstream's defaults, precedence, origins, one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from backend.config import ConfigError, SlotConfig, SlotTuning, WorkerConfig, WorkerTuning
from backend.config.registry import TYPED_SETTINGS
from backend.config.tuning import WORKER_SETTINGS
from backend.job.upload import UploadSettings
from backend.webui.client import RetryPolicy
from tests.unit.config_helpers import load, sandbox_env, write


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    return sandbox_env(tmp_path)


def test_defaults_are_upstreams(sandbox):
    config = load(sandbox)
    slot = config.slots[0].tuning
    assert slot == SlotTuning()
    assert (slot.status_min_interval, slot.status_max_interval, slot.connect_interval, slot.accept_attempts) == (
        60, 300, 10, 10)
    assert (slot.retries, slot.retry_delay, slot.retry_delay_if_webui_busy) == (60, 5, 60)
    assert (slot.upload_chunk_size, slot.upload_retries, slot.upload_delay, slot.local_upload) == (
        10_000_000, 10, 5, True)
    assert (slot.optimize_attempts, slot.optimize_retry_delay, slot.ephemeral_recheck_interval) == (5, 1, 10)
    assert (slot.lock_name, slot.lock_limit, slot.lock_expiration) == (None, 5, 30)
    assert (slot.ipmi_options, slot.ipmi_autoshutdown_interval, slot.vncport_offset) == ("-I lanplus", 300, 90)
    assert (slot.terminate_after_jobs_done, slot.packages_cmd, slot.sync_assets_hook) == (False, None, None)
    assert (slot.critical_load_avg_threshold, slot.loadavg_file) == (40, Path("/proc/loadavg"))
    assert config.tuning == WorkerTuning()
    assert (config.tuning.cache_workers, config.tuning.rsync_timeout, config.tuning.rsync_retries,
            config.tuning.rsync_retry_period, config.tuning.cache_test_sync_attempts) == (5, 1800, 3, 3, 3)
    assert config.slots[0].tuning_origins["STATUS_MIN_INTERVAL"] == "default"


GOOD = {"number": ("2.5", 2.5), "positive": ("0.5", 0.5), "integer": ("0", 0), "count": ("7", 7),
        "bool": ("yes", True), "text": (" a b ", "a b"), "path": ("/x/load", Path("/x/load")),
        "choice": (" OptiPNG ", "optipng")}  # QAWORKER_PNG_OPTIMIZER's second value, in any case
BAD = {"number": ("soon", "expected a number"), "positive": ("0", "expected a positive number"),
       "integer": ("1.5", "expected a whole number"), "count": ("0", "expected a whole number of at least 1"),
       "bool": ("maybe", "expected a boolean"), "choice": ("zopfli", "expected one of")}
IN_FILE = [s for s in TYPED_SETTINGS if s.where != "env"]
ENV_ONLY = [s for s in TYPED_SETTINGS if s.where == "env"]


def _tuning(config: WorkerConfig, setting):
    return getattr(config.tuning if setting in WORKER_SETTINGS else config.slots[0].tuning, setting.attr)


@pytest.mark.parametrize("setting", IN_FILE, ids=lambda s: s.name)
def test_every_workers_ini_key_becomes_a_typed_value(sandbox, tmp_path, setting):
    raw, expected = GOOD[setting.kind]
    path = write(tmp_path / "env/workers.ini", f"[global]\n[1-2]\n{setting.name} = {raw}\n")
    config = load(sandbox)
    assert _tuning(config, setting) == expected
    origins = {**config.tuning_origins, **config.slots[0].tuning_origins}
    assert origins[setting.name] == f"{path} [1-2]"
    assert config.slots[0].settings[setting.name] == raw.strip()  # and the raw string still goes to vars.json


@pytest.mark.parametrize("setting", [s for s in IN_FILE if s.kind in BAD], ids=lambda s: s.name)
def test_a_bad_workers_ini_value_names_file_section_and_key(sandbox, tmp_path, setting):
    raw, reason = BAD[setting.kind]
    path = write(tmp_path / "env/workers.ini", f"[global]\n[class:qemu_x86_64]\n[1]\n{setting.name} = {raw}\n")
    with pytest.raises(ConfigError) as info:
        load(sandbox)
    assert str(info.value).startswith(f"{path} [1] {setting.name}: {reason}")
    assert str(info.value).endswith(f", got {raw!r}")


@pytest.mark.parametrize("setting", ENV_ONLY, ids=lambda s: s.name)
def test_environment_only_values_and_their_errors(sandbox, setting):
    raw, expected = GOOD[setting.kind]
    config = load({**sandbox, setting.name: raw})
    assert _tuning(config, setting) == expected
    origins = {**config.tuning_origins, **config.slots[0].tuning_origins}
    assert origins[setting.name] == f"environment {setting.name}"
    if setting.kind not in BAD:
        return  # any text is a valid value
    bad, reason = BAD[setting.kind]
    with pytest.raises(ConfigError, match=f"^environment {setting.name}: {reason}.*, got '{bad}'$"):
        load({**sandbox, setting.name: bad})


def test_environment_beats_the_file_where_upstream_says_so(sandbox, tmp_path):
    path = write(tmp_path / "env/workers.ini", "[global]\nSTATUS_MIN_INTERVAL = 90\nRETRIES = 4\n"
                                                "QAWORKER_LOADAVG_FILE = /from/file\n")
    env = {**sandbox, "OPENQA_WORKER_STATUS_MIN_INTERVAL": "30", "OPENQA_WORKER_CONNECT_RETRIES": "2",
           "OPENQA_LOAD_AVG_FILE": "/from/env"}
    slot = load(env).slots[0]
    assert (slot.tuning.status_min_interval, slot.tuning.retries) == (30, 2)
    assert slot.tuning_origins["RETRIES"] == "environment OPENQA_WORKER_CONNECT_RETRIES"
    assert slot.tuning.loadavg_file == Path("/from/file")  # our own key beats upstream's variable
    assert slot.tuning_origins["QAWORKER_LOADAVG_FILE"] == f"{path} [global]"
    path.write_text("[global]\n")
    assert load(env).slots[0].tuning.loadavg_file == Path("/from/env")
    assert load(env).slots[0].tuning.status_min_interval == 30


def test_env_override_of_a_setting_is_typed_and_named_in_errors(sandbox):
    slot = load({**sandbox, "OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE": "1"}).slots[0]
    assert slot.tuning.terminate_after_jobs_done is True
    assert slot.tuning_origins["TERMINATE_AFTER_JOBS_DONE"] == "environment OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE"
    with pytest.raises(ConfigError, match=r"^environment OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE: expected a "
                                          r"boolean .*, got 'sometimes'$"):
        load({**sandbox, "OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE": "sometimes"})


def test_empty_values_mean_unset(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nUPLOAD_RETRIES =\nLOCK_NAME =\n")
    slot = load({**sandbox, "OPENQA_WORKER_ACCEPT_ATTEMPTS": ""}).slots[0]
    assert (slot.tuning.upload_retries, slot.tuning.lock_name, slot.tuning.accept_attempts) == (10, None, 10)


def test_retry_policy_per_host_is_computed_once(sandbox, tmp_path):
    path = write(tmp_path / "env/workers.ini",
                 "[global]\nHOST = http://a.example http://b.example\nRETRY_DELAY = 3\nRETRIES = 7\n"
                 "[http://a.example]\nRETRY_DELAY = 11\nRETRY_DELAY_IF_WEBUI_BUSY = 0.5\nRETRIES = 2\n")
    a, b = load(sandbox).slots[0].hosts
    assert (a.retries, a.retry_delay, a.retry_delay_if_webui_busy) == (2, 11.0, 0.5)
    assert a.origins["RETRY_DELAY"] == f"{path} [http://a.example]"
    assert (b.retries, b.retry_delay, b.retry_delay_if_webui_busy) == (7, 3.0, 60.0)
    assert b.origins["RETRY_DELAY_IF_WEBUI_BUSY"] == "default"
    assert RetryPolicy.from_host(a) == RetryPolicy(attempts=2, delay=11.0, busy_delay=0.5)
    # the variable beats the [<host>] section too (upstream: $ENV{OPENQA_WORKER_CONNECT_RETRIES} // ...)
    a, _ = load({**sandbox, "OPENQA_WORKER_CONNECT_RETRIES": "9"}).slots[0].hosts
    assert (a.retries, a.origins["RETRIES"]) == (9, "environment OPENQA_WORKER_CONNECT_RETRIES")


def test_bad_host_section_value(sandbox, tmp_path):
    path = write(tmp_path / "env/workers.ini", "[global]\nHOST = localhost\n[localhost]\nRETRIES = 0\n")
    with pytest.raises(ConfigError, match=f"^{path} \\[localhost\\] RETRIES: expected a whole number of at least 1"):
        load(sandbox)


def test_upload_settings_come_from_the_slot_tuning(sandbox, tmp_path):
    write(tmp_path / "env/workers.ini", "[global]\nUPLOAD_CHUNK_SIZE = 1000\nLOCAL_UPLOAD = no\n")
    env = {**sandbox, "OPENQA_UPLOAD_DELAY": "0.5", "OPENQA_WORKER_OPTIMIZE_ATTEMPTS": "2"}
    tuning = load(env).slots[0].tuning
    upload = UploadSettings.from_tuning(tuning, {"OPTIMIZE_IMAGES": "0", "USE_PNGQUANT": "1"})
    assert (upload.chunk_size, upload.local_upload, upload.delay, upload.optimize_attempts) == (1000, False, 0.5, 2)
    assert (upload.optimize, upload.use_pngquant) == (False, True)


def test_configs_built_in_code_derive_their_tuning_leniently(caplog):
    caplog.set_level(logging.WARNING, "backend.config")
    slot = SlotConfig(instance=1, settings={"QAWORKER_STOP_GRACE": "3", "UPLOAD_RETRIES": "lots"}, hosts=[],
                      pool_dir=Path("/p"))
    assert (slot.tuning.stop_grace, slot.tuning.upload_retries) == (3.0, 10)
    assert "settings UPLOAD_RETRIES: expected a whole number, got 'lots'; using the default 10" in caplog.text
    config = WorkerConfig(slots=[slot], env={"OPENQA_WORKER_CONNECT_INTERVAL": "0.3"}, cache_limit_gib=2)
    assert slot.tuning.connect_interval == 0.3 and slot.tuning.stop_grace == 3.0
    assert config.tuning.cache_limit_gib == 2
    explicit = SlotTuning(stop_grace=1.0)
    slot = SlotConfig(instance=2, settings={}, hosts=[], pool_dir=Path("/p"), tuning=explicit)
    WorkerConfig(slots=[slot], env={"OPENQA_WORKER_CONNECT_INTERVAL": "0.3"})
    assert slot.tuning is explicit  # given, not re-derived
