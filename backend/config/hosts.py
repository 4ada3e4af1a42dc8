"""Web UI hosts of a slot: URL, ``[<host>]`` section, credentials (PROTOCOL.md §2.6, §4 step 7)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from backend.config.errors import ConfigError
from backend.config.ini import IniData, IniEntry, apply_entries
from backend.config.model import CliOptions, HostConfig
from backend.config.tuning import SLOT_SETTINGS, SlotTuning, bad_value

# the keys a [<host>] section may hold; anything else there is ignored (and warned about)
HOST_SECTION_KEYS = ("SHARE_DIRECTORY", "TESTPOOLSERVER", "RETRY_DELAY", "RETRY_DELAY_IF_WEBUI_BUSY", "RETRIES")
_HOST_TYPED = {s.name: s for s in SLOT_SETTINGS if s.name in HOST_SECTION_KEYS}


def normalise_host(host: str) -> str:
    """``http://host[:port]`` for a bare host; scheme + netloc of a URL; no trailing slash."""
    url = host if "/" in host else f"http://{host}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a web UI host: {host!r}")
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    return f"{parts.scheme.lower()}://{netloc}"


def client_conf_sections(configured: str, base_url: str) -> list[str]:
    """client.conf section names for a host, most specific first. The Perl worker only looks at the
    bare host name; host:port and URL sections (as written by Python clients) are accepted too."""
    hostport = base_url.split("://", 1)[1]
    bare = urlsplit(base_url).hostname or hostport
    if hostport.startswith("["):
        bare = hostport.rsplit("]", 1)[0] + "]"
    names = [configured, base_url, base_url + "/", hostport, bare]
    return list(dict.fromkeys(names))


def _last_value(entries: list[IniEntry], key: str) -> str | None:
    values = [e.value for e in entries if e.key == key]
    return values[-1] if values else None


def find_credentials(client: IniData, configured: str, base_url: str) -> tuple[str | None, str | None, str]:
    """(key, secret, "file [section]") of the most specific client.conf section that has either."""
    for section in client_conf_sections(configured, base_url):
        if client.has(section):
            entries = client.sections[section]
            key, secret = _last_value(entries, "KEY"), _last_value(entries, "SECRET")
            if key or secret:
                return key, secret, f"{client.section_files[section]} [{section}]"
    return None, None, ""


def _credentials(configured: str, base_url: str, client: IniData, cli: CliOptions,
                 environ: Mapping[str, str]) -> tuple[str | None, str | None, str]:
    """Key and secret, each on its own: CLI > environment > client.conf. Only one of the two is a
    config error naming the host (the web UI would answer "403 ... no api key" with the key there)."""
    key, secret, source = find_credentials(client, configured, base_url)
    key_from = secret_from = source
    for value, origin, is_key in ((environ.get("OPENQA_API_KEY"), "env", True),
                                  (environ.get("OPENQA_API_SECRET"), "env", False),
                                  (cli.apikey, "cli", True), (cli.apisecret, "cli", False)):
        if value and is_key:
            key, key_from = value, origin
        elif value:
            secret, secret_from = value, origin
    names = {"cli": "--apikey/--apisecret", "env": "OPENQA_API_KEY/OPENQA_API_SECRET"}
    if key and not secret:
        raise ConfigError(f"web UI {configured}: API key from {names.get(key_from, key_from)} but no API secret "
                          "(client.conf 'secret', OPENQA_API_SECRET or --apisecret)")
    if secret and not key:
        raise ConfigError(f"web UI {configured}: API secret from {names.get(secret_from, secret_from)} but no "
                          "API key (client.conf 'key', OPENQA_API_KEY or --apikey)")
    return key or None, secret or None, key_from if key else ""


def _host_value(name: str, section: Mapping[str, str], section_origins: Mapping[str, str],
                tuning: SlotTuning, tuning_origins: Mapping[str, str]) -> tuple[object, str]:
    """A retry setting for one host: ``[<host>]`` > the slot's value (whose environment variable, if
    it set the value, beats the section)."""
    setting = _HOST_TYPED[name]
    slot_value, slot_origin = getattr(tuning, setting.attr or ""), tuning_origins.get(name, "default")
    raw = section.get(name)
    if raw is None or raw.strip() == "" or slot_origin.startswith("environment "):
        return slot_value, slot_origin
    try:
        return setting.convert(raw), section_origins[name]
    except ValueError as exc:
        raise ConfigError(bad_value(setting, section_origins[name], raw, str(exc))) from None


def build_host(configured: str, ini: IniData, client: IniData, tuning: SlotTuning,
               tuning_origins: Mapping[str, str], prjdir: Path, cli: CliOptions,
               environ: Mapping[str, str]) -> HostConfig:
    try:
        base_url = normalise_host(configured)
    except ValueError as exc:
        raise ConfigError(f"HOST: {exc}") from None
    section: dict[str, str] = {}
    section_origins: dict[str, str] = {}
    apply_entries(section, section_origins, ini.sections.get(configured, []), configured)
    values: dict[str, object] = {}
    origins: dict[str, str] = dict(section_origins)
    for name in _HOST_TYPED:
        values[name], origins[name] = _host_value(name, section, section_origins, tuning, tuning_origins)
    share = section.get("SHARE_DIRECTORY")
    # relative SHARE_DIRECTORY values are resolved against the initial cwd (§1.4)
    share_dir = Path(os.path.abspath(share)) if share else prjdir / "share"
    origins.setdefault("SHARE_DIRECTORY", "default")
    api_key, api_secret, source = _credentials(configured, base_url, client, cli, environ)
    return HostConfig(
        configured=configured, base_url=base_url, api_key=api_key, api_secret=api_secret,
        settings=section, share_dir=share_dir, testpoolserver=section.get("TESTPOOLSERVER") or None,
        retry_delay=float(values["RETRY_DELAY"]),  # type: ignore[arg-type]
        retry_delay_if_webui_busy=float(values["RETRY_DELAY_IF_WEBUI_BUSY"]),  # type: ignore[arg-type]
        retries=int(values["RETRIES"]),  # type: ignore[call-overload]
        credentials_from=source, origins=origins)


def detect_worker_hostname(settings: dict[str, str], hosts: list[HostConfig],
                           origins: dict[str, str] | None = None) -> None:
    """§4 step 2: explicit value as is; ``localhost`` if every web UI is local; else the FQDN if it
    has a dot (otherwise left unset: the availability check reports the worker as broken)."""
    origins = {} if origins is None else origins
    if settings.get("WORKER_HOSTNAME"):
        return
    if all(h.is_local for h in hosts):
        settings["WORKER_HOSTNAME"] = "localhost"
        origins["WORKER_HOSTNAME"] = "detected: every web UI is local"
        return
    import socket  # only needed for remote web UIs

    fqdn = socket.getfqdn()
    if "." in fqdn:
        settings["WORKER_HOSTNAME"] = fqdn
        origins["WORKER_HOSTNAME"] = "detected: the FQDN"
