"""Write the README's SVG screenshots of the dashboard from recordings of the real worker.

    python -m tests.tui.screenshots screenshots/      (``make screenshots``)

The dashboard states replay event streams recorded from the real worker against the mock web UI
(tests/tui/recordings/, see tests/tui/recorder.py) with the clock frozen at the recorded moment;
the history, the test's screen and ``qaworker attach`` come from a live run (app/attach_screenshots.py).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from app.tui import QaworkerApp
from tests.tui.replay import load
from tests.tui.settle import settle

SIZE = (120, 36)
# file name -> (recording, keys pressed first)
KEYED_SHOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cache-view.svg": ("cache_downloading", ("c",)),
}
# file name -> recording
SHOTS: dict[str, str] = {
    "idle.svg": "idle",
    "three-slots-running.svg": "three_running",
    "developer-session.svg": "developer_session",
    "broken-host.svg": "broken_host",
    "cache-downloading.svg": "cache_downloading",
    "uploading.svg": "uploading",
    "disconnected.svg": "disconnected",
}


async def shoot(scenario: str, size: tuple[int, int] = SIZE, select: int | None = None,
                keys: tuple[str, ...] = ()) -> str:
    """Run the real app headless against a replayed recording and return the screen as SVG."""
    rt = load(scenario)
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=size, notifications=False) as pilot:
        await pilot.pause()
        if select is not None:
            await pilot.press(*["down"] * (select - 1))
        if keys:
            await pilot.pause(0.3)
            await pilot.press(*keys)
        await settle(pilot)  # the throttled render has landed and nothing moves any more
        return app.export_screenshot(title=f"qaworker — {scenario.replace('_', ' ')}")


async def write_all(out: Path) -> list[Path]:
    written = []
    for name, scenario in SHOTS.items():
        path = out / name
        svg = await shoot(scenario)
        await asyncio.to_thread(path.write_text, svg, encoding="utf-8")
        written.append(path)
    for name, (scenario, keys) in KEYED_SHOTS.items():
        path = out / name
        svg = await shoot(scenario, keys=keys)
        await asyncio.to_thread(path.write_text, svg, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(write_all(out)):
        print(path)
    from app.attach_screenshots import write_all as write_attach_shots  # history, test screen, attach: a real run

    for path in asyncio.run(write_attach_shots(out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
