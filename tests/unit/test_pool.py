"""Pool directory: path safety, the slot lock against another process, cleanup that never leaves the pool."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.job.pool import PoolDir, PoolLockError

HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def pool(tmp_path: Path) -> PoolDir:
    return PoolDir(tmp_path / "pool" / "7")


def hold_lock(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path / ".locked")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize(
    "bad", ["", ".", "/", "/var", "/tmp", "relative/pool/1", "/srv/pool/../1", "/var/lib/openqa/pool/abc"]
)
def test_suspicious_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="Refusing"):
        PoolDir(Path(bad))


def test_home_and_its_parents_are_refused_even_when_allowed_any_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "users" / "me"
    monkeypatch.setenv("HOME", str(home))
    for path in (home, home.parent):
        with pytest.raises(ValueError, match="home"):
            PoolDir(path, allow_any_name=True)
    assert PoolDir(home / "pool" / "1").path == home / "pool" / "1"


def test_symlinked_pool_is_judged_by_its_target(tmp_path: Path) -> None:
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "3").symlink_to("/")
    with pytest.raises(ValueError, match="root"):
        PoolDir(tmp_path / "pool" / "3")


def test_non_numeric_name_needs_explicit_permission(tmp_path: Path) -> None:
    assert PoolDir(tmp_path / "mypool", allow_any_name=True).path == tmp_path / "mypool"


def test_lock_creates_dir_and_writes_pid(pool: PoolDir) -> None:
    pool.lock()
    try:
        assert pool.locked
        assert (pool.path / ".locked").read_text() == f"{os.getpid()}\n"
        pool.lock()  # idempotent for the holder
    finally:
        pool.unlock()
    assert not pool.locked


def test_lock_held_by_another_process_fails_then_succeeds(pool: PoolDir) -> None:
    pool.path.mkdir(parents=True)
    holder = hold_lock(pool.path)
    try:
        with pytest.raises(PoolLockError) as info:
            pool.lock()
        assert str(info.value) == f"Unable to lock pool directory: {pool.path} already locked"
        assert not pool.locked
    finally:
        holder.communicate("")
    pool.lock()  # the other worker is gone
    pool.unlock()


def test_second_pooldir_object_in_same_process_is_refused(pool: PoolDir) -> None:
    pool.lock()
    try:
        other = PoolDir(pool.path)
        with pytest.raises(PoolLockError, match="already locked"):
            other.lock()
        # the failed attempt must not have released the first holder's lock
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent("""
            import fcntl, os, sys
            fd = os.open(sys.argv[1], os.O_RDWR)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                print("held")
        """),
                str(pool.path / ".locked"),
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert probe.stdout.strip() == "held"
    finally:
        pool.unlock()


async def test_clean_keeps_hidden_packages_and_never_follows_symlinks(pool: PoolDir, tmp_path: Path) -> None:
    pool.lock()
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    outside_file = tmp_path / "precious.iso"
    outside_file.write_text("iso")
    p = pool.path
    (p / "testresults" / "sub").mkdir(parents=True)
    (p / "testresults" / "sub" / "x.png").write_bytes(b"png")
    (p / "testresults" / "link-out").symlink_to(outside)  # nested symlink to a dir outside
    (p / "opensuse").symlink_to(outside)  # top-level symlink to a dir outside
    (p / "needles").symlink_to(outside / "missing")  # dangling
    (p / "disk.iso").symlink_to(outside_file)
    os.link(outside_file, p / "hard.iso")
    (p / "autoinst-log.txt").write_text("log")
    (p / "worker_packages.txt").write_text("pkgs")
    (p / "qemu.pid").write_text("123")
    (p / ".hidden").write_text("h")
    await pool.clean(keep_qemu_pid=False)
    assert sorted(e.name for e in p.iterdir()) == [".hidden", ".locked", "worker_packages.txt"]
    assert (outside / "data.txt").read_text() == "keep me"
    assert outside_file.read_text() == "iso"
    assert pool.locked
    pool.unlock()


async def test_clean_keeps_qemu_pid_when_asked(pool: PoolDir) -> None:
    pool.path.mkdir(parents=True)
    (pool.path / "qemu.pid").write_text("123")
    (pool.path / "vars.json").write_text("{}")
    await pool.clean(keep_qemu_pid=True)
    assert sorted(e.name for e in pool.path.iterdir()) == ["qemu.pid"]


async def test_clean_of_missing_dir_is_a_no_op(pool: PoolDir) -> None:
    await pool.clean(keep_qemu_pid=False)
    assert not pool.path.exists()
