# ruff: noqa: ASYNC240  (tests do small, deliberate blocking file and process work)
"""Registration capabilities (§5.1) with a stand-in lscpu on PATH (a real subprocess)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from backend.job import capabilities as caps_mod
from backend.job.capabilities import capabilities, parse_lscpu, parse_meminfo, worker_class_for

FAKE_LSCPU = """#!/bin/sh
echo run >> "{calls}"
if [ "$LC_ALL" = C ]; then
cat <<'EOF'
Architecture:                         ppc64le
CPU op-mode(s):                       32-bit, 64-bit
Model name:                           POWER9 (architected), altivec supported
Flags:                                fpu vme de pse
EOF
else
echo "Architektur: ppc64le"
fi
"""


@pytest.fixture
def fake_lscpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    calls = tmp_path / "calls"
    script = tmp_path / "bin" / "lscpu"
    script.parent.mkdir()
    script.write_text(FAKE_LSCPU.format(calls=calls))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    caps_mod.reset_cache()
    yield calls
    caps_mod.reset_cache()


def mem_total_mib() -> int:
    match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    assert match
    return int(match.group(1)) // 1024


async def test_lscpu_facts_with_lc_all_c_run_once(fake_lscpu: Path) -> None:
    results = await asyncio.gather(*(capabilities({}, 59) for _ in range(3)))
    again = await capabilities({"WORKER_CLASS": "qemu_ppc64le,tap"}, 59)
    assert fake_lscpu.read_text() == "run\n"
    assert results[0] == {
        "host": os.uname().nodename,
        "websocket_api_version": "1",
        "isotovideo_interface_version": "59",
        "cpu_arch": "ppc64le",
        "cpu_opmode": "32-bit, 64-bit",
        "cpu_modelname": "POWER9 (architected), altivec supported",
        "cpu_flags": "fpu vme de pse",
        "mem_max": str(mem_total_mib()),
        "worker_class": "qemu_ppc64le,qemu_ppc64,qemu_ppc",
    }
    assert results[1] == results[2] == results[0]
    assert again["worker_class"] == "qemu_ppc64le,tap"


async def test_arch_setting_skips_lscpu(fake_lscpu: Path) -> None:
    caps = await capabilities({"ARCH": "aarch64", "PARALLEL_ONE_HOST_ONLY": "1"}, 0)
    assert not fake_lscpu.exists()
    assert caps["cpu_arch"] == "aarch64" and caps["worker_class"] == "qemu_aarch64"
    assert caps["parallel_one_host_only"] == "1" and caps["isotovideo_interface_version"] == "0"
    assert "cpu_flags" not in caps and "cpu_modelname" not in caps


async def test_missing_lscpu_falls_back_to_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    caps_mod.reset_cache()
    try:
        caps = await capabilities({}, 1)
    finally:
        caps_mod.reset_cache()
    assert caps["cpu_arch"] == os.uname().machine
    assert "parallel_one_host_only" not in caps


def test_parsers_and_classes() -> None:
    assert parse_lscpu("Architecture:  x86_64\nFlags:\nModel name: Intel(R) Xeon(R)\n") == {
        "cpu_arch": "x86_64",
        "cpu_modelname": "Intel(R) Xeon(R)",
    }
    assert parse_meminfo("MemFree: 1 kB\nMemTotal:       16318480 kB\n") == 15936
    assert parse_meminfo("nothing") is None
    assert worker_class_for("x86_64") == "qemu_x86_64,qemu_i686,qemu_i586"
    assert worker_class_for("s390x") == "qemu_s390x,qemu_s390"
    assert worker_class_for("riscv64") == "qemu_riscv64"
