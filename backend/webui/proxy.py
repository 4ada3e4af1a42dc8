"""The httpx proxy mounts of an ``ApiClient`` (issue 12 row 8); what the settings mean: backend/config/proxy.py.

Building a transport can take milliseconds (TLS state): ``build_mounts`` runs in a thread.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from backend.config.proxy import ProxySettings, is_loopback

__all__ = ["ProxySettings", "build_mounts", "is_loopback"]


def build_mounts(settings: ProxySettings, verify: object, direct: tuple[str, ...] = ()
                 ) -> dict[str, httpx.AsyncBaseTransport | None]:
    """The httpx ``mounts`` for ``settings``; the loopback ones of the ``direct`` URLs (the web UI) are
    never proxied either. Blocking (transports load TLS state): call it in a thread."""
    patterns = settings.mount_patterns()
    for url in direct:
        host = urlsplit(url).hostname or ""
        if is_loopback(host):
            patterns[f"all://[{host}]" if ":" in host else f"all://{host}"] = None
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    for pattern, proxy in patterns.items():
        mounts[pattern] = None if proxy is None else httpx.AsyncHTTPTransport(proxy=proxy, verify=verify)
    return mounts
