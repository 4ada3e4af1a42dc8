"""Signed, retrying HTTP client for one web UI (PROTOCOL.md §3, §4 step 7, §5.3, §15.2).

Every request is signed with the HMAC headers and classified on failure:
- connection errors, 5xx, 408/425/429/490/598 are retried (``RetryPolicy``), honouring
  ``Retry-After``; "busy" answers (408/425/502/503/504/598, timeouts) wait ``busy_delay``;
- any other 4xx is final.
When the attempts run out an ``ApiError`` carries the text openQA uses in reasons
(``<code> response: <error>`` or ``Connection error: <message>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio._backends._asyncio  # noqa: F401 - httpx imports these lazily (first client, first request; ~40 ms):
import httpcore  # noqa: F401 - import them with this module, not on the event loop
import httpx

from backend.config import HostConfig, SlotTuning
from backend.config.tuning import resolve
from backend.webui.auth import QueryParams, auth_headers, request_target
from backend.webui.proxy import ProxySettings, build_mounts

log = logging.getLogger(__name__)

BUSY_CODES = frozenset({408, 425, 502, 503, 504, 598})
RETRIABLE_4XX = frozenset({408, 425, 429, 490})


class ApiError(Exception):
    """A request that failed for good. ``str()`` is the text used in job reasons."""

    def __init__(self, message: str, status: int | None = None, retriable: bool = False,
                 body: Any = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retriable = retriable
        self.body = body
        self.retry_after = retry_after  # the server's Retry-After, for callers that retry themselves

    @property
    def is_client_error(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


@dataclass
class RetryPolicy:
    attempts: int = 60  # RETRIES / OPENQA_WORKER_CONNECT_RETRIES
    delay: float = 5.0  # RETRY_DELAY
    busy_delay: float = 60.0  # RETRY_DELAY_IF_WEBUI_BUSY
    max_retry_after: float = 300.0  # never wait longer than this for one Retry-After

    @classmethod
    def from_host(cls, host: HostConfig) -> RetryPolicy:
        """The host's policy as the config computed it once at load."""
        return cls(attempts=host.retries, delay=host.retry_delay, busy_delay=host.retry_delay_if_webui_busy)

    @classmethod
    def from_settings(cls, settings: dict[str, str], env: dict[str, str] | None = None) -> RetryPolicy:
        """Deprecated (use ``from_host``): the same values from raw settings, via the config's parser."""
        tuning, _ = resolve(SlotTuning, settings, env=env or {}, strict=False, quiet=True)
        return cls(attempts=tuning.retries, delay=tuning.retry_delay, busy_delay=tuning.retry_delay_if_webui_busy)


def error_text(response: httpx.Response) -> str:
    """openQA's ``<code> response: <error>`` form."""
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("error") or body.get("message") or "")
    except ValueError:
        detail = response.text.strip()[:500]
    return f"{response.status_code} response: {detail or response.reason_phrase}"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP dates are not used by openQA


def endpoint_label(path: str) -> str:
    """/api/v1/jobs/42/status -> /api/v1/jobs/:id/status (for metrics)."""
    return re.sub(r"/\d+(?=/|$)", "/:id", path)


# -- one TLS context for every client ----------------------------------------------------------------
_tls_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def _build_tls_context() -> ssl.SSLContext:
    global _tls
    with _tls_lock:
        if _tls is None:
            _tls = httpx.create_ssl_context(trust_env=False)  # what httpx builds per client by default
        return _tls


async def tls_context() -> ssl.SSLContext:
    """The TLS context all our HTTP clients share (certifi's CAs). Loading the CA bundle takes 30-50 ms:
    done once, in a thread. A client built with it costs well under a millisecond."""
    return _tls if _tls is not None else await asyncio.to_thread(_build_tls_context)


