"""Shared pieces of job setup: the failure type, the input and result, names and numbers (§10.2)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.config import HostConfig, SlotConfig, number_or
from backend.ports import AssetProvider, ProvisionError

log = logging.getLogger(__name__)

SETUP_FAILURE = "setup failure"
ASSET_FAILURE = "asset failure"
CACHE_FAILURE = "cache failure"

DEFAULT_MAX_JOB_TIME = 7200.0
DEFAULT_MAX_SETUP_TIME = 3600.0

FORBIDDEN_SETTINGS = frozenset(
    {"GENERAL_HW_CMD_DIR", "GIT_CACHE_DIR", "GIT_CACHE_DIR_LIMIT", "SYNC_ASSETS_HOOK"})
FORBIDDEN_PREFIX = "EXTERNAL_VIDEO_ENCODER"
STALE_LOGS = ("serial0.txt", "autoinst-log.txt", "serial_terminal.txt")
ABSOLUTE_SKIPPED = frozenset({"UEFI_PFLASH_VARS", "KERNEL", "INITRD"})

# files and directories the worker, isotovideo or QEMU use in the pool: an asset or a test link with one of
# these names would let a job clobber them (or, through a hard link, write into a shared asset)
RESERVED_POOL_NAMES = frozenset({
    "job.json", "vars.json", "worker-log.txt", "autoinst-log.txt", "autoinst-status.json", "base_state.json",
    "worker_packages.txt", "sut_packages.txt", "qemu.pid", "os-autoinst.pid", "backend.run",
    "backend.crashed", "live_log", "serial0", "serial0.txt", "serial_terminal.txt", "serial_terminal1.txt",
    "serial_terminal_user.txt", "virtio_console.log", "virtio_console1.log", "virtio_console_user.log",
    "video.ogv", "video_time.vtt", "tmp", "testresults", "ulogs", "assets_private", "assets_public",
    "qemuscreenshot", "command-server-tmp",
})  # fmt: skip

_URL_SCHEME_RE = re.compile(r"^[^:/?#]+:")  # what Mojo::URL calls a scheme
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class SetupError(ProvisionError):
    """A failed setup; the job ends incomplete with reason ``<category>: <message>``."""


@dataclass
class SetupInput:
    job: dict  # the job object from grab_job (id, name, settings, ...)
    slot: SlotConfig
    host: HostConfig
    worker_id: int
    pool_dir: Path
    prjdir: Path
    worker_hostname: str
    assets: AssetProvider | None = None
    tests_dir: Path | None = None  # synced tests root from the cache (else <prjdir>/share/tests or /tests)
    before_assets: Callable[[], Awaitable[None]] | None = None  # SYNC_ASSETS_HOOK (after the log reset)


@dataclass
class SetupResult:
    vars: dict[str, str | int]  # what was written to vars.json
    env: dict[str, str]  # environment additions for isotovideo
    cmd_srv_url: str  # http://localhost:<QEMUPORT+1>/<JOBTOKEN>
    linked_assets: list[Path]
    job: dict = field(default_factory=dict)  # the job object as written to job.json (+ "URL")


def ports_for(instance: int, vnc_offset: int = 90) -> tuple[int, int]:
    """(QEMUPORT, VNC display) of a slot (§1.2); ``vnc_offset`` is the slot's ``tuning.vncport_offset``
    (VNCPORT_OFFSET, read once by the config)."""
    return 20002 + 10 * instance, vnc_offset + instance


def _number(value: object) -> float | None:
    """A finite positive number or None (Perl's looks_like_number, minus the odd cases)."""
    return number_or(value, None, above=True)


def job_timeouts(settings: dict) -> tuple[float, float]:
    """(MAX_SETUP_TIME, MAX_JOB_TIME * TIMEOUT_SCALE) in seconds; non-numeric values use the defaults (§9)."""
    setup_time = _number(settings.get("MAX_SETUP_TIME")) or DEFAULT_MAX_SETUP_TIME
    job_time = _number(settings.get("MAX_JOB_TIME")) or DEFAULT_MAX_JOB_TIME
    scale = _number(settings.get("TIMEOUT_SCALE"))
    return setup_time, job_time * scale if scale else job_time


def needs_synced_tests(settings: dict[str, str]) -> bool:
    """Tests come from TESTPOOLSERVER unless both CASEDIR and NEEDLES_DIR are git URLs (§11)."""
    return not (looks_like_url(settings.get("CASEDIR", "")) and looks_like_url(settings.get("NEEDLES_DIR", "")))


def looks_like_url(value: str) -> bool:
    return bool(_URL_SCHEME_RE.match(value))


def webui_hostname(configured: str) -> str:
    """The trailing host[:port] of the configured host string (what OPENQA_HOSTNAME gets)."""
    match = re.search(r"([^/]+:?\d*)/?$", configured)
    return match.group(1) if match else configured



def check_pool_name(name: str, what: str, category: str = ASSET_FAILURE) -> str:
    """``name`` if it is safe as a single entry of the pool directory, else SetupError."""
    problem = None
    if not name:
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is a directory reference"
    elif "\x00" in name:
        problem = "contains a NUL byte"
    elif _CONTROL_RE.search(name):
        problem = "contains control characters"
    elif "/" in name:
        problem = "contains '/'"
    elif ".." in name:
        problem = "contains '..'"
    elif name.startswith("."):
        problem = "is a hidden file name"
    elif name in RESERVED_POOL_NAMES:
        problem = "clashes with a file of the pool directory"
    if problem:
        raise SetupError(category, f"Refusing {what} {name!r}: the name {problem}")
    return name


def within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
