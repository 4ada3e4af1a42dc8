"""Issue 11 item 2: where the job cgroups go (QAWORKER_CGROUP), read from real files."""

from __future__ import annotations

import os
from pathlib import Path

from backend.engine.cgroup import Cgroups, cgroup2_mount, find_root

HYBRID = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
"""
V1_ONLY = "33 31 0:28 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory\n"


def test_cgroup2_mount_is_found_in_a_hybrid_layout(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(HYBRID)
    assert cgroup2_mount(tmp_path / "mountinfo") == Path("/sys/fs/cgroup/unified")
    (tmp_path / "v1").write_text(V1_ONLY)
    assert cgroup2_mount(tmp_path / "v1") is None


def test_off_and_a_plain_directory_mean_no_job_cgroups(tmp_path: Path, caplog) -> None:
    assert find_root("off") == (None, "QAWORKER_CGROUP=off")
    root, reason = find_root(str(tmp_path))
    assert root is None and reason == f"{tmp_path} is not a cgroup v2 directory"
    missing = tmp_path / "nope"
    assert find_root(str(missing))[0] is None
    caplog.set_level("INFO", logger="backend.engine.cgroup")
    cgroups = Cgroups.setup("off")
    assert not cgroups.enabled and cgroups.create(1, 2) is None and list(cgroups.leftovers(1)) == []
    assert [r.getMessage() for r in caplog.records] == [
        "per-job cgroups off (QAWORKER_CGROUP=off): jobs are stopped by process-group kill + sweep"]


def test_a_systemd_units_cgroup_is_ours_only_when_delegated(tmp_path: Path) -> None:
    from backend.engine.cgroup import _delegated

    unit = tmp_path / "openqa-worker@1.service"
    unit.mkdir()
    scope = tmp_path / "session-2.scope"
    scope.mkdir()
    plain = tmp_path / "container-7"
    plain.mkdir()
    if os.getuid() == 0:  # root owns all three: only the names tell a unit from a cgroup made for us
        assert not _delegated(unit) and not _delegated(scope)
    else:  # a non-root User= owns a cgroup systemd delegated to it
        assert _delegated(unit)
    assert _delegated(plain)
    try:
        os.setxattr(unit, "user.delegate", b"1")  # what systemd >= 251 writes for Delegate=yes
    except OSError:  # a file system without user xattrs: the name/owner rules above are what is left
        return
    assert _delegated(unit)
