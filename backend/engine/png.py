"""A minimal PNG encoder (zlib only) and a generator of screen-like "screenshots" for the simulator.

The images look like what os-autoinst grabs from a VM: a text console (8×16 bitmap glyphs on black,
boot-log lines) or a desktop (gradient wallpaper, a top panel, windows with title bars, anti-aliased
text, buttons, a terminal). They are written the way os-autoinst's OpenCV ``imwrite`` writes its
screenshots (Sub filter, zlib level 1, Z_RLE), so optipng/oxipng have the work they have in real
jobs, and the same seed always gives the same bytes. Pure Python: rows are bytearrays painted with
slice assignments, the Sub filter is a SWAR byte subtraction on big ints; 1024×768 takes ~20 ms.
"""

from __future__ import annotations

import functools
import random
import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GLYPH_W, GLYPH_H = 8, 16
BLANK = 0  # glyph index of the space
_GLYPHS = 95


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _sub_filter(row: bytes, bpp: int = 3) -> bytes:
    """PNG filter type 1 (Sub): each byte minus the byte ``bpp`` to its left, mod 256 (SWAR on big ints)."""
    n = len(row)
    ones = (1 << (8 * n)) - 1
    high = int.from_bytes(b"\x80" * n, "big")
    x = int.from_bytes(row, "big")
    y = x >> (8 * bpp)  # big-endian: shifting right moves every byte bpp positions to the right
    diff = ((x | high) - (y & ~high & ones)) ^ ((x ^ ~y) & high & ones)
    return (diff & ones).to_bytes(n, "big")


def encode_png(width: int, height: int, rows: list[bytes], level: int = 6, *, sub_filter: bool = False,
               rle: bool = False) -> bytes:
    """Encode 8-bit RGB ``rows`` (each ``3*width`` bytes) as a PNG.

    Filter type 0 by default; ``sub_filter`` + ``rle`` + level 1 is what OpenCV's imwrite does by default."""
    if len(rows) != height or any(len(r) != 3 * width for r in rows):
        raise ValueError("rows do not match the image size")
    if sub_filter:
        raw = b"".join(b"\1" + _sub_filter(r) for r in rows)
    else:
        raw = b"".join(b"\0" + r for r in rows)
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 8, zlib.Z_RLE if rle else zlib.Z_DEFAULT_STRATEGY)
    idat = compressor.compress(raw) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# -- glyphs -------------------------------------------------------------------------------------------

