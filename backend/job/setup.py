"""Job setup: settings, vars.json, assets and test directories in the pool (PROTOCOL.md §10.2).

``setup_job`` performs §10.2 steps 1-4, 7-9, 11-14 and 16 in order; the caller (the job state machine)
owns the status change, the MAX_SETUP_TIME timer (``job_timeouts``), cgroups and starting isotovideo; it
passes SYNC_ASSETS_HOOK in as ``before_assets`` (run after the log reset, before the assets; hooks.py). The
LOCK_NAME throttle is taken by the slot before the job is accepted (slot/joblock.py). All file work runs in
threads.

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
import os
from dataclasses import dataclass
from pathlib import Path

from backend.engine.cmdsrv import cmd_srv_url
from backend.fsutil import write_atomic
from backend.job.assets import asset_keys, asset_type, handle_assets, link_asset, locate_asset
from backend.job.placeholders import expand_placeholders
from backend.job.setupbase import (
    ASSET_FAILURE,
    CACHE_FAILURE,
    DEFAULT_MAX_JOB_TIME,
    DEFAULT_MAX_SETUP_TIME,
    FORBIDDEN_PREFIX,
    FORBIDDEN_SETTINGS,
    SETUP_FAILURE,
    STALE_LOGS,
    SetupError,
    SetupInput,
    SetupResult,
    check_pool_name,
    job_timeouts,
    looks_like_url,
    needs_synced_tests,
    ports_for,
    webui_hostname,
)
from backend.job.testdirs import checkout_path, link_repo, resolve_test_dirs

# the public names of job setup, wherever they live now
__all__ = [
    "ASSET_FAILURE", "CACHE_FAILURE", "DEFAULT_MAX_JOB_TIME", "DEFAULT_MAX_SETUP_TIME", "SETUP_FAILURE",
    "SetupError", "SetupInput", "SetupResult", "asset_keys", "asset_type", "check_pool_name", "checkout_path",
    "expand_placeholders", "job_timeouts", "link_asset", "link_repo", "locate_asset", "looks_like_url",
    "needs_synced_tests", "ports_for", "resolve_test_dirs", "setup_job", "webui_hostname",
]

log = logging.getLogger(__name__)


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
    qemuport, vnc = ports_for(inp.slot.instance, inp.slot.tuning.vncport_offset)
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



# --- the whole setup --------------------------------------------------------------------------------


def _finish(inp: SetupInput, prep: _Prepared) -> str:
    variables = prep.vars
    # 12. ASSETDIR and the test directories
    variables.setdefault("ASSETDIR", str(prep.share_dir / "factory"))
    resolve_test_dirs(inp, variables)
    # 13. vars.json
    _write_json(inp.pool_dir / "vars.json", variables)
    # 14. command server URL
    url = cmd_srv_url(prep.qemuport, str(prep.settings.get("JOBTOKEN", "")))
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
        if inp.before_assets is not None:
            await inp.before_assets()
        linked = await handle_assets(inp, prep.vars, prep.share_dir)
        url = await asyncio.to_thread(_finish, inp, prep)
    except SetupError:
        raise
    except OSError as exc:
        raise SetupError(SETUP_FAILURE, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc
    count = len(linked)
    log.info("[slot %d] job %s set up in %s (%d %s linked)", inp.slot.instance, inp.job.get("id"), inp.pool_dir,
             count, "asset" if count == 1 else "assets")
    return SetupResult(vars=prep.vars, env=prep.env, cmd_srv_url=url, linked_assets=linked, job=prep.job)
