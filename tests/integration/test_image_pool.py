"""The image pool: real helper processes, real oxipng/optipng/pngquant on real screen-like PNGs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
from pathlib import Path

import psutil
import pytest

from app.threads import started_pool
from backend.engine.png import screenshot_png
from backend.job.imageopt import ImagePool, OptimizeError, Optimizer, choose_optimizer, make_image_pool
from tests.helpers import alive_pids
from tests.pngdecode import rgb_pixels


def write_shots(folder: Path, count: int, size: tuple[int, int] = (256, 192)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = folder / f"shot-{seed}.png"
        path.write_bytes(screenshot_png(*size, seed))
        paths.append(path)
    return paths


@pytest.fixture
async def pool():
    p = ImagePool(2)
    yield p
    await p.aclose()


async def wait_gone(pids: list[int], timeout: float = 10) -> None:
    """Until none of ``pids`` runs (a zombie counts as gone: this test process may be a subreaper)."""
    for _ in range(int(timeout / 0.05)):
        if not alive_pids(pids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still running: {alive_pids(pids)}")


@pytest.mark.parametrize("method", [Optimizer.OXIPNG, Optimizer.OPTIPNG])
async def test_lossless_optimisers_shrink_screenshots_and_keep_every_pixel(pool, tmp_path, method) -> None:
    paths = write_shots(tmp_path, 6)  # consoles (seeds 0, 3) and desktops
    before = {p: (p.read_bytes(), rgb_pixels(p.read_bytes())) for p in paths}
    sizes = await asyncio.gather(*(pool.optimize(p, method) for p in paths))
    for path, size in zip(paths, sizes, strict=True):
        data = path.read_bytes()
        assert size == len(data) < len(before[path][0])
        assert rgb_pixels(data) == before[path][1]
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left beside them


async def test_oxipng_is_within_two_percent_of_optipng(pool, tmp_path) -> None:
    ox = write_shots(tmp_path / "ox", 6, (512, 384))
    opti = write_shots(tmp_path / "opti", 6, (512, 384))
    ox_size = sum(await asyncio.gather(*(pool.optimize(p, Optimizer.OXIPNG) for p in ox)))
    opti_size = sum(await asyncio.gather(*(pool.optimize(p, Optimizer.OPTIPNG) for p in opti)))
    assert ox_size <= opti_size * 1.02


async def test_pngquant_makes_a_palette_image(pool, tmp_path) -> None:
    [path] = write_shots(tmp_path, 1)  # seed 0: a console
    path.write_bytes(screenshot_png(256, 192, 1))  # a desktop, many colours
    await pool.optimize(path, Optimizer.PNGQUANT)
    assert path.read_bytes()[25] == 3  # IHDR colour type 3: quantised to a palette


async def test_md5_is_of_the_file_as_it_was(pool, tmp_path) -> None:
    [path] = write_shots(tmp_path, 1)
    original = hashlib.md5(path.read_bytes()).hexdigest()
    assert await pool.md5(path) == original
    await pool.optimize(path)
    assert await pool.md5(path) != original  # so the reporter must hash first (it does)


async def test_a_broken_file_fails_after_its_attempts_with_the_file_name(pool, tmp_path) -> None:
    path = tmp_path / "boot-1.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(OptimizeError, match=r"^Unable to optimize image: boot-1\.png: "):
        await pool.optimize(path, attempts=2, pause=0.01)
    assert path.read_bytes() == b"this is not a png"  # left as it was


async def test_a_missing_tool_fails_at_once_without_retries(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # the helper looks optipng up in its PATH
    p = ImagePool(1)
    try:
        [path] = write_shots(tmp_path, 1)
        with pytest.raises(OptimizeError, match="optipng not found"):
            await asyncio.wait_for(p.optimize(path, Optimizer.OPTIPNG, attempts=5, pause=30), 20)
    finally:
        await p.aclose()


async def test_a_killed_helper_is_replaced_and_the_image_still_optimised(pool, tmp_path) -> None:
    paths = write_shots(tmp_path, 2)
    await pool.optimize(paths[0])
    [victim, *_] = pool.pids()
    os.kill(victim, signal.SIGKILL)
    await wait_gone([victim])
    size = await pool.optimize(paths[1], attempts=2, pause=0.01)
    assert size == paths[1].stat().st_size
    assert victim not in pool.pids()


async def test_idle_helpers_exit_and_come_back_on_demand(tmp_path) -> None:
    p = ImagePool(1, idle_exit=0.3)
    try:
        paths = write_shots(tmp_path, 2)
        await p.optimize(paths[0])
        first = p.pids()
        assert len(first) == 1
        await wait_gone(first)  # it leaves by itself, with nothing to do
        await p.optimize(paths[1])  # no attempt is lost to the retired helper
        assert p.pids() and p.pids() != first
    finally:
        await p.aclose()


async def test_shutdown_ends_every_helper(tmp_path) -> None:
    p = ImagePool(2)
    paths = write_shots(tmp_path, 4)
    await asyncio.gather(*(p.optimize(x) for x in paths))
    pids = p.pids()
    assert len(pids) == 2
    await p.aclose()
    assert alive_pids(pids) == []
    with pytest.raises(OptimizeError):
        await p.optimize(paths[0])


def test_the_optimizer_setting() -> None:
    assert choose_optimizer(None, False) == Optimizer.OXIPNG
    assert choose_optimizer("optipng", False) == Optimizer.OPTIPNG
    assert choose_optimizer(" OptiPNG ", False) == Optimizer.OPTIPNG
    assert choose_optimizer("optipng", True) == Optimizer.PNGQUANT  # USE_PNGQUANT wins
    assert choose_optimizer("zopfli", False) == Optimizer.OXIPNG  # unknown: logged, the default


async def test_optipng_dies_with_its_helper_and_the_attempt_is_retried(pool, tmp_path) -> None:
    [path] = write_shots(tmp_path, 1, (1024, 768))
    path.write_bytes(screenshot_png(1024, 768, 1))  # a desktop: optipng -o2 needs a while
    pixels = rgb_pixels(path.read_bytes())
    job = asyncio.create_task(pool.optimize(path, Optimizer.OPTIPNG, attempts=3, pause=0.01))
    optipng = None
    for _ in range(200):
        children = [c for pid in pool.pids() for c in psutil.Process(pid).children()]
        optipng = next((c for c in children if c.name() == "optipng"), None)
        if optipng is not None:
            break
        await asyncio.sleep(0.02)
    assert optipng is not None, "optipng never started"
    helper = psutil.Process(optipng.ppid())
    helper.kill()
    await wait_gone([helper.pid, optipng.pid])  # optipng too: PR_SET_PDEATHSIG
    await job  # the next attempt on a new helper did the work
    assert rgb_pixels(path.read_bytes()) == pixels


async def test_the_workers_pool_runs_one_helper_per_core(tmp_path) -> None:
    cores = len(os.sched_getaffinity(0))
    p = make_image_pool()
    try:
        assert p.size == cores
        paths = write_shots(tmp_path, 2 * cores, (512, 384))
        await asyncio.gather(*(p.optimize(x) for x in paths))
        assert len(p.pids()) == cores  # every core got a helper of its own
    finally:
        await p.aclose()


async def test_optimising_starts_no_thread_on_the_event_loop(tmp_path, monkeypatch) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(started_pool(4))  # as the worker's loop has (app.threads.run)
    started_by: list[str] = []
    original = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        started_by.append(threading.current_thread().name)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    p = ImagePool(2)
    try:
        paths = write_shots(tmp_path, 4)
        await asyncio.gather(*(p.optimize(x) for x in paths))
        assert len(p.pids()) == 2
    finally:
        await p.aclose()
    assert started_by, "the pool started no threads at all"
    assert threading.current_thread().name not in started_by  # Thread.start() waits: never on the loop
