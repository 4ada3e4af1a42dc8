"""Where the control sockets live, and how ``qaworker attach`` finds them.

One socket per qaworker process, named by its slots (``control-1.sock``, ``control-1-4.sock``,
``control-1,3.sock``), in the first of:

1. ``$QAWORKER_CONTROL_SOCKET`` — the exact path;
2. ``$RUNTIME_DIRECTORY`` — what systemd's ``RuntimeDirectory=qaworker`` gives the service;
3. ``/run/qaworker`` when running as root;
4. ``$XDG_RUNTIME_DIR/qaworker``;
5. ``<tmp>/qaworker-<uid>`` (no runtime directory at all).

``attach`` looks at every one of these directories (a user attaching to the system service has
its own ``$XDG_RUNTIME_DIR`` too).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from backend.config.environment import read_environment

SOCKET_ENV = "QAWORKER_CONTROL_SOCKET"
SYSTEM_DIR = Path("/run/qaworker")


def instances_spec(instances: Iterable[int]) -> str:
    """[1, 2, 3, 4] -> '1-4'; [1, 3, 7, 8, 9] -> '1,3,7-9' (the --instances syntax)."""
    numbers = sorted(set(instances))
    parts: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ",".join(parts) or "none"


def socket_name(instances: Iterable[int]) -> str:
    return f"control-{instances_spec(instances)}.sock"


def runtime_dirs(env: Mapping[str, str] | None = None, *, euid: int | None = None) -> list[Path]:
    """The directories a control socket may be in, most specific first, without duplicates."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    found: list[Path] = []
    systemd = env.get("RUNTIME_DIRECTORY", "").split(":")[0].strip()
    if systemd:
        found.append(Path(systemd))
    if euid == 0:
        found.append(SYSTEM_DIR)
    if env.get("XDG_RUNTIME_DIR"):
        found.append(Path(env["XDG_RUNTIME_DIR"]) / "qaworker")
    found.append(Path(tempfile.gettempdir()) / f"qaworker-{euid}")
    if SYSTEM_DIR not in found:
        found.append(SYSTEM_DIR)  # searched by attach (the system service), never created by us
    return list(dict.fromkeys(found))


def socket_path(instances: Iterable[int], env: Mapping[str, str] | None = None, *,
                euid: int | None = None) -> Path:
    """The control socket this process listens on."""
    env = os.environ if env is None else env
    exact = read_environment(env).control_socket
    if exact is not None:
        return exact
    euid = os.geteuid() if euid is None else euid
    dirs = runtime_dirs(env, euid=euid)
    return dirs[0] / socket_name(instances)


def prepare_dir(path: Path) -> None:
    """Create the socket's directory: private to us unless it is the shared system one.

    A directory in /tmp that somebody else owns, or that others may write to, is refused (a socket
    there could be swapped for another).
    """
    directory = path.parent
    directory.mkdir(mode=0o755 if directory == SYSTEM_DIR else 0o700, parents=True, exist_ok=True)
    if directory.parent == Path(tempfile.gettempdir()):
        info = directory.stat()
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"{directory} is not ours alone (owner uid {info.st_uid}, mode "
                                  f"{stat.S_IMODE(info.st_mode):o}); set {SOCKET_ENV}")


def find_sockets(env: Mapping[str, str] | None = None) -> list[Path]:
    """Every ``control-*.sock`` in the runtime directories (and their direct subdirectories)."""
    env = os.environ if env is None else env
    exact = read_environment(env).control_socket
    if exact is not None:
        return [exact]
    found: list[Path] = []
    for directory in runtime_dirs(env):
        for pattern in ("control-*.sock", "*/control-*.sock"):
            try:
                candidates = sorted(directory.glob(pattern))
            except OSError:
                continue
            for candidate in candidates:
                try:
                    if stat.S_ISSOCK(candidate.stat().st_mode):
                        found.append(candidate)
                except OSError:
                    continue
    return list(dict.fromkeys(found))
