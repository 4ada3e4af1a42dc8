"""workers.ini sections (PROTOCOL.md §2.2): instance lists/ranges, the per-slot merge of
``[global]`` < instance sections < ``[class:C]`` (adds only), and the default worker class."""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping

from backend.config.errors import ConfigError
from backend.config.ini import IniData, apply_entries

_INSTANCE_PART_RE = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


def parse_instance_spec(spec: str) -> list[int]:
    """Numbers of an instance list/range (``3``, ``1-5``, ``1,3,7-9``); ``ValueError`` with a reason."""
    numbers: list[int] = []
    for part in spec.split(","):
        match = _INSTANCE_PART_RE.match(part.strip())
        if not match:
            raise ValueError(f"{part.strip()!r} is not a number or range")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low < 1 or high < low:
            raise ValueError(f"{part.strip()!r} is not a valid range")
        numbers.extend(n for n in range(low, high + 1) if n not in numbers)
    return numbers


def _looks_like_instance_section(name: str) -> bool:
    """A section meant as an instance list (digits first, no host-like characters)."""
    return bool(name) and name[0].isdigit() and not any(c in name for c in ".:/[")


def classify_sections(ini: IniData, host_strings: set[str]) -> dict[str, list[int]]:
    """Instance sections -> their numbers; a malformed one is a ``ConfigError``."""
    result: dict[str, list[int]] = {}
    for name in ini.sections:
        if name == "global" or name.startswith("class:") or name in host_strings:
            continue
        if not _looks_like_instance_section(name):
            continue  # a [<host>] section for a host that is not used
        try:
            result[name] = parse_instance_spec(name)
        except ValueError as exc:
            raise ConfigError(f"{ini.section_files[name]}: [{name}]: bad instance section name: {exc} "
                              "(expected e.g. [3], [1-5] or [1,3,7-9])") from None
    return result


def host_strings(ini: IniData, cli_host: str | None) -> set[str]:
    """Every host named anywhere (HOST in any section, --host): their sections are not instances."""
    hosts = set((cli_host or "").split())
    for entries in ini.sections.values():
        hosts.update(h for e in entries if e.key == "HOST" for h in e.value.split())
    return hosts


def merge_instance(ini: IniData, instance: int, instance_sections: Mapping[str, list[int]]
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """[global] < instance sections < [class:C] (adds only). Returns (settings, origins)."""
    merged: dict[str, str] = {}
    origins: dict[str, str] = {}
    apply_entries(merged, origins, ini.sections.get("global", []), "global")
    for name, numbers in instance_sections.items():
        if instance in numbers:
            apply_entries(merged, origins, ini.sections[name], name)
    classes = [c.strip() for c in (merged.get("WORKER_CLASS") or "").split(",") if c.strip()]
    for cls_name in classes:
        section = f"class:{cls_name}"
        if not ini.has(section):
            continue
        own: dict[str, str] = {}
        own_origins: dict[str, str] = {}
        apply_entries(own, own_origins, ini.sections[section], section)
        for key, value in own.items():
            if key not in merged:  # class sections never override
                merged[key] = value
                origins[key] = own_origins[key]
    return merged, origins


def instance_numbers(instance: int | None, instances: str | None) -> list[int]:
    """The slots to run from ``--instance`` / ``--instances`` (default: slot 1)."""
    if instances and instance is not None:
        raise ConfigError("use either --instance or --instances, not both")
    if instances:
        try:
            return parse_instance_spec(instances)
        except ValueError as exc:
            raise ConfigError(f"--instances: {exc} (expected e.g. 1-4 or 1,3,7-9)") from None
    return [instance or 1]


_ARCH_CLASSES = {
    "i586": ["i586"], "i686": ["i686", "i586"], "x86_64": ["x86_64", "i686", "i586"],
    "ppc": ["ppc"], "ppc64": ["ppc64le", "ppc64", "ppc"], "ppc64le": ["ppc64le", "ppc64", "ppc"],
    "s390": ["s390"], "s390x": ["s390x", "s390"], "aarch64": ["aarch64"],
}
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def default_worker_class(arch: str | None = None) -> str:
    """``qemu_<arch>`` for the CPU and its compatible archs (PROTOCOL.md §5.1)."""
    arch = (arch or platform.machine() or "x86_64").strip()
    arch = _ARCH_ALIASES.get(arch.lower(), arch)
    return ",".join(f"qemu_{a}" for a in _ARCH_CLASSES.get(arch, [arch]))
