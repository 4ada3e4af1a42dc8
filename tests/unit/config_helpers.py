"""Shared by the config tests: a sandboxed lookup, real files, and running check-config unprivileged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.config import CliOptions, WorkerConfig, load_config

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data" / "config"
UNPRIVILEGED = 65534  # nobody


def sandbox_env(base: Path) -> dict[str, str]:
    """An environment whose every lookup group points into ``base`` (never the real /etc/openqa)."""
    for name in ("env", "home", "etc", "usr_etc"):
        (base / name).mkdir(exist_ok=True)
    return {
        "OPENQA_CONFIG": str(base / "env"),
        "HOME": str(base / "home"),
        "QAWORKER_SYSTEM_CONFIG_DIRS": f"{base / 'etc'}:{base / 'usr_etc'}",
    }


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def load(env: dict[str, str], **cli: object) -> WorkerConfig:
    return load_config(CliOptions(**cli), environ=env)


@contextmanager
def world_readable_dir() -> Iterator[Path]:
    """A temporary directory an unprivileged user can enter (pytest's tmp_path is mode 700)."""
    path = Path(tempfile.mkdtemp(prefix="qaworker-config-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:  # a test may have left mode-000 files and directories behind
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755, follow_symlinks=False)
            for name in files:
                if not os.path.islink(os.path.join(root, name)):
                    os.chmod(os.path.join(root, name), 0o644)
        shutil.rmtree(path)


def check_config_unprivileged(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``qaworker check-config`` as a user without root's power to read mode-000 files (as root:
    dropped to nobody with setpriv, which util-linux ships on every Debian)."""
    command = [sys.executable, "-m", "app.cli", "check-config", *args]
    if os.geteuid() == 0:
        command = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups", *command]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENQA_", "QAWORKER_"))}
    return subprocess.run(command, cwd=ROOT, env={**clean, **env, "PYTHONDONTWRITEBYTECODE": "1"},
                          capture_output=True, text=True, timeout=30)
