"""IPMI power-off of an idle slot's system under test (upstream ``Worker::shutdown_ipmi_sut``).

With ``IPMI_HOSTNAME``, ``IPMI_USER`` and ``IPMI_PASSWORD`` set and ``IPMI_AUTOSHUTDOWN_INTERVAL`` not 0,
every interval the slot runs ``ipmitool <IPMI_OPTIONS> -H host -U user -P password chassis power off``
unless it has a job. The password never reaches a log line: a failure is logged with ``[masked]`` in
its place, and app/logsetup.py masks it in every other line too.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Callable

from backend.command import run_command
from backend.config import SlotTuning

log = logging.getLogger(__name__)

IPMITOOL_TIMEOUT = 60.0
MASKED = "[masked]"


def ipmi_enabled(tuning: SlotTuning) -> bool:
    return bool(tuning.ipmi_hostname and tuning.ipmi_user and tuning.ipmi_password
                and tuning.ipmi_autoshutdown_interval > 0)


def power_off_argv(tuning: SlotTuning) -> list[str]:
    return ["ipmitool", *shlex.split(tuning.ipmi_options), "-H", tuning.ipmi_hostname or "",
            "-U", tuning.ipmi_user or "", "-P", tuning.ipmi_password or "", "chassis", "power", "off"]


def masked_argv(argv: list[str], password: str | None) -> str:
    return " ".join(MASKED if password and arg == password else arg for arg in argv)


class IpmiAutoShutdown:
    """Powers the SUT off every interval while ``is_busy()`` is false; run it as one of the slot's tasks."""

    def __init__(self, instance: int, tuning: SlotTuning, is_busy: Callable[[], bool]) -> None:
        self.instance = instance
        self.tuning = tuning
        self.is_busy = is_busy
        self.power_offs = 0  # commands that succeeded

    async def run(self) -> None:
        interval = self.tuning.ipmi_autoshutdown_interval
        log.info("[slot %d] IPMI config present -> will power off %s every %g s while idle",
                 self.instance, self.tuning.ipmi_hostname, interval)
        while True:
            await asyncio.sleep(interval)
            if not self.is_busy():
                await self.power_off()

    async def power_off(self) -> bool:
        argv = power_off_argv(self.tuning)
        result = await run_command(argv, timeout=IPMITOOL_TIMEOUT)
        if result.ok:
            self.power_offs += 1
            log.debug("[slot %d] IPMI: %s powered off", self.instance, self.tuning.ipmi_hostname)
            return True
        detail = result.stderr.strip().replace(self.tuning.ipmi_password or "\0", MASKED)
        log.warning("[slot %d] %s: %s", self.instance, masked_argv(argv, self.tuning.ipmi_password),
                    detail or f"exit code {result.exit_code}")
        return False
