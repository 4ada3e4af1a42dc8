"""The configuration as the rest of qaworker sees it: ``WorkerConfig`` > ``SlotConfig`` > ``HostConfig``
(plain dataclasses, built once by ``load_config``), and ``CliOptions`` (pydantic, at the edge)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.config.errors import ConfigError
from backend.config.proxy import ProxySettings
from backend.config.tuning import SlotTuning, WorkerTuning, resolve
from backend.config.values import number_or


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
    # effective REST retry policy for this host: [<host>] section > slot settings > defaults
    # (OPENQA_WORKER_CONNECT_RETRIES beats both for ``retries``); computed once, at load
    retry_delay: float = 5.0
    retry_delay_if_webui_busy: float = 60.0
    retries: int = 60
    credentials_from: str = ""  # where api_key came from: "cli", "env", a client.conf path + section, ""
    origins: dict[str, str] = field(default_factory=dict)  # RETRY_DELAY, ... -> where the value came from

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
    # the typed values the worker acts on; derived from ``settings`` when a config is built in code
    tuning: SlotTuning = None  # type: ignore[assignment]
    tuning_origins: dict[str, str] = field(default_factory=dict)  # setting name -> where its value came from

    def __post_init__(self) -> None:
        self._derived_tuning = self.tuning is None
        if self.tuning is None:
            self.tuning, self.tuning_origins = resolve(SlotTuning, self.settings, self.origins, strict=False)
            self._derive_host_retries()

    def _derive_host_retries(self) -> None:
        """Hosts built in code (tests, the demo) get the retry policy load_config would compute."""
        assert self.tuning is not None
        for host in self.hosts:
            if host.origins:
                continue  # computed at load
            own, _ = resolve(SlotTuning, {**self.settings, **host.settings}, strict=False, quiet=True)
            host.retries, host.retry_delay = self.tuning.retries, own.retry_delay
            host.retry_delay_if_webui_busy = own.retry_delay_if_webui_busy

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self.settings.get(key)
        return default if value is None or value == "" else value

    # Deprecated: use ``tuning``; kept until the remaining callers have moved (see the config report).
    def get_int(self, key: str, default: int) -> int:
        return int(number_or(self.settings.get(key), default, integer=True) or 0)

    def get_float(self, key: str, default: float) -> float:
        return float(number_or(self.settings.get(key), default) or 0.0)

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
    cache_limit_gib: float = 50.0  # = tuning.cache_limit_gib
    cache_min_free_percentage: float | None = None  # = tuning.cache_min_free_percentage
    log_format: str = "text"  # text or json
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)  # the environment the config was read with (masked)
    client_config_files: list[Path] = field(default_factory=list)  # client.conf + drop-ins read
    tuning: WorkerTuning = None  # type: ignore[assignment]
    tuning_origins: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # one line each: unknown or unsupported keys

    @property
    def proxies(self) -> ProxySettings:
        """HTTP(S)_PROXY / NO_PROXY as read at load time (issue 12 row 8)."""
        return ProxySettings.from_env(self.env)

    def __post_init__(self) -> None:
        # A config built in code (tests, the demo) passes the environment here: interpret it once.
        for slot in self.slots:
            if getattr(slot, "_derived_tuning", False) and self.env:
                slot.tuning, slot.tuning_origins = resolve(SlotTuning, slot.settings, slot.origins, self.env,
                                                           strict=False)
                slot._derive_host_retries()
        if self.tuning is None:
            first = self.slots[0] if self.slots else None
            tuning, self.tuning_origins = resolve(WorkerTuning, first.settings if first else {},
                                                  first.origins if first else {}, self.env, strict=False)
            self.tuning = dataclasses.replace(tuning, cache_limit_gib=self.cache_limit_gib,
                                              cache_min_free_percentage=self.cache_min_free_percentage)


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
