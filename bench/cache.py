"""Benchmark of the asset cache: one big asset, 8 concurrent waiters, versus a raw httpx download.

    .venv/bin/python bench/cache.py [--size-mib 1024] [--waiters 8]

The asset server runs in its own process (tests/integration/cache_support.AssetServer) so the
figures are the client's. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.cache import AssetCache  # noqa: E402
from backend.events import EventBus  # noqa: E402
from tests.integration.cache_support import AssetServer, make_client  # noqa: E402

NAME = "bench.qcow2"


async def serve(size: int) -> None:
    server = AssetServer(chunk_size=1024 * 1024)
    server.add("hdd", NAME, size=size)
    print(await server.start(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.stop()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class LagProbe:
    """Largest event-loop delay seen while running (what the rest of the worker would feel)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.max_lag = max(self.max_lag, time.perf_counter() - t0 - self.interval)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def bench_cache(url: str, tmp: Path, waiters: int) -> tuple[float, int, float]:
    cache = AssetCache(tmp / "cache", limit_bytes=1 << 40, min_free_percentage=None, bus=EventBus())
    await cache.open()
    client = make_client(url, timeout=120.0)
    await client.request("GET", "/_stats")  # warm up: lazy imports of the HTTP stack are not the cache's
    with LagProbe() as probe:
        t0 = time.perf_counter()
        paths = await asyncio.gather(*(cache.get_asset(client, "127.0.0.1", 1, "hdd", NAME, waiter=100 + i)
                                       for i in range(waiters)))
        wall = time.perf_counter() - t0
    size = paths[0].stat().st_size
    await client.aclose()
    await cache.close()
    paths[0].unlink()
    return wall, size, probe.max_lag


async def bench_raw(url: str, tmp: Path) -> tuple[float, int]:
    target = tmp / "raw.bin"
    size = 0
    async with httpx.AsyncClient(timeout=120.0) as client:
        t0 = time.perf_counter()
        async with client.stream("GET", f"{url}/assets/hdd/{NAME}") as response:
            with open(target, "wb") as f:  # noqa: ASYNC230 - the naive baseline writes on the loop
                async for chunk in response.aiter_raw(1024 * 1024):
                    f.write(chunk)
                    size += len(chunk)
        wall = time.perf_counter() - t0
    target.unlink()
    return wall, size


async def main(args: argparse.Namespace) -> None:
    size = args.size_mib * 1024 * 1024
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(size),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    url = (await proc.stdout.readline()).decode().strip()
    try:
        with tempfile.TemporaryDirectory(prefix="qaworker-bench-") as tmpdir:
            tmp = Path(tmpdir)
            rss_before = peak_rss_mib()
            cache_walls, raw_walls, lags, downloads = [], [], [], []
            for _ in range(args.rounds):  # alternate, so load from elsewhere hits both alike
                cache_wall, cache_size, lag = await bench_cache(url, tmp, args.waiters)
                cache_walls.append(cache_wall)
                lags.append(lag)
                rss_cache = peak_rss_mib()
                async with httpx.AsyncClient() as client:
                    stats = (await client.get(f"{url}/_stats")).json()[f"hdd/{NAME}"]
                downloads.append(stats["downloads"] - sum(downloads) - len(raw_walls))
                raw_wall, raw_size = await bench_raw(url, tmp)
                raw_walls.append(raw_wall)
            cache_wall, raw_wall, lag = min(cache_walls), min(raw_walls), max(lags)
    finally:
        proc.stdin.close()
        await proc.wait()
    if cache_size != size:
        print(f"ERROR: cached file has {cache_size} bytes, expected {size}")
    mib = 1024 * 1024
    print(f"asset size             {size / mib:.0f} MiB")
    print(f"waiters                {args.waiters}")
    load = os.getloadavg()[0]
    print(f"rounds                 {args.rounds} (best wall time shown; load average {load:.1f})")
    print(f"cache downloads/round  {downloads}  (must be 1 each)")
    print(f"cache wall time        {cache_wall:.2f} s  ({cache_size / mib / cache_wall:.0f} MiB/s)")
    print(f"raw httpx wall time    {raw_wall:.2f} s  ({raw_size / mib / raw_wall:.0f} MiB/s)")
    print(f"cache / raw throughput {raw_wall / cache_wall:.2f}")
    print(f"max event-loop lag     {lag * 1000:.1f} ms (during the cached download)")
    print(f"peak RSS               {rss_before:.0f} MiB before, {rss_cache:.0f} MiB after cache run, "
          f"{peak_rss_mib():.0f} MiB after raw run")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--waiters", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        asyncio.run(serve(ns.serve))
    else:
        asyncio.run(main(ns))
