"""Fixtures shared by the integration tests: the mock web UI (ui, probe), the upload tests' recording
web UI, image pool and reporter harness (helpers in upload_support.py), and the cache tests' asset
server, API client, bus and opened AssetCache (server, client, bus, cache; helpers in cache_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.cache import AssetCache
from backend.events import EventBus
from backend.job.status import make_image_pool
from backend.mockweb.probe import Probe
from backend.mockweb.server import MockWebUI
from backend.webui.client import ApiClient
from tests.integration.cache_support import AssetServer, make_client, new_cache
from tests.integration.upload_support import FakeWebUI, Harness, make_reporter


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[MockWebUI]:
    server = MockWebUI(tmp_path / "web")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def probe(ui: MockWebUI) -> AsyncIterator[Probe]:
    async with Probe(ui.url) as client:
        yield client


@pytest.fixture(scope="module")
def image_pool() -> Iterator[Any]:
    pool = make_image_pool(2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
async def webui() -> AsyncIterator[FakeWebUI]:
    server = FakeWebUI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def harness(webui: FakeWebUI, tmp_path: Path, image_pool: Any) -> AsyncIterator[Harness]:
    h = make_reporter(webui, tmp_path / "pool", image_pool)
    yield h
    await h.reporter.aclose()
    await h.client.aclose()


@pytest.fixture
async def server() -> AsyncIterator[AssetServer]:
    srv = AssetServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server: AssetServer) -> AsyncIterator[ApiClient]:
    c = make_client(server.url)
    yield c
    await c.aclose()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def cache(tmp_path: Path, bus: EventBus) -> AsyncIterator[AssetCache]:
    c = new_cache(tmp_path, bus)
    await c.open()
    yield c
    await c.close()
