"""The typed values qaworker interprets, validated once when the configuration is loaded.

``SlotConfig.settings`` stays the raw string dict that goes into every job's vars.json;
``SlotConfig.tuning`` (``SlotTuning``) and ``WorkerConfig.tuning`` (``WorkerTuning``) hold what the
worker itself acts on, each value taken from the first of: the environment variable (where it wins),
the slot's workers.ini settings, the environment variable (where the file wins), the default.
Defaults are upstream's (lib/OpenQA/Worker*.pm, lib/OpenQA/CacheService*).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from backend.config.errors import ConfigError
from backend.config.keys import Setting, field_settings, tunable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotTuning:
    """What one slot acts on (process-wide variables included, so a slot needs nothing else)."""

    # -- qaworker's own ---------------------------------------------------------------------------
    stop_grace: float = tunable(
        30.0, "QAWORKER_STOP_GRACE", "number",
        "seconds between SIGTERM and SIGKILL for isotovideo's process group when a job stops")
    health_interval: float = tunable(
        10.0, "QAWORKER_HEALTH_INTERVAL", "positive",
        "seconds between availability re-checks while idle (while broken: every 10 s)")
    pool_min_free_mb: int = tunable(
        1024, "QAWORKER_POOL_MIN_FREE_MB", "integer",
        "free MiB in the pool directory below which the slot reports `broken`; 0 = off")
    loadavg_file: Path = tunable(  # noqa: RUF009 (tunable() is a dataclasses.field)
        Path("/proc/loadavg"), "QAWORKER_LOADAVG_FILE", "path",
        "where the load average is read",
        env="OPENQA_LOAD_AVG_FILE", env_wins=False)
    upload_delay: float = tunable(
        5.0, "QAWORKER_UPLOAD_DELAY", "number",
        "seconds before a failed upload chunk is retried (+1 s per attempt, at most 30 s)",
        env="OPENQA_UPLOAD_DELAY", env_wins=False)
    png_optimizer: str = tunable(
        "oxipng", "QAWORKER_PNG_OPTIMIZER", "choice",
        "what optimises screenshots: `oxipng` (in-process, lossless) or `optipng` (`optipng -o2`); a job's "
        "`USE_PNGQUANT` wins", choices=("oxipng", "optipng"))
    # -- availability and web UI connection ------------------------------------------------------
    critical_load_avg_threshold: float = tunable(
        40.0, "CRITICAL_LOAD_AVG_THRESHOLD", "number",
        "refuse new jobs while the load average is above it and not falling; 0 = off")
    status_min_interval: float = tunable(
        60.0, "STATUS_MIN_INTERVAL", "positive", "least seconds between two `worker_status` messages",
        env="OPENQA_WORKER_STATUS_MIN_INTERVAL")
    status_max_interval: float = tunable(
        300.0, "STATUS_MAX_INTERVAL", "positive", "most seconds between two `worker_status` messages",
        env="OPENQA_WORKER_STATUS_MAX_INTERVAL")
    connect_interval: float = tunable(
        10.0, "OPENQA_WORKER_CONNECT_INTERVAL", "number",
        "seconds before registering again after a failure (doubles, at most 60 s)", where="env")
    accept_attempts: int = tunable(
        10, "OPENQA_WORKER_ACCEPT_ATTEMPTS", "count",
        "connect intervals a queued job waits for a lost websocket before it is given up", where="env")
    ephemeral_recheck_interval: float = tunable(
        10.0, "OPENQA_WORKER_EPHEMERAL_RECHECK_INTERVAL", "positive",
        "seconds between re-checks of a passing problem (e.g. a job-start lock held by others)",
        where="env")
    ovs_dbus_service_name: str = tunable(
        "org.opensuse.os_autoinst.switch", "OVS_DBUS_SERVICE_NAME", "text",
        "D-Bus service a slot whose `WORKER_CLASS` has the class `tap` needs on the system bus (asked with "
        "`busctl`; without it the slot is `broken`)", where="env")
    retries: int = tunable(
        60, "RETRIES", "count", "attempts per REST call to the web UI", env="OPENQA_WORKER_CONNECT_RETRIES")
    retry_delay: float = tunable(
        5.0, "RETRY_DELAY", "number", "seconds between REST retries")
    retry_delay_if_webui_busy: float = tunable(
        60.0, "RETRY_DELAY_IF_WEBUI_BUSY", "number",
        "seconds between REST retries while the web UI looks overloaded")
    # -- jobs ------------------------------------------------------------------------------------
    upload_chunk_size: int = tunable(10_000_000, "UPLOAD_CHUNK_SIZE", "count", "bytes per asset upload chunk")
    upload_retries: int = tunable(10, "UPLOAD_RETRIES", "count", "attempts per asset upload chunk")
    local_upload: bool = tunable(
        True, "LOCAL_UPLOAD", "bool", "copy assets through the file system when the web UI is on this host")
    optimize_attempts: int = tunable(
        5, "OPENQA_WORKER_OPTIMIZE_ATTEMPTS", "count", "attempts to optimise one screenshot",
        where="env")
    optimize_retry_delay: float = tunable(
        1.0, "OPENQA_WORKER_OPTIMIZE_RETRY_DELAY", "number", "seconds between two optimisation attempts",
        where="env")
    vncport_offset: int = tunable(
        90, "VNCPORT_OFFSET", "integer", "the slot's VNC display is this plus the instance number", where="env")
    sync_assets_hook: str | None = tunable(
        None, "SYNC_ASSETS_HOOK", "text",
        "shell command run in the pool before a job's assets are cached (bounded by `MAX_SETUP_TIME`); its "
        "failure ends the job `setup failure`")
    terminate_after_jobs_done: bool = tunable(
        False, "TERMINATE_AFTER_JOBS_DONE", "bool",
        "exit 0 (web UI told: ws `quit`) once the queue is empty after a job; "
        "`contrib/systemd/qaworker-auto-restart@.service` (`Restart=always`) starts it anew with updates",
        env="OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE")
    packages_cmd: str | None = tunable(
        None, "PACKAGES_CMD", "text", "run at start; its output is uploaded with every job as "
        "`worker_packages.txt` (a start without it removes the file an earlier one left)")
    lock_name: str | None = tunable(
        None, "LOCK_NAME", "text",
        "host-wide lock a job start must take (`<CACHEDIRECTORY>/worker-locks.sqlite`, shared with Perl workers); "
        "without a place the job is rejected `Limited by configured lock '<name>'`")
    lock_limit: int = tunable(5, "LOCK_LIMIT", "count", "job starts that may hold `LOCK_NAME` at once")
    lock_expiration: float = tunable(
        30.0, "LOCK_EXPIRATION", "number",
        "seconds the lock is held once isotovideo runs (until then: 1 h; released at the job's end)")
    ipmi_hostname: str | None = tunable(
        None, "IPMI_HOSTNAME", "text",
        "IPMI host of the SUT: with `IPMI_USER` and `IPMI_PASSWORD` set, it is powered off (`ipmitool … chassis "
        "power off`) every `IPMI_AUTOSHUTDOWN_INTERVAL` while the slot has no job")
    ipmi_user: str | None = tunable(None, "IPMI_USER", "text", "IPMI user")
    ipmi_password: str | None = tunable(None, "IPMI_PASSWORD", "text", "IPMI password (never logged)")
    ipmi_options: str = tunable("-I lanplus", "IPMI_OPTIONS", "text", "extra `ipmitool` options")
    ipmi_autoshutdown_interval: float = tunable(
        300.0, "IPMI_AUTOSHUTDOWN_INTERVAL", "number", "seconds between power-offs while idle; 0 = off")


@dataclass(frozen=True)
class WorkerTuning:
    """What the whole process acts on (the shared asset cache); read from the first slot's settings."""

    cache_limit_gib: float = tunable(50.0, "CACHELIMIT", "number", "size limit of `CACHEDIRECTORY` in GiB")
    cache_min_free_percentage: float | None = tunable(
        None, "CACHE_MIN_FREE_PERCENTAGE", "number",
        "the cache also shrinks to keep this much of its file system free (percent)")
    cache_workers: int = tunable(
        5, "CACHEWORKERS", "count",
        "asset downloads and test syncs at once on the whole host (all qaworker processes sharing the cache)")
    rsync_timeout: float = tunable(
        1800.0, "OPENQA_RSYNC_TIMEOUT", "positive", "rsync's `--timeout` for test syncs (seconds)",
        where="env")
    rsync_retries: int = tunable(3, "OPENQA_RSYNC_RETRIES", "count", "rsync attempts per test sync",
                                 where="env")
    rsync_retry_period: float = tunable(
        3.0, "OPENQA_RSYNC_RETRY_PERIOD", "number", "seconds between two rsync attempts", where="env")
    metrics_download_size: int = tunable(
        262_144_000, "OPENQA_METRICS_DOWNLOAD_SIZE", "count",
        "a download bigger than this sets `openqa_download_rate` in `/influxdb/minion` (on the metrics server)",
        where="env")
    cgroup: str = tunable(
        "auto", "QAWORKER_CGROUP", "text",
        "where each job's own cgroup v2 is created (stop = `cgroup.kill`, memory/CPU figures): `auto` = "
        "qaworker's own cgroup when delegated (systemd `Delegate=yes`), `off`, or a cgroup v2 directory",
        env="QAWORKER_CGROUP")
    cache_test_sync_attempts: int = tunable(
        3, "OPENQA_CACHE_SERVICE_TEST_SYNC_ATTEMPTS", "count", "attempts to sync a job's tests into the cache",
        where="env")


