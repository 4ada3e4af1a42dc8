"""Screenshot optimisation in the process pool (§13.5, §25 optipng note)."""

from __future__ import annotations

import asyncio

import pytest

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
