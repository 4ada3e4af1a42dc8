"""Worker configuration: workers.ini + client.conf + environment + command line (PROTOCOL.md §2).

Drop-in compatible with the Perl worker. We implement the NEW rules, which are a superset of 2023's
(a 2023 config - one workers.ini with ``[global]`` and ``[<instance>]`` - means the same under both):
lookup groups with drop-ins and ``/usr/etc``, instance lists/ranges, ``[class:NAME]`` sections and
``KEY += value``.

Precedence: CLI > environment > files > defaults. The per-slot settings are resolved by a
pydantic-settings model whose sources are the CLI values, an env source and a custom INI source;
numeric keys are validated there and a bad value becomes a one-line ``ConfigError`` naming the
file, the section and the key.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A bad configuration. The message is one line naming file, section and key."""


@dataclass
class HostConfig:
    """One web UI as configured for a slot."""

    configured: str  # the host string exactly as configured ("localhost", "http://127.0.0.1:9526", ...)
    base_url: str  # normalised "http(s)://host[:port]" without trailing slash
    api_key: str | None = None
    api_secret: str | None = None
    settings: dict[str, str] = field(default_factory=dict)  # the [<host>] section, upper-case keys
    share_dir: Path = Path("/var/lib/openqa/share")
    testpoolserver: str | None = None
    # effective retry delays for this host: [<host>] section > slot settings > defaults
    retry_delay: float = 5.0
    retry_delay_if_webui_busy: float = 60.0
    credentials_from: str = ""  # where api_key came from: "cli", "env", a client.conf path + section, ""

    @property
    def hostname(self) -> str:
        """host[:port] part of the URL (what vars.json calls OPENQA_HOSTNAME)."""
        return self.base_url.split("://", 1)[1]

    @property
    def cache_host(self) -> str:
        """Host part used for the cache directory layout (<CACHEDIRECTORY>/<host>/...)."""
        return self.hostname.rsplit(":", 1)[0] if not self.hostname.startswith("[") else self.hostname

    @property
    def is_local(self) -> bool:
        host = self.cache_host
        return host in ("localhost", "127.0.0.1", "[::1]", "::1")


@dataclass
class SlotConfig:
    """One worker instance (slot): its merged settings (global + instance + class + env)."""

    instance: int
    settings: dict[str, str]  # upper-case keys, HOST removed; copied into every job's settings
    hosts: list[HostConfig]
    pool_dir: Path
    origins: dict[str, str] = field(default_factory=dict)  # key -> where its value came from

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self.settings.get(key)
        return default if value is None or value == "" else value

    def get_int(self, key: str, default: int) -> int:
        try:
            return int(str(self.settings.get(key, "")).strip())
        except ValueError:
            return default

    def get_float(self, key: str, default: float) -> float:
        try:
            return float(str(self.settings.get(key, "")).strip())
        except ValueError:
            return default

    @property
    def worker_classes(self) -> list[str]:
        return [c for c in (self.settings.get("WORKER_CLASS") or "").split(",") if c]


@dataclass
class WorkerConfig:
    """Everything one qaworker process needs."""

    slots: list[SlotConfig]
    isotovideo: str = "/usr/bin/isotovideo"
    no_cleanup: bool = False
    verbose: bool = False
    prjdir: Path = Path("/var/lib/openqa")
    config_files: list[Path] = field(default_factory=list)
    cache_dir: Path | None = None  # CACHEDIRECTORY (global), enables the asset cache
    cache_limit_gib: float = 50.0
    cache_min_free_percentage: float | None = None
    log_format: str = "text"  # text or json
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)  # the OPENQA_* environment seen at load time
    client_config_files: list[Path] = field(default_factory=list)  # client.conf + drop-ins read


# ---------------------------------------------------------------------------------------------------
# Command line values


