"""Shared test helpers: free ports and slot numbers that do not collide between parallel tests, and the
look at processes the crash and sweep tests share (alive, living, job processes)."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import psutil
import pytest

from backend.engine.procs import MARKER_ENV

T = TypeVar("T")


def port_is_free(port: int) -> bool:
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 here
                continue
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_instance(low: int = 100, high: int = 4000) -> int:
    """A slot number whose command-server port (20002 + 10*N + 1) and VNC port are free now."""
    for _ in range(200):
        n = random.randint(low, high)
        if port_is_free(20003 + 10 * n):
            return n
    raise RuntimeError("no free slot number found")


def require_tools(*tools: str) -> None:
    """Fail (never skip) when a system tool a test runs for real is missing: a skip would hide a broken set-up
    that CI counts as passing. ``make test`` installs them when run as root."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        names = " ".join(missing)
        pytest.fail(f"{names} not installed: run the tests with `make test` as root, or install with "
                    f"`sudo apt-get install -y {names}`", pytrace=False)


def alive(pid: int) -> bool:
    """The process runs (a zombie nobody reaped yet — we may be its reaper — counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def alive_pids(pids: list[int]) -> list[int]:
    return [pid for pid in pids if alive(pid)]


def living(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running as the very process seen (a reused pid does not count)."""
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def is_job_process(proc: psutil.Process) -> bool:
    """A process of a job's tree: it carries the job marker in its environment."""
    try:
        return MARKER_ENV in proc.environ()
    except psutil.Error:
        return False


def job_processes_of(worker_pid: int) -> list[psutil.Process]:
    """Every process carrying a job marker of that worker (the marker names its pid)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(MARKER_ENV, "").startswith(f"qaworker-{worker_pid}-"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def describe(procs: list[psutil.Process]) -> list[tuple[int, str]]:
    """(pid, command line) of each, for an assertion message."""
    out = []
    for proc in procs:
        try:
            out.append((proc.pid, " ".join(proc.cmdline())[:100]))
        except psutil.Error:
            out.append((proc.pid, "?"))
    return out


async def until_in_thread(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll a blocking ``check`` (a /proc scan takes tens of ms: never on the loop) in a thread until it
    returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while not (found := await asyncio.to_thread(check)):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)
    return found