SLOT_SETTINGS = field_settings(SlotTuning)
WORKER_SETTINGS = field_settings(WorkerTuning)

T = TypeVar("T", SlotTuning, WorkerTuning)


def pick(setting: Setting, settings: Mapping[str, str], origins: Mapping[str, str],
         env: Mapping[str, str]) -> tuple[str | None, str]:
    """The raw value of ``setting`` and where it came from (``(None, "default")`` when unset)."""
    candidates: list[tuple[str | None, str]] = []
    if setting.in_workers_ini:
        candidates.append((settings.get(setting.name), origins.get(setting.name, "settings")))
    variable = setting.env or (setting.name if setting.where == "env" else None)
    if variable:
        entry = (env.get(variable), f"environment {variable}")
        candidates.insert(0 if setting.env_wins else len(candidates), entry)
    for raw, origin in candidates:
        if raw is not None and raw.strip() != "":
            return raw, origin
    return None, "default"


def bad_value(setting: Setting, origin: str, raw: str, reason: str) -> str:
    """``<file> [<section>] KEY: reason, got 'x'`` or ``environment VAR: reason, got 'x'``."""
    where = origin if origin.startswith("environment ") else f"{origin} {setting.name}"
    return f"{where}: {reason}, got {raw!r}"


def resolve(cls: type[T], settings: Mapping[str, str], origins: Mapping[str, str] | None = None,
            env: Mapping[str, str] | None = None, *, strict: bool = True,
            quiet: bool = False) -> tuple[T, dict[str, str]]:
    """The typed values of ``cls`` and, per setting name, where each came from.

    ``strict``: a bad value is a ``ConfigError`` (load time). Otherwise (configs built in code, job
    settings) the default is used, and logged unless ``quiet``.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in field_settings(cls):
        raw, origin = pick(setting, settings, origins or {}, env or {})
        sources[setting.name] = origin
        if raw is None:
            continue
        try:
            values[setting.attr or ""] = setting.convert(raw)
        except ValueError as exc:
            message = bad_value(setting, origin, raw, str(exc))
            if strict:
                raise ConfigError(message) from None
            if not quiet:
                log.warning("%s; using the default %s", message, setting.default_text())
            sources[setting.name] = "default (bad value ignored)"
    return cls(**values), sources
