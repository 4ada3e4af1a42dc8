"""The test's screen from a real job (the simulator writes real PNGs into the pool, as isotovideo does):
found at most once a second, only for slots somebody shows, and over the control socket only to the
clients that asked, downscaled."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import pytest
from PIL import Image

from backend.control.client import ControlConnection
from backend.control.services import start_services
from backend.screen import newest_screenshot, read_complete_png
from tests.integration.harness import job_settings, make_config, mock_web, running_worker, wait_registered

pytestmark = pytest.mark.timeout(90)


def test_the_newest_complete_screenshot_wins(tmp_path) -> None:
    results = tmp_path / "testresults"
    (results / ".thumbs").mkdir(parents=True)
    from backend.engine.png import screenshot_png

    (results / "boot-1.png").write_bytes(screenshot_png(32, 24, 1))
    (results / ".thumbs" / "boot-2.png").write_bytes(screenshot_png(16, 16, 1))
    time.sleep(0.01)
    (results / "boot-2.png").write_bytes(screenshot_png(32, 24, 2))
    (results / "boot-2.txt").write_text("not a screenshot")
    found = newest_screenshot(tmp_path)
    assert found is not None and found[0].name == "boot-2.png" and found[0].parent == results
    half = screenshot_png(32, 24, 3)[:-12]
    (results / "boot-3.png").write_bytes(half)  # being written right now
    assert read_complete_png(results / "boot-3.png") is None
    assert read_complete_png(results / "boot-2.png") is not None
    assert newest_screenshot(tmp_path / "nothing") is None


async def test_screens_of_a_running_job_reach_only_the_client_that_shows_it(tmp_path) -> None:
    async with mock_web(tmp_path) as web:
        config = make_config(tmp_path, [web.url])
        instance = config.slots[0].instance
        async with running_worker(config) as worker:
            services = await start_services(worker, socket=tmp_path / "c.sock")
            watcher = services.screens
            shows = await ControlConnection.open(tmp_path / "c.sock")
            other = await ControlConnection.open(tmp_path / "c.sock")
            try:
                await wait_registered(web)
                for conn in (shows, other):
                    assert (await conn.read())["type"] == "snapshot"
                shows.send({"type": "command", "id": 1, "cmd": "screen", "instances": [instance],
                            "max_width": 160, "max_height": 120})
                job_id = web.schedule_job(job_settings(SIM_MODULES="boot,a,b,c,shutdown", SIM_MODULE_SECONDS="1",
                                                       SIM_SCREENSHOTS="3", SIM_SCREENSHOT_SIZE="640x480"))
                frames, started = [], None
                async with asyncio.timeout(40):
                    while True:
                        message = await shows.read()
                        assert message is not None
                        if message["type"] == "screen":
                            frames.append((time.monotonic(), message))
                            started = started or time.monotonic()
                        if message["type"] == "event" and message["event"] == "JobFinished":
                            break
                assert len(frames) >= 3, "the screen never changed on the client"
                assert all(m["job_id"] == job_id and m["instance"] == instance for _, m in frames)
                with Image.open(io.BytesIO(base64.b64decode(frames[-1][1]["png"]))) as img:
                    assert img.width <= 160 and img.height <= 120  # downscaled for the wire (source 640×480)
                span = frames[-1][0] - frames[0][0]
                assert len(frames) <= span / watcher.interval + 2, "more than one screen a second"
                names = [m["name"] for _, m in frames]
                assert len(set(names)) == len(names), "the same screenshot was sent twice"

                other.send({"type": "command", "id": 1, "cmd": "ping"})
                seen = []
                async with asyncio.timeout(10):
                    while not seen or seen[-1]["type"] != "reply":
                        seen.append(await other.read())
                assert not [m for m in seen if m["type"] == "screen"], "a client that shows no screen got one"
                assert not watcher.wanted - {instance}
            finally:
                await shows.close()
                await other.close()
                await services.close()
        assert not watcher.wanted  # the clients went: nobody watches the pool any more
