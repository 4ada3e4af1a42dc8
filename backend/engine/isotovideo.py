"""Starting and stopping isotovideo (PROTOCOL.md §11) and checking for a leftover QEMU (§7 check 2).

isotovideo runs in its own session and process group, with cwd = pool dir, stdout+stderr appended
to ``autoinst-log.txt`` and an environment marker that every descendant inherits. Stopping sends
SIGTERM to the group once, waits (without polling), SIGKILLs the group and then sweeps every process
still carrying the marker or living in the pool dir (see ``procs``), so nothing of a job survives it.

``isotovideo`` (the configured path, ``--isotovideo``) may be an executable path or, when no such
file exists, a command line such as ``"/venv/bin/python -m backend.engine.simulator"``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from backend.engine import monitor, monitored, procs
from backend.engine.cgroup import JobCgroup
from backend.engine.child import ThreadSpawnedChild, run_captured
from backend.engine.procs import MARKER_ENV, set_child_subreaper
from backend.engine.sweep import POOL_ENV, pool_env_value

log = logging.getLogger(__name__)

__all__ = [
    "IsotovideoProcess",
    "build_command",
    "detect_interface_version",
    "new_marker",
    "qemu_still_running",
    "set_child_subreaper",
    "sweep_job_processes",
]

VERSION_TIMEOUT = 30.0
_INTERFACE_RE = re.compile(rb"interface v(\d+)")
# Perl's exec() hands a string to /bin/sh when it contains one of these (perl doio.c).
_SHELL_METACHARS = set("$&*(){}[]'\";\\|?<>~`\n")
_ENV_ASSIGN_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*=")


def new_marker() -> str:
    """A unique per-job value for QAWORKER_JOB_MARKER."""
    return f"qaworker-{uuid.uuid4().hex}"


def _is_perl_script(path: Path) -> bool:
    """True for a perl script: perl shebang, .pl/.pm, or a non-executable file without shebang."""
    if path.suffix in (".pl", ".pm"):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(128)  # a tiny read, fine on the loop
    except OSError:
        return False
    if head.startswith(b"#!"):
        return b"perl" in head.split(b"\n", 1)[0]
    return path.suffix == "" and not os.access(path, os.X_OK)


def _base_argv(isotovideo: str) -> list[str]:
    """How to exec the configured isotovideo: ``perl <path>``, ``<path>`` or a split command line."""
    path = Path(isotovideo)
    if not path.exists() and any(c.isspace() for c in isotovideo):
        return shlex.split(isotovideo)
    return ["perl", isotovideo] if _is_perl_script(path) else [isotovideo]


def needs_shell(command: str) -> bool:
    return any(c in _SHELL_METACHARS for c in command) or bool(_ENV_ASSIGN_RE.match(command))


def build_command(isotovideo: str, settings: dict[str, str]) -> tuple[list[str], bool]:
    """(argv, uses_shell) for a job. The job setting ISOTOVIDEO overrides the configured binary."""
    override = (settings.get("ISOTOVIDEO") or "").strip()
    if override:
        if needs_shell(override):
            log.warning("job setting ISOTOVIDEO contains shell metacharacters, running via /bin/sh: %s",
                        override)
            return ["/bin/sh", "-c", override], True
        log.info("job setting ISOTOVIDEO overrides the isotovideo command: %s", override)
        return shlex.split(override), False
    return [*_base_argv(isotovideo), "-d"], False


async def detect_interface_version(isotovideo: str) -> int:
    """The isotovideo interface version from ``--version``; 0 when unknown or failing."""
    argv = [*_base_argv(isotovideo), "--version"]
    try:
        async with asyncio.timeout(VERSION_TIMEOUT):
            result = await run_captured(argv, merge_stderr=True)
    except OSError as exc:
        log.warning("cannot run %s --version: %s", isotovideo, exc)
        return 0
    except TimeoutError:
        log.warning("%s --version did not answer within %.0f s", isotovideo, VERSION_TIMEOUT)
        return 0
    match = _INTERFACE_RE.search(result.stdout)
    return int(match.group(1)) if match else 0


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_has(pgid: int, members: list[psutil.Process]) -> bool:
    """Whether one of ``members`` (the job's own, found by its marker) is still in process group ``pgid``.

    Once the leader is reaped and its group empty, the kernel may give the number to an unrelated new
    process, which may lead a group of its own (pid_max is 32768 on many hosts): a group is only ours to
    kill while one of our processes is in it, which also keeps the number from being reused."""
    for proc in members:
        try:
            if os.getpgid(proc.pid) == pgid:
                return True
        except ProcessLookupError:
            continue
    return False


async def _reap_killed(proc: ThreadSpawnedChild) -> None:
    try:
        async with asyncio.timeout(5):
            await asyncio.shield(proc.wait())
    except TimeoutError:
        log.warning("killed isotovideo monitor (pid %d) did not exit within 5 s", proc.pid)


def _job_env(env: dict[str, str], pool_dir: Path, marker: str) -> dict[str, str]:
    """The worker's environment + ``env``, adjusted like the classic worker does (§11.1)."""
    full = {**os.environ, **env}
    full.pop("MOJO_MAX_MESSAGE_SIZE", None)
    full["TMPDIR"] = str(pool_dir / "tmp")
    full["PERL5OPT"] = ""
    full[MARKER_ENV] = marker
    full[POOL_ENV] = pool_env_value(pool_dir)  # the next life's sweep finds the job by it (sweep.py)
    return full


def _open_log(log_path: Path, pool_dir: Path) -> int:
    (pool_dir / "tmp").mkdir(parents=True, exist_ok=True)  # the job's TMPDIR (_job_env)
    return os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


class IsotovideoProcess:
    """One running isotovideo (or simulator) and everything it spawned."""

    def __init__(self, proc: ThreadSpawnedChild, marker: str, pool_dir: Path,
                 cgroup: JobCgroup | None = None) -> None:
        self._proc = proc
        self.cgroup = cgroup  # the job's own cgroup v2, when per-job cgroups are on
        self.pid: int = proc.pid  # the monitor's pid when started with ``monitor_dir``
        self.marker = marker
        self.pool_dir = pool_dir
        self.monitored: monitored.Monitored | None = None
        self._stop_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, argv: list[str], *, pool_dir: Path, env: dict[str, str], log_path: Path,
                    marker: str, monitor_dir: Path | None = None, cgroup: JobCgroup | None = None,
                    on_spawned: Callable[[], None] | None = None) -> IsotovideoProcess:
        """Spawn ``argv`` in its own session (and in ``cgroup``). ``env`` is added to the worker's own.

        With ``monitor_dir`` it runs under the conmon-style monitor (``backend.engine.monitor``),
        which outlives the worker and writes ``<monitor_dir>/exit.json``. ``on_spawned`` is called as
        soon as the process exists, before the monitor has reported isotovideo's pid.
        """
        fd = await asyncio.to_thread(_open_log, log_path, pool_dir)
        pipe = os.pipe2(os.O_CLOEXEC) if monitor_dir is not None else None
        run_argv = argv if pipe is None else monitor.monitor_argv(argv, monitor_dir / monitor.EXIT_FILE, pipe[1])
        if cgroup is not None:  # sh enters the cgroup and execs the monitor (same pid, pass_fds kept)
            run_argv = cgroup.enter_argv(run_argv)
        try:
            proc = await ThreadSpawnedChild.start(
                run_argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, cwd=pool_dir,
                env=_job_env(env, pool_dir, marker), start_new_session=True,
                pass_fds=(pipe[1],) if pipe else ())
        except OSError:
            if pipe is not None:
                os.close(pipe[0])
            raise
        finally:
            os.close(fd)
            if pipe is not None:
                os.close(pipe[1])
        self = cls(proc, marker, pool_dir, cgroup)
        if on_spawned is not None:
            on_spawned()
        if pipe is not None:
            assert monitor_dir is not None
            try:
                self.monitored = await monitored.read_started(pipe[0], proc.pid, monitor_dir)
            except BaseException:  # cancelled or failed before anyone owns it: it must not run on
                _killpg(proc.pid, signal.SIGKILL)
                await _reap_killed(proc)
                raise
        log.info("started isotovideo (pid %d%s): %s", proc.pid,
                 f", monitored, isotovideo pid {self.monitored.isotovideo_pid}" if self.monitored else "",
                 shlex.join(argv))
        return self

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        """The exit status (negative signal number when killed by a signal)."""
        rc = await self._proc.wait()
        if self.monitored is not None:  # isotovideo's own status, as the monitor recorded it
            return await asyncio.to_thread(self.monitored.returncode, rc)
        return rc

    async def stop(self, grace: float = 30.0) -> None:
        """TERM the group once, KILL it after ``grace``, then sweep all job processes. Idempotent."""
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self._stop(grace))
        await asyncio.shield(self._stop_task)

    async def _stop(self, grace: float) -> None:
        # Remember the job's processes while they are alive: dead, they are unrecognisable zombies.
        # After a natural exit with the group empty there is nothing to remember (saves a /proc scan).
        known: list[psutil.Process] = []
        leader_unreaped = self._proc.returncode is None  # its pid, and so its group id, cannot be reused yet
        if leader_unreaped or _killpg(self.pid, 0):
            known = await asyncio.to_thread(procs.find_job_processes, self.marker, self.pool_dir)
        if self._proc.returncode is None:
            log.info("stopping isotovideo (pid %d) with SIGTERM to its process group", self.pid)
            _killpg(self.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(self._proc.wait())
            except TimeoutError:
                log.warning("isotovideo (pid %d) still running after %.0f s, sending SIGKILL",
                            self.pid, grace)
        # Whatever is left in the group (also after a natural exit) gets SIGKILL, as in §11.2; in the
        # job's cgroup everything goes at once, double-forked daemons included.
        if self.cgroup is not None:
            killed = await asyncio.to_thread(self.cgroup.kill)
            if killed:
                log.info("cgroup.kill of %s: %s", self.cgroup.path, killed)
        if leader_unreaped or _group_has(self.pid, known):
            _killpg(self.pid, signal.SIGKILL)
        await self.wait()
        await sweep_job_processes(self.marker, self.pool_dir, grace=min(grace, 5.0), known=known)
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.remove)


async def sweep_job_processes(marker: str, pool_dir: Path, *, grace: float = 5.0,
                              known: list[psutil.Process] | None = None) -> list[int]:
    """Kill every leftover process of the job (marker, cwd in pool, qemu.pid). Returns their pids."""
    killed = await asyncio.to_thread(procs.sweep, marker, pool_dir, grace, 4, known or ())
    if killed:
        log.warning("killed %d leftover job process(es): %s", len(killed), killed)
    return killed


_QEMU_EXE_RE = re.compile(r"/qemu-[^/]+$")


def qemu_still_running(pool_dir: Path) -> int | None:
    """The pid from ``<pool>/qemu.pid`` if it is a live QEMU, else None (stale or no pid file)."""
    pid = procs.read_pid_file(pool_dir / "qemu.pid")
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        if _QEMU_EXE_RE.search(exe.removesuffix(" (deleted)")) or proc.name().startswith("qemu"):
            return pid
    except psutil.Error:
        return None
    return None
