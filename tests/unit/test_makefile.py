"""`make test` on a fresh machine (issue 10): the system tools are installed when root, else make stops and
says the one command — checked with a PATH that hides the tools and an apt-get that only records its calls
(never installing or removing anything on this machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")


def fake_bin(tmp: Path, tools: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A PATH with only sh, id and the given tools, and an apt-get that records its arguments."""
    bin_dir, calls = tmp / "bin", tmp / "apt-calls"
    bin_dir.mkdir()
    for tool in ("sh", "id", *tools):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    apt = bin_dir / "fake-apt-get"
    apt.write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {calls}\n')
    apt.chmod(0o755)
    return bin_dir, calls


def make(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    return subprocess.run([MAKE, "-s", "-C", str(ROOT), "system-tools", f"PATH={bin_dir}",
                           f"APT_GET={bin_dir / 'fake-apt-get'}", *args],
                          env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True, timeout=30)


def test_as_root_the_missing_tools_are_installed_quietly(tmp_path: Path) -> None:
    bin_dir, calls = fake_bin(tmp_path, ("rsync",))
    done = make(bin_dir, "IS_ROOT=yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "make: installing optipng pngquant\n"
    assert calls.read_text().splitlines() == [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends optipng pngquant"]


def test_not_root_make_stops_with_the_one_command(tmp_path: Path) -> None:
    bin_dir, calls = fake_bin(tmp_path)
    done = make(bin_dir, "IS_ROOT=")
    assert done.returncode != 0
    assert ("make: the tests need rsync optipng pngquant; install with:  "
            f"sudo {bin_dir / 'fake-apt-get'} install -y rsync optipng pngquant") in done.stderr
    assert not calls.exists()


def test_nothing_happens_when_every_tool_is_there(tmp_path: Path) -> None:
    tools = ("rsync", "optipng", "pngquant")
    if any(shutil.which(t) is None for t in tools):
        pytest.fail("make test installs rsync/optipng/pngquant before the tests run", pytrace=False)
    bin_dir, calls = fake_bin(tmp_path, tools)
    done = make(bin_dir, "IS_ROOT=yes")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not calls.exists()


def test_a_failing_install_fails_make(tmp_path: Path) -> None:
    bin_dir, _calls = fake_bin(tmp_path)
    (bin_dir / "fake-apt-get").write_text("#!/bin/sh\nexit 100\n")
    done = make(bin_dir, "IS_ROOT=yes")
    assert done.returncode != 0 and "make: could not install rsync optipng pngquant" in done.stderr
