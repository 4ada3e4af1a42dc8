"""openQA's HMAC request signing (PROTOCOL.md §3).

X-API-Hash = hex HMAC-SHA1(secret, request_target + str(int_seconds)). The request target is
the path plus ``?query`` exactly as sent on the wire, so we build that string ourselves and give
httpx the very same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from urllib.parse import quote

# Mojo keeps only these characters unescaped in query values; space becomes '+'.
_QUERY_SAFE = "-._*"
# Paths keep '/' and the RFC 3986 unreserved characters; everything else is %XX-escaped.
_PATH_SAFE = "/-._~"

QueryParams = Mapping[str, object] | Iterable[tuple[str, object]] | None


def _pairs(params: QueryParams) -> list[tuple[str, str]]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, list | tuple):
            pairs.extend((str(name), _scalar(v)) for v in value)
        else:
            pairs.append((str(name), _scalar(value)))
    return pairs


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def encode_query(params: QueryParams) -> str:
    """Serialise parameters like Mojo::Parameters: name=value joined by '&', space as '+'."""
    return "&".join(
        f"{quote(n, safe=_QUERY_SAFE).replace('%20', '+')}={quote(v, safe=_QUERY_SAFE).replace('%20', '+')}"
        for n, v in _pairs(params)
    )


def encode_path(path: str) -> str:
    """Percent-encode a path (UTF-8), keeping '/' and already-escaped sequences intact."""
    return quote(path, safe=_PATH_SAFE + "%")


def request_target(path: str, params: QueryParams = None) -> str:
    query = encode_query(params)
    target = encode_path(path)
    return f"{target}?{query}" if query else target


def sign(secret: str, target: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{target}{timestamp}".encode(), hashlib.sha1).hexdigest()


def auth_headers(key: str | None, secret: str | None, target: str, now: float | None = None) -> dict[str, str]:
    """Headers for one request. Without key and secret only the timestamp is sent (auth method None)."""
    timestamp = int(time.time() if now is None else now)
    headers = {"Accept": "application/json", "X-API-Microtime": str(timestamp)}
    if key and secret:
        headers["X-API-Key"] = key
        headers["X-API-Hash"] = sign(secret, target, timestamp)
    return headers


def verify(key_lookup: Mapping[str, str], headers: Mapping[str, str], target: str, now: float | None = None,
           tolerance: float = 300) -> str | None:
    """Server-side check (used by the mock web UI). Returns an error text or None when valid."""
    key = headers.get("X-API-Key") or headers.get("x-api-key")
    if not key:
        return "no api key"
    secret = key_lookup.get(key)
    if secret is None:
        return "api key not found"
    try:
        timestamp = int(headers.get("X-API-Microtime") or headers.get("x-api-microtime") or "")
    except ValueError:
        return "timestamp mismatch"
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return ("timestamp mismatch - check whether clocks on the local host and the web UI host are in sync "
                f"(local host IP: 127.0.0.1, server time: {int(current)}, client time: {timestamp}, "
                f"tolerance: {int(tolerance)}s)")
    given = headers.get("X-API-Hash") or headers.get("x-api-hash") or ""
    if not hmac.compare_digest(given, sign(secret, target, timestamp)):
        return "unknown error (wrong secret?)"
    return None
