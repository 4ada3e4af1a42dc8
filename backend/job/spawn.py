"""Starting one job's isotovideo: the command (ISOTOVIDEO or podman, issue 12 row 14), the worker's MOJO_*
defaults, the job's own cgroup and the conmon-style monitor (backend/engine/monitor.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backend.engine import podman
from backend.engine.cgroup import Cgroups
from backend.engine.isotovideo import IsotovideoProcess, build_command
from backend.engine.mojoenv import mojo_defaults
from backend.engine.monitor import STATE_DIR


class SpawnError(Exception):
    """isotovideo could not be started: ``str()`` is the job log's line, ``detail`` the stop reason's."""

    def __init__(self, line: str, detail: str) -> None:
        super().__init__(line)
        self.detail = detail


@dataclass(frozen=True)
class SpawnRequest:
    isotovideo: str  # the worker's --isotovideo
    settings: Mapping[str, str]  # the job's settings (ISOTOVIDEO, OS_AUTOINST_GIT_REPO, ...)
    pool_dir: Path
    prjdir: Path
    share_dir: Path
    cache_dir: str | None  # CACHEDIRECTORY: mounted read-only into a container
    instance: int
    job_id: int
    marker: str
    env: dict[str, str]
    cgroups: Cgroups | None = None


async def spawn_isotovideo(req: SpawnRequest, note: Callable[[str, int], None],
                           on_spawned: Callable[[], None] | None = None) -> IsotovideoProcess:
    """The running process, or ``SpawnError``; ``note`` writes a line to the job's log, ``on_spawned``
    runs as soon as the process exists (``IsotovideoProcess.start``)."""
    try:
        container = await podman.podman_command(req.settings, req.pool_dir, req.prjdir,
                                                (req.share_dir, *((Path(req.cache_dir),) if req.cache_dir else ())))
    except podman.ContainerSetupError as exc:
        raise SpawnError(str(exc), f"setup failure: {exc}") from None
    argv, uses_shell = (container, False) if container else build_command(req.isotovideo, dict(req.settings))
    if uses_shell:
        note(f"ISOTOVIDEO setting needs a shell: {argv[-1]}", logging.WARNING)
    full_env = {**mojo_defaults(os.environ), **req.env}  # the engine adds the worker's own environment
    cgroups = req.cgroups
    cgroup = (await asyncio.to_thread(cgroups.create, req.instance, req.job_id)
              if cgroups is not None and cgroups.enabled else None)
    try:
        return await IsotovideoProcess.start(argv, pool_dir=req.pool_dir, env=full_env,
                                             log_path=req.pool_dir / "autoinst-log.txt", marker=req.marker,
                                             monitor_dir=req.pool_dir / STATE_DIR, cgroup=cgroup,
                                             on_spawned=on_spawned)
    except OSError as exc:
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)
        raise SpawnError(f"Unable to start isotovideo: {exc}", "setup failure: isotovideo can not be started") from None
