"""``python -m backend.mockweb --port N --data-dir D``: run the mock web UI standalone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path

from backend.mockweb.server import MockWebUI, serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.mockweb", description="mock openQA web UI")
    parser.add_argument("--port", type=int, default=9526)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--flavour", choices=("new", "2023"), default="new")
    parser.add_argument("--api-key", default="1234567890ABCDEF")
    parser.add_argument("--api-secret", default="1234567890ABCDEF")
    parser.add_argument("--no-auth", action="store_true", help="accept unsigned requests")
    parser.add_argument("--ws-redirect", action="store_true", help="redirect ws handshakes like 2023 (§25)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="qaworker-mockweb-"))

    def ready(ui: MockWebUI) -> None:
        print(f"mock web UI at {ui.url}  data dir {ui.data_dir}", flush=True)
        print(f"api key {ui.api_key}  api secret {ui.api_secret}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(args.port, data_dir, api_key=args.api_key, api_secret=args.api_secret,
                                  flavour=args.flavour, require_auth=not args.no_auth,
                                  ws_redirect=args.ws_redirect, ready=ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
