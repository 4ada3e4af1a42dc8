"""Issue 15 item 9: every cache hit reaches the dashboard's counter at once (CacheTotals on the bus).

Real HTTP server on 127.0.0.1, real files and sqlite; the dashboard only sees what the bus carries.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from backend.events import CacheTotals, EventBus

pytestmark = pytest.mark.timeout(30)
HOST = "127.0.0.1"


def last_totals(sub) -> CacheTotals | None:
    found = None
    while True:
        try:
            event = sub.get_nowait()
        except asyncio.QueueEmpty:
            return found
        if isinstance(event, CacheTotals):
            found = event


async def test_a_hit_confirmed_less_than_60_s_ago_is_published(cache, client, server, bus: EventBus):
    server.add("iso", "fresh.iso", b"f" * 4096)
    await cache.get_asset(client, HOST, 1, "iso", "fresh.iso")
    sub = bus.subscribe()
    await cache.get_asset(client, HOST, 2, "iso", "fresh.iso")  # within fresh_seconds: no request at all
    assert server.asset("iso", "fresh.iso").requests == 1
    totals = last_totals(sub)
    assert totals is not None, "the fresh hit published no totals: the dashboard still says hits 0"
    assert (totals.hits, totals.misses, totals.used_bytes) == (1, 1, 4096)


async def test_callers_served_by_a_shared_download_count_as_published_hits(cache, client, server, bus: EventBus):
    server.chunk_delay = 0.01
    server.add("hdd", "shared.qcow2", os.urandom(300_000))
    sub = bus.subscribe()
    await asyncio.gather(*(cache.get_asset(client, HOST, 10 + i, "hdd", "shared.qcow2", waiter=100 + i)
                           for i in range(3)))
    totals = last_totals(sub)
    assert totals is not None and (totals.misses, totals.hits) == (1, 2)
