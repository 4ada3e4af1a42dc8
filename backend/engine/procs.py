"""Process-tree helpers: find every process of a job and make sure none survives it.

A process group kill is not enough (ANCHORS.md fault 28): descendants may start their own session
(double fork) or ignore SIGTERM. We therefore mark every job process with an environment variable
(``QAWORKER_JOB_MARKER``, inherited by all descendants), and after the job sweep the process table
for that marker, for processes living in the pool directory, and for the pid in ``qemu.pid``.

All functions here block (they walk /proc or wait for processes); async callers run them through
``asyncio.to_thread``. Waiting uses pidfds (``os.pidfd_open`` + ``select.poll``), so no busy loop.

Reaping: the worker is a child subreaper, so orphans re-parent to it and must be reaped here.
Children that asyncio itself spawned (registered via ``register_asyncio_child``) are never
``waitpid``-ed by us: stealing their exit status would break asyncio's child watcher.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from backend.engine.procscan import candidate_pids, env_entry

log = logging.getLogger(__name__)

MARKER_ENV = "QAWORKER_JOB_MARKER"
PR_SET_CHILD_SUBREAPER = 36

# Pids of children spawned through asyncio (their exit status belongs to asyncio's watcher).
_asyncio_children: set[int] = set()


def register_asyncio_child(pid: int) -> None:
    _asyncio_children.add(pid)


def unregister_asyncio_child(pid: int) -> None:
    _asyncio_children.discard(pid)


def set_child_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux >= 3.4). Call once at start."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d", ctypes.get_errno())
            return False
    except (OSError, AttributeError) as exc:
        log.warning("cannot become a child subreaper: %s", exc)
        return False
    return True


def _safe_pool(pool_dir: Path) -> Path | None:
    """The resolved pool dir, or None when it is too broad to match by cwd (fault 29: never '/')."""
    try:
        resolved = pool_dir.resolve()
    except OSError:
        return None
    if len(resolved.parts) < 3:  # "/", "/tmp", "/var" … would match half the system
        return None
    return resolved


def _inside(path: str | None, root: Path) -> bool:
    if not path:
        return False
    try:
        return Path(path).is_relative_to(root)
    except ValueError:
        return False


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    try:
        pid = int(text.split()[0]) if text else 0
    except ValueError:
        return None
    return pid if pid > 0 else None


def _refers_to_pool(proc: psutil.Process, pool: Path) -> bool:
    try:
        if _inside(proc.cwd(), pool):
            return True
        return any(str(pool) in arg for arg in proc.cmdline())
    except (psutil.Error, OSError):
        return False


def find_job_processes(marker: str, pool_dir: Path) -> list[psutil.Process]:
    """Processes of ours that belong to the job: marker in environ, cwd in the pool, or qemu.pid."""
    me = os.getpid()
    uid = os.getuid()
    pool = _safe_pool(pool_dir)
    found: dict[int, psutil.Process] = {}
    # the cheap pass finds the few candidates; psutil checks them as it always did (procscan.py)
    for pid in candidate_pids(pool, [env_entry(MARKER_ENV, marker)] if marker else []):
        if pid == me:
            continue
        try:
            proc = psutil.Process(pid)
            if proc.uids().real != uid:
                continue
            cwd = proc.cwd()
        except psutil.AccessDenied:
            cwd = None
        except (psutil.Error, OSError):
            continue
        if pool is not None and _inside(cwd, pool):
            found[pid] = proc
            continue
        try:
            if marker and proc.environ().get(MARKER_ENV) == marker:
                found[pid] = proc
        except (psutil.Error, OSError):
            continue
    if pool is not None:
        qemu_pid = read_pid_file(pool / "qemu.pid")
        if qemu_pid and qemu_pid != me and qemu_pid not in found:
            try:
                proc = psutil.Process(qemu_pid)
                if _refers_to_pool(proc, pool):
                    found[qemu_pid] = proc
            except psutil.Error:
                pass
    return list(found.values())


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil checks the pid was not reused
        except psutil.Error:
            pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes exited (zombies count as exited); return the ones still alive."""
    deadline = time.monotonic() + timeout
    fds: dict[int, psutil.Process] = {}
    fallback: list[psutil.Process] = []
    for proc in procs:
        try:
            fds[os.pidfd_open(proc.pid)] = proc
        except (OSError, AttributeError):
            fallback.append(proc)
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        pending = dict(fds)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ev in poller.poll(left * 1000):
                poller.unregister(fd)
                pending.pop(fd, None)
        while fallback and time.monotonic() < deadline:  # no pidfd: rare, a short sleep loop
            fallback = [p for p in fallback if _alive(p)]
            if fallback:
                time.sleep(0.05)
        return [p for p in list(pending.values()) + fallback if _alive(p)]
    finally:
        for fd in fds:
            os.close(fd)