class CliOptions(BaseModel):
    """The command-line values that influence the configuration (all optional)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None
    apikey: str | None = None
    apisecret: str | None = None
    instance: int | None = Field(default=None, ge=1)
    instances: str | None = None  # "1-4", "1,3", "1-3,7"
    isotovideo: str | None = None
    no_cleanup: bool = False
    verbose: bool = False
    config_dir: Path | None = None
    log_format: Literal["text", "json"] = "text"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_address: str = "127.0.0.1"

    @classmethod
    def parse(cls, **values: Any) -> CliOptions:
        """Like the constructor, but a bad value becomes a ``ConfigError`` naming the option."""
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            option = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "options"
            raise ConfigError(f"{option}: {err['msg']}, got {err.get('input')!r}") from None


# ---------------------------------------------------------------------------------------------------
# INI files (Config::IniFiles dialect): [section], KEY = value, KEY += value, # and ; comments


@dataclass
class IniEntry:
    key: str  # upper-cased
    value: str  # trimmed
    append: bool  # written as "KEY += value"
    file: Path
    line: int


@dataclass
class IniData:
    """All files of one kind (workers.ini or client.conf) merged in order: section -> entries."""

    files: list[Path] = field(default_factory=list)
    sections: dict[str, list[IniEntry]] = field(default_factory=dict)
    section_files: dict[str, Path] = field(default_factory=dict)  # where a section first appeared

    def has(self, section: str) -> bool:
        return section in self.sections


_SECTION_RE = re.compile(r"^\[\s*(.*?)\s*\]$")


def parse_ini_text(text: str, path: Path, into: IniData | None = None) -> IniData:
    """Parse one INI file; later files parsed into the same ``IniData`` override earlier ones."""
    data = into or IniData()
    data.files.append(path)
    section: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _SECTION_RE.match(line)
            if not match or not match.group(1):
                raise ConfigError(f"{path}: line {lineno}: bad section header {line!r}")
            section = match.group(1)
            data.sections.setdefault(section, [])
            data.section_files.setdefault(section, path)
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        append = key.endswith("+")
        key = key[:-1].strip() if append else key
        if not sep or not key:
            raise ConfigError(f"{path}: line {lineno}: expected '[section]' or 'KEY = value', got {line!r}")
        if section is None:
            raise ConfigError(f"{path}: line {lineno}: {key.upper()} is outside of any [section]")
        data.sections[section].append(IniEntry(key.upper(), value.strip(), append, path, lineno))
    return data


def read_ini_files(paths: Iterable[Path]) -> IniData:
    data = IniData()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a UTF-8 text file") from None
        except OSError as exc:
            # the Perl worker silently skips unreadable drop-ins; we at least say so
            log.warning("Ignoring unreadable config file %s: %s", path, exc.strerror)
            continue
        parse_ini_text(text, path, data)
    return data


def apply_entries(target: dict[str, str], origins: dict[str, str], entries: Iterable[IniEntry],
                  section: str) -> None:
    """Apply a section's entries in order: ``=`` sets, ``+=`` appends ``,value``."""
    for entry in entries:
        current = target.get(entry.key)
        value = f"{current},{entry.value}" if entry.append and current else entry.value
        target[entry.key] = value
        origins[entry.key] = f"{entry.file} [{section}]"


# ---------------------------------------------------------------------------------------------------
# File lookup (PROTOCOL.md §2.1)

SYSTEM_CONFIG_DIRS = (Path("/etc/openqa"), Path("/usr/etc/openqa"))
# Not an openQA variable: lets tests and unusual installs replace /etc/openqa:/usr/etc/openqa.
SYSTEM_DIRS_ENV = "QAWORKER_SYSTEM_CONFIG_DIRS"


