"""The simulator's settings and file helpers (see ``backend.engine.simulator``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTERFACE_VERSION = 34
CATEGORY = "simulator"
PAUSE_REASON = "paused at needle mismatch"


def simulator_command() -> str:
    """A command line to configure as ``isotovideo`` (works without installing the package)."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve().with_name('simulator.py')))}"


def _flag(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "no", "false")


def _float(value: str, default: float) -> float:
    try:
        return float(value)
    except ValueError:
        return default


def _int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


@dataclass
class SimSettings:
    modules: list[str] = field(default_factory=lambda: ["boot", "login", "console", "shutdown"])
    module_seconds: float = 1.0
    screenshots: int = 2
    size: tuple[int, int] = (1024, 768)
    fail: str = ""
    softfail: str = ""
    crash: str = ""
    hang: str = ""
    pause: str = ""
    pause_seconds: float = 5.0
    ignore_sigterm: bool = False
    orphan: bool = False
    qemu_pid: bool = False
    ulog: bool = False
    asset_size: int = 1 << 20
    exit_code: int = 0
    qemuport: int | None = None
    jobtoken: str = ""
    assets: list[tuple[str, str]] = field(default_factory=list)  # (target dir, file name)

    @classmethod
    def load(cls, vars_: dict[str, str], env: dict[str, str]) -> SimSettings:
        def get(key: str, default: str = "") -> str:
            return str(vars_.get(key, env.get(key, default)))

        size = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", get("SIM_SCREENSHOT_SIZE", "1024x768"))
        modules = [m.strip() for m in get("SIM_MODULES", "boot,login,console,shutdown").split(",")]
        port = get("QEMUPORT")
        return cls(
            modules=[] if _flag(get("SIM_NO_TESTS")) else [m for m in modules if m],
            module_seconds=max(0.0, _float(get("SIM_MODULE_SECONDS", "1"), 1.0)),
            screenshots=max(0, _int(get("SIM_SCREENSHOTS", "2"), 2)),
            size=(max(1, int(size.group(1))), max(1, int(size.group(2)))) if size else (1024, 768),
            fail=get("SIM_FAIL_MODULE"), softfail=get("SIM_SOFTFAIL_MODULE"), crash=get("SIM_CRASH"),
            hang=get("SIM_HANG"), pause=get("SIM_PAUSE"),
            pause_seconds=_float(get("SIM_PAUSE_SECONDS", "5"), 5.0),
            ignore_sigterm=_flag(get("SIM_IGNORE_SIGTERM")), orphan=_flag(get("SIM_ORPHAN")),
            qemu_pid=_flag(get("SIM_QEMU_PID")), ulog=_flag(get("SIM_ULOG")),
            asset_size=max(0, _int(get("SIM_ASSET_SIZE", str(1 << 20)), 1 << 20)),
            exit_code=_int(get("SIM_EXIT_CODE", "0"), 0),
            qemuport=(_int(port, 0) or None) if port else None,
            jobtoken=get("JOBTOKEN"),
            assets=_asset_targets(vars_),
        )


def _asset_targets(vars_: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for key, value in sorted(vars_.items()):
        name = os.path.basename(str(value))
        if not name:
            continue
        if re.fullmatch(r"PUBLISH_HDD_\d+", key) and "none" not in name:
            out.append(("assets_public", name))
        elif re.fullmatch(r"STORE_HDD_\d+", key):
            out.append(("assets_private", name))
    return out


# -- small file helpers (run in threads when they can be large) ----------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2).encode())


def write_sized_file(path: Path, size: int, chunk: int = 1 << 20) -> None:
    block = os.urandom(min(chunk, max(size, 1)))
    with path.open("wb") as fh:
        left = size
        while left > 0:
            fh.write(block[:left])
            left -= len(block[:left])


def _log(msg: str, level: str = "debug") -> None:
    ts = dt.datetime.now().astimezone().isoformat(timespec="microseconds")
    sys.stderr.write(f"[{ts}] [{level}] [pid:{os.getpid()}] {msg}\n")
    sys.stderr.flush()


