"""Benchmark: helper commands (rsync, hooks, ipmitool, lscpu) started with asyncio.create_subprocess_exec, the
baseline, versus backend.engine.child.run_captured, with threads keeping the GIL busy as the worker's
upload and image threads do.

    .venv/bin/python bench/spawn.py [--commands 200] [--concurrency 4] [--threads 3] [--rounds 3]

The baseline forks on the loop thread and reads the exec's error pipe there, and that read hands the GIL to
the busy threads. run_captured forks in a thread and reads the pipes through the selector. Each round
runs both methods one after the other, on the same machine state, and prints the loop lag of each method
(a 5 ms probe) and the ratio of run_captured to the baseline. The figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.engine.child import run_captured  # noqa: E402
from backend.metrics import LagProbe  # noqa: E402

ARGV = ["/bin/sh", "-c", "echo helper output"]


def busy(stop: threading.Event) -> None:
    """Pure Python work: holds the GIL until the interpreter's switch interval hands it on."""
    while not stop.is_set():
        sum(i * i for i in range(20_000))


async def baseline_once() -> bytes:
    proc = await asyncio.create_subprocess_exec(*ARGV, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                start_new_session=True)
    out, _ = await proc.communicate()
    return out


async def captured_once() -> bytes:
    return (await run_captured(ARGV, merge_stderr=True)).stdout


async def measure(run_one: Callable[[], Awaitable[bytes]], commands: int, concurrency: int) -> dict[str, float]:
    probe = LagProbe(interval=0.005)
    probe.start()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            assert await run_one() == b"helper output\n"

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(commands)))
    finally:
        elapsed = time.perf_counter() - started
        await probe.stop()
    return {"p50": probe.percentile(50), "p99": probe.percentile(99), "max": probe.max,
            "per_command": elapsed / commands}


async def main(args: argparse.Namespace) -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=busy, args=(stop,), daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    print(f"{args.commands} commands, {args.concurrency} at a time, {args.threads} busy threads; loop lag (5 ms probe)")
    print("| round | method | lag p50 | lag p99 | lag max | wall per command |")
    print("| --- | --- | --- | --- | --- | --- |")
    ratios: list[tuple[float, float]] = []
    try:
        for round_no in range(1, args.rounds + 1):
            figures = {}
            for name, run_one in (("create_subprocess_exec", baseline_once), ("run_captured", captured_once)):
                figures[name] = f = await measure(run_one, args.commands, args.concurrency)
                print(f"| {round_no} | {name} | {f['p50'] * 1000:.1f} ms | {f['p99'] * 1000:.1f} ms | "
                      f"{f['max'] * 1000:.1f} ms | {f['per_command'] * 1000:.1f} ms |", flush=True)
            base, ours = figures["create_subprocess_exec"], figures["run_captured"]
            ratios.append((ours["p99"] / base["p99"] if base["p99"] else float("nan"),
                           ours["max"] / base["max"] if base["max"] else float("nan")))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    for round_no, (p99, top) in enumerate(ratios, 1):
        print(f"round {round_no}: run_captured / create_subprocess_exec: lag p99 {p99:.2f}x, lag max {top:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
