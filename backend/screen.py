"""The test's screen: the newest screenshot isotovideo wrote into a running slot's pool directory.

isotovideo writes every screenshot to ``testresults/<module>-<n>.png`` (and, while a live log is
wanted, ``qemuscreenshot/last.png``). ``ScreenWatcher`` looks at most once a second, only for slots
somebody shows (``want``), reads the newest complete PNG in a thread and hands it to its listeners
(the control server sends it, downscaled, to the clients that show that slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.tasks import cancel_and_wait

log = logging.getLogger("qaworker.screen")

PNG_END = b"IEND\xaeB`\x82"
INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class ScreenFrame:
    instance: int
    job_id: int
    name: str  # file name, e.g. boot-3.png
    ts: float  # its mtime
    png: bytes


def newest_screenshot(pool: Path) -> tuple[Path, float] | None:
    """The newest screenshot of the test running in ``pool`` (blocking: call it in a thread)."""
    best: tuple[Path, float] | None = None
    with contextlib.suppress(OSError):
        last = pool / "qemuscreenshot" / "last.png"
        target = last.resolve(strict=True)
        best = (target, target.stat().st_mtime)
    with contextlib.suppress(OSError), os.scandir(pool / "testresults") as entries:
        for entry in entries:
            if not entry.name.endswith(".png") or not entry.is_file():
                continue
            mtime = entry.stat().st_mtime
            if best is None or mtime > best[1] or (mtime == best[1] and entry.name > best[0].name):
                best = (Path(entry.path), mtime)
    return best


def read_complete_png(path: Path) -> bytes | None:
    """The file's bytes if it is a whole PNG (isotovideo may be writing it right now)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"\x89PNG") and data.endswith(PNG_END) else None


def downscale_png(png: bytes, max_size: tuple[int, int]) -> bytes:
    """A PNG no larger than ``max_size`` (blocking: Pillow)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        if image.width <= max_size[0] and image.height <= max_size[1]:
            return png
        small = image.convert("RGB")
        small.thumbnail(max_size)
        out = io.BytesIO()
        small.save(out, format="PNG", compress_level=1)
        return out.getvalue()


class ScreenWatcher:
    """Newest screenshot per wanted slot; ``view`` tells which job a slot runs."""

    def __init__(self, view: Any, pool_dirs: dict[int, Path], interval: float = INTERVAL,
                 view_source: Callable[[], Any] | None = None) -> None:
        self._view_source = view_source or (lambda: view)
        self.pool_dirs = pool_dirs
        self.interval = interval
        self._wants: dict[object, frozenset[int]] = {}
        self._frames: dict[int, ScreenFrame] = {}
        self._seen: dict[int, tuple[str, float]] = {}
        self._listeners: list[Callable[[ScreenFrame], None]] = []
        self._wanted_changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._scaled: dict[tuple[int, str, float, tuple[int, int]], bytes] = {}

    # -- consumers ----------------------------------------------------------------------------------

    def want(self, owner: object, instances: Iterable[int]) -> None:
        wanted = frozenset(instances)
        before = self.wanted
        if wanted:
            self._wants[owner] = wanted
        else:
            self._wants.pop(owner, None)
        if self.wanted != before:  # a panel re-asks on every render: only news wake the watcher
            self._wanted_changed.set()

    @property
    def wanted(self) -> set[int]:
        return set().union(*self._wants.values()) if self._wants else set()

    def latest(self, instance: int) -> ScreenFrame | None:
        return self._frames.get(instance)

    def add_listener(self, callback: Callable[[ScreenFrame], None]) -> None:
        self._listeners.append(callback)

    async def encoded_for_wire(self, frame: ScreenFrame, max_size: tuple[int, int]) -> bytes:
        key = (frame.instance, frame.name, frame.ts, max_size)
        if key not in self._scaled:
            self._scaled = {k: v for k, v in self._scaled.items() if k[0] != frame.instance}
            self._scaled[key] = await asyncio.to_thread(downscale_png, frame.png, max_size)
        return self._scaled[key]

    # -- running ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="screen-watcher")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)  # a cancel aimed at close()'s caller still propagates

    async def run(self) -> None:
        while True:
            if not self.wanted:
                self._wanted_changed.clear()
                await self._wanted_changed.wait()
            try:
                await self.poll()
            except Exception:  # a bad file must not end the screens for good
                log.exception("screen watcher failed")
            self._wanted_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wanted_changed.wait()

    async def poll(self) -> None:
        view = self._view_source()
        for instance in sorted(self.wanted):
            slot = view.slots.get(instance)
            pool = self.pool_dirs.get(instance)
            if slot is None or slot.job is None or pool is None:
                self._frames.pop(instance, None)
                self._seen.pop(instance, None)
                continue
            job_id = slot.job.job_id
            current = self._frames.get(instance)
            if current is not None and current.job_id != job_id:
                self._frames.pop(instance, None)
                self._seen.pop(instance, None)
            found = await asyncio.to_thread(newest_screenshot, pool)
            if found is None:
                continue
            path, mtime = found
            if self._seen.get(instance) == (path.name, mtime):
                continue
            png = await asyncio.to_thread(read_complete_png, path)
            if png is None:
                continue  # half written: next time
            self._seen[instance] = (path.name, mtime)
            frame = ScreenFrame(instance, job_id, path.name, mtime, png)
            self._frames[instance] = frame
            for listener in list(self._listeners):
                try:
                    listener(frame)
                except Exception:
                    log.exception("screen listener failed")
