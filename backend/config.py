"""Worker configuration: workers.ini + client.conf + environment + command line (PROTOCOL.md §2).

The loader is being written; the dataclasses below are the contract the rest of the backend uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
