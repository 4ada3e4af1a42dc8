"""HTTP(S) proxies for web UI and asset traffic, as upstream's UserAgent takes them from the environment.

``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` (or their lower-case forms, upper-case winning) come from the
configuration (``WorkerConfig.env``, read once by ``load_config``), never from ``os.environ`` behind its
back. A loopback web UI is never proxied; ``NO_PROXY`` takes ``*``, host names (a leading ``.`` or
``*.`` = the domain and its subdomains), IP addresses and ``scheme://host`` entries.

What the settings mean lives here (``ProxySettings``, also shown by ``check-config``); the httpx
transports are built by backend/webui/proxy.py, in a thread. The websocket goes through the same proxy
(HTTP CONNECT).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _variable(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name) or env.get(name.lower())
    return value.strip() if value and value.strip() else None


@dataclass(frozen=True)
class ProxySettings:
    http: str | None = None  # for http:// (and ws://) URLs
    https: str | None = None  # for https:// (and wss://) URLs
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxySettings:
        no_proxy = tuple(e.strip() for e in (_variable(env, "NO_PROXY") or "").split(",") if e.strip())
        return cls(_variable(env, "HTTP_PROXY"), _variable(env, "HTTPS_PROXY"), no_proxy)

    @property
    def configured(self) -> bool:
        return bool(self.http or self.https)

    def _excluded(self, scheme: str, host: str) -> bool:
        host = host.strip("[]").lower()
        for entry in self.no_proxy:
            entry = entry.lower()
            if entry == "*":
                return True
            if "://" in entry:
                parts = urlsplit(entry)
                if parts.scheme == scheme and (parts.hostname or "") == host:
                    return True
                continue
            name = entry.strip("[]").removeprefix("*").rstrip(".")
            if name.startswith("."):
                if host.endswith(name) or host == name[1:]:
                    return True
            elif host == name or host.endswith("." + name):
                return True
        return False

    def origin(self, url: str, env: Mapping[str, str]) -> str:
        """Why ``url`` goes direct or through which proxy, for check-config."""
        secure = urlsplit(url).scheme in ("https", "wss")
        name = "HTTPS_PROXY" if secure else "HTTP_PROXY"
        if self.proxy_for(url) is not None:
            return f"environment {name if env.get(name, '').strip() else name.lower()}"
        if (self.https if secure else self.http) is None:
            return f"{name} unset"
        return "loopback" if is_loopback(urlsplit(url).hostname or "") else "NO_PROXY"

    def proxy_for(self, url: str) -> str | None:
        """The proxy for ``url`` (http/https/ws/wss), or None: direct."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme in ("https", "wss")
        proxy = self.https if secure else self.http
        if proxy is None or is_loopback(host) or self._excluded("https" if secure else "http", host):
            return None
        return proxy

    def mount_patterns(self) -> dict[str, str | None]:
        """httpx mount pattern -> proxy URL (None: direct), most specific patterns first."""
        patterns: dict[str, str | None] = {}
        for name in ("localhost", "127.0.0.1", "[::1]"):
            patterns[f"all://{name}"] = None
        for entry in self.no_proxy:
            if entry == "*":
                return {"all://": None}
            if "://" in entry:
                patterns[entry] = None
                continue
            name = entry.strip("[]").removeprefix("*").removeprefix(".").rstrip(".")
            try:
                address = ipaddress.ip_address(name)
                patterns[f"all://[{name}]" if address.version == 6 else f"all://{name}"] = None
            except ValueError:
                patterns[f"all://{name}"] = None
                patterns[f"all://*.{name}"] = None
        if self.http:
            patterns["http://"] = self.http
        if self.https:
            patterns["https://"] = self.https
        return patterns
