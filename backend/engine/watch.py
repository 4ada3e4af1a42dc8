"""Live isotovideo status from the pool directory (R4), driven by inotify instead of polling.

``PoolWatcher.run`` watches ``<pool>`` (for ``autoinst-status.json``, ``base_state.json`` and the
creation of ``testresults/``) and ``<pool>/testresults`` (``result-*.json``, ``test_order.json``)
with Linux inotify through ctypes and ``loop.add_reader``. Bursts of events are coalesced into one
``on_change()`` call. Without inotify it falls back to comparing file signatures every 2 s.

``read_status`` is synchronous on purpose: it parses one small JSON file and lists one directory,
which is cheap enough for the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATUS_FILE = "autoinst-status.json"
BASE_STATE_FILE = "base_state.json"
TESTRESULTS = "testresults"
TEST_ORDER_FILE = "test_order.json"

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF
_EVENT_HEADER = struct.Struct("iIII")


@dataclass(frozen=True)
class IsotovideoStatus:
    status: str = ""  # "initial" / "running" / "finished", "" when there is no (valid) status file
    current_test: str = ""
    test_execution_paused: str = ""  # the pause reason, "" when not paused
    test_order_changed: bool = False  # test_order.json is new or changed since the last read_status
    new_results: tuple[str, ...] = ()  # modules whose result-<m>.json appeared/changed since then
    base_state: dict[str, object] | None = None  # content of base_state.json once it exists


@functools.cache
def _libc() -> ctypes.CDLL:
    # find_library runs `ldconfig -p`: do it once per process, not on the loop for every job.
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class _Inotify:
    """A minimal inotify binding (libc through ctypes)."""

    def __init__(self) -> None:
        libc = _libc()
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd: int = fd

    def add_watch(self, path: Path, mask: int = WATCH_MASK) -> int:
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
        return wd

    def read_events(self) -> list[tuple[int, int, str]]:
        """All pending (wd, mask, name) events; [] when none are queued."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        events = []
        offset = 0
        while offset + _EVENT_HEADER.size <= len(data):
            wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
            offset += _EVENT_HEADER.size
            name = data[offset:offset + length].split(b"\0", 1)[0]
            offset += length
            events.append((wd, mask, os.fsdecode(name)))
        return events

    def close(self) -> None:
        os.close(self.fd)


Inotify = _Inotify  # for other watchers (backend/job/shotwatch.py)


def _relevant(in_testresults: bool, name: str) -> bool:
    if in_testresults:
        return name == TEST_ORDER_FILE or (name.startswith("result-") and name.endswith(".json"))
    return name in (STATUS_FILE, BASE_STATE_FILE, TESTRESULTS)


class PoolWatcher:
    """Calls ``on_change()`` (coalesced) whenever isotovideo's status or results change."""

    def __init__(self, pool_dir: Path, on_change: Callable[[], None], *, coalesce: float = 0.05,
                 poll_interval: float = 2.0) -> None:
        self.pool_dir = pool_dir
        self.on_change = on_change
        self.coalesce = coalesce
        self.poll_interval = poll_interval
        self.using_inotify = False
        self._dirty = asyncio.Event()
        self._order_sig: tuple[int, int] | None = None
        self._result_sigs: dict[str, tuple[int, int]] = {}

    # -- reading ---------------------------------------------------------------------------------

    def read_status(self) -> IsotovideoStatus:
        """The current status (sync; a small JSON parse plus one directory listing)."""
        raw = _read_json(self.pool_dir / STATUS_FILE)
        data = raw if isinstance(raw, dict) else {}
        paused = data.get("test_execution_paused") or ""
        base = _read_json(self.pool_dir / BASE_STATE_FILE)
        order_sig = _signature(self.pool_dir / TESTRESULTS / TEST_ORDER_FILE)
        order_changed = order_sig is not None and order_sig != self._order_sig
        self._order_sig = order_sig
        return IsotovideoStatus(
            status=str(data.get("status") or ""),
            current_test=str(data.get("current_test") or ""),
            test_execution_paused="" if paused in (0, "0") else str(paused),
            test_order_changed=order_changed,
            new_results=self._new_results(),
            base_state=base if isinstance(base, dict) else None,
        )

    def _new_results(self) -> tuple[str, ...]:
        current: dict[str, tuple[int, int]] = {}
        try:
            with os.scandir(self.pool_dir / TESTRESULTS) as it:
                for entry in it:
                    if entry.name.startswith("result-") and entry.name.endswith(".json"):
                        st = entry.stat()
                        current[entry.name[7:-5]] = (st.st_mtime_ns, st.st_size)
        except OSError:
            return ()
        changed = tuple(sorted((m for m, sig in current.items() if self._result_sigs.get(m) != sig),
                               key=lambda m: current[m]))
        self._result_sigs = current
        return changed

    # -- watching --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch until cancelled."""
        try:
            inotify = _Inotify()
        except (OSError, AttributeError) as exc:
            log.warning("inotify unavailable (%s), polling %s every %.0f s", exc, self.pool_dir,
                        self.poll_interval)
            await self._poll_forever()
            return
        self.using_inotify = True
        loop = asyncio.get_running_loop()
        wds: dict[int, bool] = {}  # wd -> is the testresults dir
        try:
            wds[inotify.add_watch(self.pool_dir)] = False
            self._watch_testresults(inotify, wds)
            loop.add_reader(inotify.fd, self._on_readable, inotify, wds)
            self._dirty.set()  # report the initial state once
            while True:
                await self._dirty.wait()
                await asyncio.sleep(self.coalesce)  # gather the rest of the burst
                self._dirty.clear()
                self._notify()
        finally:
            loop.remove_reader(inotify.fd)
            # Closing an inotify fd can take the kernel several ms: not on the loop.
            loop.run_in_executor(None, inotify.close)

    def _watch_testresults(self, inotify: _Inotify, wds: dict[int, bool]) -> None:
        if True in wds.values():
            return
        try:
            wds[inotify.add_watch(self.pool_dir / TESTRESULTS)] = True
            self._dirty.set()  # files may have appeared before the watch existed
        except OSError:
            pass  # not there yet: its IN_CREATE in the pool dir brings us back here

    def _on_readable(self, inotify: _Inotify, wds: dict[int, bool]) -> None:
        for wd, mask, name in inotify.read_events():
            if mask & IN_IGNORED:
                wds.pop(wd, None)
                continue
            in_testresults = wds.get(wd, False)
            if not in_testresults and name == TESTRESULTS and mask & IN_ISDIR:
                self._watch_testresults(inotify, wds)
            if _relevant(in_testresults, name):
                self._dirty.set()

    def _notify(self) -> None:
        try:
            self.on_change()
        except Exception:
            log.exception("PoolWatcher on_change callback failed")

    async def _poll_forever(self) -> None:
        last = None
        while True:
            sig = self._poll_signature()
            if sig != last:
                last = sig
                self._notify()
            await asyncio.sleep(self.poll_interval)

    def _poll_signature(self) -> tuple[object, ...]:
        results = self.pool_dir / TESTRESULTS
        return (_signature(self.pool_dir / STATUS_FILE), _signature(self.pool_dir / BASE_STATE_FILE),
                _signature(results / TEST_ORDER_FILE), _signature(results))


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def prepare() -> None:
    """Load libc for inotify ahead of the first job (call it in a thread at startup)."""
    _libc()
