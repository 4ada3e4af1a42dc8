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

import os
import signal
import sys

# Only os/signal/sys at start (each import delays isotovideo's start: no pathlib, no subprocess); time once
# isotovideo has ended, and no json at all (the exit record is formatted by hand).

MONITOR_SCRIPT = os.path.realpath(__file__)
STATE_DIR = ".qaworker"
EXIT_FILE = "exit.json"


def monitor_argv(argv: list[str], exit_file: os.PathLike | str, pid_fd: int) -> list[str]:
    """The command line that runs ``argv`` under the monitor."""
    return [sys.executable, "-I", "-S", MONITOR_SCRIPT, "--exit-file", os.fspath(exit_file),
            "--pid-fd", str(pid_fd), "--", *argv]


def write_json_atomic(path: os.PathLike | str, data: dict) -> None:
    """Write ``data`` so that a reader sees the old file or the whole new one, never a part."""
    import json

    _write_atomic(path, json.dumps(data))


def _record_json(record: dict[str, int | float]) -> str:
    """JSON of a flat record of numbers, without importing json (5 ms between isotovideo's exit and ours)."""
    return "{" + ", ".join(f'"{key}": {value!r}' for key, value in record.items()) + "}"


def _write_atomic(path: os.PathLike | str, text: str) -> None:
    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # the rename itself must survive a crash of the machine too
        dir_fd = os.open(folder, os.O_RDONLY)
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


def _parse(args: list[str]) -> tuple[str, int | None, list[str]]:
    exit_file: str | None = None
    pid_fd: int | None = None
    while args and args[0] != "--":
        opt = args.pop(0)
        if opt == "--exit-file" and args:
            exit_file = args.pop(0)
        elif opt == "--pid-fd" and args:
            pid_fd = int(args.pop(0))
        else:
            raise SystemExit(f"monitor: unknown option {opt}")
    if not args or exit_file is None:
        raise SystemExit("usage: monitor.py --exit-file PATH [--pid-fd N] -- COMMAND…")
    return exit_file, pid_fd, args[1:]


def _ignore(_signum: int, _frame: object) -> None:
    """A handler, not SIG_IGN: an ignored disposition would be inherited by isotovideo across exec."""


def _spawn(argv: list[str]) -> tuple[int, str]:
    """fork + exec ``argv``; (pid, "") or (0, the error). A close-on-exec pipe tells exec failures."""
    r, w = os.pipe()  # both close-on-exec
    pid = os.fork()
    if pid == 0:  # the child: isotovideo after exec (signal handlers reset to the defaults there)
        try:
            os.close(r)
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(w, f"{argv[0]}: {exc.strerror or exc}".encode())
        os._exit(127)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        error = pipe.read().decode(errors="replace")
    if error:
        os.waitpid(pid, 0)
        return 0, error
    return pid, ""


def main(args: list[str]) -> int:
    exit_file, pid_fd, argv = _parse(list(args))
    if pid_fd is not None:
        os.set_inheritable(pid_fd, False)  # isotovideo must not hold the worker's pipe open
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, _ignore)
    try:
        os.unlink(exit_file)
    except OSError:
        pass
    pid, error = _spawn(argv)
    if error:
        print(f"monitor: cannot start {error}", file=sys.stderr, flush=True)
        if pid_fd is not None:
            os.write(pid_fd, f"error {error}\n".encode())
            os.close(pid_fd)
        return 127
    if pid_fd is not None:
        os.write(pid_fd, f"{pid} {proc_start_ticks(pid) or 0}\n".encode())
        os.close(pid_fd)
    _, status = os.waitpid(pid, 0)  # PEP 475: retried after our no-op signal handlers
    returncode = os.waitstatus_to_exitcode(status)
    import time

    record = {"monitor_pid": os.getpid(), "monitor_start": proc_start_ticks(os.getpid()) or 0,
              "isotovideo_pid": pid, "returncode": returncode, "ended_at": time.time()}
    _write_atomic(exit_file, _record_json(record))
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the worker waits for this exit: skip the interpreter's teardown (~2.5 ms)
