"""Perl Storable ``nfreeze`` encoder for the asset chunk format (PROTOCOL.md §15.3, §25).

Only what the chunk needs: one hash whose values are all strings. Every value is written as a
Storable scalar string (``0x0a`` short / ``0x01`` long), which the web UI thaws and uses numerically
where it must (verified against Storable 3.26, §25).
"""

from __future__ import annotations

import struct

MAGIC_NETORDER = 0x05  # (major 2 << 1) | netorder flag
MINOR_VERSION = 0x0B  # what Storable 3.x writes
SX_HASH = 0x03
SX_LSCALAR = 0x01
SX_SCALAR = 0x0A


def _scalar_header(length: int) -> bytes:
    if length <= 255:
        return bytes((SX_SCALAR, length))
    return bytes((SX_LSCALAR,)) + struct.pack(">I", length)


def encode_chunk(fields: dict[str, str | bytes]) -> bytes:
    """Serialise ``fields`` like ``Storable::nfreeze({...})``: value first, then key, per entry.

    Values may be given as bytes (the hex content) to avoid a copy of the largest field.
    """
    parts = [bytes((MAGIC_NETORDER, MINOR_VERSION, SX_HASH)), struct.pack(">I", len(fields))]
    for key, value in fields.items():
        raw_value = value if isinstance(value, bytes) else str(value).encode()
        raw_key = key.encode()
        parts.append(_scalar_header(len(raw_value)))
        parts.append(raw_value)
        parts.append(struct.pack(">I", len(raw_key)))
        parts.append(raw_key)
    return b"".join(parts)
