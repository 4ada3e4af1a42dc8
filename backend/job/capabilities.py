"""Registration capabilities (PROTOCOL.md §5.1), as the classic worker computes them.

The host facts (lscpu, MemTotal) are gathered once per process - lscpu as an asyncio subprocess with
``LC_ALL=C`` - and cached; the per-slot parts (worker class, ARCH, PARALLEL_ONE_HOST_ONLY) are applied
on every call. ``instance`` and ``job_id`` are added by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import re
from pathlib import Path

from backend.engine.child import run_captured

log = logging.getLogger(__name__)

WEBSOCKET_API_VERSION = "1"
LSCPU_TIMEOUT = 10.0

# os-autoinst/openQA lib/OpenQA/Worker.pm: the QEMU architectures a CPU architecture can run
SUPPORTED_ARCHS: dict[str, list[str]] = {
    "i586": ["i586"],
    "i686": ["i686", "i586"],
    "x86_64": ["x86_64", "i686", "i586"],
    "ppc": ["ppc"],
    "ppc64": ["ppc64le", "ppc64", "ppc"],
    "ppc64le": ["ppc64le", "ppc64", "ppc"],
    "s390": ["s390"],
    "s390x": ["s390x", "s390"],
    "aarch64": ["aarch64"],
}

_LSCPU_FIELDS = {
    "Architecture": "cpu_arch",
    "Model name": "cpu_modelname",
    "CPU op-mode(s)": "cpu_opmode",
    "Flags": "cpu_flags",
}


_cpu_cache: dict[str, str] | None = None
_mem_cache: int | None = None
_cpu_task: asyncio.Task[dict[str, str]] | None = None


def parse_lscpu(text: str) -> dict[str, str]:
    facts: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        key = _LSCPU_FIELDS.get(name.strip())
        if sep and key and value.strip():
            facts[key] = value.strip()
    return facts


def parse_meminfo(text: str) -> int | None:
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match and int(match.group(1)) else None


async def _run_lscpu() -> dict[str, str]:
    try:
        async with asyncio.timeout(LSCPU_TIMEOUT):
            result = await run_captured(["lscpu"], env={**os.environ, "LC_ALL": "C"})
    except OSError as exc:
        log.warning("Cannot run lscpu (%s); using the machine type as CPU architecture", exc)
        return {"cpu_arch": platform.machine()}
    except TimeoutError:
        log.warning("lscpu did not answer within %.0f s", LSCPU_TIMEOUT)
        return {"cpu_arch": platform.machine()}
    facts = parse_lscpu(result.stdout.decode(errors="replace"))
    facts.setdefault("cpu_arch", platform.machine())
    return facts


async def _cpu_facts() -> dict[str, str]:
    """lscpu, run at most once per process even when several slots register at the same time."""
    global _cpu_cache, _cpu_task
    if _cpu_cache is not None:
        return _cpu_cache
    if _cpu_task is None or _cpu_task.get_loop() is not asyncio.get_running_loop():
        _cpu_task = asyncio.ensure_future(_run_lscpu())
    facts = await asyncio.shield(_cpu_task)
    _cpu_cache = facts
    return facts


async def _mem_max() -> int | None:
    global _mem_cache
    if _mem_cache is None:
        try:
            _mem_cache = parse_meminfo(await asyncio.to_thread(Path("/proc/meminfo").read_text))
        except OSError as exc:
            log.warning("Cannot read /proc/meminfo: %s", exc)
    return _mem_cache


def worker_class_for(arch: str) -> str:
    return ",".join(f"qemu_{a}" for a in SUPPORTED_ARCHS.get(arch, [arch]))


async def capabilities(settings: dict, isotovideo_interface: int) -> dict[str, str]:
    """The registration query parameters of one slot (without ``instance`` and ``job_id``)."""
    caps: dict[str, str] = {
        "host": os.uname().nodename,
        "websocket_api_version": WEBSOCKET_API_VERSION,
        "isotovideo_interface_version": str(isotovideo_interface),
    }
    arch = settings.get("ARCH")
    if arch:
        caps["cpu_arch"] = str(arch)  # and no lscpu at all, like the classic worker
    else:
        caps.update(await _cpu_facts())
    mem = await _mem_max()
    if mem is not None:
        caps["mem_max"] = str(mem)
    caps["worker_class"] = str(settings.get("WORKER_CLASS") or worker_class_for(caps["cpu_arch"]))
    if settings.get("PARALLEL_ONE_HOST_ONLY"):
        caps["parallel_one_host_only"] = str(settings["PARALLEL_ONE_HOST_ONLY"])
    return caps


def reset_cache() -> None:
    """Forget the host facts (tests)."""
    global _cpu_cache, _mem_cache, _cpu_task
    _cpu_cache = _mem_cache = _cpu_task = None
