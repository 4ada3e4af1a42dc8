"""Reading isotovideo's result files and deciding what to upload (PROTOCOL.md §12.1, §13.3).

``ResultsReader.read`` is blocking (small JSON files) and is called from a thread; it only
touches its own state, and publishes plain data for the event loop to use.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.events import ModuleStatus

log = logging.getLogger(__name__)

RESULT_MAP = {"ok": "passed", "fail": "failed", "softfail": "softfailed", "softfailed": "softfailed",
              "passed": "passed", "failed": "failed", "skip": "skipped", "skipped": "skipped",
              "none": "none", "canceled": "skipped", "cancelled": "skipped"}


@dataclass
class ReadResult:
    """What one round found in the pool directory."""

    isotovideo_status: str = ""
    paused: Any = 0  # 0 or the pause reason, sent as is
    current_module: str = ""
    test_order: list[dict[str, Any]] | None = None  # only when (re)read or final
    upload_up_to: str | None = None  # None: no results this round; "": all
    upload_up_to_current_module: bool = False
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    screenshots: list[str] = field(default_factory=list)  # file names that need an md5
    files: list[str] = field(default_factory=list)  # text/audio files referenced by results
    read_modules: list[str] = field(default_factory=list)
    no_tests_scheduled: bool = False


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _stat_sig(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ResultsReader:
    """The §13.3 bookkeeping for one job: current module, (reduced) test order, module results."""

    def __init__(self, pool_dir: Path) -> None:
        self.pool_dir = pool_dir
        self.testresults = pool_dir / "testresults"
        self.current_module = ""
        self.full_order: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []  # reduced working list
        self._order_sig: tuple[int, int] | None = None
        self._order_loaded = False
        self.module_results: dict[str, str] = {}  # name -> raw result, for the UI
        self.last_status = ""
        self.last_paused: Any = 0

    # -- reading ---------------------------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        data = _load_json(self.pool_dir / "autoinst-status.json")
        return data if isinstance(data, dict) else {}

    def _reload_order(self, force: bool) -> bool:
        path = self.testresults / "test_order.json"
        sig = _stat_sig(path)
        if not force and self._order_loaded and sig == self._order_sig:
            return False
        order = _load_json(path)
        if not isinstance(order, list):
            return False
        self._order_sig = sig
        self._order_loaded = True
        self.full_order = [m for m in order if isinstance(m, dict)]
        self._pending = list(self.full_order)
        return True

    def read(self, final: bool = False, stopping: bool = False) -> ReadResult:
        status = self.read_status()
        out = ReadResult(isotovideo_status=str(status.get("status") or ""),
                         paused=status.get("test_execution_paused", 0) or 0)
        self.last_status, self.last_paused = out.isotovideo_status, out.paused
        running_or_finished = out.isotovideo_status in ("running", "finished")
        if final:
            self._reload_order(force=True)
            out.test_order = copy.deepcopy(self.full_order)
            out.upload_up_to = ""
            self._pending = list(self.full_order)
        elif running_or_finished:
            if (not self.current_module or not self._order_loaded) and self._reload_order(force=True):
                out.test_order = copy.deepcopy(self.full_order)
            elif self._reload_order(force=False):
                out.test_order = copy.deepcopy(self.full_order)
            running = str(status.get("current_test") or "")
            if not self.current_module and not self.full_order and not running:
                out.no_tests_scheduled = True
                return out
            if running != self.current_module:
                if self.current_module:
                    out.upload_up_to = self.current_module
                if running or out.isotovideo_status == "finished":
                    self.current_module = running
            if out.paused and self.current_module:
                out.upload_up_to = self.current_module
                out.upload_up_to_current_module = True
        out.current_module = self.current_module
        if out.upload_up_to is not None:
            self._read_results(out)
        if self.current_module and not stopping and not final:
            out.results.setdefault(self.current_module, {})["result"] = "running"
        return out

    def _read_results(self, out: ReadResult) -> None:
        extras: list[dict[str, Any]] = []
        for module in self._pending:
            name = module.get("name")
            if not name:
                continue
            result = _load_json(self.testresults / f"result-{name}.json")
            if not isinstance(result, dict):
                break
            out.results[name] = result
            out.read_modules.append(name)
            self.module_results[name] = str(result.get("result") or "none")
            for detail in result.get("details") or ():
                if not isinstance(detail, dict):
                    continue
                shot = detail.get("screenshot")
                if _plain_name(shot):
                    out.screenshots.append(shot)
                for key in ("text", "audio"):
                    if _plain_name(detail.get(key)):
                        out.files.append(detail[key])
            extra = result.get("extra_test_results")
            if isinstance(extra, list):
                extras.extend(e for e in extra if isinstance(e, dict))
            if name == out.upload_up_to:
                break
        if extras:
            base = out.test_order if out.test_order is not None else copy.deepcopy(self.full_order)
            out.test_order = base + extras

    def commit(self, out: ReadResult) -> None:
        """After a successful post: drop read modules before the current one from the working list."""
        done = {n for n in out.read_modules if n != self.current_module}
        if done:
            self._pending = [m for m in self._pending if m.get("name") not in done]

    # -- for the UI -----------------------------------------------------------------------------
    def modules(self) -> tuple[ModuleStatus, ...]:
        statuses = []
        for module in self.full_order:
            name = str(module.get("name") or "")
            if not name:
                continue
            if name == self.current_module and self.last_status == "running":
                result = "running"
            elif name in self.module_results:
                result = RESULT_MAP.get(self.module_results[name], self.module_results[name])
            else:
                result = "pending"
            category = str(module.get("category") or "")
            statuses.append(ModuleStatus(name=name, category=category, result=result))
        return tuple(statuses)

    def screenshot_path(self, name: str) -> Path:
        return self.testresults / name

    def thumbnail_path(self, name: str) -> Path:
        return self.testresults / ".thumbs" / name


def _plain_name(name: Any) -> bool:
    """A file name inside testresults/ (never a path that could reach other files)."""
    return isinstance(name, str) and bool(name) and "/" not in name and name not in (".", "..")


def attach_md5(results: dict[str, dict[str, Any]], md5s: dict[str, str]) -> None:
    """Replace every ``details[i].screenshot`` file name by ``{"name","md5"}`` (drop unknown files)."""
    for result in results.values():
        for detail in result.get("details") or ():
            if not isinstance(detail, dict):
                continue
            shot = detail.get("screenshot")
            if not isinstance(shot, str):
                continue
            if shot in md5s:
                detail["screenshot"] = {"name": shot, "md5": md5s[shot]}
            else:
                del detail["screenshot"]
