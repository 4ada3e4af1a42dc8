"""A small Perl Storable reader/writer for the chunked asset upload (PROTOCOL.md §15.3, §25).

Only network-order images (``nfreeze``) are supported, which is what openQA's upload client sends.
The reader knows the scalar, integer, hash, array, reference and bless opcodes — enough for a
chunk hash whose ``file`` value may be a blessed ``Mojo::File`` scalar ref.
"""

from __future__ import annotations

import struct
from typing import Any

SX_OBJECT = 0x00
SX_LSCALAR = 0x01
SX_ARRAY = 0x02
SX_HASH = 0x03
SX_REF = 0x04
SX_UNDEF = 0x05
SX_BYTE = 0x08
SX_NETINT = 0x09
SX_SCALAR = 0x0A
SX_SV_UNDEF = 0x0E
SX_SV_YES = 0x0F
SX_SV_NO = 0x10
SX_BLESS = 0x11
SX_IX_BLESS = 0x12
SX_OVERLOAD = 0x14
SX_UTF8STR = 0x17
SX_LUTF8STR = 0x18
SX_FLAG_HASH = 0x19
SX_SVUNDEF_ELEM = 0x1F
SX_BOOLEAN_TRUE = 0x22
SX_BOOLEAN_FALSE = 0x23

MAJOR = 2
MINOR = 11  # Storable 3.x


class StorableError(ValueError):
    """The data is not a network-order Storable image we understand."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.seen: list[Any] = []
        self.classes: list[str] = []

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise StorableError(f"truncated data at offset {self.pos} (wanted {n} bytes)")
        chunk = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        """Class-name/index length: one byte, or 0x80 flag followed by a u32."""
        n = self.u8()
        return self.u32() if n & 0x80 else n

    def remember(self, value: Any) -> Any:
        self.seen.append(value)
        return value

    def value(self) -> Any:
        op = self.u8()
        handler = _OPS.get(op)
        if handler is None:
            raise StorableError(f"unsupported Storable opcode 0x{op:02x} at offset {self.pos - 1}")
        return handler(self)


def _text(raw: bytes, utf8: bool) -> str:
    if utf8:
        return raw.decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # Perl byte strings: keep every byte


def _hash(r: _Reader, flagged: bool = False) -> dict[str, Any]:
    if flagged:
        r.u8()  # hash flags (restricted hashes): irrelevant here
    result: dict[str, Any] = r.remember({})
    for _ in range(r.u32()):
        value = r.value()
        if flagged:
            r.u8()  # key flags (UTF-8 key, placeholder)
        result[_text(r.take(r.u32()), False)] = value
    return result


def _array(r: _Reader) -> list[Any]:
    result: list[Any] = r.remember([])
    for _ in range(r.u32()):
        result.append(r.value())
    return result


def _ref(r: _Reader) -> Any:
    # A reference is transparent for our purposes: the referent is the value.
    index = len(r.seen)
    r.remember(None)
    target = r.value()
    r.seen[index] = target
    return target


def _bless(r: _Reader) -> Any:
    r.classes.append(_text(r.take(r.length()), False))
    return r.value()


def _ix_bless(r: _Reader) -> Any:
    index = r.length()
    if index >= len(r.classes):
        raise StorableError(f"unknown class index {index}")
    return r.value()


def _object(r: _Reader) -> Any:
    tag = r.u32()
    if tag >= len(r.seen):
        raise StorableError(f"reference to unknown object #{tag}")
    return r.seen[tag]


_OPS: dict[int, Any] = {
    SX_OBJECT: _object,
    SX_LSCALAR: lambda r: r.remember(_text(r.take(r.u32()), False)),
    SX_SCALAR: lambda r: r.remember(_text(r.take(r.u8()), False)),
    SX_UTF8STR: lambda r: r.remember(_text(r.take(r.u8()), True)),
    SX_LUTF8STR: lambda r: r.remember(_text(r.take(r.u32()), True)),
    SX_BYTE: lambda r: r.remember(r.u8() - 128),
    SX_NETINT: lambda r: r.remember(r.i32()),
    SX_UNDEF: lambda r: r.remember(None),
    SX_SV_UNDEF: lambda r: r.remember(None),
    SX_SVUNDEF_ELEM: lambda r: r.remember(None),
    SX_SV_YES: lambda r: r.remember(1),
    SX_SV_NO: lambda r: r.remember(""),
    SX_BOOLEAN_TRUE: lambda r: r.remember(True),
    SX_BOOLEAN_FALSE: lambda r: r.remember(False),
    SX_HASH: _hash,
    SX_FLAG_HASH: lambda r: _hash(r, flagged=True),
    SX_ARRAY: _array,
    SX_REF: _ref,
    SX_OVERLOAD: _ref,
    SX_BLESS: _bless,
    SX_IX_BLESS: _ix_bless,
}


def loads(data: bytes) -> Any:
    """Decode an ``nfreeze`` image (no ``pst0`` file magic)."""
    if len(data) < 2:
        raise StorableError("data too short for a Storable header")
    header = data[0]
    if not header & 1:
        raise StorableError("only network-order (nfreeze) Storable data is supported")
    if header >> 1 != MAJOR:
        raise StorableError(f"unsupported Storable major version {header >> 1}")
    reader = _Reader(data)
    reader.pos = 2  # header byte + minor version (any minor is fine for what we read)
    value = reader.value()
    if reader.pos != len(data):
        raise StorableError(f"{len(data) - reader.pos} trailing bytes after the Storable image")
    return value


def _dump_scalar(value: Any) -> bytes:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and -128 <= value <= 127:
        return bytes([SX_BYTE, value + 128])  # what Perl writes for small ints
    if isinstance(value, int) and -(2**31) <= value < 2**31:
        return bytes([SX_NETINT]) + struct.pack(">i", value)
    raw = value if isinstance(value, bytes) else str(value).encode()
    if len(raw) <= 255:
        return bytes([SX_SCALAR, len(raw)]) + raw
    return bytes([SX_LSCALAR]) + struct.pack(">I", len(raw)) + raw


def dumps(mapping: dict[str, Any], *, minor: int = MINOR) -> bytes:
    """Encode a flat hash like ``nfreeze`` (ints the Perl way, everything else as byte strings)."""
    out = bytearray([(MAJOR << 1) | 1, minor, SX_HASH])
    out += struct.pack(">I", len(mapping))
    for key, value in mapping.items():
        out += _dump_scalar(value)
        raw_key = key.encode()
        out += struct.pack(">I", len(raw_key)) + raw_key
    return bytes(out)
