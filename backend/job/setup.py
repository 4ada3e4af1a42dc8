"""Job setup: settings, vars.json, assets and test directories in the pool (PROTOCOL.md §10.2).

``setup_job`` performs §10.2 steps 1-4, 7-9, 11-14 and 16 in order; the caller (the job state machine)
owns the status change, the MAX_SETUP_TIME timer (``job_timeouts``), SYNC_ASSETS_HOOK, cgroups, the lock
throttle and starting isotovideo. All file work runs in threads.

A job's settings come from users, so every name that becomes a path is checked: assets must be plain
file names (no ``/``, no ``..``, no NUL or control characters, not hidden, not one of the pool's own
files) and must resolve inside the share directory; the CASEDIR/NEEDLES_DIR symlinks are only created
inside the pool and never point out of the tests root through ``..``. Violations end the job with a
``SetupError`` (it becomes ``incomplete`` with the category as reason prefix).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from backend.config import HostConfig, SlotConfig
from backend.fsutil import write_atomic

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

_PLACEHOLDER_RE = re.compile(r"(%+)(\w+)(%+)")
_URL_SCHEME_RE = re.compile(r"^[^:/?#]+:")  # what Mojo::URL calls a scheme
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class SetupError(Exception):
    """A failed setup; the job ends incomplete with reason ``<category>: <message>``."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.category}: {self.message}"


class AssetProvider(Protocol):
    """Where assets come from when the cache is used (another engineer's AssetCache)."""

    async def provide(self, asset_type: str, name: str, job_id: int) -> Path: ...


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


@dataclass
class SetupResult:
    vars: dict[str, str | int]  # what was written to vars.json
    env: dict[str, str]  # environment additions for isotovideo
    cmd_srv_url: str  # http://localhost:<QEMUPORT+1>/<JOBTOKEN>
    linked_assets: list[Path]
    job: dict = field(default_factory=dict)  # the job object as written to job.json (+ "URL")


def ports_for(instance: int) -> tuple[int, int]:
    """(QEMUPORT, VNC display) of a slot (§1.2); VNCPORT_OFFSET overrides the display offset 90."""
    try:
        offset = int(os.environ.get("VNCPORT_OFFSET", "90"))
    except ValueError:
        offset = 90
    return 20002 + 10 * instance, offset + instance


