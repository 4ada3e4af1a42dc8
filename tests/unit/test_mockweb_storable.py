"""The mock web UI's Storable reader decodes what openQA's upload client (Perl or ours) sends."""

from __future__ import annotations

import struct

import pytest

from backend.mockweb import storable

# PROTOCOL.md §25: the chunk for the 2-byte file "hi" named a.qcow2, as verified against the real web UI.
VECTOR = bytes.fromhex(
    "050b03000000080a07612e71636f77320000000466696c650a01300000000573746172740a013200000003656e640a0131000000"
    "05696e6465780a013100000005746f74616c0a1b776974666b5867304a676c436a5739527373577654417665616b4900000005636b"
    "73756d0a2b6a304e44526d53506135626669643270416355586178436d32446c68335477617949745a737477796571510000000b74"
    "6f74616c5f636b73756d0a043638363900000007636f6e74656e74")


def test_decodes_the_protocol_test_vector() -> None:
    assert storable.loads(VECTOR) == {
        "file": "a.qcow2", "start": "0", "end": "2", "index": "1", "total": "1",
        "cksum": "witfkXg0JglCjW9RssWvTAveakI",
        "total_cksum": "j0NDRmSPa5bfid2pAcUXaxCm2Dlh3TwayItZstwyeqQ", "content": "6869"}


def _hash(*entries: tuple[bytes, str]) -> bytes:
    out = bytes([0x05, 0x0B, 0x03]) + struct.pack(">I", len(entries))
    for value, key in entries:
        out += value + struct.pack(">I", len(key)) + key.encode()
    return out


def test_decodes_perl_small_and_net_ints() -> None:
    data = _hash((bytes([0x08, 128 + 0]), "start"), (bytes([0x08, 128 + 5]), "index"),
                 (bytes([0x08, 128 - 3]), "neg"), (b"\x09" + struct.pack(">i", 10_000_000), "end"),
                 (b"\x09" + struct.pack(">i", -70_000), "low"), (b"\x0a\x0a2147483648", "big"))
    assert storable.loads(data) == {"start": 0, "index": 5, "neg": -3, "end": 10_000_000, "low": -70_000,
                                    "big": "2147483648"}


def test_decodes_a_blessed_mojo_file_ref_and_long_scalars() -> None:
    path = b"/var/lib/openqa/pool/1/assets_public/disk.qcow2"
    blessed = b"\x04\x11\x0aMojo::File\x0a" + bytes([len(path)]) + path
    content = b"ab" * 300  # > 255 bytes: SX_LSCALAR
    data = _hash((blessed, "file"), (b"\x01" + struct.pack(">I", len(content)) + content, "content"))
    assert storable.loads(data) == {"file": path.decode(), "content": content.decode()}


def test_minor_version_7_and_utf8_strings_are_accepted() -> None:
    data = bytearray(_hash((b"\x17\x03" + "é".encode() + b"x", "name")))
    data[1] = 0x07
    assert storable.loads(bytes(data)) == {"name": "éx"}


def test_round_trip_with_the_perl_style_encoder() -> None:
    value = {"file": "x.iso", "start": 0, "end": 300, "index": 1, "total": 2**40, "content": "00" * 200}
    decoded = storable.loads(storable.dumps(value))
    assert decoded == {**value, "total": str(2**40)}


@pytest.mark.parametrize("data, message", [
    (b"\x04\x0b\x03", "network-order"),
    (b"\x05\x0b\x03\x00\x00\x00\x01\x0a\x05ab", "truncated"),
    (b"\x05\x0b\x13", "unsupported Storable opcode 0x13"),
    (b"\x05\x0b\x05\x05", "trailing"),
    (b"\x07\x0b\x05", "major"),
])
def test_rejects_what_it_cannot_read(data: bytes, message: str) -> None:
    with pytest.raises(storable.StorableError, match=message):
        storable.loads(data)