def _readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def lookup_config_files(name: str, groups: Sequence[Sequence[Path]]) -> list[Path]:
    """The files of the first group that has any: main file + sorted ``<name>.d/*.<ext>`` drop-ins;
    within a group the first directory that has the main file ends the search."""
    ext = name.rsplit(".", 1)[-1]
    for group in groups:
        found: list[Path] = []
        for directory in group:
            main = directory / name
            has_main = _readable(main)
            if has_main:
                found.append(main)
            dropin_dir = directory / f"{name}.d"
            if dropin_dir.is_dir():
                dropins = (p for p in dropin_dir.iterdir() if p.name.endswith(f".{ext}") and p.is_file())
                found.extend(sorted(dropins))
            if has_main:
                break
        if found:
            return found
    return []


def config_groups(name: str, environ: Mapping[str, str], config_dir: Path | None) -> list[list[Path]]:
    if config_dir is not None:
        return [[Path(config_dir)]]
    groups: list[list[Path]] = []
    if environ.get("OPENQA_CONFIG"):
        groups.append([Path(environ["OPENQA_CONFIG"])])
    if name == "client.conf":  # workers.ini lookup passes no home directory
        home = environ.get("HOME") or str(Path.home())
        groups.append([Path(home) / ".config" / "openqa"])
    system = environ.get(SYSTEM_DIRS_ENV)
    groups.append([Path(p) for p in system.split(":") if p] if system else list(SYSTEM_CONFIG_DIRS))
    return groups


# ---------------------------------------------------------------------------------------------------
# Instance sections: "3", "1-5", "1,3,7-9"

_INSTANCE_PART_RE = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


def parse_instance_spec(spec: str) -> list[int]:
    """Numbers of an instance list/range; ``ValueError`` with a reason if it is not one."""
    numbers: list[int] = []
    for part in spec.split(","):
        match = _INSTANCE_PART_RE.match(part.strip())
        if not match:
            raise ValueError(f"{part.strip()!r} is not a number or range")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low < 1 or high < low:
            raise ValueError(f"{part.strip()!r} is not a valid range")
        numbers.extend(n for n in range(low, high + 1) if n not in numbers)
    return numbers


def _looks_like_instance_section(name: str) -> bool:
    """A section meant as an instance list (digits first, no host-like characters)."""
    return bool(name) and name[0].isdigit() and not any(c in name for c in ".:/[")


def classify_sections(ini: IniData, host_strings: set[str]) -> dict[str, list[int]]:
    """Instance sections -> their numbers; a malformed one is a ``ConfigError``."""
    result: dict[str, list[int]] = {}
    for name in ini.sections:
        if name == "global" or name.startswith("class:") or name in host_strings:
            continue
        if not _looks_like_instance_section(name):
            continue  # a [<host>] section for a host that is not used
        try:
            result[name] = parse_instance_spec(name)
        except ValueError as exc:
            raise ConfigError(f"{ini.section_files[name]}: [{name}]: bad instance section name: {exc} "
                              "(expected e.g. [3], [1-5] or [1,3,7-9])") from None
    return result


# ---------------------------------------------------------------------------------------------------
# Validation of the settings we read ourselves


def _check_number(value: str | None) -> str | None:
    if value is None or value.strip() == "":
        return value
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError("expected a non-negative number")
    return value


def _check_integer(value: str | None) -> str | None:
    if value is None or value.strip() == "":
        return value
    if not re.fullmatch(r"\s*\d+\s*", value):
        raise ValueError("expected a whole number")
    return value


NumberStr = Annotated[str | None, AfterValidator(_check_number)]
IntegerStr = Annotated[str | None, AfterValidator(_check_integer)]

DEFAULTS = {"CRITICAL_LOAD_AVG_THRESHOLD": "40", "RETRY_DELAY": "5", "RETRY_DELAY_IF_WEBUI_BUSY": "60"}


class HostSectionSettings(BaseModel):
    """The numeric keys of a ``[<host>]`` section; anything else passes through."""

    model_config = ConfigDict(extra="allow")
    RETRY_DELAY: NumberStr = None
    RETRY_DELAY_IF_WEBUI_BUSY: NumberStr = None


