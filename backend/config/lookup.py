"""Which config files are read (PROTOCOL.md §2.1): lookup groups, main file + sorted drop-ins.

Unlike the Perl worker, a file that is there but cannot be used (no read permission, a directory, a
dangling symbolic link) is an error naming it - never silently skipped in favour of the next group
(which may well be ``/etc/openqa`` with a production web UI in it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from backend.config.environment import read_environment
from backend.config.errors import ConfigError

SYSTEM_CONFIG_DIRS = (Path("/etc/openqa"), Path("/usr/etc/openqa"))
# Not an openQA variable: lets tests and unusual installs replace /etc/openqa:/usr/etc/openqa.
SYSTEM_DIRS_ENV = "QAWORKER_SYSTEM_CONFIG_DIRS"


def _problem(path: Path) -> str | None:
    """Why an existing ``path`` cannot be read as a config file (None: it can)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"dangling symbolic link to {os.readlink(path)}"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "Permission denied"
    return None


def _exists(path: Path) -> bool:
    """Whether ``path`` is there at all (a dangling link counts); an unsearchable parent is an error."""
    try:
        path.lstat()
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    except OSError as exc:
        raise ConfigError(f"{path.parent}: cannot be read: {exc.strerror or exc}") from None
    return True


def usable_file(path: Path) -> bool:
    """True if ``path`` is a readable config file, False if it is not there; else a ``ConfigError``."""
    if not _exists(path):
        return False
    problem = _problem(path)
    if problem:
        raise ConfigError(f"{path}: cannot be read: {problem}")
    return True


def _dropins(directory: Path, ext: str) -> list[Path]:
    if not _exists(directory):
        return []
    if not directory.is_dir():
        raise ConfigError(f"{directory}: cannot be read: not a directory")
    try:
        names = sorted(p for p in directory.iterdir() if p.name.endswith(f".{ext}"))
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot be read: {exc.strerror or exc}") from None
    return [p for p in names if usable_file(p)]


def lookup_config_files(name: str, groups: Sequence[Sequence[Path]]) -> list[Path]:
    """The files of the first group that has any: main file + sorted ``<name>.d/*.<ext>`` drop-ins;
    within a group the first directory that has the main file ends the search."""
    ext = name.rsplit(".", 1)[-1]
    for group in groups:
        found: list[Path] = []
        for directory in group:
            main = directory / name
            has_main = usable_file(main)
            if has_main:
                found.append(main)
            found.extend(_dropins(directory / f"{name}.d", ext))
            if has_main:
                break
        if found:
            return found
    return []


def config_groups(name: str, environ: Mapping[str, str], config_dir: Path | None) -> list[list[Path]]:
    if config_dir is not None:
        directory = Path(config_dir)
        if not directory.is_dir():
            raise ConfigError(f"--config-dir {directory}: no such directory")
        return [[directory]]
    groups: list[list[Path]] = []
    if environ.get("OPENQA_CONFIG"):
        groups.append([Path(environ["OPENQA_CONFIG"])])
    if name == "client.conf":  # workers.ini lookup passes no home directory
        home = environ.get("HOME") or str(Path.home())
        groups.append([Path(home) / ".config" / "openqa"])
    groups.append(system_config_dirs(environ))
    return groups


def system_config_dirs(environ: Mapping[str, str]) -> list[Path]:
    """/etc/openqa and /usr/etc/openqa, or what ``QAWORKER_SYSTEM_CONFIG_DIRS`` says instead."""
    return list(read_environment(environ).system_config_dirs or SYSTEM_CONFIG_DIRS)
