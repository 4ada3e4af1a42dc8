"""Per-job cgroup v2 (issue 11 item 2; upstream's OPENQA_CGROUP_SLICE / MOJO_CGROUP_FS).

When qaworker runs in a delegated, writable cgroup (systemd ``Delegate=yes``), each job's isotovideo
tree lives in its own child cgroup ``<root>/qaworker-slot<N>/job-<id>``:

* isotovideo enters it before it execs (``JobCgroup.enter_argv``: ``sh`` writes its own pid into
  ``cgroup.procs``, then execs isotovideo — no fork can escape, no ``preexec_fn`` in a threaded
  process), so everything it ever spawns is inside, double-forked daemons included;
* stop = ``cgroup.kill`` (atomic, no race with forks; kernels < 5.14: SIGKILL the members until empty);
* ``JobCgroup.usage`` gives the memory (``memory.current``; the members' RSS where the memory
  controller is not enabled for us) and CPU (``cpu.stat`` usage) figures for metrics and dashboard;
* the next life's sweep (``backend.engine.sweep``) finds a crashed job's tree by its cgroup.

The root is ``QAWORKER_CGROUP``: ``auto`` (default: our own cgroup, when it is delegated to us and
not the hierarchy's root), ``off``, or the path of a cgroup v2 directory (tests point it at a real
one). Without a writable cgroup the process-group kill + sweep remain, and that is logged once.
Every function here does cgroupfs I/O and blocks: callers on the loop use ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SLOT_PREFIX = "qaworker-slot"
JOB_PREFIX = "job-"
MAIN_LEAF = "qaworker-main"  # where the worker moves itself so controllers can be enabled below root
_ENTER = ('echo 0 > "$1/cgroup.procs" || echo "qaworker: could not enter the job cgroup $1" >&2; '
          'shift; exec "$@"')


@dataclass(frozen=True)
class Usage:
    """What a job's cgroup uses now."""

    memory_bytes: int
    cpu_seconds: float
    processes: int
    memory_source: str  # "memory.current" or "rss" (no memory controller for us)


