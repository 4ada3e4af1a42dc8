"""§7 check 5: a slot of worker class ``tap`` needs os-autoinst-openvswitch on the system bus.

Upstream asks D-Bus directly (Net::DBus); we ask the bus daemon with ``busctl`` in a subprocess
(``NameHasOwner``), so no D-Bus library is needed and the loop never waits on the bus. Like upstream,
a class counts when it is one of the comma-separated ``WORKER_CLASS`` entries. Unlike upstream (which
checks the default name and only reports ``OVS_DBUS_SERVICE_NAME``), the configured name is checked.
"""

from __future__ import annotations

import logging

from backend.command import run_command
from backend.config import SlotConfig

log = logging.getLogger(__name__)

TAP_CLASS = "tap"
BUSCTL_TIMEOUT = 5.0


def needs_ovs(config: SlotConfig) -> bool:
    return TAP_CLASS in (c.strip() for c in config.worker_classes)


def busctl_argv(service: str) -> list[str]:
    return ["busctl", "--system", "--no-pager", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
            "org.freedesktop.DBus", "NameHasOwner", "s", service]


async def ovs_problem(config: SlotConfig) -> str | None:
    """None when the slot needs no Open vSwitch helper or it is on the bus; else the reason."""
    if not needs_ovs(config):
        return None
    service = config.tuning.ovs_dbus_service_name
    result = await run_command(busctl_argv(service), timeout=BUSCTL_TIMEOUT)
    if result.ok and result.stdout.split() == ["b", "true"]:
        return None
    reason = f"D-Bus service '{service}' is not running"
    if not result.ok:
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.exit_code}"])[-1]
        log.debug("[slot %d] busctl: %s", config.instance, detail)
        reason += f" (asking the system bus failed: {detail})"
    return reason
