"""Channel palettes: a plane that uses few of its possible values is coded as ranks.

Camera frames stored at 16 bits often hold 15-bit data (every value even),
and medical or scientific images use a few thousand of their 65,536 levels.
Coding the rank of each value among the values the plane actually uses, and
storing that sorted list once, saves the unused bits without touching the
prediction (for evenly spaced values the ranks are the values scaled).

Wire format per raster: u8 flags, one bit per channel (channels 0–7; planes
beyond the eighth are never paletted), then per flagged channel: u32 value
count, u32 length, zstd of the sorted values delta-coded as little-endian u16.
"""
import struct

import numpy as np
import zstandard

from codec.errors import CodecError

MAX_PALETTED = 8
WORTH_IT = 0.75       # a palette can pay when a plane uses at most this share of its levels
ENTRY = struct.Struct("<II")


def compact(pixels: np.ndarray, bits: int):
    """(ranks or the pixels themselves, bits of the coded values,
    {channel: (sorted values, their packed form)})."""
    tables = {}
    if bits < 4:
        return pixels, bits, tables
    work = pixels
    for channel in range(min(pixels.shape[2], MAX_PALETTED)):
        plane = pixels[..., channel]
        used = np.bincount(plane.ravel(), minlength=1 << bits) > 0
        count = int(used.sum())
        if count > WORTH_IT * (1 << bits):
            continue
        values = np.flatnonzero(used).astype(np.uint16)
        packed = _pack(values)
        # conservatively, ranks save half a bit per sample for each bit of range they drop
        saved_bytes = plane.size * (bits - np.log2(count)) / 16
        if saved_bytes < 2 * len(packed):
            continue
        if work is pixels:
            work = pixels.astype(np.uint16, copy=True)
        rank = (np.cumsum(used) - 1).astype(np.uint16)
        work[..., channel] = rank[plane]
        tables[channel] = (values, packed)
    if not tables:
        return pixels, bits, tables
    coded = max(bits if c not in tables else max(1, (len(tables[c][0]) - 1).bit_length())
                for c in range(pixels.shape[2]))
    return work, coded, tables


def _pack(values: np.ndarray) -> bytes:
    deltas = np.diff(values, prepend=np.uint16(0)).astype("<u2").tobytes()
    return zstandard.ZstdCompressor(level=19).compress(deltas)


def serialize(tables: dict) -> bytes:
    flags = sum(1 << channel for channel in tables)
    parts = [bytes([flags])]
    for channel in sorted(tables):
        values, packed = tables[channel]
        parts.append(ENTRY.pack(len(values), len(packed)))
        parts.append(packed)
    return b"".join(parts)


def parse(view: memoryview, position: int, *, bits: int) -> tuple[dict, int]:
    """The tables stored at ``position`` and the position after them."""
    if position >= len(view):
        raise CodecError("coded raster is truncated (palette flags)")
    flags = view[position]
    position += 1
    tables = {}
    for channel in range(MAX_PALETTED):
        if not flags & (1 << channel):
            continue
        if position + ENTRY.size > len(view):
            raise CodecError("coded raster is truncated (palette)")
        count, length = ENTRY.unpack_from(view, position)
        position += ENTRY.size
        if not 1 <= count <= 1 << bits or position + length > len(view):
            raise CodecError("coded raster has a corrupt palette")
        try:
            deltas = zstandard.ZstdDecompressor().decompressobj().decompress(bytes(view[position:position + length]))
        except zstandard.ZstdError as error:
            raise CodecError(f"coded raster has a corrupt palette: {error}") from None
        position += length
        if len(deltas) != 2 * count:
            raise CodecError("coded raster has a corrupt palette")
        values = np.cumsum(np.frombuffer(deltas, dtype="<u2"), dtype=np.int64)
        if values[-1] >= 1 << bits or (count > 1 and (np.diff(values) <= 0).any()):
            raise CodecError("coded raster has a corrupt palette")
        tables[channel] = values.astype(np.uint16)
    return tables, position


def expand(pixels: np.ndarray, tables: dict) -> np.ndarray:
    """Ranks back to values, in place; refuses ranks beyond a table."""
    for channel, values in tables.items():
        plane = pixels[..., channel]
        if plane.size and int(plane.max()) >= len(values):
            raise CodecError("coded raster is corrupt: a rank beyond its palette")
        pixels[..., channel] = values[plane]
    return pixels
