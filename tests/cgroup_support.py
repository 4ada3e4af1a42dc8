"""A real cgroup v2 test root for the per-job cgroup tests (integration and interop)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from backend.engine.cgroup import JobCgroup, cgroup2_mount


def make_test_root() -> Path | None:
    """``<cgroup2 mount>/qaworker-test-<uuid>``, or None when this machine offers no writable cgroup v2."""
    mount = cgroup2_mount()
    if mount is None:
        return None
    root = mount / f"qaworker-test-{uuid.uuid4().hex[:12]}"
    try:
        root.mkdir()
    except OSError:
        return None
    return root


def remove_test_root(root: Path) -> None:
    """Kill whatever is still inside (only on a failed test) and remove the tree, deepest first."""
    for directory, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
        JobCgroup(Path(directory)).kill(timeout=2)
        try:
            os.rmdir(directory)
        except OSError:
            pass
