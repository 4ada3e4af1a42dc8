"""Cache size rules (PROTOCOL.md §18.6) as pure functions so they can be tested on their own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class DiskSpace:
    total: int
    available: int


def disk_space(path: Path) -> DiskSpace:
    """Free space of the filesystem holding ``path`` (blocking: call from a thread)."""
    st = os.statvfs(path)
    return DiskSpace(total=st.f_blocks * st.f_frsize, available=st.f_bavail * st.f_frsize)


def exceeds_limit(used: int, needed: int, limit: int) -> bool:
    return used + needed > limit


def exceeds_free_space(space: DiskSpace, needed: int, min_free_percentage: float | None) -> bool:
    """The NEW (fixed) rule: (available - needed) / total * 100 < min_free → exceeds.

    2023 had the comparison inverted (PROTOCOL.md §21), which evicted while the disk was empty.
    """
    if min_free_percentage is None or space.total <= 0:
        return False
    return (space.available - needed) / space.total * 100 < min_free_percentage


def free_percentage(space: DiskSpace) -> float:
    return space.available / space.total * 100 if space.total > 0 else 0.0