def _number(value: object) -> float | None:
    """A finite positive number or None (Perl's looks_like_number, minus the odd cases)."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def job_timeouts(settings: dict) -> tuple[float, float]:
    """(MAX_SETUP_TIME, MAX_JOB_TIME * TIMEOUT_SCALE) in seconds; non-numeric values use the defaults (§9)."""
    setup_time = _number(settings.get("MAX_SETUP_TIME")) or DEFAULT_MAX_SETUP_TIME
    job_time = _number(settings.get("MAX_JOB_TIME")) or DEFAULT_MAX_JOB_TIME
    scale = _number(settings.get("TIMEOUT_SCALE"))
    return setup_time, job_time * scale if scale else job_time


def looks_like_url(value: str) -> bool:
    return bool(_URL_SCHEME_RE.match(value))


def webui_hostname(configured: str) -> str:
    """The trailing host[:port] of the configured host string (what OPENQA_HOSTNAME gets)."""
    match = re.search(r"([^/]+:?\d*)/?$", configured)
    return match.group(1) if match else configured


# --- step 9: placeholders ------------------------------------------------------------------------------


def expand_placeholders(values: dict) -> str | None:
    """Expand %KEY% in all string values in place; returns an error text (only to be logged) or None.

    Worker-side rules: unknown keys become empty, %CASEDIR% is kept (step 12 handles it), a key wrapped
    in more than one % on a side loses one level (%%KEY%% -> %KEY%), circular references are an error.
    """
    original = dict(values)  # expand against the unexpanded values so the result is order-independent
    error = None
    for key, value in original.items():
        if isinstance(value, str) and "%" in value:
            try:
                values[key] = _PLACEHOLDER_RE.sub(lambda m: _expand_one(original, m, frozenset()), value)
            except _CircularError as exc:
                error = f"Error: {exc}"
    return error


class _CircularError(Exception):
    pass


def _expand_one(values: dict, match: re.Match[str], visited: frozenset[str]) -> str:
    start, key, end = match.group(1), match.group(2), match.group(3)
    if key == "CASEDIR":
        return match.group(0)
    if start != "%" or end != "%":
        return start[1:] + key + end[:-1]
    value = values.get(key)
    if value is None:
        return ""
    if key in visited:
        raise _CircularError(f"The key {key} contains a circular reference, its value is {value}.")
    branch = visited | {key}
    return _PLACEHOLDER_RE.sub(lambda m: _expand_one(values, m, branch), str(value))


# --- steps 1-8 ----------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    job: dict
    settings: dict
    vars: dict
    env: dict[str, str]
    share_dir: Path
    qemuport: int


def _prepare(inp: SetupInput) -> _Prepared:
    pool = inp.pool_dir
    if not pool.is_absolute() or not pool.is_dir():
        raise SetupError(SETUP_FAILURE, f"Pool directory {pool} does not exist")
    job = copy.deepcopy(inp.job)
    settings = job.get("settings")
    if not isinstance(settings, dict):
        raise SetupError(SETUP_FAILURE, "The job has no settings")
    # 1. settings only the worker config may set
    for key in list(settings):
        if key in FORBIDDEN_SETTINGS or key.startswith(FORBIDDEN_PREFIX):
            log.info("Ignoring job setting %s (only allowed in the worker configuration)", key)
            del settings[key]
    # 2. all worker settings win over the job's
    settings.update(inp.slot.settings)
    if inp.worker_hostname and "WORKER_HOSTNAME" not in inp.slot.settings:
        settings["WORKER_HOSTNAME"] = inp.worker_hostname
    # 3. OPENQA_HOSTNAME
    env = {"OPENQA_HOSTNAME": webui_hostname(inp.host.configured)}
    settings["OPENQA_HOSTNAME"] = inp.host.configured
    # 4. fresh log files, share dir
    _reset_logs(pool)
    share_dir = inp.host.share_dir if inp.host.share_dir.is_absolute() else Path.cwd() / inp.host.share_dir
    env["OPENQA_SHAREDIR"] = str(share_dir)
    # 7. ports, job.json
    qemuport, vnc = ports_for(inp.slot.instance)
    env.update(QEMUPORT=str(qemuport), VNC=str(vnc), TMPDIR=str(pool / "tmp"))
    for key in ("QEMUPORT", "VNC", "OPENQA_HOSTNAME"):
        settings[key] = env[key]
    _write_json(pool / "job.json", job)
    # 8. vars
    variables: dict = {"OPENQA_URL": inp.host.configured, "WORKER_INSTANCE": inp.slot.instance,
                       "WORKER_ID": inp.worker_id}  # fmt: skip
    variables.update(settings)
    # 9. placeholders (errors are only logged, like the classic worker)
    error = expand_placeholders(variables)
    if error:
        log.error("Expanding placeholders failed: %s", error)
    return _Prepared(job, settings, variables, env, share_dir, qemuport)


def _reset_logs(pool: Path) -> None:
    # note: whoever writes worker-log.txt must open it with O_APPEND so this truncation is harmless
    log_path = pool / "worker-log.txt"
    if log_path.is_symlink():
        log_path.unlink()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    for name in STALE_LOGS:
        try:
            (pool / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("Could not unlink '%s': %s", pool / name, exc)


def _write_json(path: Path, data: object) -> None:
    """Write pretty JSON replacing whatever was there (never through a planted symlink)."""
    write_atomic(path, json.dumps(data, indent=3, sort_keys=True, ensure_ascii=False) + "\n")


# --- step 11: assets ----------------------------------------------------------------------------------


def asset_type(key: str, value: str) -> str:
    """The asset type of a setting, '' if it is no asset (os-autoinst/openQA asset_type_from_setting)."""
    if key == "ISO" or re.fullmatch(r"ISO_\d+", key):
        return "iso"
    if re.fullmatch(r"HDD_\d+", key):
        return "hdd"
    if key in ("UEFI_PFLASH_CODE", "UEFI_PFLASH_VARS") and not value.startswith("/"):
        return "hdd"
    if re.fullmatch(r"REPO_\d+", key):
        return "repo"
    if re.fullmatch(r"ASSET_\d+", key) or key in ("KERNEL", "INITRD"):
        return "other"
    return ""


def asset_keys(variables: dict) -> dict[str, str]:
    """{setting: asset type} of the assets the job needs (repos and absolute KERNEL/INITRD/... skipped)."""
    keys: dict[str, str] = {}
    for key, value in variables.items():
        if not value or not isinstance(value, str | int):
            continue
        value = str(value)
        if key in ABSOLUTE_SKIPPED and value.startswith("/"):
            continue
        kind = asset_type(key, value)
        if kind and kind != "repo":
            keys[key] = kind
    return keys


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


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def locate_asset(share_dir: Path, kind: str, name: str) -> Path | None:
    """<share>/factory/<type>/<name> or .../fixed/<name>; refuses anything resolving outside the share."""
    factory = share_dir / "factory"
    for candidate in (factory / kind / name, factory / kind / "fixed" / name):
        if candidate.exists():
            real = candidate.resolve()
            if not _within(real, share_dir.resolve()):
                raise SetupError(ASSET_FAILURE,
                                 f"Refusing asset {kind}/{name}: it resolves outside {share_dir}")
            if not real.is_file():
                raise SetupError(ASSET_FAILURE, f"Refusing asset {kind}/{name}: it is not a regular file")
            return candidate
    return None


def link_asset(source: Path, pool: Path) -> Path:
    """Hard-link ``source`` into the pool (symlink if it is a symlink or hard-linking fails)."""
    target = pool / check_pool_name(source.name, "asset")
    if target.is_symlink() or target.exists():  # leftovers of --no-cleanup
        try:
            target.unlink()
        except OSError as exc:
            raise SetupError(SETUP_FAILURE, f'Cannot replace "{target}": {exc.strerror}') from exc
    if not source.is_symlink():
        try:
            os.link(source, target, follow_symlinks=False)
            return target
        except OSError as exc:
            log.debug("Symlinking asset because hardlink failed: %s", exc)
    try:
        os.symlink(source, target)
    except OSError as exc:
        raise SetupError(
            SETUP_FAILURE, f'Cannot create symlink from "{source}" to "{target}": {exc.strerror}'
        ) from exc
    return target


async def _handle_assets(inp: SetupInput, prep: _Prepared) -> list[Path]:
    variables = prep.vars
    absolute = bool(variables.get("ABSOLUTE_TEST_CONFIG_PATHS"))
    linked: list[Path] = []
    for key, kind in sorted(asset_keys(variables).items()):
        name = str(variables[key]).strip()
        if key == "UEFI_PFLASH_VARS" and not variables.get("UEFI"):
            continue
        check_pool_name(name, f"{key} asset")
        if inp.assets is not None:
            source = await _provided(inp, key, kind, name)
            if source is None:
                continue
            target = await asyncio.to_thread(link_asset, source, inp.pool_dir)
            linked.append(target)
            variables[key] = str(target) if absolute else target.name
            continue
        found = await asyncio.to_thread(locate_asset, prep.share_dir, kind, name)
        if found is None:
            raise SetupError(ASSET_FAILURE, f"Cannot find {key} asset {kind}/{name}!")
        if absolute:
            variables[key] = str(found)
            continue
        target = await asyncio.to_thread(link_asset, found, inp.pool_dir)
        linked.append(target)
        variables[key] = target.name
    return linked


async def _provided(inp: SetupInput, key: str, kind: str, name: str) -> Path | None:
    assert inp.assets is not None
    try:
        source = await inp.assets.provide(kind, name, int(inp.job.get("id", 0)))
    except Exception as exc:
        # the cache raises its own error type with the same (category, message) shape
        error = exc if isinstance(exc, SetupError) else SetupError(
            getattr(exc, "category", CACHE_FAILURE), getattr(exc, "message", None) or str(exc))
        if key == "UEFI_PFLASH_VARS":  # tolerated, like the classic worker
            log.error("Failed to download %s: %s", name, error)
            return None
        raise error from exc
    source = Path(source)
    if not source.is_absolute() or source.name != name or not await asyncio.to_thread(source.is_file):
        raise SetupError(CACHE_FAILURE, f"The cache returned an unusable path for {kind}/{name}: {source}")
    return source


# --- step 12: CASEDIR / PRODUCTDIR / NEEDLES_DIR ---------------------------------------------------


def _tests_root(inp: SetupInput) -> Path:
    if inp.tests_dir is not None:
        return inp.tests_dir
    for candidate in (inp.prjdir / "share" / "tests", inp.prjdir / "tests"):
        if candidate.is_dir():
            return candidate
    return inp.prjdir / "share" / "tests"


def _inside(root: Path, relative: str, what: str) -> Path:
    """root/relative, refused when `relative` is absolute or climbs out of root with '..'."""
    joined = posixpath.normpath(posixpath.join(str(root), relative))
    escapes = not _within(Path(joined), Path(posixpath.normpath(root)))
    if relative.startswith("/") or "\x00" in relative or escapes:
        raise SetupError(SETUP_FAILURE, f"Refusing {what} {relative!r}: it points outside {root}")
    return Path(joined)


def _default_dirs(variables: dict, root: Path) -> tuple[Path, Path]:
    """(default casedir, default productdir) as os-autoinst/openQA testcasedir()/productdir() compute them."""
    casedir_var = _str(variables.get("CASEDIR"))
    distri = _str(variables.get("DISTRI"))
    relative_casedir = bool(casedir_var) and not (looks_like_url(casedir_var) or casedir_var.startswith("/"))
    effective = casedir_var if relative_casedir else distri
    casedir = _inside(root, effective, "CASEDIR" if relative_casedir else "DISTRI")
    version = _str(variables.get("VERSION"))
    if version and Path(f"{casedir}-{version}").exists():
        casedir = _inside(root, f"{posixpath.relpath(casedir, root)}-{version}", "VERSION")
    productdir = casedir
    product = distri or effective
    if product:
        candidate = _inside(casedir, f"products/{product}", "DISTRI")
        if candidate.exists():
            productdir = candidate
    return casedir, productdir


def _str(value: object) -> str:
    return "" if value is None else str(value)


def checkout_path(casedir: str) -> tuple[str, bool]:
    """Where os-autoinst checks CASEDIR out: (path, is_url); a git URL is cloned to its basename."""
    if not looks_like_url(casedir):
        return casedir, False
    base = posixpath.basename(urlsplit(casedir).path)
    name = re.sub(r"\.[^.]*$", "", base)
    check_pool_name(name, "CASEDIR checkout", SETUP_FAILURE)
    return name, True


def link_repo(source: Path | str, pool: Path, name: str, *, ignore_missing: bool = False) -> None:
    """Symlink <pool>/<name> -> source (a tests or needles directory)."""
    target = pool / check_pool_name(name, "test directory link", SETUP_FAILURE)
    if target.is_symlink() or target.is_file():
        target.unlink()
    # a relative source is relative to the link, i.e. to the pool directory
    if not ignore_missing and not (pool / source).exists():
        raise SetupError(SETUP_FAILURE, f"The source directory {source} does not exist")
    try:
        os.symlink(source, target)
    except OSError as exc:
        raise SetupError(
            SETUP_FAILURE, f'Cannot create symlink from "{source}" to "{target}": {exc.strerror}'
        ) from exc


def resolve_test_dirs(inp: SetupInput, variables: dict) -> None:
    """§10.2.12 (os-autoinst/openQA _engine_workit_step_2): CASEDIR, PRODUCTDIR, NEEDLES_DIR + symlinks."""
    pool = inp.pool_dir
    root = _tests_root(inp)
    absolute = bool(variables.get("ABSOLUTE_TEST_CONFIG_PATHS"))
    default_casedir, default_productdir = _default_dirs(variables, root)
    target_name = default_casedir.name
    has_custom_dir = bool(variables.get("CASEDIR") or variables.get("PRODUCTDIR"))
    if not variables.get("CASEDIR"):
        variables["CASEDIR"] = str(default_casedir) if absolute else target_name
    casedir = str(variables["CASEDIR"])
    needles_var = _str(variables.get("NEEDLES_DIR"))
    only_git = looks_like_url(casedir) and bool(needles_var) and looks_like_url(needles_var)
    if not only_git:
        if casedir == target_name:
            if not variables.get("PRODUCTDIR"):
                variables["PRODUCTDIR"] = str(default_productdir.relative_to(default_casedir.parent))
            link_repo(default_casedir, pool, target_name)
        elif not variables.get("PRODUCTDIR"):
            variables["PRODUCTDIR"] = (
                str(default_productdir)
                if absolute and not has_custom_dir
                else os.path.relpath(default_productdir, default_casedir)
            )
    default_needles = default_productdir / "needles"
    need_to_set = not needles_var and has_custom_dir
    if need_to_set and absolute:
        variables["NEEDLES_DIR"] = str(default_needles)
    elif need_to_set or (needles_var and not needles_var.startswith("/") and not looks_like_url(needles_var)):
        _link_needles(pool, variables, casedir, needles_var, default_needles)


def _link_needles(pool: Path, variables: dict, casedir: str, needles_var: str, default: Path) -> None:
    ignore_missing = False
    match = re.match(r"^%CASEDIR%(.*)", needles_var, re.IGNORECASE | re.DOTALL)
    if match:
        base, ignore_missing = checkout_path(casedir)
        rest = match.group(1).lstrip("/")
        # a URL checkout lives in the pool, a path checkout is the CASEDIR itself
        base_dir = pool / base if ignore_missing else Path(base)
        target = _inside(base_dir, rest, "NEEDLES_DIR") if rest else base_dir
        source: Path | str = os.path.relpath(target, pool) if ignore_missing else target
    else:
        if needles_var and posixpath.normpath(needles_var).startswith(".."):
            raise SetupError(SETUP_FAILURE, f"Refusing NEEDLES_DIR {needles_var!r}: it points outside {pool}")
        source = default
    name = posixpath.basename(needles_var.rstrip("/")) if needles_var else "needles"
    variables["NEEDLES_DIR"] = name
    link_repo(source, pool, name, ignore_missing=ignore_missing)


# --- the whole setup --------------------------------------------------------------------------------


def _finish(inp: SetupInput, prep: _Prepared) -> str:
    variables = prep.vars
    # 12. ASSETDIR and the test directories
    variables.setdefault("ASSETDIR", str(prep.share_dir / "factory"))
    resolve_test_dirs(inp, variables)
    # 13. vars.json
    _write_json(inp.pool_dir / "vars.json", variables)
    # 14. command server URL
    url = f"http://localhost:{prep.qemuport + 1}/{prep.settings.get('JOBTOKEN', '')}"
    prep.job["URL"] = url
    # 16. TMPDIR for isotovideo and QEMU
    tmp = inp.pool_dir / "tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.mkdir(exist_ok=True)
    return url


async def setup_job(inp: SetupInput) -> SetupResult:
    """Prepare the pool directory for one job; raises SetupError (category + message) on failure."""
    try:
        prep = await asyncio.to_thread(_prepare, inp)
        linked = await _handle_assets(inp, prep)
        url = await asyncio.to_thread(_finish, inp, prep)
    except SetupError:
        raise
    except OSError as exc:
        raise SetupError(SETUP_FAILURE, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc
    log.info("Job %s set up in %s (%d assets linked)", inp.job.get("id"), inp.pool_dir, len(linked))
    return SetupResult(vars=prep.vars, env=prep.env, cmd_srv_url=url, linked_assets=linked, job=prep.job)