@functools.cache
def _font() -> tuple[tuple[int, ...], ...]:
    """95 fixed 8×16 glyphs (bit 7 = leftmost pixel), made of strokes like a console font."""
    rnd = random.Random(0x51A7)
    strokes = [
        [(r, c) for r in range(3, 13) for c in (1,)], [(r, c) for r in range(3, 13) for c in (6,)],
        [(r, c) for r in range(3, 13) for c in (3, 4)][::2], [(3, c) for c in range(1, 7)],
        [(7, c) for c in range(1, 7)], [(12, c) for c in range(1, 7)],
        [(r, 1 + (r - 3) * 5 // 9) for r in range(3, 13)],
        [(r, 6 - (r - 3) * 5 // 9) for r in range(3, 13)], [(r, c) for r in range(7, 13) for c in (1,)],
        [(r, c) for r in range(3, 8) for c in (6,)], [(r, c) for r in (5, 6) for c in (3, 4)],
        [(r, c) for r in range(9, 15) for c in (5,)],
    ]
    glyphs: list[tuple[int, ...]] = [(0,) * GLYPH_H]
    for _ in range(1, _GLYPHS):
        rows = [0] * GLYPH_H
        for stroke in rnd.sample(strokes, rnd.randint(2, 4)):
            for r, c in stroke:
                rows[r] |= 0x80 >> c
        glyphs.append(tuple(rows))
    return tuple(glyphs)


@functools.cache
def _glyph_rows(fg: bytes, bg: bytes, antialias: bool) -> tuple[tuple[bytes, ...], ...]:
    """Per glyph, its 16 pixel rows as RGB bytes in colours ``fg`` on ``bg``; anti-aliased glyphs get a
    half-tone fringe to the right of every stroke pixel (like hinted desktop text)."""
    half = bytes((a + b) // 2 for a, b in zip(fg, bg, strict=True))
    out = []
    for glyph in _font():
        rows = []
        for bits in glyph:
            px = []
            for i in range(GLYPH_W):
                on = bits >> (7 - i) & 1
                fringe = antialias and i > 0 and bits >> (8 - i) & 1
                px.append(fg if on else half if fringe else bg)
            rows.append(b"".join(px))
        out.append(tuple(rows))
    return tuple(out)


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.rows = [bytearray(3 * width) for _ in range(height)]

    def fill(self, x0: int, y0: int, x1: int, y1: int, color: bytes) -> None:
        x0, x1 = max(0, x0), min(self.w, x1)
        if x1 <= x0:
            return
        span = color * (x1 - x0)
        for y in range(max(0, y0), min(self.h, y1)):
            self.rows[y][3 * x0:3 * x1] = span

    def text(self, x: int, y: int, glyphs: list[int], fg: bytes, bg: bytes, antialias: bool = False,
             limit: int | None = None) -> None:
        """Draw ``glyphs`` at pixel (x, y), clipped to the canvas and to the pixel column ``limit``."""
        right = min(self.w, limit if limit is not None else self.w)
        count = min(len(glyphs), max(0, (right - x) // GLYPH_W))
        if count <= 0 or x < 0:
            return
        table = _glyph_rows(fg, bg, antialias)
        chars = glyphs[:count]
        for gy in range(GLYPH_H):
            py = y + gy
            if 0 <= py < self.h:
                self.rows[py][3 * x:3 * (x + count * GLYPH_W)] = b"".join(table[g][gy] for g in chars)


# -- content ------------------------------------------------------------------------------------------

class _Words:
    """A per-image vocabulary; lines repeat words the way logs and dialogs do."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.vocab = [[rnd.randrange(1, _GLYPHS) for _ in range(rnd.randint(2, 9))] for _ in range(80)]

    def line(self, length: int) -> list[int]:
        out: list[int] = []
        while len(out) < length:
            word = self.vocab[min(len(self.vocab) - 1, int(self.rnd.expovariate(1 / 12)))]
            out += [*word, BLANK]
        return out[:length]


def _console(c: _Canvas, rnd: random.Random) -> None:
    """A Linux text console: boot log lines, some with a coloured status, and a prompt."""
    black, grey, white = b"\0\0\0", b"\xaa\xaa\xaa", b"\xff\xff\xff"
    green, red = b"\x55\xff\x55", b"\xff\x55\x55"
    words = _Words(rnd)
    c.fill(0, 0, c.w, c.h, black)
    cols, lines = c.w // GLYPH_W, c.h // GLYPH_H
    used = rnd.randint(lines // 2, lines)
    ok, fail = words.vocab[0][:2], words.vocab[1][:4]
    for n in range(used):
        y = n * GLYPH_H
        if n == used - 1:
            c.text(0, y, [*words.line(min(cols, 12)), BLANK], white, black)
            continue
        if rnd.random() < 0.5:  # "[  OK  ] Started ..."
            status, color = (fail, red) if rnd.random() < 0.05 else (ok, green)
            c.text(0, y, [BLANK, BLANK, *status, BLANK, BLANK], color, black)
            c.text((len(status) + 5) * GLYPH_W, y, words.line(rnd.randint(10, max(11, cols - 10))), grey, black)
        else:
            c.text(0, y, words.line(rnd.randint(0, cols)), grey, black)


def _shade(color: bytes, factor: float) -> bytes:
    return bytes(min(255, int(v * factor)) for v in color)


def _wallpaper(c: _Canvas, rnd: random.Random) -> None:
    """A smooth two-way gradient (like a blurred wallpaper photo): every row differs slightly."""
    top = [rnd.randrange(30, 120) for _ in range(3)]
    bottom = [rnd.randrange(60, 200) for _ in range(3)]
    ramp = [rnd.randrange(0, 50) for _ in range(3)]
    width, nbytes = c.w, 3 * c.w
    x_ramp = int.from_bytes(b"".join(bytes(int(ramp[ch] * x / max(1, width - 1)) for ch in range(3))
                                     for x in range(width)), "big")
    for y in range(c.h):
        t = y / max(1, c.h - 1)
        base = bytes(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        # every byte sum stays <= 250: one big-int addition adds the ramp to the whole row
        c.rows[y][:] = (int.from_bytes(base * width, "big") + x_ramp).to_bytes(nbytes, "big")


def _window(c: _Canvas, rnd: random.Random, words: _Words, x0: int, y0: int, x1: int, y1: int,
            terminal: bool) -> None:
    shadow = b"\x20\x20\x20"
    c.fill(x0 + 4, y0 + 4, x1 + 4, y1 + 4, shadow)
    title_bg, border = b"\xe8\xe8\xe7", b"\xb0\xb0\xad"
    c.fill(x0, y0, x1, y1, border)
    c.fill(x0 + 1, y0 + 1, x1 - 1, y0 + 30, title_bg)
    title = words.line(rnd.randint(6, 20))
    c.text(x0 + max(4, (x1 - x0 - len(title) * GLYPH_W) // 2), y0 + 8, title, b"\x2e\x34\x36", title_bg, True,
           x1 - 40)
    for i, color in enumerate((b"\xe0\x1b\x24", b"\xf6\xd3\x2d", b"\x33\xd1\x7a")):  # close/min/max
        bx = x1 - 24 - 22 * i
        c.fill(bx, y0 + 9, bx + 14, y0 + 23, color)
    body_top = y0 + 31
    if terminal:
        bg, fg = b"\x30\x0a\x24", b"\xee\xee\xec"
        c.fill(x0 + 1, body_top, x1 - 1, y1 - 1, bg)
        for n in range((y1 - body_top - 4) // GLYPH_H):
            c.text(x0 + 4, body_top + 2 + n * GLYPH_H, words.line(rnd.randint(0, (x1 - x0) // GLYPH_W)), fg, bg,
                   False, x1 - 4)
        return
    bg, fg, side = b"\xff\xff\xff", b"\x24\x1f\x31", b"\xf6\xf5\xf4"
    c.fill(x0 + 1, body_top, x1 - 1, y1 - 1, bg)
    side_w = min(160, (x1 - x0) // 4)
    c.fill(x0 + 1, body_top, x0 + side_w, y1 - 1, side)
    for n in range((y1 - body_top - 60) // 28):  # sidebar: icon + label
        iy = body_top + 10 + n * 28
        c.fill(x0 + 10, iy, x0 + 26, iy + 16, bytes(rnd.randrange(60, 230) for _ in range(3)))
        c.text(x0 + 32, iy, words.line(rnd.randint(3, 12)), fg, side, True, x0 + side_w - 4)
    y = body_top + 12
    while y < y1 - 60:
        kind = rnd.random()
        if kind < 0.15:  # an input field
            c.fill(x0 + side_w + 20, y, x1 - 40, y + 26, border)
            c.fill(x0 + side_w + 21, y + 1, x1 - 41, y + 25, bg)
            c.text(x0 + side_w + 26, y + 5, words.line(rnd.randint(4, 30)), b"\x77\x76\x7b", bg, True, x1 - 44)
            y += 36
        else:
            c.text(x0 + side_w + 20, y, words.line(rnd.randint(5, max(6, (x1 - x0 - side_w) // GLYPH_W - 6))),
                   fg, bg, True, x1 - 20)
            y += 22
    for i in range(2):  # buttons
        bx1 = x1 - 20 - i * 110
        accent = b"\x35\x84\xe4" if i == 0 else b"\xde\xdd\xda"
        c.fill(bx1 - 96, y1 - 44, bx1, y1 - 14, accent)
        c.text(bx1 - 80, y1 - 37, words.line(rnd.randint(4, 8)), b"\xff\xff\xff" if i == 0 else fg, accent, True,
               bx1 - 8)


def _desktop(c: _Canvas, rnd: random.Random) -> None:
    words = _Words(rnd)
    _wallpaper(c, rnd)
    panel = b"\x10\x10\x10"
    c.fill(0, 0, c.w, 28, panel)
    c.text(8, 6, words.line(10), b"\xff\xff\xff", panel, True)
    c.text(c.w // 2 - 40, 6, words.line(11), b"\xff\xff\xff", panel, True)
    for n in range(rnd.randint(1, 3)):
        w = rnd.randint(c.w // 3, max(c.w // 3 + 1, c.w - 60))
        h = rnd.randint(c.h // 3, max(c.h // 3 + 1, c.h - 80))
        x0 = rnd.randint(10, max(10, c.w - w - 10))
        y0 = rnd.randint(40, max(40, c.h - h - 10))
        _window(c, rnd, words, x0, y0, x0 + w, y0 + h, terminal=n == 1)


def synthetic_screenshot(width: int, height: int, seed: int) -> list[bytes]:
    """RGB rows of a screen-like image (a console for every third seed, else a desktop)."""
    rnd = random.Random(seed)
    canvas = _Canvas(max(1, width), max(1, height))
    (_console if seed % 3 == 0 else _desktop)(canvas, rnd)
    return [bytes(r) for r in canvas.rows]


def screenshot_png(width: int, height: int, seed: int, level: int = 1) -> bytes:
    """A screen-like PNG as os-autoinst writes it (Sub filter, zlib level ``level``, Z_RLE)."""
    rows = synthetic_screenshot(width, height, seed)
    return encode_png(max(1, width), max(1, height), rows, level, sub_filter=True, rle=True)
