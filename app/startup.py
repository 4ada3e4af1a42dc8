"""What the worker says about its configuration when it starts."""

from __future__ import annotations

import os

from backend.config import CliOptions, WorkerConfig
from backend.config.lookup import system_config_dirs


def _instances(numbers: list[int]) -> str:
    label = "instance" if len(numbers) == 1 else "instances"
    return f"{label} {', '.join(map(str, numbers))}"


def system_config_notice(config: WorkerConfig, options: CliOptions,
                         environ: dict[str, str] | None = None) -> str | None:
    """One line when a plain ``qaworker`` (no --host, no --config-dir) registers with the web UI of the
    machine's own workers.ini (/etc/openqa): someone trying qaworker out may not expect that."""
    if options.host or options.config_dir is not None:
        return None
    system = [d.resolve() for d in system_config_dirs(os.environ if environ is None else environ)]
    used = [f for f in config.config_files if f.name == "workers.ini" and f.resolve().parent in system]
    if not used or not config.slots:
        return None
    hosts = list(dict.fromkeys(h.base_url for slot in config.slots for h in slot.hosts))
    if not hosts:
        return None
    return (f"using {used[0]}: registering with {', '.join(hosts)} as "
            f"{_instances([s.instance for s in config.slots])} (--host or --config-dir to use another web UI)")
