"""The Storable chunk encoder reproduces the verified vector of PROTOCOL.md §25 byte for byte."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from backend.job.storable import encode_chunk
from tests.integration.upload_support import b64, thaw

VECTOR = (
    "050b03000000080a07612e71636f77320000000466696c650a01300000000573746172740a013200000003656e640a0131000000"
    "05696e6465780a013100000005746f74616c0a1b776974666b5867304a676c436a5739527373577654417665616b4900000005636b"
    "73756d0a2b6a304e44526d53506135626669643270416355586178436d32446c68335477617949745a737477796571510000000b74"
    "6f74616c5f636b73756d0a043638363900000007636f6e74656e74"
)


def test_chunk_for_hi_matches_the_verified_vector() -> None:
    fields = {"file": "a.qcow2", "start": "0", "end": "2", "index": "1", "total": "1",
              "cksum": b64(hashlib.sha1(b"hi").digest()), "total_cksum": b64(hashlib.sha256(b"hi").digest()),
              "content": b"hi".hex()}
    assert fields["cksum"] == "witfkXg0JglCjW9RssWvTAveakI"
    assert encode_chunk(fields).hex() == VECTOR


def test_values_longer_than_255_bytes_use_the_long_scalar_form() -> None:
    encoded = encode_chunk({"content": "ab" * 200})
    assert encoded[:3] == b"\x05\x0b\x03"
    assert encoded[7] == 0x01 and int.from_bytes(encoded[8:12], "big") == 400
    assert thaw(encoded) == {"content": b"ab" * 200}


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=600), max_size=8))
def test_any_string_hash_thaws_back(fields: dict[str, str]) -> None:
    assert thaw(encode_chunk(fields)) == {k: v.encode() for k, v in fields.items()}
