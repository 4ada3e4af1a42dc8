"""The screenshot optimiser helper process: ``python pngworker.py <parent pid> <idle seconds>``.

Run by ``backend.job.imageopt.ImagePool`` as a plain script (stdlib + ``oxipng`` only, so it starts in
~40 ms and never imports the worker). It reads one JSON request per line on stdin and answers one JSON
line on stdout:

    {"path": "/pool/1/testresults/boot-1.png", "method": "oxipng", "oxipng": {"level": 0, ...}}
    -> {"size": 20983}        or        {"error": "boot-1.png: not a PNG"}

Why a process: pyoxipng keeps the GIL for the whole optimisation (measured: a 1 ms ticker thread stalls
for the full 280 ms of a call), so in a thread it would freeze the worker's event loop.

It dies with the worker: ``PR_SET_PDEATHSIG`` = SIGKILL when its parent goes (even on SIGKILL of the
worker), optipng/pngquant children get the same, EOF on stdin ends it, and so does ``idle`` seconds
without a request (exit code 0: the pool starts a new one on demand).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
from typing import Any

PR_SET_PDEATHSIG = 1
EXIT_IDLE = 0
EXIT_ORPHANED = 3
OPTIPNG = ["optipng", "-quiet", "-o2"]


class ToolMissing(RuntimeError):
    """optipng/pngquant is not installed: a permanent error (no retries)."""


def die_with_parent() -> None:
    """SIGKILL this process when the thread that started it ends (ours: the pool's owner thread)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: stdin EOF still ends us
        pass


def _tool_command(method: str, path: str) -> list[str]:
    if method == "pngquant":
        return ["pngquant", "--force", "--output", path, path]
    return [*OPTIPNG, path]


def run_tool(method: str, path: str, timeout: float) -> int:
    """optipng/pngquant in place; the child dies with us too (it is exec'd with the death signal set)."""
    cmd = _tool_command(method, path)
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, preexec_fn=die_with_parent)
    except FileNotFoundError as exc:
        raise ToolMissing(f"{cmd[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{cmd[0]} timed out after {timeout:.0f} s") from exc
    # pngquant exits 98/99 when it cannot make the file smaller (or keep the quality): left as is.
    if proc.returncode == 0 or (method == "pngquant" and proc.returncode in (98, 99)):
        return os.path.getsize(path)
    output = (proc.stderr or proc.stdout).decode(errors="replace").strip()
    raise RuntimeError(output or f"{cmd[0]} exit code {proc.returncode}")


def _oxipng_options(preset: dict[str, Any]) -> dict[str, Any]:
    import oxipng

    options: dict[str, Any] = {"level": int(preset.get("level", 2))}
    if "filter" in preset:
        options["filter"] = [getattr(oxipng.RowFilter, name) for name in preset["filter"]]
    if "deflate" in preset:
        options["deflate"] = oxipng.Deflaters.libdeflater(int(preset["deflate"]))
    return options


def run_oxipng(path: str, preset: dict[str, Any]) -> int:
    """Optimise in memory, then replace the file atomically (and only when smaller)."""
    import oxipng

    with open(path, "rb") as fh:
        data = fh.read()
    try:
        out = oxipng.optimize_from_memory(data, **_oxipng_options(preset))
    except oxipng.PngError as exc:
        raise RuntimeError(str(exc) or "not a valid PNG") from exc
    if len(out) >= len(data):
        return len(data)
    tmp = f"{path}.qaworker-opt.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(out)
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(out)


def handle(request: dict[str, Any]) -> dict[str, Any]:
    path = str(request["path"])
    method = str(request.get("method") or "oxipng")
    name = os.path.basename(path)
    try:
        if method == "oxipng":
            size = run_oxipng(path, request.get("oxipng") or {})
        else:
            size = run_tool(method, path, float(request.get("timeout") or 300))
    except (OSError, RuntimeError, ValueError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return {"error": f"{name}: {text}", "permanent": isinstance(exc, ToolMissing)}
    return {"size": size}


def serve(parent: int, idle: float) -> int:
    die_with_parent()
    if os.getppid() != parent:  # the worker died before the death signal was armed
        return EXIT_ORPHANED
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the worker to handle (quit)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # One request at a time (the pool waits for each answer), so select() on stdin never misses a line
    # that readline() already buffered.
    while True:
        ready, _, _ = select.select([stdin], [], [], idle if idle > 0 else None)
        if not ready:
            return EXIT_IDLE
        line = stdin.readline()
        if not line:
            return EXIT_IDLE  # the pool closed our stdin
        try:
            request = json.loads(line)
            reply = handle(request) if isinstance(request, dict) else {"error": "bad request"}
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": f"bad request: {exc}"}
        except Exception as exc:  # anything else (a panic in oxipng) is still an answer
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(reply).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
