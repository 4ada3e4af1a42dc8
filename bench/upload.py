"""Benchmark: 500 generated 1024x768 screenshots through one upload round against a local web UI.

Compares qaworker's round (md5 + optipng in the process pool, concurrent uploads) with a naive
variant that hashes and runs optipng on the event loop. Prints throughput and event-loop lag
(p50/p99/max of a 10 ms ticker). Never asserts.

    .venv/bin/python bench/upload.py [--count 500] [--no-optimize] [--skip-naive]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.job.status import JobReporter, make_image_pool  # noqa: E402
from backend.job.upload import UploadSettings  # noqa: E402
from tests.integration.upload_support import FakeWebUI, Module, PoolBuilder, make_reporter  # noqa: E402

WIDTH, HEIGHT = 1024, 768


def screenshot(seed: int) -> bytes:
    """A unique 1024x768 RGB 'screen': flat background, text-like noisy lines, zlib level 1 (fast encoder)."""
    rng = random.Random(seed)
    flat = bytes((40, 60, 90)) * WIDTH
    glyphs = bytes(rng.choice((0, 200, 255)) for _ in range(3 * WIDTH * 8))
    rows = []
    for y in range(HEIGHT):
        if 100 <= y < 700 and y % 18 < 12:
            start = rng.randrange(0, len(glyphs) - 3 * WIDTH)
            rows.append(b"\0" + glyphs[start:start + 3 * WIDTH])
        else:
            rows.append(b"\0" + flat)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 1))
            + chunk(b"IEND", b""))


class NaiveReporter(JobReporter):
    """What a straightforward port would do: hash and optimise on the loop."""

    async def _hash(self, names: list[str]) -> dict[str, str]:
        for n in names:
            if n not in self._md5:
                self._md5[n] = hashlib.md5(self.reader.screenshot_path(n).read_bytes()).hexdigest()
        return {n: self._md5[n] for n in names if n in self._md5}

    async def _optimize(self, path: Path, settings: UploadSettings) -> None:
        if path not in self._optimized:
            subprocess.run(["optipng", "-quiet", "-o2", str(path)], check=False)  # noqa: ASYNC221
            self._optimized.add(path)


def prepare(pool: Path, count: int) -> None:
    builder = PoolBuilder(pool)
    mod = Module("install", screenshots=0)
    builder.order([mod])
    details = []
    for i in range(1, count + 1):
        name = f"install-{i}.png"
        (builder.results / name).write_bytes(screenshot(i))
        details.append({"screenshot": name, "result": "ok"})
    (builder.results / "result-install.json").write_text(json.dumps({"details": details, "result": "ok"}))
    builder.status("finished", "")


async def run(label: str, count: int, optimize: bool, naive: bool, pool_exec) -> None:
    web = FakeWebUI()
    await web.start()
    with tempfile.TemporaryDirectory(prefix="qaworker-bench-") as tmp:
        pool = Path(tmp) / "pool"
        prepare(pool, count)
        settings = {} if optimize else {"OPTIMIZE_IMAGES": "0"}
        h = make_reporter(web, pool, pool_exec, settings)
        if naive:
            h.reporter.__class__ = NaiveReporter
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(max(0.0, time.perf_counter() - t - 0.01))

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        await h.reporter.final_status()
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        sent = sum(len(a.content) for a in web.artefacts)
        await h.client.aclose()
    await web.stop()
    lags.sort()

    def pct(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))] * 1000 if lags else 0.0

    files = len(web.artefacts)
    print(f"{label:<26} {files:>4} files {elapsed:7.2f} s {files / elapsed:7.1f} img/s "
          f"{sent / elapsed / 1e6:6.2f} MB/s ({sent / 1e6:6.1f} MB sent)  "
          f"loop lag p50 {pct(0.5):6.1f} ms  p99 {pct(0.99):7.1f} ms  max {pct(1.0):7.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--no-optimize", action="store_true", help="only measure OPTIMIZE_IMAGES=0")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    print(f"{args.count} unique screenshots {WIDTH}x{HEIGHT}, ~{len(screenshot(0)) / 1e6:.2f} MB each before "
          "optimisation; web UI: the recording test web UI on 127.0.0.1")
    pool_exec = make_image_pool()
    list(pool_exec.map(abs, range(64)))  # start the workers before measuring
    try:
        await run("pooled, OPTIMIZE_IMAGES=0", args.count, False, False, pool_exec)
        if not args.no_optimize:
            await run("pooled, optipng", args.count, True, False, pool_exec)
            if not args.skip_naive:
                await run("naive (on loop), optipng", args.count, True, True, pool_exec)
    finally:
        pool_exec.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
