"""Screenshots as isotovideo finishes writing them (inotify on ``<pool>/testresults``).

``ScreenshotWatcher.run`` calls ``on_screenshot(name)`` for every ``*.png`` that is closed after
writing or renamed into ``testresults/`` (os-autoinst writes each screenshot once), so the reporter can
hash and optimise it while the test goes on instead of when its module's results are posted. Files
that were already there are left to the upload rounds: nothing tells whether they are complete.
Without inotify it does nothing (the rounds still hash and optimise everything, only later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from backend.engine.watch import IN_CLOSE_WRITE, IN_CREATE, IN_IGNORED, IN_ISDIR, IN_MOVED_TO, TESTRESULTS, Inotify

log = logging.getLogger(__name__)

SHOT_MASK = IN_CLOSE_WRITE | IN_MOVED_TO


def is_screenshot_name(name: str) -> bool:
    return name.endswith(".png") and "/" not in name and not name.startswith(".")


class ScreenshotWatcher:
    def __init__(self, pool_dir: Path, on_screenshot: Callable[[str], None]) -> None:
        self.pool_dir = pool_dir
        self.on_screenshot = on_screenshot
        self.active = False  # True while inotify watches (tests check it before writing files)
        self._results_wd: int | None = None

    async def run(self) -> None:
        """Watch until cancelled."""
        try:
            inotify = Inotify()
        except (OSError, AttributeError) as exc:
            log.info("inotify unavailable (%s): screenshots are optimised when their module is posted", exc)
            await asyncio.Event().wait()
            return
        loop = asyncio.get_running_loop()
        try:
            inotify.add_watch(self.pool_dir, IN_CREATE | IN_MOVED_TO)
            self._watch_results(inotify)
            loop.add_reader(inotify.fd, self._on_readable, inotify)
            self.active = True
            await asyncio.Event().wait()
        finally:
            self.active = False
            loop.remove_reader(inotify.fd)
            loop.run_in_executor(None, inotify.close)  # closing can take the kernel ms: not on the loop

    def _watch_results(self, inotify: Inotify) -> None:
        if self._results_wd is not None:
            return
        try:
            self._results_wd = inotify.add_watch(self.pool_dir / TESTRESULTS, SHOT_MASK)
        except OSError:
            pass  # not there yet: its IN_CREATE in the pool directory brings us back

    def _on_readable(self, inotify: Inotify) -> None:
        for wd, mask, name in inotify.read_events():
            if mask & IN_IGNORED:
                if wd == self._results_wd:
                    self._results_wd = None
                continue
            if wd != self._results_wd:
                if name == TESTRESULTS and mask & IN_ISDIR:
                    self._watch_results(inotify)
                continue
            if not mask & IN_ISDIR and is_screenshot_name(name):
                try:
                    self.on_screenshot(name)
                except Exception:
                    log.exception("screenshot callback failed for %s", name)
