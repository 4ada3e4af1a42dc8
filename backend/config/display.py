"""The configuration for people: secrets masked, every value with where it came from (check-config)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from backend.config.keys import Setting
from backend.config.model import HostConfig, SlotConfig, WorkerConfig
from backend.config.proxy import ProxySettings
from backend.config.tuning import SLOT_SETTINGS, WORKER_SETTINGS

MASK = "****"


def is_secret_key(key: str) -> bool:
    upper = key.upper()
    return "SECRET" in upper or "PASSWORD" in upper


def mask_api_key(key: str | None) -> str | None:
    return None if not key else f"{key[:4]}…"


_URL_CREDENTIALS_RE = re.compile(r"(?<=://)[^/@\s]+@")


def mask_url_credentials(value: str) -> str:
    """``http://user:pass@proxy:3128`` -> ``http://****@proxy:3128`` (proxy variables, hosts)."""
    return _URL_CREDENTIALS_RE.sub(MASK + "@", value)


def _masked_dict(values: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if is_secret_key(key):
            out[key] = MASK
        elif key.upper() == "OPENQA_API_KEY":
            out[key] = mask_api_key(value) or ""
        else:
            out[key] = mask_url_credentials(value)
    return out


def value_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _typed(settings: list[Setting], tuning: Any, origins: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for setting in settings:
        value = getattr(tuning, setting.attr or "")
        shown = MASK if is_secret_key(setting.name) and value is not None else value_text(value)
        out[setting.name] = {"value": shown, "from": origins.get(setting.name, "default"), "status": setting.status}
    return out


def masked(config: WorkerConfig) -> dict:
    """Effective settings per slot, JSON-serialisable, with secrets masked."""
    return {
        "config_files": [str(p) for p in config.config_files],
        "client_config_files": [str(p) for p in config.client_config_files],
        "prjdir": str(config.prjdir),
        "isotovideo": config.isotovideo,
        "no_cleanup": config.no_cleanup,
        "cache_dir": str(config.cache_dir) if config.cache_dir else None,
        "cache_limit_gib": config.cache_limit_gib,
        "cache_min_free_percentage": config.cache_min_free_percentage,
        "log_format": config.log_format,
        "metrics": f"{config.metrics_address}:{config.metrics_port}" if config.metrics_port else None,
        "env": _masked_dict(config.env),
        "tuning": _typed(WORKER_SETTINGS, config.tuning, config.tuning_origins),
        "slots": {str(slot.instance): _masked_slot(slot, config.env) for slot in config.slots},
        "warnings": list(config.warnings),
    }


def _proxy_of(h: HostConfig, env: Mapping[str, str]) -> dict[str, str]:
    proxies = ProxySettings.from_env(env)
    proxy = proxies.proxy_for(h.base_url)
    return {"value": mask_url_credentials(proxy) if proxy else "direct", "from": proxies.origin(h.base_url, env)}


def _masked_host(h: HostConfig, env: Mapping[str, str]) -> dict:
    return {
        "proxy": _proxy_of(h, env),
        "host": h.configured,
        "base_url": h.base_url,
        "api_key": mask_api_key(h.api_key),
        "api_secret": MASK if h.api_secret else None,
        "credentials_from": h.credentials_from or None,
        "share_dir": str(h.share_dir),
        "testpoolserver": h.testpoolserver,
        "retry_delay": h.retry_delay,
        "retry_delay_if_webui_busy": h.retry_delay_if_webui_busy,
        "retries": h.retries,
        "origins": dict(h.origins),
        "settings": _masked_dict(h.settings),
    }


def _masked_slot(slot: SlotConfig, env: Mapping[str, str]) -> dict:
    return {
        "pool_dir": str(slot.pool_dir),
        "settings": _masked_dict(dict(sorted(slot.settings.items()))),
        "origins": dict(sorted(slot.origins.items())),
        "tuning": _typed(SLOT_SETTINGS, slot.tuning, slot.tuning_origins),
        "hosts": [_masked_host(h, env) for h in slot.hosts],
    }


def _aligned(rows: list[tuple[str, str, str]], indent: str) -> list[str]:
    width = max((len(k) for k, _, _ in rows), default=0)
    vwidth = min(max((len(v) for _, v, _ in rows), default=0), 40)
    return [f"{indent}{key:<{width}} = {value:<{vwidth}}" + (f"    ({origin})" if origin else "")
            for key, value, origin in rows]


def _typed_rows(typed: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str, str]]:
    return [(name, item["value"], item["from"] + (f"; {item['status']}" if item["status"] else ""))
            for name, item in typed.items()]


def format_masked(view: Mapping[str, Any]) -> str:
    """A human-readable rendering of ``masked()`` for ``qaworker check-config``: every value qaworker
    reads and where it came from (file and section, environment variable, command line, default)."""
    lines = [f"config files: {', '.join(view['config_files']) or '(none)'}",
             f"client.conf files: {', '.join(view['client_config_files']) or '(none)'}",
             f"prjdir: {view['prjdir']}", f"isotovideo: {view['isotovideo']}",
             f"cache: {view['cache_dir'] or 'disabled'}"
             + (f" (limit {view['cache_limit_gib']:g} GiB)" if view["cache_dir"] else "")]
    if view["metrics"]:
        lines.append(f"metrics: {view['metrics']}")
    for key, value in sorted(view["env"].items()):
        lines.append(f"env {key}={value}")
    lines += ["", "worker-wide, read by qaworker:", *_aligned(_typed_rows(view["tuning"]), "  ")]
    for number, slot in view["slots"].items():
        lines += ["", f"[slot {number}]  pool {slot['pool_dir']}", "  settings, passed into every job (vars.json):"]
        lines += _aligned([(k, v, slot["origins"].get(k, "")) for k, v in slot["settings"].items()], "    ")
        lines += ["  read by qaworker:", *_aligned(_typed_rows(slot["tuning"]), "    ")]
        for host in slot["hosts"]:
            creds = (f"key {host['api_key']} secret {host['api_secret'] or '(none)'} "
                     f"from {host['credentials_from']}") if host["api_key"] else "no API key"
            lines.append(f"  web UI {host['base_url']}: {creds}; share {host['share_dir']}")
            typed = ("RETRIES", "RETRY_DELAY", "RETRY_DELAY_IF_WEBUI_BUSY")
            rows = [(k, value_text(host[k.lower()]), host["origins"].get(k, "")) for k in typed]
            rows += [(k, v, host["origins"].get(k, "")) for k, v in host["settings"].items() if k not in typed]
            rows.append(("proxy", host["proxy"]["value"], host["proxy"]["from"]))  # HTTP(S)_PROXY, NO_PROXY
            lines += _aligned(rows, "    ")
    return "\n".join(lines)
