"""A process on a real pty, as a terminal emulator runs it (used by the demo and hand-over tests), and the
real worker with its dashboard on one (``start_dashboard``)."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

from backend.engine.simulator import simulator_command
from tests.integration.harness import write_worker_config

ROOT = Path(__file__).resolve().parents[2]


class PtySession:
    """A process on a fresh pty with it as its controlling terminal; the output is drained all the time."""

    def __init__(self, argv: list[str], env: dict[str, str], *, size: tuple[int, int] = (40, 120)) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        # setsid + TIOCSCTTY: the pty becomes the controlling terminal, as a terminal emulator does it
        boot = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                "os.execvp(sys.argv[1], sys.argv[1:])")
        self.proc = subprocess.Popen([sys.executable, "-c", boot, *argv], stdin=slave, stdout=slave, stderr=slave,
                                     cwd=ROOT, env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if not ready:
                    continue
                chunk = os.read(self.master, 65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            with self._lock:
                self.output += chunk

    def text(self) -> str:
        with self._lock:
            return self.output.decode(errors="replace")

    def write(self, data: str) -> None:
        os.write(self.master, data.encode())

    def hang_up(self) -> None:
        """What the terminal emulator does when its window closes."""
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master >= 0:
            self.hang_up()


def start_dashboard(tmp: Path, url: str, instance: int) -> PtySession:
    """`qaworker` with its dashboard on a fresh pty, one slot (``tests.integration.harness`` config); its log
    goes to ``<tmp>/qaworker.log``, its control socket is ``<tmp>/control.sock``."""
    env = write_worker_config(tmp, url, [instance], f"LOG_DIR = {tmp}")
    env.update(QAWORKER_CONTROL_SOCKET=str(tmp / "control.sock"), TERM="xterm-256color")
    return PtySession([sys.executable, "-m", "app.cli", "--instance", str(instance), "--isotovideo",
                       simulator_command()], env)