@dataclass
class _LoadContext:
    """What the settings sources of one slot see (set per slot via a context variable)."""

    cli: dict[str, str]
    env: dict[str, str]
    ini: dict[str, str]


_CONTEXT: contextvars.ContextVar[_LoadContext] = contextvars.ContextVar("qaworker_config_context")

# environment variables that override worker settings (PROTOCOL.md §2.2 step 4)
ENV_OVERRIDES = {"OPENQA_WORKER_LOG_DIR": "LOG_DIR",
                 "OPENQA_WORKER_TERMINATE_AFTER_JOBS_DONE": "TERMINATE_AFTER_JOBS_DONE"}


class _DictSource(PydanticBaseSettingsSource):
    """A settings source that returns one prepared dict (CLI, env or the merged INI sections)."""

    def __init__(self, settings_cls: type[BaseSettings], part: str) -> None:
        super().__init__(settings_cls)
        self.part = part

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is returned by __call__

    def __call__(self) -> dict[str, Any]:
        return dict(getattr(_CONTEXT.get(), self.part))


class SlotSettings(BaseSettings):
    """Effective settings of one slot. Values stay strings (they go into vars.json verbatim);
    the keys we interpret ourselves are checked to hold numbers."""

    model_config = SettingsConfigDict(extra="allow", case_sensitive=True)

    CACHELIMIT: NumberStr = None
    CACHE_MIN_FREE_PERCENTAGE: NumberStr = None
    CACHEWORKERS: IntegerStr = None
    CRITICAL_LOAD_AVG_THRESHOLD: NumberStr = DEFAULTS["CRITICAL_LOAD_AVG_THRESHOLD"]
    RETRIES: IntegerStr = None
    RETRY_DELAY: NumberStr = DEFAULTS["RETRY_DELAY"]
    RETRY_DELAY_IF_WEBUI_BUSY: NumberStr = DEFAULTS["RETRY_DELAY_IF_WEBUI_BUSY"]
    UPLOAD_CHUNK_SIZE: IntegerStr = None
    UPLOAD_RETRIES: IntegerStr = None
    STATUS_MIN_INTERVAL: NumberStr = None
    STATUS_MAX_INTERVAL: NumberStr = None
    LOCK_LIMIT: IntegerStr = None
    LOCK_EXPIRATION: NumberStr = None
    IPMI_AUTOSHUTDOWN_INTERVAL: NumberStr = None
    MAX_JOB_TIME: NumberStr = None
    MAX_SETUP_TIME: NumberStr = None
    TIMEOUT_SCALE: NumberStr = None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   env_settings: Any, dotenv_settings: Any,
                                   file_secret_settings: Any) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI > env > workers.ini > field defaults
        return (_DictSource(settings_cls, "cli"), _DictSource(settings_cls, "env"),
                _DictSource(settings_cls, "ini"))


def _validation_message(exc: ValidationError, origins: Mapping[str, str]) -> str:
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else "?"
    reason = str(err["msg"]).removeprefix("Value error, ")
    return f"{origins.get(key, 'settings')} {key}: {reason}, got {err.get('input')!r}"


# ---------------------------------------------------------------------------------------------------
# Per-slot merge (PROTOCOL.md §2.2)


