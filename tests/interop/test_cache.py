"""HDD_1 through qaworker's asset cache on the real web UI (issue 5), compared with the Perl worker."""

from __future__ import annotations

import time

import pytest

from tests.helpers import free_instance
from tests.interop.conftest import PERL_CLASS, record_comparison
from tests.interop.pairs import compare, finish_pair, own_class

pytestmark = pytest.mark.interop

ASSET = "realstack-dummy.qcow2"
GOAL_SECONDS = 2.5  # issue 5; Perl worker + cache service with packaged defaults: 11.5 s


def test_hdd_through_cache_then_reused(webui, qaworker, perl_worker, tmp_path):
    cache = tmp_path / "cache"
    instance = free_instance(40, 400)
    worker = qaworker(instance=instance, worker_class=own_class(instance), extra_ini=f"CACHEDIRECTORY = {cache}")
    webui.wait_idle(worker.host, worker.instance)

    perl_id = webui.schedule(WORKER_CLASS=PERL_CLASS, HDD_1=ASSET)  # the realstack's Perl worker has no cache
    our_id = webui.schedule(WORKER_CLASS=worker.worker_class, HDD_1=ASSET)
    perl, ours = finish_pair(webui, perl_id, our_id)
    compare("HDD_1 asset (Perl direct, qaworker cache)", perl, ours)
    assert ours.modules == (("hello", "passed"), ("asset", "passed")), worker.log()[-3000:]
    cached = [p for p in cache.rglob(ASSET) if p.is_file()]
    assert cached and cached[0].stat().st_size > 1 << 20, list(cache.rglob("*"))

    started = time.monotonic()
    second = webui.wait_job(webui.schedule(WORKER_CLASS=worker.worker_class, HDD_1=ASSET))
    elapsed = time.monotonic() - started
    assert second["result"] == "passed", worker.log()[-3000:]
    log = worker.log()
    assert log.count(f"downloaded {cached[0]}") <= 1, "the second job must reuse the cached copy"
    assert "has not changed" in log or "confirmed less than" in log, log[-3000:]
    print(f"\nschedule -> done with a cached HDD_1: {elapsed:.2f} s (goal <= {GOAL_SECONDS} s; Perl+cache 11.5 s)")
    record_comparison("cached HDD_1, schedule->done", "11.5 s (README, Perl+cache service)", f"{elapsed:.2f} s",
                      "yes" if elapsed <= GOAL_SECONDS else f"slower than the {GOAL_SECONDS} s goal")
    assert elapsed < 4 * GOAL_SECONDS
