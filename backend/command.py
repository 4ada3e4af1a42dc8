"""Run a short helper command (``busctl``, ``ipmitool``) off the loop, with a deadline.

The command runs in its own session so a timeout ends it and anything it started; a missing program
is an answer (exit 127 with the reason), never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int  # 127: could not be started, 124: timed out
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


async def run_command(argv: list[str], *, timeout: float = 10.0,
                      env: Mapping[str, str] | None = None) -> CommandResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            env=dict(env) if env is not None else None)
    except OSError as exc:
        return CommandResult(127, "", f"cannot run {argv[0]}: {exc.strerror or exc}")
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        return CommandResult(124, "", f"{argv[0]} did not answer within {timeout:g} s")
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    code = proc.returncode if proc.returncode is not None else -1
    return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
