"""A minimal PNG encoder (zlib only) and a synthetic "screenshot" generator for the simulator.

The images look roughly like a VM screen: a colour gradient with a little noise and a terminal-like
text area, so optipng/pngquant and the md5 dedupe have realistic work to do. Rows are built with
bytes.translate and big-int XOR, so a 1024x768 image takes well under 0.1 s.
"""

from __future__ import annotations

import random
import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NOISE_MASK = bytes(v & 0x07 for v in range(256))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, rows: list[bytes], level: int = 6) -> bytes:
    """Encode 8-bit RGB ``rows`` (each ``3*width`` bytes) as a PNG (filter type 0)."""
    if len(rows) != height or any(len(r) != 3 * width for r in rows):
        raise ValueError("rows do not match the image size")
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, level)) + \
        _chunk(b"IEND", b"")


def _gradient_row(width: int, rnd: random.Random) -> bytearray:
    c1 = [rnd.randrange(256) for _ in range(3)]
    c2 = [rnd.randrange(256) for _ in range(3)]
    row = bytearray(3 * width)
    for x in range(width):
        t = x / max(1, width - 1)
        row[3 * x:3 * x + 3] = bytes(int(a + (b - a) * t) for a, b in zip(c1, c2, strict=True))
    return row


def _glyph_rows(width: int, line_h: int, rnd: random.Random) -> list[bytes]:
    """``line_h`` pixel rows of a line of random 8-px "characters", light on dark."""
    fg, bg = b"\xd0\xd0\xd0", b"\x10\x10\x18"
    cols = (2 * width) // 8 + 1
    glyphs = [[rnd.getrandbits(6) if rnd.random() < 0.8 else 0 for _ in range(line_h)] for _ in range(cols)]
    rows = []
    for y in range(line_h):
        parts = []
        for g in glyphs:
            bits = g[y] if 2 <= y < line_h - 2 else 0
            parts.append(b"".join(fg if bits >> (5 - (i % 6)) & 1 and i < 6 else bg for i in range(8)))
        rows.append(b"".join(parts))
    return rows


def synthetic_screenshot(width: int, height: int, seed: int) -> list[bytes]:
    """RGB rows of a screen-like image; the same seed gives the same image."""
    rnd = random.Random(seed)
    base = _gradient_row(width, rnd)
    band = 16
    tables = [bytes(min(255, int(v * (0.55 + 0.45 * i * band / max(1, height)))) for v in range(256))
              for i in range(height // band + 1)]
    nbytes = 3 * width
    noise = [int.from_bytes(rnd.randbytes(nbytes).translate(_NOISE_MASK), "big") for _ in range(13)]
    line_h = 16
    glyphs = _glyph_rows(width, line_h, rnd)
    # A terminal window: x range and the text lines inside it.
    x0 = rnd.randrange(0, max(1, width // 4)) * 3
    x1 = min(nbytes, x0 + rnd.randrange(width // 2, width) * 3)
    y0 = rnd.randrange(0, max(1, height // 4))
    y1 = min(height, y0 + rnd.randrange(height // 3, max(height // 3 + 1, height - y0)))
    line_len = {n: rnd.randrange(0, x1 - x0 + 1) // 24 * 24 for n in range(height // line_h + 1)}
    rows = []
    for y in range(height):
        row = base.translate(tables[y // band])
        row = bytearray((int.from_bytes(row, "big") ^ noise[y % 13]).to_bytes(nbytes, "big"))
        if y0 <= y < y1:
            n = (y - y0) // line_h
            glyph_row = glyphs[(y - y0) % line_h]
            off = (n * 7 % (width // 8)) * 24
            row[x0:x1] = b"\x10\x10\x18" * ((x1 - x0) // 3)
            length = line_len[n]
            row[x0:x0 + length] = glyph_row[off:off + length]
        rows.append(bytes(row))
    return rows


def screenshot_png(width: int, height: int, seed: int, level: int = 6) -> bytes:
    return encode_png(width, height, synthetic_screenshot(width, height, seed), level)