def _read(path: Path) -> str:
    with open(path, encoding="ascii", errors="replace") as fh:
        return fh.read()


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def cgroup2_mount(mountinfo: Path = Path("/proc/self/mountinfo")) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` or, hybrid, ``…/unified``)."""
    try:
        lines = _read(mountinfo).splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split(" ")[4])
    return None


def own_cgroup(mount: Path) -> Path | None:
    """Our cgroup v2 directory (from the ``0::`` line of /proc/self/cgroup)."""
    try:
        lines = _read(Path("/proc/self/cgroup")).splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return mount / line[3:].lstrip("/")
    return None


def _delegated(path: Path) -> bool:
    """May we manage children of our own cgroup ``path``?

    systemd (>= 251) marks a cgroup it delegated (Delegate=yes) with a ``trusted.``/``user.delegate``
    xattr; older ones chown it to the unit's non-root User=. A systemd unit's cgroup without either
    (a root login's session scope, a service without Delegate=yes) is systemd's, not ours. Any other
    cgroup (a container's, one a supervisor made for us) is ours when writable.
    """
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(path, name):
                return True
        except OSError:
            continue
    try:
        owner = path.stat().st_uid
    except OSError:
        return False
    if owner == os.getuid() != 0:
        return True
    return not path.name.endswith((".service", ".scope", ".slice"))


def _writable(path: Path) -> str | None:
    """None when we can create and remove child cgroups in ``path``, else why not."""
    if not (path / "cgroup.procs").is_file():
        return f"{path} is not a cgroup v2 directory"
    probe = path / f".qaworker-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"cannot create a child cgroup in {path}: {exc.strerror}"
    try:
        probe.rmdir()
    except OSError:
        pass
    return None


def find_root(setting: str) -> tuple[Path | None, str]:
    """The cgroup to put job cgroups under, or None and the reason (for the one log line)."""
    value = (setting or "auto").strip()
    if value.lower() in ("off", "0", "no", "false"):
        return None, "QAWORKER_CGROUP=off"
    if value.lower() != "auto":
        root = Path(value)
        problem = _writable(root)
        return (None, problem) if problem else (root, "configured")
    mount = cgroup2_mount()
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    own = own_cgroup(mount)
    if own is None or own == mount:
        return None, "qaworker runs in the root cgroup (not in a delegated one)"
    if not _delegated(own):
        return None, f"{own} is not delegated to qaworker (systemd Delegate=yes)"
    problem = _writable(own)
    return (None, problem) if problem else (own, "delegated")


def _enable_controllers(root: Path) -> list[str]:
    """Enable memory and cpu for the children where we may; returns what is enabled."""
    try:
        available = _read(root / "cgroup.controllers").split()
    except OSError:
        return []
    wanted = [c for c in ("memory", "cpu") if c in available]
    for controller in wanted:
        try:
            _write(root / "cgroup.subtree_control", f"+{controller}")
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                log.debug("cannot enable %s in %s: %s", controller, root, exc)
            return _enabled(root)
    return _enabled(root)


def _enabled(root: Path) -> list[str]:
    try:
        return _read(root / "cgroup.subtree_control").split()
    except OSError:
        return []


def _move_self_to_leaf(root: Path) -> None:
    """cgroup v2's "no internal processes": a cgroup that enables controllers must hold none itself."""
    leaf = root / MAIN_LEAF
    leaf.mkdir(exist_ok=True)
    _write(leaf / "cgroup.procs", "0")


def _members(path: Path) -> list[int]:
    """The pids in ``path`` and every cgroup below it."""
    pids: list[int] = []
    for directory, _dirs, _files in os.walk(path):
        try:
            pids += [int(x) for x in _read(Path(directory) / "cgroup.procs").split()]
        except (OSError, ValueError):
            continue
    return pids


def _populated(path: Path) -> bool:
    try:
        for line in _read(path / "cgroup.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() != "0"
    except OSError:
        return False
    return bool(_members(path))


@dataclass(frozen=True)
class JobCgroup:
    """One job's cgroup (a directory in cgroupfs)."""

    path: Path

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this cgroup: ``sh`` moves itself in, then execs ``argv`` (same pid)."""
        if shutil.which(argv[0]) is None:  # as exec would: "cannot be started", not "died"
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
        return ["/bin/sh", "-c", _ENTER, "qaworker-cgroup-enter", str(self.path), *argv]

    def pids(self) -> list[int]:
        return _members(self.path)

    def kill(self, timeout: float = 5.0) -> list[int]:
        """Kill everything inside, atomically where the kernel can; returns the pids seen before."""
        pids = self.pids()
        if not pids and not _populated(self.path):
            return []
        try:
            _write(self.path / "cgroup.kill", "1")
        except FileNotFoundError:  # kernel < 5.14: kill the members until none is left
            self._kill_members()
        except OSError as exc:
            log.warning("cgroup.kill of %s failed (%s); killing its processes one by one", self.path, exc)
            self._kill_members()
        deadline = time.monotonic() + timeout
        while _populated(self.path) and time.monotonic() < deadline:
            time.sleep(0.01)  # a thread: the kernel empties it within milliseconds
        return pids

    def _kill_members(self) -> None:
        for _ in range(20):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> bool:
        """rmdir the (empty) cgroup and its children; False when something is still inside."""
        ok = True
        for directory, _dirs, _files in sorted(os.walk(self.path), key=lambda w: -len(w[0])):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove cgroup %s: %s", directory, exc.strerror)
                ok = False
        return ok

    def usage(self) -> Usage | None:
        """Memory and CPU of the job's tree; None once the cgroup is gone."""
        try:
            cpu = _read(self.path / "cpu.stat")
        except OSError:
            return None
        usec = 0
        for line in cpu.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                usec = int(value)
        pids = self.pids()
        try:
            memory, source = int(_read(self.path / "memory.current")), "memory.current"
        except (OSError, ValueError):
            memory, source = rss_bytes(pids), "rss"
        return Usage(memory_bytes=memory, cpu_seconds=usec / 1e6, processes=len(pids), memory_source=source)


def rss_bytes(pids: Iterable[int]) -> int:
    """The summed RSS of ``pids`` (those gone meanwhile count 0); also the benchmarks' reading (bench/common.py)."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass
class Cgroups:
    """The worker's job cgroups under one root (None: off, the process-group kill + sweep remain)."""

    root: Path | None
    reason: str = ""
    controllers: tuple[str, ...] = ()

    @classmethod
    def setup(cls, setting: str) -> Cgroups:
        """Find the root, enable memory/cpu for job cgroups where we may, log the outcome once."""
        root, reason = find_root(setting)
        if root is None:
            log.info("per-job cgroups off (%s): jobs are stopped by process-group kill + sweep", reason)
            return cls(None, reason)
        enabled = _enable_controllers(root)
        if reason == "delegated" and not {"memory", "cpu"} <= set(enabled):
            try:  # our own cgroup holds us: move into a leaf, then the controllers may be enabled
                _move_self_to_leaf(root)
                enabled = _enable_controllers(root)
            except OSError as exc:
                log.debug("cannot move qaworker into %s/%s: %s", root, MAIN_LEAF, exc)
        log.info("per-job cgroups under %s (%s; controllers for jobs: %s)", root, reason,
                 " ".join(enabled) or "none, memory is the members' RSS")
        return cls(root, reason, tuple(enabled))

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def slot_dir(self, instance: int) -> Path | None:
        return None if self.root is None else self.root / f"{SLOT_PREFIX}{instance}"

    def create(self, instance: int, job_id: int) -> JobCgroup | None:
        """A fresh, empty cgroup for the job (a leftover of the same name is killed first)."""
        slot = self.slot_dir(instance)
        if slot is None:
            return None
        try:
            slot.mkdir(exist_ok=True)
            if self.controllers:
                _write(slot / "cgroup.subtree_control", " ".join(f"+{c}" for c in self.controllers))
        except OSError as exc:
            log.warning("cannot prepare cgroup %s (%s): job %d runs without its own cgroup", slot, exc, job_id)
            return None
        job = JobCgroup(slot / f"{JOB_PREFIX}{job_id}")
        if job.path.exists():
            job.kill()
            job.remove()
        try:
            job.path.mkdir()
        except OSError as exc:
            log.warning("cannot create cgroup %s (%s): job %d runs without its own cgroup", job.path, exc, job_id)
            return None
        return job

    def leftovers(self, instance: int, spare: Path | None = None) -> Iterator[JobCgroup]:
        """The job cgroups of a slot (an earlier life's, when the slot has no job), but ``spare``."""
        slot = self.slot_dir(instance)
        if slot is None or not slot.is_dir():
            return
        for entry in sorted(slot.iterdir()):
            if entry.is_dir() and entry.name.startswith(JOB_PREFIX) and entry != spare:
                yield JobCgroup(entry)

    def remove_empty_slots(self) -> None:
        """At exit: the slot cgroups without a job left (a handed-over job's stays for the next life)."""
        if self.root is None:
            return
        for slot in self.root.glob(f"{SLOT_PREFIX}*"):
            try:
                slot.rmdir()
            except OSError:
                pass
