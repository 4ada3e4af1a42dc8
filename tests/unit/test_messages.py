"""Every web UI websocket message parses into a model; anything malformed becomes Invalid (never raises)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.webui.messages import (
    GrabJob,
    GrabJobs,
    Info,
    Invalid,
    LiveCommand,
    StopCommand,
    parse_job,
    parse_message,
)


def test_known_messages():
    assert isinstance(parse_message('{"type":"grab_job","job":{"id":1,"settings":{}}}'), GrabJob)
    grab = parse_message(json.dumps({"type": "grab_jobs", "job_info": {"ids": [1], "data": {}, "sequence": [1]}}))
    assert isinstance(grab, GrabJobs)
    cancel = parse_message('{"type":"cancel","jobid":"42"}')
    assert isinstance(cancel, StopCommand) and cancel.jobid == 42
    assert isinstance(parse_message('{"type":"livelog_start","jobid":7}'), LiveCommand)
    assert isinstance(parse_message('{"type":"info","population":3}'), Info)
    assert isinstance(parse_message('{"type":"info","seen":1}'), Info)
    assert parse_message('{"type":"abort","jobid":""}').jobid == ""


def test_malformed_messages_are_invalid_with_a_reason():
    assert "not JSON" in parse_message("{nope").reason
    assert "not a JSON object" in parse_message("[1,2]").reason
    assert parse_message('{"result":1}').ignore_quietly
    assert parse_message('{"no":"type"}').reason == "message without a type"
    assert parse_message('{"type":"frobnicate"}').reason == "unknown message type"
    bad = parse_message('{"type":"cancel","jobid":{"x":1}}')
    assert isinstance(bad, Invalid) and bad.type == "cancel"
    assert "not UTF-8" in parse_message(b"\xff\xfe{").reason
    assert "too large" in parse_message("x" * (10 * 1024 * 1024 + 1)).reason
    deep = "[" * 100_000 + "]" * 100_000
    assert isinstance(parse_message(deep), Invalid)


def test_job_validation():
    assert parse_job({"settings": {}}) == "the provided job is invalid"
    assert parse_job({"id": 3}) == "the provided job is invalid"
    assert parse_job({"id": 3, "settings": {"A": {"nested": 1}}}) == "the provided job is invalid"
    job = parse_job({"id": 3, "settings": {"A": 1, "B": None}, "name": "x", "extra": [1]})
    assert job.settings_str == {"A": "1", "B": ""}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                                             max_size=4),
                           max_leaves=20)
types = st.sampled_from(["grab_job", "grab_jobs", "cancel", "abort", "obsolete", "quit", "livelog_start",
                         "livelog_stop", "developer_session_start", "info", "incompatible", "other"])


@settings(max_examples=400, deadline=None)
@given(types, st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_parse_never_raises_on_valid_types_with_wrong_fields(mtype, fields):
    result = parse_message(json.dumps({**fields, "type": mtype}))
    assert result is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_raises_on_random_bytes(raw):
    assert parse_message(raw) is not None
