"""The application key through which route handlers reach their ``MockWebUI``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from backend.mockweb.server import MockWebUI

UI_KEY: web.AppKey[MockWebUI] = web.AppKey("mockweb")


def ui_of(request: web.Request) -> MockWebUI:
    return request.app[UI_KEY]


def json_error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)
