"""Write SVG screenshots of the dashboard driven by the scripted runtime.

    python -m app.screenshots screenshots/
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from app.scripted import build
from app.tui import QaworkerApp

SIZE = (120, 36)
# file name -> (scenario, keys pressed first)
KEYED_SHOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cache-view.svg": ("cache_downloading", ("c",)),
}
# file name -> scenario
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
    """Run the real app headless against a scenario and return the screen as SVG."""
    rt = build(scenario)
    app = QaworkerApp(rt, clock=rt.clock)
    async with app.run_test(size=size, notifications=False) as pilot:
        await pilot.pause()
        if select is not None:
            await pilot.press(*["down"] * (select - 1))
        if keys:
            await pilot.pause(0.3)
            await pilot.press(*keys)
        await pilot.pause(0.3)  # let the throttled render land
        await pilot.wait_for_scheduled_animations()
        return app.export_screenshot(title=f"qaworker — {scenario.replace('_', ' ')}")


async def write_all(out: Path) -> list[Path]:
    written = []
    for name, scenario in SHOTS.items():
        select = 2 if scenario == "three_running" else None
        path = out / name
        svg = await shoot(scenario, select=select)
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
