"""``load_config``: workers.ini + client.conf + environment + command line → ``WorkerConfig``.

Precedence: CLI > environment > files > defaults (PROTOCOL.md §2.2). The merge is the INI dialect's
(sections, ``+=``, class sections that only add) and keeps, per key, where its value came from;
the values qaworker interprets are then converted and validated once (tuning.py), so a bad value is
one ``ConfigError`` naming file, section and key - or the environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from backend.config.hosts import HOST_SECTION_KEYS, build_host, detect_worker_hostname
from backend.config.ini import IniData, read_ini_files
from backend.config.lookup import config_groups, lookup_config_files
from backend.config.model import CliOptions, SlotConfig, WorkerConfig
from backend.config.registry import (
    ALL_SETTINGS,
    UNSUPPORTED,
    host_section_warning,
    known_setting,
    workers_ini_warning,
)
from backend.config.sections import (
    classify_sections,
    default_worker_class,
    host_strings,
    instance_numbers,
    merge_instance,
)
from backend.config.tuning import SlotTuning, WorkerTuning, resolve

# environment variables that override worker settings (PROTOCOL.md §2.2 step 4)
ENV_OVERRIDES = {"OPENQA_WORKER_LOG_DIR": "LOG_DIR",
                 "OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE": "TERMINATE_AFTER_JOBS_DONE"}
# injected into every slot's settings (and so into vars.json), as upstream does
DEFAULTS = {"CRITICAL_LOAD_AVG_THRESHOLD": "40", "RETRY_DELAY": "5", "RETRY_DELAY_IF_WEBUI_BUSY": "60"}
# environment variables without the OPENQA_ prefix kept in WorkerConfig.env (§2.4, proxies: issue 12 row 8)
_OTHER_ENV = ("MOJO_CGROUP_FS", "OVS_DBUS_SERVICE_NAME", "VNCPORT_OFFSET", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "no_proxy")


def slot_numbers(options: CliOptions) -> list[int]:
    return instance_numbers(options.instance, options.instances)


def resolve_slot_settings(ini: IniData, instance: int, instance_sections: Mapping[str, list[int]],
                          cli: dict[str, str], environ: Mapping[str, str]
                          ) -> tuple[dict[str, str], dict[str, str]]:
    """The slot's effective settings (HOST still included) and where each came from."""
    settings, origins = merge_instance(ini, instance, instance_sections)
    for variable, key in ENV_OVERRIDES.items():
        if environ.get(variable, "") != "":
            settings[key], origins[key] = environ[variable], f"environment {variable}"
    for key, value in cli.items():
        settings[key], origins[key] = value, "command line"
    for key, value in DEFAULTS.items():
        if settings.get(key, "") == "":
            settings[key], origins[key] = value, "default"
    if not settings.get("WORKER_CLASS"):
        settings["WORKER_CLASS"] = default_worker_class(settings.get("ARCH"))
        origins["WORKER_CLASS"] = "default (CPU architecture)"
    return settings, origins


def _build_slot(instance: int, ini: IniData, client: IniData, instance_sections: Mapping[str, list[int]],
                cli_values: dict[str, str], options: CliOptions, env: Mapping[str, str],
                prjdir: Path) -> SlotConfig:
    settings, origins = resolve_slot_settings(ini, instance, instance_sections, cli_values, env)
    host_list = (settings.pop("HOST", "") or "localhost").split() or ["localhost"]
    origins.pop("HOST", None)
    tuning, tuning_origins = resolve(SlotTuning, settings, origins, env)
    hosts = [build_host(h, ini, client, tuning, tuning_origins, prjdir, options, env)
             for h in dict.fromkeys(host_list)]
    detect_worker_hostname(settings, hosts, origins)
    return SlotConfig(instance=instance, settings=settings, hosts=hosts, pool_dir=prjdir / "pool" / str(instance),
                      origins=origins, tuning=tuning, tuning_origins=tuning_origins)


