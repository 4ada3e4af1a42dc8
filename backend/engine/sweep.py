"""Nothing of a previous life survives into a new job (issue 11 item 1).

Before a slot accepts its first job after start, and before every job's setup, ``sweep_pool`` finds
every process of an earlier job in that pool and kills it, with one log line naming the pids. "Of
an earlier job in that pool" is, for processes of our own uid:

* ``QAWORKER_POOL`` in the environment equals the pool (set for every isotovideo we start, inherited
  by every descendant, also by a double-forked one in its own session),
* the current directory is inside the pool (isotovideo's cwd is the pool; the classic worker's rule),
* the pid in ``<pool>/qemu.pid``, when that process names the pool in its cwd or command line,
* membership of the slot's job cgroups (``backend.engine.cgroup``), when per-job cgroups are on.

Live restore (``backend.slot.adopt``) may keep an earlier job: it claims the processes it adopts in
``CLAIMS`` before the slot's first sweep, and the sweep spares the claimed pids, their descendants,
processes carrying a claimed job marker and a claimed cgroup. ``CLAIMS.release`` ends the claim.

Everything here blocks (it walks /proc); ``sweep_pool`` runs it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from backend.engine import procs
from backend.engine.cgroup import Cgroups
from backend.engine.procscan import candidate_pids, env_entry

log = logging.getLogger(__name__)

POOL_ENV = "QAWORKER_POOL"


def pool_env_value(pool_dir: Path) -> str:
    """The ``QAWORKER_POOL`` value for a pool (no filesystem access: safe on the loop)."""
    return os.path.abspath(pool_dir)


@dataclass(frozen=True)
class Claim:
    """What live restore keeps of an earlier job in one pool."""

    pids: frozenset[int] = frozenset()
    markers: frozenset[str] = frozenset()
    cgroup: Path | None = None


@dataclass
class Claims:
    """Per pool: the processes an adopter keeps. Thread-safe (the sweep reads it in a thread)."""

    _by_pool: dict[str, Claim] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, pool_dir: Path, pids: Iterable[int] = (), *, markers: Iterable[str] = (),
              cgroup: Path | None = None) -> None:
        with self._lock:
            self._by_pool[pool_env_value(pool_dir)] = Claim(frozenset(pids), frozenset(markers), cgroup)

    def release(self, pool_dir: Path) -> None:
        with self._lock:
            self._by_pool.pop(pool_env_value(pool_dir), None)

    def get(self, pool_dir: Path) -> Claim:
        with self._lock:
            return self._by_pool.get(pool_env_value(pool_dir), Claim())


CLAIMS = Claims()


@dataclass(frozen=True)
class Found:
    """A process of an earlier job and why we think so (the log line says it)."""

    proc: psutil.Process
    why: str

    def describe(self) -> str:
        try:
            name = self.proc.name()
        except psutil.Error:
            name = "?"
        return f"{self.proc.pid} ({name}, {self.why})"


def _recorded(pool_dir: Path) -> set[int]:
    """Pids live restore's job record (``<pool>/.qaworker/job.json``) proves to be a kept job's."""
    try:
        from backend.job.record import protected_pids  # live restore (branch crashlive)
    except ImportError:
        return set()
    return set(protected_pids(pool_dir))


def _spared(claim: Claim, pool_dir: Path) -> set[int]:
    spared: set[int] = set()
    for pid in claim.pids | _recorded(pool_dir):
        try:
            proc = psutil.Process(pid)
            spared.add(pid)
            spared.update(child.pid for child in proc.children(recursive=True))
        except psutil.Error:
            continue
    return spared


def _excluded() -> set[int]:
    """Ourselves and our ancestors: never a sweep target, whatever their cwd is."""
    out = {os.getpid()}
    try:
        out.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pass
    return out


def _pool_names(pool_dir: Path) -> set[str]:
    names = {pool_env_value(pool_dir)}
    resolved = procs._safe_pool(pool_dir)
    if resolved is not None:
        names.add(str(resolved))
    return names


def _match(proc: psutil.Process, cwd: str | None, pool: Path | None, pool_names: set[str],
           claim: Claim) -> str | None:
    """Why ``proc`` belongs to an earlier job of the pool, or None."""
    if pool is not None and procs._inside(cwd, pool):
        reason = "cwd in the pool"
    else:
        reason = ""
    try:
        env = proc.environ()
    except (psutil.Error, OSError):
        env = {}
    if claim.markers and env.get(procs.MARKER_ENV) in claim.markers:
        return None
    if env.get(POOL_ENV) in pool_names:
        return "job environment"
    return reason or None


def find_earlier_processes(pool_dir: Path, cgroup_pids: Iterable[int] = (),
                           claim: Claim | None = None) -> list[Found]:
    """Every live process of an earlier job in ``pool_dir`` (see the module docstring)."""
    claim = claim if claim is not None else CLAIMS.get(pool_dir)
    spared = _spared(claim, pool_dir) | _excluded()
    uid = os.getuid()
    pool = procs._safe_pool(pool_dir)
    names = _pool_names(pool_dir)
    found: dict[int, Found] = {}
    # the cheap pass finds the few candidates; psutil checks them as it always did (procscan.py)
    for pid in candidate_pids(pool, [env_entry(POOL_ENV, name) for name in sorted(names)]):
        if pid in spared:
            continue
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or proc.uids().real != uid:
                continue
            cwd = proc.cwd()
        except psutil.AccessDenied:
            cwd = None
        except (psutil.Error, OSError):
            continue
        why = _match(proc, cwd, pool, names, claim)
        if why:
            found[pid] = Found(proc, why)
    for pid in cgroup_pids:
        if pid not in found and pid not in spared:
            try:
                found[pid] = Found(psutil.Process(pid), "in the job cgroup")
            except psutil.Error:
                continue
    if pool is not None:
        qemu_pid = procs.read_pid_file(pool / "qemu.pid")
        if qemu_pid and qemu_pid not in found and qemu_pid not in spared:
            try:
                proc = psutil.Process(qemu_pid)
                if proc.uids().real == uid and procs._refers_to_pool(proc, pool):
                    found[qemu_pid] = Found(proc, "qemu.pid")
            except psutil.Error:
                pass
    return list(found.values())


def kill_leftover_cgroups(cgroups: Cgroups, instance: int, label: str, pool_dir: Path) -> list[int]:
    """``cgroup.kill`` every job cgroup of the slot but a kept one, and remove them (blocking).

    Kept = the claimed cgroup, or one holding a claimed/recorded process (an adopted job's tree).
    """
    claim = CLAIMS.get(pool_dir)
    spared = _spared(claim, pool_dir)
    killed: list[int] = []
    for job in cgroups.leftovers(instance, claim.cgroup):
        if spared & set(job.pids()):
            continue
        pids = job.kill()
        if pids:
            log.warning("%s killed the %d process(es) of an earlier job's cgroup %s: %s", label, len(pids),
                        job.path, ", ".join(map(str, pids)))
        job.remove()
        killed += pids
    return killed


def sweep_earlier(pool_dir: Path, label: str, *, grace: float = 3.0, cgroup_pids: Iterable[int] = (),
                  rounds: int = 3, cgroups: Cgroups | None = None, instance: int | None = None) -> list[int]:
    """Kill every process of an earlier job in ``pool_dir`` (and the slot's leftover job cgroups);
    returns their pids (blocking)."""
    killed: list[int] = []
    if cgroups is not None and cgroups.enabled and instance is not None:
        killed += kill_leftover_cgroups(cgroups, instance, label, pool_dir)
    cgroup_pids = list(cgroup_pids)
    for n in range(rounds):
        found = find_earlier_processes(pool_dir, cgroup_pids if n == 0 else ())
        if not found:
            break
        log.warning("%s killing %d process(es) of an earlier job in %s: %s", label, len(found), pool_dir,
                    ", ".join(f.describe() for f in found))
        killed += procs.kill_processes([f.proc for f in found], grace if n < rounds - 1 else 0.0)
    return sorted(set(killed))


async def sweep_pool(pool_dir: Path, label: str, *, grace: float = 3.0, cgroup_pids: Iterable[int] = (),
                     cgroups: Cgroups | None = None, instance: int | None = None) -> list[int]:
    """``sweep_earlier`` off the loop."""
    return await asyncio.to_thread(sweep_earlier, pool_dir, label, grace=grace, cgroup_pids=list(cgroup_pids),
                                   cgroups=cgroups, instance=instance)
