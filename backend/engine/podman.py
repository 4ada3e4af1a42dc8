"""isotovideo from an os-autoinst checkout, in rootless podman (job settings ``OS_AUTOINST_GIT_REPO``,
``OS_AUTOINST_GIT_BRANCH``, ``OS_AUTOINST_CONTAINER_IMAGE``), as upstream's isotovideo engine does it
(``_construct_isotovideo_cmd`` in lib/OpenQA/Worker/Engines/isotovideo.pm).

The container gets the pool as ``/pool`` (its working directory), ``/dev/kvm``, the share, tests and
cache directories and the system's CA directories read-only at their own paths; podman keeps its
storage under ``<prjdir>/cache/podman`` and its home in ``<pool>/podman_tmp`` so a worker user without a
home directory can run it. Unlike upstream, the repository and branch are shell-quoted in the
container's command line. ``ISOTOVIDEO`` still wins over all of this.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

DEFAULT_IMAGE = "registry.opensuse.org/devel/openqa/containers/os-autoinst_dev:latest"
DEFAULT_BRANCH = "master"
CA_DIRS = (Path("/etc/ssl/certs"), Path("/etc/pki"), Path("/usr/share/pki"), Path("/var/lib/ca-certificates"))


class ContainerSetupError(Exception):
    """The job cannot run its isotovideo container (the reason is shown as ``setup failure: <reason>``)."""


def wants_container(settings: Mapping[str, str]) -> bool:
    return not (settings.get("ISOTOVIDEO") or "").strip() and bool(
        (settings.get("OS_AUTOINST_GIT_REPO") or settings.get("OS_AUTOINST_CONTAINER_IMAGE") or "").strip())


def _read_only_mounts(prjdir: Path, extra: tuple[Path, ...]) -> list[str]:
    cache_root = prjdir / "cache"
    cache_dirs = sorted(p for p in cache_root.glob("*") if p.name != "podman") if cache_root.is_dir() else []
    local = [d for d in (prjdir / "share", prjdir / "tests", *cache_dirs, *extra) if d.is_dir()]
    local = list(dict.fromkeys(local)) or [prjdir / "share"]
    mounts: list[str] = []
    for directory in (*local, *(d for d in CA_DIRS if d.is_dir())):
        mounts += ["-v", f"{directory}:{directory}:ro"]
    return mounts


def container_command(settings: Mapping[str, str], pool_dir: Path, prjdir: Path,
                      extra_dirs: tuple[Path, ...] = ()) -> list[str]:
    """The argv that runs the job's isotovideo in podman; creates podman's directories.

    Blocking (looks up podman, creates directories, globs the cache): call it in a thread.
    ``ContainerSetupError`` when the settings are incomplete or podman is not installed.
    """
    repo = (settings.get("OS_AUTOINST_GIT_REPO") or "").strip()
    if not repo:
        raise ContainerSetupError("OS_AUTOINST_CONTAINER_IMAGE requires OS_AUTOINST_GIT_REPO. To run a custom "
                                  "container command, use ISOTOVIDEO instead.")
    podman = shutil.which("podman")
    if podman is None:
        raise ContainerSetupError("OS_AUTOINST_GIT_REPO is set, but podman is not installed on this worker "
                                  "(not found in PATH); it is needed to run isotovideo in a container")
    branch = (settings.get("OS_AUTOINST_GIT_BRANCH") or "").strip() or DEFAULT_BRANCH
    image = (settings.get("OS_AUTOINST_CONTAINER_IMAGE") or "").strip() or DEFAULT_IMAGE
    podman_dir = prjdir / "cache" / "podman"
    runroot = podman_dir / "run"
    home = pool_dir / "podman_tmp"
    for directory in (podman_dir, runroot, home):
        directory.mkdir(parents=True, exist_ok=True)
    script = (f"git clone --branch={shlex.quote(branch)} --depth=1 {shlex.quote(repo)} && make -C os-autoinst "
              "&& os-autoinst/isotovideo -d")
    return ["env", f"HOME={home}", f"XDG_RUNTIME_DIR={runroot}", podman,
            "--root", str(podman_dir / "data" / "containers" / "storage"),
            "--runroot", str(runroot / "containers"),
            "--storage-opt", "ignore_chown_errors=true", "--cgroup-manager=cgroupfs", "--events-backend=file",
            "run", "--init", "--rm", "--entrypoint", "", "--device", "/dev/kvm",
            "-v", f"{pool_dir}:/pool", "-w", "/pool", *_read_only_mounts(prjdir, extra_dirs),
            image, "sh", "-c", script]


async def podman_command(settings: Mapping[str, str], pool_dir: Path, prjdir: Path,
                         extra_dirs: tuple[Path, ...] = ()) -> list[str] | None:
    """``container_command`` off the loop; None when the job does not ask for a container. ``extra_dirs``:
    where else vars.json points (the web UI's share directory, ``CACHEDIRECTORY``), mounted read-only."""
    if not wants_container(settings):
        return None
    return await asyncio.to_thread(container_command, settings, pool_dir, prjdir, extra_dirs)
