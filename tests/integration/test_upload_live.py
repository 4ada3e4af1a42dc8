"""Live log / live screen (§17.1) and developer-mode upload progress (§17.2).

The reporter's cadences run on a virtual clock (tests/clock.py): waiting 28 s of its time for the
30 s interval takes no wall-clock time, and no assertion depends on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from backend.events import DeveloperSession, LiveViewers
from tests.integration.upload_support import Harness, Module, make_png

LIVE_FIELDS = {"log", "serial_log", "serial_terminal", "serial_terminal_user"}

pytestmark = pytest.mark.virtual_clock


async def test_live_viewer_switches_cadence_fields_and_the_live_log_marker(harness: Harness) -> None:
    h = harness
    h.reporter.interval, h.reporter.live_interval = 30.0, 0.15
    h.builder.status("running", "boot")
    h.builder.order([Module("boot")])
    (h.pool / "autoinst-log.txt").write_text("first line\n")
    (h.pool / "serial0").write_bytes(b"serial says hi\n")
    shots = h.pool / "qemuscreenshot"
    shots.mkdir()
    (shots / "1.000.png").write_bytes(make_png(8, 8, seed=1))
    os.symlink("1.000.png", shots / "last.png")
    h.web.changed = asyncio.Event()
    sub = h.bus.subscribe()

    h.reporter.set_live_viewers(1)  # before start: remembered and applied at start
    assert not (h.pool / "live_log").exists()
    h.reporter.start()
    assert (h.pool / "live_log").exists()
    await h.web.wait(lambda: len(h.web.status_posts) >= 1)
    first = h.web.status_posts[0]
    assert first["log"] == {"offset": 0, "data": "first line\n"}
    assert first["serial_log"] == {"offset": 0, "data": "serial says hi\n"}
    assert first["serial_terminal"] == {} and first["serial_terminal_user"] == {}  # files missing
    assert first["screen"] == {"name": "1.000.png", "png": base64.b64encode(make_png(8, 8, seed=1)).decode()}

    with (h.pool / "autoinst-log.txt").open("a") as fh:
        fh.write("second line\n")
    await h.web.wait(lambda: any(p.get("log", {}).get("offset") == 11 for p in h.web.status_posts))
    second = next(p for p in h.web.status_posts if p.get("log", {}).get("offset") == 11)
    assert second["log"]["data"] == "second line\n"
    assert "screen" not in second  # unchanged screen is not sent again

    # 1 s cadence (here 0.15 s, spaced by MIN_ROUND_SPACING) while watched: posts without any trigger
    loop = asyncio.get_running_loop()
    count, t0 = len(h.web.status_posts), loop.time()
    await h.web.wait(lambda: len(h.web.status_posts) >= count + 4, timeout=30)
    assert loop.time() - t0 < 4 * 1.0  # not the 30 s interval

    h.reporter.set_live_viewers(0)
    assert not (h.pool / "live_log").exists()
    await asyncio.sleep(1.0)  # the round in flight (and one on the short interval) ends
    quiet_from = len(h.web.status_posts)
    await asyncio.sleep(28)
    assert len(h.web.status_posts) == quiet_from  # back to the long interval: nothing for 28 s
    await asyncio.sleep(3)
    assert len(h.web.status_posts) == quiet_from + 1  # and then the 30 s round
    assert all(not (LIVE_FIELDS & p.keys()) for p in h.web.status_posts[quiet_from:])

    viewers = []
    while not sub._queue.empty():
        event = sub.get_nowait()
        if isinstance(event, LiveViewers):
            viewers.append(event.viewers)
    assert viewers == [1, 0]


async def test_first_viewer_triggers_an_immediate_round(harness: Harness) -> None:
    h = harness
    h.reporter.interval = 30.0
    h.builder.status("initial")
    h.reporter.start()
    await h.web.wait(lambda: h.web.status_posts)
    (h.pool / "autoinst-log.txt").write_text("hello\n")
    h.reporter.set_live_viewers(2)
    await h.web.wait(lambda: len(h.web.status_posts) >= 2, timeout=3)
    assert h.web.status_posts[1]["log"] == {"offset": 0, "data": "hello\n"}


async def test_developer_session_posts_upload_progress_down_to_zero(harness: Harness) -> None:
    h, b = harness, harness.builder
    mods = [Module("boot", screenshots=3, texts=1), Module("login")]
    b.order(mods)
    b.status("running", "boot")
    sub = h.bus.subscribe()
    h.reporter.enable_developer_session()
    h.reporter.start()
    await h.web.wait(lambda: h.web.status_posts)
    b.result(mods[0])
    b.status("running", "login")
    h.reporter.trigger()
    await h.web.wait(lambda: h.web.progress_posts[-1:] and h.web.progress_posts[-1]["upload_up_to"] == "boot"
                     and h.web.progress_posts[-1]["outstanding_images"] == 0)
    progress = h.web.progress_posts
    assert progress[0] == {"upload_up_to": None, "upload_up_to_current_module": "",
                           "outstanding_files": 0, "outstanding_images": 0}
    assert progress[-2] == {"upload_up_to": "boot", "upload_up_to_current_module": "",
                            "outstanding_files": 1, "outstanding_images": 3}
    assert progress[-1] == {"upload_up_to": "boot", "upload_up_to_current_module": "",
                            "outstanding_files": 0, "outstanding_images": 0}
    # only changes are posted: another idle round sends nothing new
    count = len(progress)
    before = len(h.web.status_posts)
    h.reporter.trigger()
    await h.web.wait(lambda: len(h.web.status_posts) > before)
    await asyncio.sleep(0.1)
    assert len(h.web.progress_posts) == count + 1  # {upload_up_to: null, ...} once, then nothing
    events = []
    while not sub._queue.empty():
        events.append(sub.get_nowait())
    assert any(isinstance(e, DeveloperSession) and e.active for e in events)


async def test_a_developer_session_gets_the_upload_progress_at_once_not_at_the_next_interval(harness: Harness
                                                                                               ) -> None:
    h, b = harness, harness.builder
    b.order([Module("boot")])
    b.status("running", "boot")
    h.reporter.interval = 30.0
    h.reporter.start()
    await h.web.wait(lambda: h.web.status_posts)
    await asyncio.sleep(0.3)  # that round is over
    assert h.web.progress_posts == []
    h.reporter.enable_developer_session()
    await h.web.wait(lambda: h.web.progress_posts, timeout=3)  # well before the 30 s interval
    assert h.web.progress_posts == [{"upload_up_to": None, "upload_up_to_current_module": "",
                                     "outstanding_files": 0, "outstanding_images": 0}]
    h.reporter.enable_developer_session()  # the handler says it again (a second browser): no extra round
    await asyncio.sleep(0.3)
    assert len(h.web.status_posts) == 2


async def test_progress_post_failure_does_not_disturb_uploads(harness: Harness) -> None:
    h, b = harness, harness.builder
    h.reporter.ctx.livehandler_base = "http://127.0.0.1:9"  # nothing listens there
    from backend.livehandler import UploadProgressPoster

    h.reporter._progress = UploadProgressPoster(h.client, "http://127.0.0.1:9", h.web.job_id)
    mod = Module("boot", screenshots=2)
    b.order([mod])
    b.status("running", "boot")
    h.reporter.enable_developer_session()
    h.reporter.start()
    await h.web.wait(lambda: h.web.status_posts)
    b.result(mod)
    b.status("finished", "")
    h.reporter.trigger()
    await h.web.wait(lambda: len(h.web.names(image="1", thumb="0")) == 2)
    assert h.stops == []
