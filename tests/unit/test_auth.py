"""HMAC request signing (PROTOCOL.md §3) with the vectors verified against the real web UI (§25)."""

from __future__ import annotations

import pytest

from backend.webui.auth import auth_headers, encode_query, request_target, sign, verify

SECRET = "0000111122223333"
T = 1700000000


@pytest.mark.parametrize(("target", "expected"), [
    ("/api/v1/workers?cpu_arch=x86_64&host=probehost&instance=9&worker_class=probe%2Cprobe2"
     "&cpu_opmode=32-bit%2C+64-bit", "c464493df8808e09046d18c2a06f726f5c17fb62"),
    ("/api/v1/jobs/15/set_done?result=passed&worker_id=2", "ba4ee1546ae708c691fe070e99e59e0e012c41ce"),
    ("/api/v1/ws/2", "dca8ba73150cf2dd6a3acda8fcc59b7f1cf6ea20"),
])
def test_real_web_ui_vectors(target, expected):
    assert sign(SECRET, target, T) == expected


def test_request_target_is_built_like_mojo():
    target = request_target("/api/v1/workers", [("cpu_arch", "x86_64"), ("host", "probehost"), ("instance", 9),
                                                 ("worker_class", "probe,probe2"), ("cpu_opmode", "32-bit, 64-bit")])
    assert sign(SECRET, target, T) == "c464493df8808e09046d18c2a06f726f5c17fb62"


def test_query_escaping_rules():
    assert encode_query({"a": "x y", "b": "1*2-3._4", "c": "ä/&=?"}) == "a=x+y&b=1*2-3._4&c=%C3%A4%2F%26%3D%3F"
    assert encode_query([("job_id", 1), ("job_id", 2)]) == "job_id=1&job_id=2"
    assert encode_query({"skip": None, "flag": True}) == "flag=1"


def test_paths_with_spaces_and_non_ascii_are_escaped_consistently():
    target = request_target("/api/v1/jobs/3/artefact name ü", {"q": "x"})
    assert target == "/api/v1/jobs/3/artefact%20name%20%C3%BC?q=x"
    assert sign(SECRET, target, T) == sign(SECRET, target, T)


def test_headers_without_credentials_only_carry_the_time():
    headers = auth_headers(None, None, "/api/v1/workers", now=T)
    assert headers == {"Accept": "application/json", "X-API-Microtime": str(T)}


def test_verify_accepts_valid_and_names_the_problem_otherwise():
    keys = {"KEY": SECRET}
    target = "/api/v1/ws/2"
    good = auth_headers("KEY", SECRET, target, now=T)
    assert verify(keys, good, target, now=T + 10) is None
    assert verify(keys, {**good, "X-API-Hash": "00"}, target, now=T) == "unknown error (wrong secret?)"
    assert "timestamp mismatch" in verify(keys, good, target, now=T + 301)
    assert verify(keys, {}, target, now=T) == "no api key"
    assert verify({}, good, target, now=T) == "api key not found"
