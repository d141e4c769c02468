"""A tiny PNG writer (zlib + struct) with rectangles, lines and a 3x5 pixel font: enough for
bench/paper.py's bar chart and CDF without matplotlib (not in the lock)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

RGB = tuple[int, int, int]

_FONT = {  # 3x5 glyphs, rows top to bottom, bits left to right
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "%": "101001010100101",
    "s": "000011110001110", " ": "000000000000000", "-": "000000111000000",
    "a": "000110011101111", "l": "100100100100011", "i": "010000010010010",
    "g": "011101011001110", "n": "000110101101101", "e": "010101111100011",
    "d": "001001011101011", "u": "000101101101011", "t": "010111010010001",
    "p": "000110101110100", "c": "000011100100011", "r": "000101110100100",
    "o": "000010101101010", "P": "110101110100100", "F": "111100110100100",
    "D": "110101101101110", "C": "011100100100011", "=": "000111000111000",
    "/": "001001010100100", ":": "000010000010000", "m": "000111111101101",
    "f": "011010111010010",
}  # fmt: skip


class Canvas:
    def __init__(self, width: int, height: int, bg: RGB = (255, 255, 255)) -> None:
        self.w, self.h = width, height
        self.px = [bytearray(bytes(bg) * width) for _ in range(height)]

    def set(self, x: int, y: int, c: RGB) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            self.px[y][3 * x : 3 * x + 3] = bytes(c)

    def rect(self, x0: int, y0: int, x1: int, y1: int, c: RGB) -> None:
        for y in range(max(0, min(y0, y1)), min(self.h, max(y0, y1) + 1)):
            for x in range(max(0, min(x0, x1)), min(self.w, max(x0, x1) + 1)):
                self.set(x, y, c)

    def line(self, x0: int, y0: int, x1: int, y1: int, c: RGB, width: int = 2) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            x = round(x0 + (x1 - x0) * i / steps)
            y = round(y0 + (y1 - y0) * i / steps)
            self.rect(x, y, x + width - 1, y + width - 1, c)

    def text(self, x: int, y: int, s: str, c: RGB = (0, 0, 0), scale: int = 2) -> None:
        for ch in s:
            glyph = _FONT.get(ch, _FONT[" "])
            for i, bit in enumerate(glyph):
                if bit == "1":
                    gx, gy = x + (i % 3) * scale, y + (i // 3) * scale
                    self.rect(gx, gy, gx + scale - 1, gy + scale - 1, c)
            x += 4 * scale

    def save(self, path: Path) -> None:
        raw = b"".join(b"\x00" + bytes(row) for row in self.px)

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        path.write_bytes(png)
