"""Run a short helper command (``busctl``, ``ipmitool``) off the loop, with a deadline.

The command runs in its own session so a timeout ends it and anything it started; a missing program
is an answer (exit 127 with the reason), never an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from backend.engine.child import run_captured


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
        async with asyncio.timeout(timeout):
            result = await run_captured(argv, env=env)
    except OSError as exc:
        return CommandResult(127, "", f"cannot run {argv[0]}: {exc.strerror or exc}")
    except TimeoutError:  # run_captured has ended its process group
        return CommandResult(124, "", f"{argv[0]} did not answer within {timeout:g} s")
    return CommandResult(result.returncode, result.stdout.decode(errors="replace"),
                         result.stderr.decode(errors="replace"))
