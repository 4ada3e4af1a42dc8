"""Fixtures shared by the mock web UI's own protocol tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.mockweb.probe import Probe
from backend.mockweb.server import MockWebUI


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
