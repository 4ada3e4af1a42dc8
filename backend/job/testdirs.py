"""§10.2 step 12: CASEDIR, PRODUCTDIR and NEEDLES_DIR, and their links in the pool."""

from __future__ import annotations

import logging
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

from backend.job.setupbase import SETUP_FAILURE, SetupError, SetupInput, check_pool_name, looks_like_url, within

log = logging.getLogger(__name__)


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
    escapes = not within(Path(joined), Path(posixpath.normpath(root)))
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


