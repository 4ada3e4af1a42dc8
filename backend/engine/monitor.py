"""A conmon-style monitor for one isotovideo: it outlives the worker and records how isotovideo ended.

The worker starts ``python -I -S <this file> --exit-file <pool>/.qaworker/exit.json --pid-fd N -- argv…``
in a new session (so it is the session and process-group leader; isotovideo stays in its group, a
group signal of the worker reaches both). The monitor

* starts isotovideo as its child (signal handlers reset on exec: isotovideo sees default dispositions),
* tells the worker isotovideo's pid and start time through the pipe ``--pid-fd``, then closes it,
* ignores the termination signals a group stop sends (it only exits after isotovideo did), and
* writes ``{"monitor_pid", "isotovideo_pid", "returncode", "ended_at"}`` atomically (temp file +
  rename) to the exit file, then exits with isotovideo's status.

A worker that was SIGKILLed or handed over never sees this process exit as its child; the next worker
waits for it through a pidfd and reads the exit file instead (``backend.slot.adopt``).

The script uses the standard library only: it runs with ``-I -S`` from the pool directory, where the
``backend`` package is not importable. The worker side lives in ``backend.engine.monitored``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MONITOR_SCRIPT = Path(__file__).resolve()
STATE_DIR = ".qaworker"
EXIT_FILE = "exit.json"


def monitor_argv(argv: list[str], exit_file: Path, pid_fd: int) -> list[str]:
    """The command line that runs ``argv`` under the monitor."""
    return [sys.executable, "-I", "-S", str(MONITOR_SCRIPT), "--exit-file", str(exit_file),
            "--pid-fd", str(pid_fd), "--", *argv]


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` so that a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # the rename itself must survive a crash of the machine too
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def proc_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot (pid-reuse proof)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _parse(args: list[str]) -> tuple[Path, int | None, list[str]]:
    exit_file: Path | None = None
    pid_fd: int | None = None
    while args and args[0] != "--":
        opt = args.pop(0)
        if opt == "--exit-file" and args:
            exit_file = Path(args.pop(0))
        elif opt == "--pid-fd" and args:
            pid_fd = int(args.pop(0))
        else:
            raise SystemExit(f"monitor: unknown option {opt}")
    if not args or exit_file is None:
        raise SystemExit("usage: monitor.py --exit-file PATH [--pid-fd N] -- COMMAND…")
    return exit_file, pid_fd, args[1:]


def _ignore(_signum: int, _frame: object) -> None:
    """A handler, not SIG_IGN: an ignored disposition would be inherited by isotovideo across exec."""


def main(args: list[str]) -> int:
    exit_file, pid_fd, argv = _parse(list(args))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, _ignore)
    try:
        exit_file.unlink(missing_ok=True)
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True)
    except OSError as exc:
        print(f"monitor: cannot start {argv[0]}: {exc}", file=sys.stderr, flush=True)
        if pid_fd is not None:
            os.write(pid_fd, f"error {exc}\n".encode())
            os.close(pid_fd)
        return 127
    if pid_fd is not None:
        os.write(pid_fd, f"{child.pid} {proc_start_ticks(child.pid) or 0}\n".encode())
        os.close(pid_fd)
    returncode = child.wait()  # PEP 475: retried after our no-op signal handlers
    record = {"monitor_pid": os.getpid(), "monitor_start": proc_start_ticks(os.getpid()) or 0,
              "isotovideo_pid": child.pid, "returncode": returncode, "ended_at": time.time()}
    write_json_atomic(exit_file, record)
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
