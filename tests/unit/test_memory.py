"""The worker limits glibc's malloc arenas: threads that allocate at the same time share two."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Eight threads allocate (bytes over 512 B go to glibc's malloc) at the same time; malloc_stats()
# then prints one "Arena N:" block per arena on stderr.
PROGRAM = """
import ctypes, sys, threading
from app.memory import limit_malloc_arenas
if sys.argv[1] == "limit":
    assert limit_malloc_arenas()
start = threading.Barrier(8)
def churn():
    start.wait()
    for _ in range(20000):
        keep = [bytes(2000) for _ in range(20)]
threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stderr.count("Arena ")


def test_threads_share_two_arenas_once_limited() -> None:
    unlimited = arenas("plain")
    assert unlimited > 2, f"the threads made only {unlimited} arenas without the limit: the test shows nothing"
    assert arenas("limit") <= 2
