"""``qaworker attach [--socket PATH] [--read-only] [--list] [--instance N]``: the dashboard of a running worker.

Without ``--socket`` it looks for control sockets where workers put them (backend/control/paths.py);
one found → attach to it, several → say which and how to choose. An error that retrying cannot fix
(permission, protocol version) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.control.client import AttachError, ControlConnection, RemoteRuntime
from backend.control.paths import find_sockets, runtime_dirs
from backend.tasks import cancel_and_wait

PROG = "qaworker attach"


def attach_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Show the dashboard of a running qaworker "
                                     "(q detaches, Q stops the worker).")
    parser.add_argument("--socket", type=Path, metavar="PATH", help="the worker's control socket")
    parser.add_argument("--instance", type=int, metavar="N", help="the worker that runs slot N")
    parser.add_argument("--read-only", action="store_true", help="watch only: no drain, abort or stop")
    parser.add_argument("--list", action="store_true", help="list the workers found and exit")
    return parser


@dataclass
class Found:
    path: Path
    hello: dict | None
    error: str = ""

    def line(self) -> str:
        if self.hello is None:
            return f"{self.path}  ({self.error})"
        h = self.hello
        slots = ",".join(map(str, h.get("instances", [])))
        return (f"{self.path}  qaworker {h.get('qaworker')} pid {h.get('pid')}  slots {slots}  "
                f"{h.get('description', '')}  access: {h.get('access')}")


async def probe(path: Path) -> Found:
    """Who listens on ``path`` (a hello, then leave)."""
    try:
        conn = await ControlConnection.open(path, timeout=2, probe=True)
    except AttachError as exc:
        return Found(path, None, str(exc))
    except (OSError, TimeoutError) as exc:
        return Found(path, None, f"not answering: {getattr(exc, 'strerror', None) or type(exc).__name__}")
    with contextlib.suppress(Exception):
        await conn.close()
    return Found(path, conn.hello)


async def discover() -> list[Found]:
    return list(await asyncio.gather(*(probe(p) for p in find_sockets())))


def choose(found: list[Found], instance: int | None) -> tuple[Path | None, str]:
    """The socket to attach to, or why none can be picked."""
    live = [f for f in found if f.hello is not None]
    if instance is not None:
        live = [f for f in live if instance in f.hello.get("instances", [])]  # type: ignore[union-attr]
    if len(live) == 1:
        return live[0].path, ""
    where = ", ".join(str(d) for d in runtime_dirs())
    if not live:
        what = f"no running qaworker with slot {instance}" if instance is not None else "no running qaworker"
        refused = [f for f in found if f.hello is None and "permission denied" in f.error]
        if refused:
            return None, refused[0].error
        return None, f"{what} found (looked in {where}); start one, or give --socket PATH"
    listing = "\n  ".join(f.line() for f in live)
    return None, f"several workers run here; choose one with --socket PATH or --instance N:\n  {listing}"


def main(argv: list[str]) -> int:
    args = attach_parser().parse_args(argv)
    if args.list:
        found = asyncio.run(discover())
        for f in found:
            print(f.line())
        if not found:
            print(f"no control socket found in {', '.join(str(d) for d in runtime_dirs())}", file=sys.stderr)
        return 0 if found else 1
    path = args.socket
    if path is None:
        path, why = choose(asyncio.run(discover()), args.instance)
        if path is None:
            print(f"{PROG}: {why}", file=sys.stderr)
            return 1
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(f"{PROG}: needs a terminal (the worker's own log: journalctl -u 'qaworker*')", file=sys.stderr)
        return 2
    try:
        return asyncio.run(attach(path, read_only=args.read_only))
    except KeyboardInterrupt:
        return 130
    except AttachError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


async def attach(path: Path, *, read_only: bool = False, app_factory=None) -> int:
    """Attach (failing fast on what retrying cannot fix), then run the dashboard until it detaches."""
    runtime = RemoteRuntime(path, read_only=read_only)
    link = asyncio.create_task(runtime.run(), name="attach-link")
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await asyncio.shield(_attached_or_failed(runtime))
        if runtime.link.state == "failed":
            raise AttachError(runtime.link.reason)
        if app_factory is None:  # Textual and the dashboard take ~0.5 s to import: not on the loop
            app_factory = (await asyncio.to_thread(importlib.import_module, "app.attach_tui")).AttachApp
        app = app_factory(runtime)
        await app.run_async()
        if runtime.link.state == "failed":
            raise AttachError(runtime.link.reason)
        return 0 if app.return_code in (None, 0) else int(app.return_code)
    finally:
        await runtime.close()
        await cancel_and_wait(link)


async def _attached_or_failed(runtime: RemoteRuntime) -> None:
    attached = asyncio.create_task(runtime.wait_attached())
    stopped = asyncio.create_task(runtime.wait_stopped())
    try:
        await asyncio.wait({attached, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        attached.cancel()
        stopped.cancel()
