"""Replacing a file atomically, safe for concurrent writers of the same name.

A fixed temporary name (``<name>.part``, ``<name>.tmp``) breaks when two writers of the same file overlap:
the second truncates the first one's temporary file and one ``os.replace`` finds it gone
(FileNotFoundError). Here every write gets its own temporary file (``mkstemp``: O_EXCL, so it is never
a symlink someone planted) in the target's directory, and is renamed over the target: readers see the
old or the new content, never a mix, and the last writer wins. Blocking: call it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

FILE_MODE = 0o644  # mkstemp makes 0600; results and pool files are read by other users and processes


def write_atomic(path: Path, data: bytes | str, *, mode: int = FILE_MODE) -> None:
    """Write ``data`` (str: UTF-8) to ``path`` through a unique temporary file and a rename."""
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