def merge_instance(ini: IniData, instance: int, instance_sections: Mapping[str, list[int]]
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """[global] < instance sections < [class:C] (adds only). Returns (settings, origins)."""
    merged: dict[str, str] = {}
    origins: dict[str, str] = {}
    apply_entries(merged, origins, ini.sections.get("global", []), "global")
    for name, numbers in instance_sections.items():
        if instance in numbers:
            apply_entries(merged, origins, ini.sections[name], name)
    classes = [c.strip() for c in (merged.get("WORKER_CLASS") or "").split(",") if c.strip()]
    for cls_name in classes:
        section = f"class:{cls_name}"
        if not ini.has(section):
            continue
        own: dict[str, str] = {}
        own_origins: dict[str, str] = {}
        apply_entries(own, own_origins, ini.sections[section], section)
        for key, value in own.items():
            if key not in merged:  # class sections never override
                merged[key] = value
                origins[key] = own_origins[key]
    return merged, origins


_ARCH_CLASSES = {
    "i586": ["i586"], "i686": ["i686", "i586"], "x86_64": ["x86_64", "i686", "i586"],
    "ppc": ["ppc"], "ppc64": ["ppc64le", "ppc64", "ppc"], "ppc64le": ["ppc64le", "ppc64", "ppc"],
    "s390": ["s390"], "s390x": ["s390x", "s390"], "aarch64": ["aarch64"],
}
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def default_worker_class(arch: str | None = None) -> str:
    """``qemu_<arch>`` for the CPU and its compatible archs (PROTOCOL.md §5.1)."""
    arch = (arch or platform.machine() or "x86_64").strip()
    arch = _ARCH_ALIASES.get(arch.lower(), arch)
    return ",".join(f"qemu_{a}" for a in _ARCH_CLASSES.get(arch, [arch]))


def _env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    return {key: environ[var] for var, key in ENV_OVERRIDES.items() if environ.get(var, "") != ""}


def resolve_slot_settings(ini: IniData, instance: int, instance_sections: Mapping[str, list[int]],
                          cli: dict[str, str], environ: Mapping[str, str]
                          ) -> tuple[dict[str, str], dict[str, str]]:
    """The slot's effective settings (HOST still included) and where each came from."""
    file_values, origins = merge_instance(ini, instance, instance_sections)
    env_values = _env_overrides(environ)
    for key in env_values:
        origins[key] = "environment " + next(v for v, k in ENV_OVERRIDES.items() if k == key)
    for key in cli:
        origins[key] = "command line"
    token = _CONTEXT.set(_LoadContext(cli=cli, env=env_values, ini=file_values))
    try:
        model = SlotSettings()
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, origins)) from None
    finally:
        _CONTEXT.reset(token)
    settings = {k: v for k, v in model.model_dump().items() if v is not None}
    for key, value in DEFAULTS.items():
        origins.setdefault(key, "default")
        settings.setdefault(key, value)
    if not settings.get("WORKER_CLASS"):
        settings["WORKER_CLASS"] = default_worker_class(settings.get("ARCH"))
        origins["WORKER_CLASS"] = "default (CPU architecture)"
    return settings, origins


# ---------------------------------------------------------------------------------------------------
# Web UI hosts and credentials (PROTOCOL.md §2.6, §4 step 7)


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
    for section in client_conf_sections(configured, base_url):
        if client.has(section):
            entries = client.sections[section]
            key, secret = _last_value(entries, "KEY"), _last_value(entries, "SECRET")
            if key or secret:
                return key, secret, f"{client.section_files[section]} [{section}]"
    return None, None, ""


def build_host(configured: str, ini: IniData, client: IniData, slot_settings: Mapping[str, str],
               prjdir: Path, cli: CliOptions, environ: Mapping[str, str]) -> HostConfig:
    try:
        base_url = normalise_host(configured)
    except ValueError as exc:
        raise ConfigError(f"HOST: {exc}") from None
    section: dict[str, str] = {}
    origins: dict[str, str] = {}
    apply_entries(section, origins, ini.sections.get(configured, []), configured)
    try:
        HostSectionSettings.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, origins)) from None
    share = section.get("SHARE_DIRECTORY")
    # relative SHARE_DIRECTORY values are resolved against the initial cwd (§1.4)
    share_dir = Path(os.path.abspath(share)) if share else prjdir / "share"
    key, secret, source = find_credentials(client, configured, base_url)
    api_key, api_secret = key, secret
    if environ.get("OPENQA_API_KEY"):
        api_key, source = environ["OPENQA_API_KEY"], "env"
    if environ.get("OPENQA_API_SECRET"):
        api_secret = environ["OPENQA_API_SECRET"]
    if cli.apikey:
        api_key, source = cli.apikey, "cli"
    if cli.apisecret:
        api_secret = cli.apisecret

    def delay(name: str) -> float:
        return float(section.get(name) or slot_settings.get(name) or DEFAULTS[name])

    return HostConfig(
        configured=configured, base_url=base_url, api_key=api_key or None, api_secret=api_secret or None,
        settings=section, share_dir=share_dir, testpoolserver=section.get("TESTPOOLSERVER") or None,
        retry_delay=delay("RETRY_DELAY"), retry_delay_if_webui_busy=delay("RETRY_DELAY_IF_WEBUI_BUSY"),
        credentials_from=source)