def reap_children(pids: Iterable[int]) -> None:
    """waitpid(WNOHANG) the given pids if they are our (non-asyncio) children, so no zombie stays."""
    for pid in pids:
        if pid in _asyncio_children:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: its own parent reaps it
        except OSError as exc:
            log.debug("waitpid(%d): %s", pid, exc)


# Zombie children first seen at (monotonic time); see reap_orphan_zombies.
_zombies_seen: dict[int, float] = {}


def reap_orphan_zombies(min_age: float = 1.0) -> list[int]:
    """Reap re-parented orphans that died on their own. Returns the reaped pids.

    A zombie child might also be a subprocess another module spawned through asyncio, whose
    watcher reaps it within milliseconds. So only zombies already seen ``min_age`` seconds ago
    (by an earlier call) are reaped: nobody else is waiting for those. Call it after every job.
    """
    now = time.monotonic()
    reaped: list[int] = []
    zombies: set[int] = set()
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return reaped
    for child in children:
        try:
            if child.pid in _asyncio_children or child.status() != psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        zombies.add(child.pid)
        first = _zombies_seen.setdefault(child.pid, now)
        if now - first < min_age:
            continue
        try:
            if os.waitpid(child.pid, os.WNOHANG)[0]:
                reaped.append(child.pid)
        except ChildProcessError:
            pass
    for pid in list(_zombies_seen):
        if pid not in zombies or pid in reaped:
            del _zombies_seen[pid]
    return reaped


def kill_processes(procs: list[psutil.Process], grace: float) -> list[int]:
    """SIGTERM, wait up to ``grace``, SIGKILL survivors, wait, reap. Returns the pids signalled."""
    if not procs:
        return []
    pids = [p.pid for p in procs]
    log.info("terminating leftover job processes: %s", pids)
    _signal_all(procs, signal.SIGTERM)
    survivors = wait_gone(procs, grace)
    if survivors:
        log.warning("killing job processes that ignored SIGTERM: %s", [p.pid for p in survivors])
        _signal_all(survivors, signal.SIGKILL)
        still = wait_gone(survivors, 5.0)
        if still:
            log.error("job processes survived SIGKILL (uninterruptible?): %s", [p.pid for p in still])
    reap_children(pids)
    return pids


def sweep(marker: str, pool_dir: Path, grace: float = 5.0, rounds: int = 4,
          known: Iterable[psutil.Process] = ()) -> list[int]:
    """Kill every process of the job, repeating while new ones appear (forks during the sweep).

    ``known`` are job processes snapshotted before the group was killed: once dead they are
    zombies (no environ/cwd left to recognise them), so they are waited for and reaped by pid.
    """
    killed: list[int] = []
    known = list(known)
    reap_orphan_zombies()
    for n in range(rounds):
        procs = find_job_processes(marker, pool_dir)
        procs = [p for p in procs if _alive(p)]
        if not procs:
            break
        # The last round skips the courtesy SIGTERM: something keeps spawning.
        killed += kill_processes(procs, grace if n < rounds - 1 else 0.0)
    if known:
        wait_gone(known, 2.0)
        reap_children(p.pid for p in known)
    reap_orphan_zombies()
    return sorted(set(killed))
