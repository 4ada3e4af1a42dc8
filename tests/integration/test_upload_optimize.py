"""Screenshot optimisation in the image pool (§13.5, §25 optipng note): oxipng, optipng, pngquant."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess

import pytest

from backend.engine.png import screenshot_png
from tests.helpers import require_tools
from tests.integration.upload_support import Harness, Module, PoolBuilder, md5_of


@pytest.fixture(autouse=True)
def _optimisers_installed() -> None:
    require_tools("optipng", "pngquant")


async def test_fifty_screenshots_are_optimised_while_the_loop_keeps_responding(harness: Harness) -> None:
    h = harness
    h.builder = PoolBuilder(h.pool, png_size=(160, 120))
    mod = Module("install", screenshots=50)
    h.builder.order([mod])
    shots = h.builder.result(mod, thumbs=False)
    originals = {n: (h.builder.results / n).read_bytes() for n in shots}
    md5s = {n: md5_of(h.builder.results / n) for n in shots}
    h.builder.status("finished", "")

    ticks_while_optimising = 0
    optimising_seen = False
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks_while_optimising, optimising_seen
        while not done.is_set():
            await asyncio.sleep(0.005)
            if h.reporter.tracker.optipng_queue > 0:
                optimising_seen = True
                ticks_while_optimising += 1

    task = asyncio.create_task(ticker())
    await h.reporter.final_status()
    done.set()
    await task

    assert optimising_seen
    assert ticks_while_optimising >= 10  # the loop kept running timers while optipng worked
    uploads = {a.filename: a for a in h.web.uploads(image="1", thumb="0")}
    assert sorted(uploads) == sorted(shots)
    for name, upload in uploads.items():
        assert upload.fields["md5"] == md5s[name]  # md5 of the unoptimised file
        assert len(upload.content) < len(originals[name])  # but the optimised bytes were sent
        assert upload.content.startswith(b"\x89PNG")


async def test_optimize_images_off_sends_the_original_bytes(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings["OPTIMIZE_IMAGES"] = "0"
    mod = Module("boot", screenshots=2)
    h.builder.order([mod])
    shots = h.builder.result(mod)
    originals = {n: (h.builder.results / n).read_bytes() for n in shots}
    h.builder.status("finished", "")
    await h.reporter.final_status()
    assert {a.filename: a.content for a in h.web.uploads(image="1", thumb="0")} == originals


async def test_use_pngquant_makes_palette_images(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings["USE_PNGQUANT"] = "1"
    mod = Module("boot", screenshots=1)
    h.builder.order([mod])
    h.builder.result(mod)
    h.builder.status("finished", "")
    await h.reporter.final_status()
    [upload] = h.web.uploads(image="1", thumb="0")
    assert upload.content[25] == 3  # IHDR colour type 3 = palette: pngquant ran, not optipng


async def test_unoptimisable_image_marks_the_worker_broken_but_is_still_uploaded(harness: Harness) -> None:
    h = harness
    h.reporter.optimize_pause = 0.01
    mod = Module("boot", screenshots=1)
    h.builder.order([mod])
    h.builder.status("running", "boot")
    h.reporter.start()
    await h.web.wait(lambda: h.web.status_posts)
    [shot] = h.builder.result(mod, thumbs=False)
    (h.builder.results / shot).write_bytes(b"this is not a png")
    h.builder.status("finished", "")
    h.reporter.trigger()
    await h.web.wait(lambda: h.stops)
    [(reason, detail)] = h.stops
    assert reason == "worker broken"
    assert detail.startswith("Unable to optimize image: boot-1.png")
    assert detail.endswith(" - You may disable optimizations via OPTIMIZE_IMAGES=0.")
    await h.web.wait(lambda: h.web.names(image="1", thumb="0") == [shot])


async def test_screenshots_are_hashed_and_optimised_as_soon_as_isotovideo_writes_them(harness: Harness) -> None:
    h = harness
    mod, nxt = Module("boot", screenshots=0), Module("login", screenshots=0)
    h.builder.order([mod, nxt])
    h.builder.status("running", "boot")
    h.reporter.start()
    await h.web.wait(lambda: h.web.status_posts and h.reporter.shot_watcher.active)
    # os-autoinst writes a screenshot in place; the simulator writes a temporary file and renames it
    direct, renamed = h.builder.results / "boot-1.png", h.builder.results / "boot-2.png"
    originals = {direct.name: screenshot_png(320, 240, 1), renamed.name: screenshot_png(320, 240, 2)}
    direct.write_bytes(originals[direct.name])
    tmp = renamed.with_name("boot-2.png.123.tmp")
    tmp.write_bytes(originals[renamed.name])
    tmp.replace(renamed)

    def optimised() -> bool:
        return all(len((h.builder.results / n).read_bytes()) < len(b) for n, b in originals.items())

    await h.web.wait(optimised)  # while the module still runs: nothing posted or uploaded yet
    assert not h.web.artefacts
    assert all("boot-1.png" not in json.dumps(p) for p in h.web.status_posts)
    on_disk = {n: (h.builder.results / n).read_bytes() for n in originals}

    details = [{"screenshot": n, "result": "ok"} for n in originals]
    (h.builder.results / "result-boot.json").write_text(json.dumps({"details": details, "result": "ok"}))
    h.builder.status("running", "login")
    h.reporter.trigger()
    await h.web.wait(lambda: len(h.web.uploads(image="1", thumb="0")) == 2)
    uploads = {a.filename: a for a in h.web.uploads(image="1", thumb="0")}
    for name, original in originals.items():
        assert uploads[name].fields["md5"] == hashlib.md5(original).hexdigest()  # of the unoptimised file
        assert uploads[name].content == on_disk[name]  # optimised once, before the post: not again
    boot_results = [p["result"]["boot"] for p in h.web.status_posts if "boot" in p.get("result", {})]
    posted = [d["screenshot"] for r in boot_results for d in r.get("details", [])]
    assert {s["md5"] for s in posted} == {hashlib.md5(b).hexdigest() for b in originals.values()}


async def test_optipng_can_be_chosen_by_setting(harness: Harness) -> None:
    h = harness
    h.reporter.ctx.settings["QAWORKER_PNG_OPTIMIZER"] = "optipng"
    mod = Module("boot", screenshots=1)
    h.builder.order([mod])
    [shot] = h.builder.result(mod, thumbs=False)
    path = h.builder.results / shot
    path.write_bytes(screenshot_png(256, 192, 4))
    optipng_copy = h.pool / "copy.png"
    optipng_copy.write_bytes(path.read_bytes())
    await asyncio.to_thread(subprocess.run, ["optipng", "-quiet", "-o2", str(optipng_copy)], check=True)
    h.builder.status("finished", "")
    await h.reporter.final_status()
    [upload] = h.web.uploads(image="1", thumb="0")
    assert upload.content == optipng_copy.read_bytes()  # byte for byte what optipng -o2 makes
