"""The lean /proc pass of the sweeps finds a job's processes by cwd and by environment, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

from backend.engine.procscan import candidate_pids, env_entry


def test_candidates_are_found_by_cwd_inside_the_pool_and_by_an_exact_environment_entry(tmp_path):
    pool = tmp_path / "pool" / "1"
    (pool / "sub").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    in_pool = subprocess.Popen(sleeper, cwd=pool / "sub")
    by_env = subprocess.Popen(sleeper, cwd=elsewhere, env={**os.environ, "QAWORKER_JOB_MARKER": "m-1"})
    other_value = subprocess.Popen(sleeper, cwd=elsewhere, env={**os.environ, "QAWORKER_JOB_MARKER": "m-10"})
    sibling = tmp_path / "pool" / "10"  # a prefix of the name is not "inside"
    sibling.mkdir()
    next_pool = subprocess.Popen(sleeper, cwd=sibling)
    try:
        found = set(candidate_pids(pool, [env_entry("QAWORKER_JOB_MARKER", "m-1")]))
        assert {in_pool.pid, by_env.pid} <= found
        assert not {other_value.pid, next_pool.pid} & found
        assert os.getpid() not in found
        assert set(candidate_pids(None, [])) == set()  # no rule, no candidate
    finally:
        for proc in (in_pool, by_env, other_value, next_pool):
            proc.kill()
            proc.wait()
