"""The slot's pool directory: its lock and its cleanup (PROTOCOL.md §1.4, §10.1, ANCHORS §C 29/30).

Path rule (checked in ``PoolDir.__init__``, on the path as given *and* on its resolved form, so a symlinked
pool dir is judged by where it really points):

* it must be absolute and contain no ``..`` component;
* it must not be ``/``, a top-level directory (``/var``, ``/tmp``, ...), the home directory or one of its
  ancestors;
* its last component must be a number (the slot's instance: ``<prjdir>/pool/<N>``) unless the caller
  passes ``allow_any_name=True`` (for deliberately unusual layouts).

The lock is a POSIX ``fcntl`` write lock (``F_SETLK``/``F_WRLCK`` via ``lockf``) on ``<pool>/.locked``, the
same kind the classic Perl worker takes, so qaworker and the classic worker exclude each other. POSIX locks
belong to the process and vanish when *any* descriptor of the file is closed, so a registry makes a second
lock attempt on the same directory inside this process fail without ever opening the file again.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import shutil
import threading
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = ".locked"
KEEP_ALWAYS = frozenset({"worker_packages.txt"})
QEMU_PID_FILE = "qemu.pid"

# (st_dev, st_ino) of every pool directory locked by this process
_locked_here: set[tuple[int, int]] = set()
_registry_lock = threading.Lock()


class PoolLockError(Exception):
    """The pool directory is locked by someone else (another worker on the same slot)."""


def _suspicious(path: Path) -> str | None:
    """Why ``path`` must never be a pool directory, or None."""
    if not path.is_absolute():
        return "it is not an absolute path"
    if ".." in path.parts:
        return "it contains '..'"
    if len(path.parts) <= 2:  # "/" or "/var"
        return "it is the root or a top-level directory"
    home = Path(os.path.expanduser("~"))
    if home.is_absolute() and (path == home or path in home.parents):
        return "it is the home directory or one of its parents"
    return None


class PoolDir:
    """One slot's pool directory."""

    def __init__(self, path: Path, *, allow_any_name: bool = False) -> None:
        if path is None or str(path) in ("", "."):
            raise ValueError("Refusing to use an unset pool directory")
        path = Path(path)
        for candidate in (path, path.resolve()):
            reason = _suspicious(candidate)
            if reason:
                raise ValueError(f"Refusing to use {path} as pool directory: {reason}")
            if not allow_any_name and not candidate.name.isdigit():
                raise ValueError(
                    f"Refusing to use {path} as pool directory: it does not end in a numeric instance dir"
                )
        self.path = path
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"PoolDir({str(self.path)!r}, locked={self.locked})"

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def lock(self) -> None:
        """Create the directory if needed and take the slot lock; idempotent for the holder."""
        if self._fd is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            st = self.path.stat()
        except OSError as exc:
            raise PoolLockError(f"Unable to lock pool directory: {exc}") from exc
        key = (st.st_dev, st.st_ino)
        with _registry_lock:
            if key in _locked_here:
                raise PoolLockError(f"Unable to lock pool directory: {self.path} already locked")
            _locked_here.add(key)
        try:
            self._fd = self._take_lock()
            self._key = key
        except BaseException:
            with _registry_lock:
                _locked_here.discard(key)
            raise

    def _take_lock(self) -> int:
        lock_path = self.path / LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise PoolLockError(
                f"Unable to lock pool directory: cannot open lock file in {self.path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise PoolLockError(f"Unable to lock pool directory: {self.path} already locked") from exc
            raise PoolLockError(f"Unable to lock pool directory: {exc}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def unlock(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            with _registry_lock:
                if self._key is not None:
                    _locked_here.discard(self._key)
            self._key = None

    async def clean(self, *, keep_qemu_pid: bool) -> None:
        """§10.1: delete every non-hidden entry except worker_packages.txt (and qemu.pid if asked)."""
        await asyncio.to_thread(self._clean_sync, keep_qemu_pid)

    def _clean_sync(self, keep_qemu_pid: bool) -> None:
        keep = KEEP_ALWAYS | ({QEMU_PID_FILE} if keep_qemu_pid else set())
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.name in keep:
                continue
            try:
                # a symlink (to a dir or anywhere) is unlinked, never followed
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, onerror=_log_rmtree_error)
                else:
                    os.unlink(entry.path)
            except OSError as exc:
                log.warning("Could not remove %s from pool directory: %s", entry.path, exc)


def _log_rmtree_error(func: object, path: str, exc_info: tuple) -> None:
    log.warning("Could not remove %s from pool directory: %s", path, exc_info[1])
