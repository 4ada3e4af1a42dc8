"""Hostile job settings never escape the pool or run a shell; the API secret never leaks."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.faults.conftest import (
    SECRET,
    assert_healthy,
    job_settings,
    mock_web,
    process_pool,
    start_worker_process,
    stop_process,
    wait_registered,
)
from tests.helpers import free_instance

pytestmark = pytest.mark.faults

CANARY = "qaworker-escape-canary"


def hostile(tmp: Path) -> list[dict[str, str]]:
    outside = tmp / "outside"
    return [
        {"HDD_1": f"../../../../{CANARY}-hdd"},
        {"HDD_1": f"{outside}/{CANARY}-abs"},
        {"ISO": f"x\x00{CANARY}"},
        {"CASEDIR": f"../../{CANARY}-casedir"},
        {"NEEDLES_DIR": f"/{CANARY}-needles;touch {outside}/{CANARY}-shell"},
        {"HDD_1": f"a;touch {outside}/{CANARY}-meta;b"},
        {"UEFI_PFLASH_VARS": f"$(touch {outside}/{CANARY}-subst)"},
        {"PUBLISH_HDD_1": f"../../{CANARY}-publish.qcow2"},
    ]


def escaped(tmp: Path) -> list[str]:
    roots = [tmp, Path("/tmp"), Path("/")]
    found = []
    for root in roots:
        found += [str(p) for p in root.glob(f"*{CANARY}*")]
    pool = tmp / "base" / "openqa" / "pool"
    found += [str(p) for p in tmp.rglob(f"*{CANARY}*") if "webui" not in p.parts and not p.is_relative_to(pool)]
    return sorted(set(found))


async def test_hostile_settings_stay_inside_the_pool_and_secrets_never_leak(tmp_path):
    (tmp_path / "outside").mkdir()
    instance = free_instance()
    async with mock_web(tmp_path) as web:
        proc = await start_worker_process(tmp_path, web.url, instance)
        try:
            await wait_registered(web, timeout=30)
            for extra in hostile(tmp_path):
                job = await web.wait_job_done(web.schedule_job(job_settings(SIM_MODULES="boot", **extra)), 60)
                assert job.result in ("passed", "incomplete"), (extra, job.result, job.reason)
                if job.result == "incomplete":
                    assert job.reason, extra
                print(f"{extra} → {job.result}: {job.reason}")
            assert escaped(tmp_path) == [], "a hostile setting created a file outside the pool"
            await assert_healthy(web, proc.pid)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            await stop_process(proc)
        assert not list((tmp_path / "outside").iterdir())
        pool = process_pool(tmp_path, instance)
        assert pool.exists()
        leaks = [str(p) for p in (tmp_path / "webui").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert leaks == [], f"API secret found in uploaded files: {leaks}"
        assert SECRET not in (tmp_path / "worker.log").read_text(errors="replace")