def load_config(options: CliOptions | None = None, *,
                environ: Mapping[str, str] | None = None) -> WorkerConfig:
    """Read workers.ini, client.conf (+ drop-ins), the environment and the CLI into a ``WorkerConfig``.

    Synchronous and reads files: call it before the event loop or via ``asyncio.to_thread``.
    This is the only place that reads ``os.environ``; everything downstream gets the values from here.
    Raises ``ConfigError`` with one line naming file, section and key.
    """
    options = options or CliOptions()
    env = dict(os.environ if environ is None else environ)
    instances = slot_numbers(options)
    worker_files = lookup_config_files("workers.ini", config_groups("workers.ini", env, options.config_dir))
    client_files = lookup_config_files("client.conf", config_groups("client.conf", env, options.config_dir))
    ini = read_ini_files(worker_files)
    client = read_ini_files(client_files)

    prjdir = Path(env.get("OPENQA_BASEDIR") or "/var/lib") / "openqa"
    cli_values: dict[str, str] = {}
    if options.host:
        cli_values["HOST"] = options.host
    if options.verbose:
        cli_values["LOG_LEVEL"] = "debug"
    instance_sections = classify_sections(ini, host_strings(ini, options.host))

    slots = [_build_slot(n, ini, client, instance_sections, cli_values, options, env, prjdir)
             for n in instances]
    first = slots[0]
    tuning, tuning_origins = resolve(WorkerTuning, first.settings, first.origins, env)
    cache_dir = env.get("OPENQA_CACHE_DIR") or first.settings.get("CACHEDIRECTORY")
    isotovideo = options.isotovideo
    used_hosts = {h.configured for s in slots for h in s.hosts}
    return WorkerConfig(
        slots=slots,
        isotovideo=os.path.abspath(isotovideo) if isotovideo else "/usr/bin/isotovideo",
        no_cleanup=options.no_cleanup,
        verbose=options.verbose,
        prjdir=prjdir,
        config_files=list(ini.files),
        client_config_files=list(client.files),
        cache_dir=Path(cache_dir) if cache_dir else None,
        cache_limit_gib=tuning.cache_limit_gib,
        cache_min_free_percentage=tuning.cache_min_free_percentage,
        log_format=options.log_format,
        metrics_port=options.metrics_port,
        metrics_address=options.metrics_address,
        env={k: v for k, v in env.items() if k.startswith("OPENQA_") or k in _OTHER_ENV},
        tuning=tuning,
        tuning_origins=tuning_origins,
        warnings=[*config_warnings(ini, instance_sections, used_hosts), *environment_warnings(env)],
    )


def _looks_like_host(name: str) -> bool:
    return name == "localhost" or any(c in name for c in ".:/[")


def config_warnings(ini: IniData, instance_sections: Mapping[str, list[int]], used_hosts: set[str]) -> list[str]:
    """One line per workers.ini key (file, section) that qaworker does not act on."""
    warnings: list[str] = []
    for name, entries in ini.sections.items():
        if name in used_hosts:
            lines = (host_section_warning(e.key, f"{e.file} [{name}]", HOST_SECTION_KEYS) for e in entries)
        elif name == "global" or name in instance_sections or name.startswith("class:"):
            lines = (workers_ini_warning(e.key, f"{e.file} [{name}]") for e in entries)
        elif not _looks_like_host(name):
            lines = iter([f"{ini.section_files[name]} [{name}]: section not used (not [global], an instance "
                          "number, [class:NAME] or one of the HOST web UIs)"])
        else:
            continue  # a [<host>] section for a web UI this worker does not use
        warnings.extend(line for line in lines if line and line not in warnings)
    return warnings


_KNOWN_VARIABLES = {v for s in ALL_SETTINGS for v in (s.env, s.name if s.where == "env" else None) if v}


def environment_warnings(env: Mapping[str, str]) -> list[str]:
    """Upstream variables qaworker does not act on, and misspelt ``OPENQA_WORKER_*`` ones, would
    otherwise be ignored without a word."""
    out = []
    for variable in sorted(env):
        setting = known_setting(variable)
        if setting in UNSUPPORTED:
            out.append(f"environment {variable}: {setting.meaning}")  # type: ignore[union-attr]
        elif variable.startswith("OPENQA_WORKER_") and variable not in _KNOWN_VARIABLES:
            out.append(f"environment {variable}: not a variable qaworker knows; ignored")
    return out
