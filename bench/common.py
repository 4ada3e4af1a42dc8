"""Shared helpers of the benchmarks: process CPU/RSS readers, exit/spawn timestamps, lag probes, tables.

Also runnable as a launcher that runs the real worker (``app.run.main_async``) with a timestamped loop-lag
probe in its own event loop and writes the samples as JSON on exit::

    python bench/common.py --lag-out FILE [--lag-interval 0.01] -- <qaworker run options>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.engine.cgroup import rss_bytes  # noqa: E402, F401 - re-exported: the cgroup fallback reads RSS so too
from backend.metrics import LagProbe  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SIMULATOR = str(ROOT / "backend" / "engine" / "simulator.py")
VENV_SITE = ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


# -- processes --------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of the process itself (children not included)."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def helpers_of(pid: int, exclude: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    """Live descendants of pid that ``exclude`` does not reject (e.g. the image process pool)."""
    out = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if not exclude(child):
                out.append(child)
        except psutil.Error:
            pass
    return out


def is_job_process(proc: psutil.Process) -> bool:
    """isotovideo or the simulator (or anything below them) — not the worker's own helpers."""
    try:
        if "QAWORKER_JOB_MARKER" in proc.environ():
            return True
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return True
    return "isotovideo" in cmd or "simulator" in cmd


def start_wallclock(pid: int) -> float:
    """Wall-clock time (time.time()) the process was forked, from /proc starttime (10 ms resolution).

    psutil's create_time() adds the boot time rounded to whole seconds; CLOCK_BOOTTIME avoids that offset.
    """
    with open(f"/proc/{pid}/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    now_wall, now_boot = time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)
    return now_wall - (now_boot - start_ticks / TICK)


async def exit_time(pid: int) -> float:
    """Wait (without polling) until pid exits and return time.time() then; needs pidfd (Linux >= 5.3)."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.time()
    done: asyncio.Future[float] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(time.time())

    loop.add_reader(fd, ready)
    try:
        return await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM our own child and wait; SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- loop lag -----------------------------------------------------------------------------------------------

class TimedLagProbe(LagProbe):
    """LagProbe that also keeps the wall-clock time of every sample (to cut out a benchmark phase)."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(interval)
        self.timed: list[tuple[float, float]] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - start - self.interval)
            self.samples.append(lag)
            self.timed.append((time.time(), lag))


def lag_stats(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "n": 0}
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]

    return {"p50": pct(50), "p99": pct(99), "max": ordered[-1], "n": len(ordered)}


def lag_window(timed: list[tuple[float, float]], t0: float, t1: float) -> dict[str, float]:
    return lag_stats([lag for t, lag in timed if t0 <= t <= t1])


def fmt_lag(s: dict[str, float]) -> str:
    return (f"p50 {s['p50'] * 1000:.1f} ms, p99 {s['p99'] * 1000:.1f} ms, max {s['max'] * 1000:.1f} ms "
            f"({s['n']} samples)")


# -- figures ------------------------------------------------------------------------------------------------

def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def mib(n: float) -> float:
    return n / (1024 * 1024)


def ratio(ours: float, base: float) -> float:
    return ours / base if base and not math.isnan(base) and not math.isnan(ours) else math.nan


def print_table(title: str, rows: list[tuple[str, str, float, float, str]], base_name: str = "Perl") -> None:
    """rows: (metric, unit, qaworker, baseline, goal). Prints medians and qaworker/baseline ratios."""
    print(f"\n{title}")
    print(f"| metric | qaworker | {base_name} | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    for name, unit, ours, base, goal in rows:
        r = ratio(ours, base)
        print(f"| {name} | {ours:.3f} {unit} | {base:.3f} {unit} | {r:.2f}x | {goal} |")


# -- launcher: the real worker with a timestamped lag probe ---------------------------------------------------

async def _run_with_probe(argv: list[str], interval: float, out: Path) -> int:
    from app.cli import options_from, run_parser
    from app.run import main_async
    from backend.config import load_config

    args = run_parser().parse_args(argv)
    config = load_config(options_from(args))
    probe = TimedLagProbe(interval)
    probe.start()
    try:
        return await main_async(config, no_ui=True, log_format=config.log_format,
                                metrics_port=config.metrics_port, metrics_address=config.metrics_address)
    finally:
        await probe.stop()
        await asyncio.to_thread(out.write_text, json.dumps(probe.timed))  # after the worker stopped


def launcher_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lag-out", type=Path, required=True)
    parser.add_argument("--lag-interval", type=float, default=0.01)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return asyncio.run(_run_with_probe(rest, args.lag_interval, args.lag_out))


if __name__ == "__main__":
    sys.exit(launcher_main(sys.argv[1:]))
