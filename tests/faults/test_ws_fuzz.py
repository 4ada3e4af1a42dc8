"""10 000 hostile websocket messages: wrong fields, wrong types, huge, deeply nested, invalid UTF-8."""

from __future__ import annotations

import asyncio
import json
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.webui.messages import parse_message
from tests.faults.conftest import assert_healthy, serving

pytestmark = pytest.mark.faults

COUNT = int(os.environ.get("QAWORKER_FUZZ_MESSAGES", "10000"))
TYPES = ["grab_job", "grab_jobs", "cancel", "abort", "obsolete", "quit", "livelog_start", "livelog_stop",
         "developer_session_start", "info", "incompatible", "bogus", ""]

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# "incompatible" and "quit"/"cancel"/"abort" with matching ids are legitimate orders, not junk: leave them out
junk_types = st.sampled_from([t for t in TYPES if t != "incompatible"])
messages = st.fixed_dictionaries({"type": junk_types | scalars}, optional={
    "jobid": json_values, "job": json_values, "job_info": json_values, "seen": json_values,
    "result": json_values})


def nested(depth: int) -> str:
    return '{"type":"grab_job","job":' + "[" * depth + "]" * depth + "}"


def raw_frames() -> list[str | bytes]:
    return [b"\xff\xfe\xfa", b'{"type":"grab_job","job":{"id":1}}\xc3', "not json", "[]", "42", '"str"',
            nested(100_000), '{"type":"grab_job","job":{"id":1,"settings":{"X":"' + "A" * 2_000_000 + '"}}}',
            '{"type":"grab_jobs","job_info":{"data":{"1":{}},"sequence":[[[[[1]]]]]}}',
            '{"type":"grab_job","job":{"id":"1; rm -rf /","settings":{}}}', "\x00", "{}"]


@given(st.lists(messages, min_size=1, max_size=50) | st.binary(max_size=200).map(lambda b: [b]))
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_parse_message_never_raises(batch):
    for message in batch:
        raw = message if isinstance(message, bytes) else json.dumps(message)
        parse_message(raw)


def generate(count: int) -> list:
    """``count`` messages: a few hundred distinct ones drawn by hypothesis, repeated in random order
    (drawing 10 000 structured values directly takes minutes)."""
    pool: list = []

    @given(messages)
    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def draw(message: dict) -> None:
        pool.append(message)

    draw()
    rng = random.Random(7)
    return [rng.choice(pool) for _ in range(count)]


@pytest.mark.quick  # also in `make test`
def test_parse_message_raw_frames():
    for frame in raw_frames():
        parse_message(frame)


async def test_ten_thousand_junk_messages_over_the_websocket(tmp_path):
    junk = generate(COUNT)
    async with serving(tmp_path) as (web, worker):
        wid = next(iter(web.workers))
        reconnects = 0

        async def send(frame: str | bytes) -> None:
            nonlocal reconnects
            sock = web.sockets.get(wid)
            try:
                if sock is None or sock.closed:
                    raise ConnectionError("socket closed")
                await (sock.send_bytes(frame) if isinstance(frame, bytes) else sock.send_str(frame))
            except (ConnectionError, RuntimeError):  # the worker may close on a frame it refuses; it must return
                reconnects += 1
                await web.wait_for(lambda: wid in web.sockets and not web.sockets[wid].closed, 60)

        for i, message in enumerate(junk):
            await send(json.dumps(message))
            if i % 500 == 0:
                for frame in raw_frames():
                    await send(frame)
        print(f"{len(junk)} junk messages sent; websocket re-established {reconnects} times")
        # state not corrupted: idle, connected, not quitting, and the next job passes
        await assert_healthy(web)
        slot = worker.slots[0]
        for _ in range(50):  # set_done is recorded a moment before the slot has cleaned up
            if slot.runner.job is None and not slot.runner.queue:
                break
            await asyncio.sleep(0.1)
        assert not worker.stopping and slot.runner.job is None and not slot.runner.queue
        assert web.workers[wid].error is None
