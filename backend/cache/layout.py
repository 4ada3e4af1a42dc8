"""Where things live under CACHEDIRECTORY (PROTOCOL.md §18.3, §18.5).

<root>/cache.sqlite            the classic database (assets table), shared by all processes
<root>/<host>/<basename>       a cached asset; assets.filename is this absolute real path
<root>/<host>/tests/           rsync'ed test distribution, never evicted
<root>/tmp/                    downloads in progress (each flock'ed by its writer)
<root>/locks/<host>/<name>.lock / .pin   per-asset download and pin locks (qaworker only)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RESERVED_DIRS = frozenset({"tmp", "locks"})
DB_NAME = "cache.sqlite"


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path  # the real path of the cache directory

    @classmethod
    def of(cls, cache_dir: Path) -> Layout:
        return cls(Path(os.path.realpath(cache_dir)))

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def asset(self, host: str, name: str) -> Path:
        return self.root / host / os.path.basename(name)

    def tests(self, host: str) -> Path:
        return self.root / host / "tests"

    def download_lock(self, asset: Path) -> Path:
        return self.locks / asset.parent.name / f"{asset.name}.lock"

    def pin_lock(self, asset: Path) -> Path:
        return self.locks / asset.parent.name / f"{asset.name}.pin"

    def tests_lock(self, host: str) -> Path:
        return self.locks / host / "tests.lock"

    def asset_files(self) -> list[Path]:
        """Every file at depth 2 outside tmp/ and locks/ (blocking: call from a thread)."""
        found: list[Path] = []
        for host in _scandir(self.root):
            if host.name in RESERVED_DIRS or not host.is_dir(follow_symlinks=False):
                continue
            for entry in _scandir(Path(host.path)):
                if entry.is_file(follow_symlinks=True) or entry.is_symlink():
                    found.append(Path(entry.path))
        return found


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []
