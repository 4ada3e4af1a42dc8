"""What keeps ``qaworker demo`` apart from the real workers on the same host, and from other demos.

* Slot numbers: each slot's isotovideo serves its command server on QEMUPORT+1 = 20002 + 10*N + 1,
  and the real workers of a host use the low numbers (1, 2, …) whether or not a job runs right now.
  The demo takes a block of numbers from a range no real worker uses, whose ports are free, and
  reserves each number with an abstract Unix socket held for its lifetime: two demos started at the
  same moment (by any users) can never pick the same block, and the reservation vanishes with the
  process, however it ends.
* Its terminal: a demo belongs to its terminal. A hangup or a terminal that stopped answering ends
  it (``TerminalWatch``), and on the way out every process it started is ended by PID
  (``end_descendants``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

log = logging.getLogger("qaworker.demo")

DEMO_LOW = 200  # real workers.ini files use small numbers; the demo stays above them
DEMO_HIGH = 4500  # 20003 + 10*4500 < 65536
RESERVATION_PREFIX = "qaworker-demo-slot-"


def command_server_port(instance: int) -> int:
    """The port a slot's isotovideo listens on (QEMUPORT + 1, PROTOCOL.md §1.2)."""
    return 20002 + 10 * instance + 1


def port_free(port: int) -> bool:
    """Nobody listens on ``port`` on any address (isotovideo may bind 0.0.0.0 or 127.0.0.1)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 on this host
                continue
            return False
    return True


def _reserve(instance: int) -> socket.socket | None:
    """Hold the demo reservation of one slot number: an abstract socket, released when we exit."""
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.bind(f"\0{RESERVATION_PREFIX}{instance}")
    except OSError:
        holder.close()
        return None
    return holder


@dataclass
class SlotReservation:
    """A block of consecutive slot numbers held by this demo; ``release`` (or exiting) frees them."""

    instances: list[int]
    _holders: list[socket.socket] = field(default_factory=list, repr=False)

    @property
    def first(self) -> int:
        return self.instances[0]

    def release(self) -> None:
        for holder in self._holders:
            holder.close()
        self._holders.clear()


def reserve_instances(count: int, start: int | None = None, *, low: int = DEMO_LOW, high: int = DEMO_HIGH,
                      is_free: Callable[[int], bool] = port_free) -> SlotReservation:
    """``count`` consecutive slot numbers whose command-server ports are free and that no other demo holds.

    Tries from ``start`` upwards (tests use it to move away from each other), else from a random
    place in [low, high). Raises RuntimeError when no block is free.
    """
    span = high - low
    origin = start if start is not None else random.randrange(low, high)
    for step in range(span):
        first = origin + step if start is not None else low + (origin - low + step) % span
        if first + count > high and start is None:
            continue
        holders: list[socket.socket] = []
        for n in range(first, first + count):
            holder = _reserve(n)
            if holder is None or not is_free(command_server_port(n)):
                if holder is not None:
                    holder.close()
                break
            holders.append(holder)
        else:
            return SlotReservation(list(range(first, first + count)), holders)
        for holder in holders:
            holder.close()
    raise RuntimeError(f"no block of {count} free demo slot numbers between {low} and {high}")


def terminal_alive(fd: int) -> bool:
    """False once the terminal behind ``fd`` is gone (hung up: EIO) or ``fd`` is no terminal."""
    try:
        if not os.isatty(fd):
            return False
        termios.tcgetattr(fd)
    except (OSError, termios.error):
        return False
    return True


class TerminalWatch:
    """Calls ``on_lost`` once when the demo's terminal goes away: a hangup, or the tty stops answering.

    The SIGHUP handler is the fast path (tmux kill-session, a closed window: the session leader and the
    foreground group get SIGHUP); the poll catches a terminal that vanished without one.
    """

    def __init__(self, on_lost: Callable[[], None], *, fd: int | None = None, interval: float = 2.0) -> None:
        self.on_lost = on_lost
        self.fd = fd if fd is not None else _stdin_fd()
        self.interval = interval
        self.had_terminal = self.fd >= 0 and terminal_alive(self.fd)
        self.lost = False

    def hangup(self) -> None:
        if not self.lost:
            self.lost = True
            log.warning("demo: the terminal went away; stopping the demo")
            self.on_lost()

    async def run(self) -> None:
        if not self.had_terminal:
            return
        while not self.lost:
            await asyncio.sleep(self.interval)
            if not await asyncio.to_thread(terminal_alive, self.fd):
                self.hangup()


def _stdin_fd() -> int:
    try:
        return sys.__stdin__.fileno() if sys.__stdin__ is not None else -1
    except (OSError, ValueError):
        return -1


def _ours(proc: psutil.Process) -> bool:
    """The multiprocessing resource tracker ends by itself when we exit; everything else is ended."""
    with contextlib.suppress(psutil.Error):
        return "resource_tracker" not in " ".join(proc.cmdline())
    return True


def end_descendants(grace: float = 3.0) -> list[int]:
    """End every process this one started that still runs (by PID: TERM, then KILL); return their PIDs.

    The worker already stops isotovideo's trees; this is the demo's promise that nothing of it
    outlives it, whatever went wrong on the way (it is a child subreaper, so orphans are its children).
    """
    try:
        children = [p for p in psutil.Process().children(recursive=True) if _ours(p)]
    except psutil.Error:
        return []
    alive = []
    for proc in children:
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                proc.terminate()
                alive.append(proc)
    _gone, left = psutil.wait_procs(alive, timeout=grace)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=grace)
    return [p.pid for p in alive]
