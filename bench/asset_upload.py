"""Benchmark: one 1 GB asset through the chunked upload (Storable chunks, PROTOCOL.md §15.3).

The receiving web UI runs in a child process (so its memory is not counted): it thaws every
chunk, checks the SHA-1, writes it at its offset and checks the SHA-256 at the end. Prints MB/s,
the worker-side peak RSS and the event-loop lag. Never asserts.

    .venv/bin/python bench/asset_upload.py [--size-mb 1024] [--chunk-size 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from aiohttp import web  # noqa: E402

from backend.job.status import make_image_pool  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from tests.integration.upload_support import FakeWebUI, make_reporter, thaw  # noqa: E402


def write_at(target: str, offset: int, data: bytes) -> None:
    with open(target, "r+b" if os.path.exists(target) else "wb") as fh:
        fh.seek(offset)
        fh.write(data)


def serve(port: int, target: str, ready) -> None:  # runs in the child process
    total_sha = hashlib.sha256()
    state = {"ok": None}

    async def artefact(request: web.Request) -> web.Response:
        async for part in await request.multipart():
            if part.filename is not None:
                chunk = thaw(await part.read())
        data = bytes.fromhex(chunk["content"].decode())
        if base64.b64encode(hashlib.sha1(data).digest()).decode().rstrip("=") != chunk["cksum"].decode():
            return web.json_response({"error": "Failed receiving asset: checksum"}, status=500)
        await asyncio.to_thread(write_at, target, int(chunk["start"]), data)
        total_sha.update(data)  # chunks arrive in order
        if chunk["index"] == chunk["total"]:
            ok = base64.b64encode(total_sha.digest()).decode().rstrip("=") == chunk["total_cksum"].decode()
            state["ok"] = ok
            print(f"  [web UI] last chunk {chunk['index'].decode()}: whole-file SHA-256 "
                  f"{'matches' if ok else 'DIFFERS'}", flush=True)
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/api/v1/jobs/{id}/artefact", artefact)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def make_file(path: Path, size: int) -> None:
    block = 8 * 1024 * 1024
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            fh.write(os.urandom(min(block, left)))
            left -= block


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=10_000_000)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="qaworker-asset-bench-") as tmp:
        pool = Path(tmp) / "pool"
        (pool / "assets_public").mkdir(parents=True)
        asset = pool / "assets_public" / "big.qcow2"
        make_file(asset, args.size_mb * 1024 * 1024)
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        server = ctx.Process(target=serve, args=(port, str(Path(tmp) / "received"), ready), daemon=True)
        server.start()
        ready.wait(30)
        await asyncio.sleep(0.5)
        web_ui = FakeWebUI()
        web_ui.url = f"http://127.0.0.1:{port}"
        image_pool = make_image_pool(1)
        settings = {"LOCAL_UPLOAD": "0", "UPLOAD_CHUNK_SIZE": str(args.chunk_size)}
        h = make_reporter(web_ui, pool, image_pool, settings)
        proc = psutil.Process()
        rss_before = proc.memory_info().rss
        peak = rss_before
        lags: list[float] = []
        done = asyncio.Event()

        async def sampler() -> None:
            nonlocal peak
            while not done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(max(0.0, time.perf_counter() - t - 0.01))
                peak = max(peak, proc.memory_info().rss)

        task = asyncio.create_task(sampler())
        started = time.perf_counter()
        error = await h.reporter.final_uploads("done")
        elapsed = time.perf_counter() - started
        done.set()
        await task
        await h.client.aclose()
        image_pool.shutdown()
        server.terminate()
        server.join(5)
        size = asset.stat().st_size
        lags.sort()
        p99 = lags[int(0.99 * (len(lags) - 1))] * 1000 if lags else 0.0
        print(f"asset {size / 1e6:.0f} MB in chunks of {args.chunk_size / 1e6:.0f} MB: {elapsed:.1f} s, "
              f"{size / elapsed / 1e6:.1f} MB/s (file bytes; ~2x on the wire as hex), error: {error}")
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"worker RSS before {rss_before / 2**20:.0f} MiB, peak during upload {peak / 2**20:.0f} MiB "
              f"(+{(peak - rss_before) / 2**20:.0f} MiB); ru_maxrss {maxrss:.0f} MiB")
        print(f"loop lag p50 {lags[len(lags) // 2] * 1000 if lags else 0:.1f} ms, p99 {p99:.1f} ms, "
              f"max {lags[-1] * 1000 if lags else 0:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