async def new_http_client(**kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with the shared TLS context and without proxies from the environment."""
    return httpx.AsyncClient(verify=await tls_context(), trust_env=False, **kwargs)


Observer = Callable[[str, str, int | None, bool], None]  # (method, endpoint, status or None, retried)


class ApiClient:
    """One signed httpx.AsyncClient per web UI connection, made with the first request (never on the
    loop's time: the TLS context is shared and built in a thread)."""

    def __init__(self, host: HostConfig, *, retry: RetryPolicy | None = None, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None, observer: Observer | None = None,
                 proxies: ProxySettings | None = None) -> None:
        self.host = host
        self.proxies = proxies or ProxySettings()  # HTTP(S)_PROXY/NO_PROXY from the config (issue 12 row 8)
        self.base_url = host.base_url
        self.retry = retry or RetryPolicy()
        self.observer = observer
        self.last_error = ""
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 30.0), write=max(timeout, 300.0))
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    async def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if self._client is None:
            mounts = await self._proxy_mounts()
            client = await new_http_client(timeout=self._timeout, transport=self._transport, follow_redirects=False,
                                           mounts=mounts)
            if self._client is None and not self._closed:
                self._client = client
            else:  # another request made one meanwhile, or we were closed
                await client.aclose()
                return await self._http()
        return self._client

    async def _proxy_mounts(self) -> dict[str, httpx.AsyncBaseTransport | None] | None:
        if not self.proxies.configured:
            return None
        verify = await tls_context()
        return await asyncio.to_thread(build_mounts, self.proxies, verify, direct=(self.base_url,))

    def proxy_for(self, url: str) -> str | None:
        """The proxy a connection to ``url`` (the websocket) goes through; None: direct."""
        return self.proxies.proxy_for(url)

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def signed_headers(self, path: str, params: QueryParams = None) -> tuple[str, dict[str, str]]:
        """The request target and its auth headers (also used for the websocket handshake)."""
        target = request_target(path, params)
        return target, auth_headers(self.host.api_key, self.host.api_secret, target)

    async def probe_redirect(self) -> None:
        """NEW worker behaviour: HEAD /api/v1/workers?limit=0; adopt a redirect's scheme/host/port."""
        try:
            response = await self.request("HEAD", "/api/v1/workers", params={"limit": 0}, attempts=1,
                                          expect_success=False)
        except ApiError as exc:
            log.debug("redirect probe of %s failed: %s", self.base_url, exc)
            return
        location = response.headers.get("location")
        if response.is_redirect and location:
            target = httpx.URL(location)
            if target.scheme in ("http", "https") and target.host:
                port = f":{target.port}" if target.port else ""
                adopted = f"{target.scheme}://{target.host}{port}"
                if adopted != self.base_url:
                    log.info("web UI %s redirects to %s; using that from now on", self.base_url, adopted)
                    self.base_url = adopted

    async def request(self, method: str, path: str, *, params: QueryParams = None, json: Any = None,
                      data: dict[str, Any] | None = None, files: Any = None, content: Any = None,
                      headers: dict[str, str] | None = None, attempts: int | None = None,
                      timeout: float | None = None, follow_redirects: bool = False,
                      expect_success: bool = True, base_url: str | None = None) -> httpx.Response:
        """Send a signed request with retries. Raises ApiError when it failed for good.

        ``files`` may be a callable returning a fresh files structure per attempt (file handles are
        consumed by a send).
        """
        attempts = self.retry.attempts if attempts is None else max(1, attempts)
        label = endpoint_label(path)
        for attempt in range(1, attempts + 1):
            target, auth = self.signed_headers(path, params)
            url = f"{base_url or self.base_url}{target}"
            req_headers = {**auth, **(headers or {})}
            try:
                http = await self._http()
                response = await http.request(
                    method, url, json=json, data=data, files=files() if callable(files) else files,
                    content=content, headers=req_headers, follow_redirects=follow_redirects,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.TransportError as exc:
                message = f"Connection error: {exc or type(exc).__name__}"
                busy = isinstance(exc, httpx.TimeoutException) or "timeout" in message.lower()
                delay = self.retry.busy_delay if busy else self.retry.delay
                self._observe(method, label, None, attempt < attempts)
                if attempt >= attempts:
                    self.last_error = message
                    raise ApiError(message, None, retriable=True) from exc
                log.warning("%s %s: %s (attempt %d/%d, retrying in %.0f s)", method, path, message,
                            attempt, attempts, delay)
                await asyncio.sleep(_jitter(delay))
                continue
            status = response.status_code
            if not expect_success or status < 400:
                self._observe(method, label, status, False)
                return response
            retriable = status >= 500 or status in RETRIABLE_4XX
            message = error_text(response)
            self._observe(method, label, status, retriable and attempt < attempts)
            if not retriable or attempt >= attempts:
                self.last_error = message
                raise ApiError(message, status, retriable=retriable, body=_json_or_none(response),
                               retry_after=parse_retry_after(response.headers.get("retry-after")))
            delay = parse_retry_after(response.headers.get("retry-after"))
            if delay is None:
                # our own delays get jitter: concurrent uploads must not keep retrying in lockstep
                delay = _jitter(self.retry.busy_delay if status in BUSY_CODES else self.retry.delay)
            delay = min(delay, self.retry.max_retry_after)
            log.warning("%s %s: %s (attempt %d/%d, retrying in %.1f s)", method, path, message, attempt,
                        attempts, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return _json_or_none(response)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, *, params: QueryParams = None,
                     headers: dict[str, str] | None = None, follow_redirects: bool = True,
                     timeout: float | None = None) -> AsyncIterator[httpx.Response]:
        """A signed streaming request (``async with client.stream(...) as response``); no retries."""
        target, auth = self.signed_headers(path, params)
        http = await self._http()
        async with http.stream(method, f"{self.base_url}{target}", headers={**auth, **(headers or {})},
                               follow_redirects=follow_redirects,
                               timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT) as response:
            yield response

    def _observe(self, method: str, label: str, status: int | None, retried: bool) -> None:
        if self.observer is not None:
            try:
                self.observer(method, label, status, retried)
            except Exception:
                log.exception("request observer failed")


def _jitter(delay: float) -> float:
    return delay * random.uniform(0.9, 1.1) if delay > 0 else 0.0


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
