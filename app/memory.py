"""Keep glibc from giving every thread its own malloc arena.

glibc creates up to 8 arenas per core, one for each thread that allocates while another holds an arena.
The worker's threads (hashing, file I/O, sqlite, the log writer, the executor's pool) each leave an arena
behind that holds freed memory for good: about 1 MiB of idle RSS with 4 slots here (bench/vs_perl.py's idle
RSS), and more over days of jobs. Their work is short and mostly in large buffers glibc maps directly,
so two arenas cost no measurable contention. ``MALLOC_ARENA_MAX`` in the environment still wins.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # malloc.h
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """True when glibc took the limit (or the admin set MALLOC_ARENA_MAX); False on other C libraries."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process and its C library: no ldconfig run
    except (OSError, AttributeError):
        return False  # musl and friends: no mallopt, nothing to tune
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1