def detect_worker_hostname(settings: dict[str, str], hosts: list[HostConfig]) -> None:
    """§4 step 2: explicit value as is; ``localhost`` if every web UI is local; else the FQDN if it
    has a dot (otherwise left unset: the availability check reports the worker as broken)."""
    if settings.get("WORKER_HOSTNAME"):
        return
    if all(h.is_local for h in hosts):
        settings["WORKER_HOSTNAME"] = "localhost"
        return
    import socket  # only needed for remote web UIs

    fqdn = socket.getfqdn()
    if "." in fqdn:
        settings["WORKER_HOSTNAME"] = fqdn


# ---------------------------------------------------------------------------------------------------
# Public entry points

# environment variables without the OPENQA_ prefix that the worker side honours (§2.4)
_OTHER_ENV = ("MOJO_CGROUP_FS", "OVS_DBUS_SERVICE_NAME", "VNCPORT_OFFSET")


def slot_numbers(options: CliOptions) -> list[int]:
    if options.instances and options.instance is not None:
        raise ConfigError("use either --instance or --instances, not both")
    if options.instances:
        try:
            return parse_instance_spec(options.instances)
        except ValueError as exc:
            raise ConfigError(f"--instances: {exc} (expected e.g. 1-4 or 1,3,7-9)") from None
    return [options.instance or 1]


def _float_or(value: str | None, default: float | None) -> float | None:
    return float(value) if value not in (None, "") else default


