"""The dashboard under an event burst: how soon the final state is on screen, how long the loop stalls.

    python bench/dashboard.py [--events 10000] [--runs 5]

The real QaworkerApp runs headless (Textual's Pilot) on the test runtime (tests/tui/scripted.py);
one running job gets ``--events`` LogLines events published in one go, as a busy worker's bus can.
Printed per run and as medians: publish time (the baseline: the bus and the view alone), the time
until the last line is on screen, the longest loop stall after publishing (a zero-sleep ticker
task; what keys and other slots would wait), and how many renders it took.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.tui import QaworkerApp  # noqa: E402
from backend import events as ev  # noqa: E402
from backend.events import SlotState  # noqa: E402
from bench.common import median  # noqa: E402
from tests.tui.scripted import HOST, build  # noqa: E402
from widgets.logtail import LogTail  # noqa: E402


async def burst(events: int) -> dict[str, float]:
    rt = build("idle")
    app = QaworkerApp(rt, clock=rt.clock)
    renders = 0
    render = app._render_now
    last_line = f"line {events - 1}"
    on_screen = asyncio.Event()

    def counted() -> None:
        nonlocal renders
        renders += 1
        render()
        if on_screen.is_set() or not app.screen_stack:  # done, or the app is shutting down
            return
        tails = app.screen.query(LogTail)
        if tails and tails.first().lines[-1:] == [last_line]:
            on_screen.set()

    app._render_now = counted  # type: ignore[method-assign]
    async with app.run_test(size=(120, 36)) as pilot:
        rt.emit(ev.JobAccepted, instance=1, job_id=77, name="burst", host=HOST, max_job_time=600)
        rt.emit(ev.SlotStateChanged, instance=1, state=SlotState.RUNNING, job_id=77)
        await pilot.pause(0.3)
        ticks: list[tuple[float, float]] = []
        running = True

        async def ticker() -> None:
            last = time.perf_counter()
            while running:
                await asyncio.sleep(0)
                now = time.perf_counter()
                ticks.append((last, now - last))
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        renders_before = renders
        start = time.perf_counter()
        for i in range(events):
            rt.emit(ev.LogLines, instance=1, job_id=77, lines=(f"line {i}",))
        published = time.perf_counter()
        await on_screen.wait()
        shown = time.perf_counter()
        running = False
        await task
    stalls = [gap for began, gap in ticks if began >= published]
    return {"publish_ms": (published - start) * 1000, "on_screen_ms": (shown - start) * 1000,
            "stall_ms": max(stalls, default=0.0) * 1000, "renders": float(renders - renders_before)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    results = []
    for run in range(1, args.runs + 1):
        r = asyncio.run(burst(args.events))
        results.append(r)
        print(f"run {run}: publish {r['publish_ms']:.0f} ms, last line on screen {r['on_screen_ms']:.0f} ms, "
              f"max loop stall after publishing {r['stall_ms']:.1f} ms, {r['renders']:.0f} renders")
    print(f"median of {args.runs} ({args.events} events): publish {median(r['publish_ms'] for r in results):.0f} ms"
          f" (baseline), on screen {median(r['on_screen_ms'] for r in results):.0f} ms, loop stall "
          f"{median(r['stall_ms'] for r in results):.1f} ms, renders {median(r['renders'] for r in results):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
