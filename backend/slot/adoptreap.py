"""``qaworker-reap-jobs``: the units' ExecStopPost — end the job trees a deliberate stop leaves behind.

The units use ``KillMode=process`` so that a job tree survives its worker (hand-over, crash) and the
next start adopts it (``backend.slot.adopt``). That alone would also let the trees survive a real
``systemctl stop``; this command, run after every exit of the main process, decides:

* a stop or restart job of the unit is queued in systemd (``systemctl stop|restart``): the trees are
  ended — qaworker got SIGTERM and normally ended its jobs itself (reason ``quit``), this catches a
  worker that was SIGKILLed after ``TimeoutStopSec``;
* otherwise (exit 75 = hand-over, or a crash, so ``Restart=`` starts the next life): kept.

Only what is provably a job's is killed: the monitor named by the pool's job record (pid, start time
and job marker must match) with its process group, the job's own cgroup when the record names one that
holds that monitor (``cgroup.kill``: double-forked helpers that dropped the marker go too), then every
process carrying the record's marker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil

from backend.engine import procs
from backend.engine.cgroup import JobCgroup
from backend.job.record import cgroup_problem, load_record, monitor_problem

STOP_JOB_TYPES = frozenset({"stop", "restart", "try-restart", "reload-or-restart"})
HANDOVER_EXIT = "75"


def stop_job_queued(unit: str) -> bool:
    """True when systemd has a stop/restart job for ``unit`` (``systemctl list-jobs``)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not unit:
        return False
    try:
        out = subprocess.run([systemctl, "list-jobs", "--no-legend", "--plain", "--no-pager"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == unit and fields[2] in STOP_JOB_TYPES:
            return True
    return False


def keep_jobs(env: Mapping[str, str], stopping: bool) -> tuple[bool, str]:
    """(keep?, why) from systemd's ExecStopPost environment and whether a stop job is queued."""
    status = env.get("EXIT_STATUS", "")
    if stopping:
        return False, f"the unit is being stopped (exit {env.get('EXIT_CODE', '?')}/{status or '?'})"
    if env.get("EXIT_CODE") == "exited" and status == HANDOVER_EXIT:
        return True, "hand-over: the next start adopts the jobs"
    return True, f"the worker ended by itself ({env.get('SERVICE_RESULT', '?')}); the next start adopts the jobs"


def reap_pool(pool_dir: Path) -> list[int]:
    """End the job of ``pool_dir``'s record (blocking). Returns the pids signalled."""
    record, _why = load_record(pool_dir)
    if record is None:
        return []
    killed: list[int] = []
    ours = record.monitor is not None and monitor_problem(record) is None
    cgroup = None  # decided while the monitor lives: afterwards nothing proves the cgroup is the job's
    if ours and record.cgroup and cgroup_problem(record, monitor_alive=True) is None:
        cgroup = JobCgroup(Path(record.cgroup))
    if ours:
        assert record.monitor is not None
        pgid = record.monitor.monitor_pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
                killed.append(pgid)
            except (ProcessLookupError, PermissionError):
                break
            if sig == signal.SIGTERM:
                try:
                    procs.wait_gone([psutil.Process(pgid)], 10.0)
                except psutil.NoSuchProcess:
                    break
    if cgroup is not None:
        killed += cgroup.kill()
        cgroup.remove()
    killed += procs.sweep(record.marker, pool_dir, grace=5.0)
    return sorted(set(killed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qaworker-reap-jobs", description=__doc__.splitlines()[0])
    parser.add_argument("--unit", default="", help="the unit (%%n in a unit file)")
    parser.add_argument("--pool", action="append", type=Path, default=[], help="a slot's pool directory")
    args = parser.parse_args(argv)
    keep, why = keep_jobs(os.environ, stop_job_queued(args.unit))
    if keep:
        print(f"qaworker-reap-jobs: keeping the job trees: {why}")
        return 0
    for pool in args.pool:
        pids = reap_pool(pool)
        print(f"qaworker-reap-jobs: {pool}: {why}: ended {pids or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
