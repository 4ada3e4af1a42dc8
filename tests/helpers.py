"""Shared test helpers: free ports and slot numbers that do not collide between parallel tests."""

from __future__ import annotations

import random
import shutil
import socket

import pytest


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
