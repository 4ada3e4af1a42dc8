"""§10.2 step 11: the job's assets, found in the share directory or provided by the cache, linked into the pool."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

from backend.job.setupbase import (
    ABSOLUTE_SKIPPED,
    ASSET_FAILURE,
    CACHE_FAILURE,
    SETUP_FAILURE,
    SetupError,
    SetupInput,
    check_pool_name,
    within,
)
from backend.ports import ProvisionError

log = logging.getLogger(__name__)


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





def locate_asset(share_dir: Path, kind: str, name: str) -> Path | None:
    """<share>/factory/<type>/<name> or .../fixed/<name>; refuses anything resolving outside the share."""
    factory = share_dir / "factory"
    for candidate in (factory / kind / name, factory / kind / "fixed" / name):
        if candidate.exists():
            real = candidate.resolve()
            if not within(real, share_dir.resolve()):
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


async def handle_assets(inp: SetupInput, variables: dict, share_dir: Path) -> list[Path]:
    """Link every asset of the job into the pool (from the cache, or the share directory)."""
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
        found = await asyncio.to_thread(locate_asset, share_dir, kind, name)
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
    except Exception as exc:  # a provider's bug is a cache failure of this job, not a crash
        error = (SetupError(exc.category, exc.message) if isinstance(exc, ProvisionError)
                 else SetupError(CACHE_FAILURE, str(exc) or type(exc).__name__))
        if key == "UEFI_PFLASH_VARS":  # tolerated, like the classic worker
            log.error("Failed to download %s: %s", name, error)
            return None
        raise error from exc
    source = Path(source)
    if not source.is_absolute() or source.name != name or not await asyncio.to_thread(source.is_file):
        raise SetupError(CACHE_FAILURE, f"The cache returned an unusable path for {kind}/{name}: {source}")
    return source