def load_config(options: CliOptions | None = None, *,
                environ: Mapping[str, str] | None = None) -> WorkerConfig:
    """Read workers.ini, client.conf (+ drop-ins), the environment and the CLI into a ``WorkerConfig``.

    Synchronous and reads files: call it before the event loop or via ``asyncio.to_thread``.
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
    instance_sections = classify_sections(ini, _all_host_strings(ini, options))

    slots = [_build_slot(n, ini, client, instance_sections, cli_values, options, env, prjdir)
             for n in instances]
    first = slots[0].settings
    cache_dir = env.get("OPENQA_CACHE_DIR") or first.get("CACHEDIRECTORY")
    isotovideo = options.isotovideo
    return WorkerConfig(
        slots=slots,
        isotovideo=os.path.abspath(isotovideo) if isotovideo else "/usr/bin/isotovideo",
        no_cleanup=options.no_cleanup,
        verbose=options.verbose,
        prjdir=prjdir,
        config_files=list(ini.files),
        client_config_files=list(client.files),
        cache_dir=Path(cache_dir) if cache_dir else None,
        cache_limit_gib=_float_or(first.get("CACHELIMIT"), 50.0) or 0.0,
        cache_min_free_percentage=_float_or(first.get("CACHE_MIN_FREE_PERCENTAGE"), None),
        log_format=options.log_format,
        metrics_port=options.metrics_port,
        metrics_address=options.metrics_address,
        env={k: v for k, v in env.items() if k.startswith("OPENQA_") or k in _OTHER_ENV},
    )


def _all_host_strings(ini: IniData, options: CliOptions) -> set[str]:
    """Every host named anywhere (HOST in any section, --host): their sections are not instances."""
    hosts = set((options.host or "").split())
    for entries in ini.sections.values():
        hosts.update(h for e in entries if e.key == "HOST" for h in e.value.split())
    return hosts


def _build_slot(instance: int, ini: IniData, client: IniData, instance_sections: Mapping[str, list[int]],
                cli_values: dict[str, str], options: CliOptions, env: Mapping[str, str],
                prjdir: Path) -> SlotConfig:
    settings, origins = resolve_slot_settings(ini, instance, instance_sections, cli_values, env)
    host_list = (settings.pop("HOST", "") or "localhost").split() or ["localhost"]
    origins.pop("HOST", None)
    hosts = [build_host(h, ini, client, settings, prjdir, options, env) for h in dict.fromkeys(host_list)]
    detect_worker_hostname(settings, hosts)
    return SlotConfig(instance=instance, settings=settings, hosts=hosts,
                      pool_dir=prjdir / "pool" / str(instance), origins=origins)


# ---------------------------------------------------------------------------------------------------
# Display with secrets masked (check-config)

MASK = "****"


def is_secret_key(key: str) -> bool:
    upper = key.upper()
    return "SECRET" in upper or "PASSWORD" in upper


def mask_api_key(key: str | None) -> str | None:
    return None if not key else f"{key[:4]}…"


def _masked_dict(values: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if is_secret_key(key):
            out[key] = MASK
        elif key.upper() == "OPENQA_API_KEY":
            out[key] = mask_api_key(value) or ""
        else:
            out[key] = value
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
        "slots": {str(slot.instance): _masked_slot(slot) for slot in config.slots},
    }


def _masked_slot(slot: SlotConfig) -> dict:
    return {
        "pool_dir": str(slot.pool_dir),
        "settings": _masked_dict(dict(sorted(slot.settings.items()))),
        "origins": dict(sorted(slot.origins.items())),
        "hosts": [{
            "host": h.configured,
            "base_url": h.base_url,
            "api_key": mask_api_key(h.api_key),
            "api_secret": MASK if h.api_secret else None,
            "credentials_from": h.credentials_from or None,
            "share_dir": str(h.share_dir),
            "testpoolserver": h.testpoolserver,
            "retry_delay": h.retry_delay,
            "retry_delay_if_webui_busy": h.retry_delay_if_webui_busy,
            "settings": _masked_dict(h.settings),
        } for h in slot.hosts],
    }


def format_masked(view: Mapping[str, Any]) -> str:
    """A human-readable rendering of ``masked()`` for ``qaworker check-config``."""
    lines = [f"config files: {', '.join(view['config_files']) or '(none)'}",
             f"client.conf files: {', '.join(view['client_config_files']) or '(none)'}",
             f"prjdir: {view['prjdir']}", f"isotovideo: {view['isotovideo']}",
             f"cache: {view['cache_dir'] or 'disabled'}"
             + (f" (limit {view['cache_limit_gib']:g} GiB)" if view["cache_dir"] else "")]
    if view["metrics"]:
        lines.append(f"metrics: {view['metrics']}")
    for key, value in sorted(view["env"].items()):
        lines.append(f"env {key}={value}")
    for number, slot in view["slots"].items():
        lines += ["", f"[slot {number}]  pool {slot['pool_dir']}"]
        width = max((len(k) for k in slot["settings"]), default=0)
        for key, value in slot["settings"].items():
            origin = slot["origins"].get(key, "")
            lines.append(f"  {key:<{width}} = {value}" + (f"    ({origin})" if origin else ""))
        for host in slot["hosts"]:
            creds = (f"key {host['api_key']} secret {host['api_secret'] or '(none)'} "
                     f"from {host['credentials_from']}") if host["api_key"] else "no API key"
            lines.append(f"  web UI {host['base_url']}: {creds}; share {host['share_dir']}")
            for key, value in host["settings"].items():
                lines.append(f"    {key} = {value}")
    return "\n".join(lines)
