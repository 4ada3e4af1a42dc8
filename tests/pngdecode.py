"""An independent PNG decoder for tests: the RGB pixels of a non-interlaced PNG of bit depth <= 8.

Covers what optipng, oxipng and pngquant write for screenshots (grey, RGB, palette, grey+alpha, RGBA;
bit depths 1-8; all five filters), so a test can prove that optimisation kept every pixel.
"""

from __future__ import annotations

import struct
import zlib

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        out.append((kind, body))
        pos += 12 + length
    return out


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> list[bytearray]:
    rows, prev, pos = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(a, b, c)) & 0xFF
            else:
                assert kind == 0, f"unknown filter {kind}"
        rows.append(line)
        prev = line
    return rows


def rgb_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes); alpha is dropped (screenshots have none)."""
    chunks = _chunks(data)
    width, height, depth, color, _comp, _filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert interlace == 0 and depth <= 8, "decoder supports non-interlaced, <= 8 bit"
    palette = next((body for kind, body in chunks if kind == b"PLTE"), b"")
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    channels = CHANNELS[color]
    stride = (width * channels * depth + 7) // 8
    rows = _unfilter(raw, height, stride, max(1, channels * depth // 8))
    out = []
    for line in rows:
        if depth < 8:
            per_byte, mask = 8 // depth, (1 << depth) - 1
            samples = [(line[i // per_byte] >> (8 - depth * (i % per_byte + 1))) & mask
                       for i in range(width * channels)]
        else:
            samples = list(line)
        pixels = bytearray()
        for x in range(width):
            px = samples[x * channels:(x + 1) * channels]
            if color == 3:
                pixels += palette[3 * px[0]:3 * px[0] + 3]
            elif color in (0, 4):
                grey = px[0] * 255 // mask if depth < 8 else px[0]
                pixels += bytes((grey, grey, grey))
            else:
                pixels += bytes(px[:3])
        out.append(bytes(pixels))
    return width, height, out
