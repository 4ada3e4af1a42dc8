"""Screenshots of the job history, the test's screen and ``qaworker attach`` — from a real run.

A real Worker with the demo's slots, mock web UI, simulator and job mix runs in this process until
the history holds passed and failed jobs and a running job has a screenshot; then the real apps
are driven by the Pilot: the in-process dashboard for the history and the screen, and the attach
app over the control socket. ``make screenshots`` calls ``write_all``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

SIZE = (140, 40)


async def _until(predicate, timeout: float) -> None:
    for _ in range(int(timeout / 0.2)):
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the demo did not reach the wanted state")


async def write_all(out: Path) -> list[Path]:
    os.environ["QAWORKER_SCREEN"] = "halfcell"  # SVG screenshots keep coloured cells, not terminal graphics
    from app.attach_tui import AttachApp
    from app.demo import DEMO_KEY, DEMO_SECRET, DemoFeeder, demo_config
    from app.demo_env import reserve_instances
    from app.tui import QaworkerApp
    from backend.control.client import RemoteRuntime
    from backend.control.services import start_services
    from backend.mockweb.server import MockWebUI
    from backend.worker import Worker

    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="qaworker-shots-") as tmp:
        workdir = Path(tmp)
        reservation = reserve_instances(3)
        web = MockWebUI(workdir / "webui", api_key=DEMO_KEY, api_secret=DEMO_SECRET)
        await web.start()
        worker = Worker(demo_config(workdir, web.url, reservation.instances))
        services = await start_services(worker, socket=workdir / "control.sock")
        task = asyncio.create_task(worker.run())
        feeder = DemoFeeder(web, worker, workdir / "loadavg")
        feeding = asyncio.create_task(feeder.run())
        try:
            def ready() -> bool:
                results = {e.result for e in services.history.entries()}
                return {"passed", "failed"} <= results and len(services.history.entries()) >= 8

            await _until(ready, 120)

            app = QaworkerApp(services.runtime)
            async with app.run_test(size=SIZE, notifications=False) as pilot:
                await pilot.pause(0.5)
                await pilot.press("h")
                await pilot.pause(0.5)
                written.append(await _save(out / "history.svg", app.export_screenshot(title="qaworker — job history")))
                await pilot.press("escape")
                await _show_a_screen(pilot, app, services.runtime)
                written.append(await _save(out / "test-screen.svg",
                                           app.export_screenshot(title="qaworker — the test's screen")))

            runtime = RemoteRuntime(workdir / "control.sock")
            link = asyncio.create_task(runtime.run())
            attach = AttachApp(runtime)
            async with attach.run_test(size=SIZE, notifications=False) as pilot:
                await runtime.wait_attached(10)
                await _show_a_screen(pilot, attach, runtime)
                written.append(await _save(out / "attach.svg",
                                           attach.export_screenshot(title="qaworker attach")))
            await runtime.close()
            link.cancel()
        finally:
            feeding.cancel()
            with contextlib.suppress(BaseException):
                await feeding
            await feeder.stop()
            worker.quit()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(60):
                    await task
            await services.close()
            await web.stop()
            reservation.release()
    return written


async def _show_a_screen(pilot, app, runtime) -> None:
    """Select a slot whose running job has a screenshot on the panel (the demo keeps them coming)."""
    for _ in range(100):
        running = [i for i, s in sorted(runtime.view.slots.items()) if s.job is not None and s.job.modules]
        if running:
            app.screen.query_one("SlotTable").move_cursor(row=sorted(runtime.view.slots).index(running[0]))
            await pilot.pause(1.5)
            panel = app.screen.query_one("ScreenPanel")
            if panel.query_one(".screen-image").image is not None and not panel.has_class("empty"):
                await pilot.pause(0.3)
                return
        await pilot.pause(0.3)


async def _save(path: Path, svg: str) -> Path:
    await asyncio.to_thread(path.write_text, svg, encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    for p in asyncio.run(write_all(target)):
        print(p)
