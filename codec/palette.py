"""Channel palettes: a plane that uses few of its possible values is coded as ranks.

Camera frames stored at 16 bits often hold 15-bit data (every value even),
and medical or scientific images use a few thousand of their 65,536 levels.
Coding the rank of each value among the values the plane actually uses, and
storing that sorted list once, saves the unused bits without touching the
prediction (for evenly spaced values the ranks are the values scaled).

Planes are numbered in coding order (see ``rastercoder.plane_order``).  Wire
format per raster: u8 flags, one bit per plane (planes 0–7; later planes are
never paletted), then per flagged plane: u32 value count, u32 length, zstd of
the sorted values delta-coded as little-endian u16.
"""
import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from codec.compressors import compressor, decompressor
from codec.errors import CodecError
from codec.pyx import lossless
from codec.threads import Inline

MAX_PALETTED = 8
MIN_BITS = 4          # shallower planes have too few levels to gain anything
WORTH_IT = 0.75       # a palette can pay when a plane uses at most this share of its levels
ENTRY = struct.Struct("<II")


@dataclass(frozen=True)
class Palettes:
    """Per plane: the sorted values used (or None), as lookup tables for the kernels."""
    values: list
    packed: list = None     # per plane, a Future of the stored form of its values (encoding only)
    rank_table: np.ndarray = None   # per plane, value → rank where it has values (encoding only, from ``choose``)

    @property
    def active(self) -> bool:
        return any(v is not None for v in self.values)

    def coded_bits(self, bits: int) -> int:
        return max(bits if v is None else max(1, (len(v) - 1).bit_length()) for v in self.values)

    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """value → rank lookup per plane, and its size (0 for a plane without values), for
        encoding: palettes from ``choose`` only."""
        levels = self.rank_table.shape[1]
        return self.rank_table, np.array([0 if v is None else levels for v in self.values], dtype=np.int32)

    def levels(self) -> tuple[np.ndarray, np.ndarray]:
        """rank → value lookup per plane, for decoding."""
        longest = max((len(v) for v in self.values if v is not None), default=1)
        tables = np.zeros((len(self.values), longest), dtype=np.uint16)
        sizes = np.zeros(len(self.values), dtype=np.int32)
        for plane, values in enumerate(self.values):
            if values is not None:
                tables[plane, :len(values)] = values
                sizes[plane] = len(values)
        return tables, sizes


def choose(marks: np.ndarray, bits: int, samples_per_plane: int, *, pool=None, threads: int = 1) -> Palettes:
    """Palettes for the planes whose levels below 2**bits make them pay, a level
    being used when any copy of ``marks`` (copies × planes × levels, as
    ``rastercoder.mark_levels`` leaves them) marks it; the planes are scanned side
    by side on ``threads`` threads, and their stored forms packed on ``pool`` (an
    executor)."""
    planes = marks.shape[1]
    pool = pool or Inline()
    values = np.empty((planes, 1 << bits), dtype=np.uint16)
    ranks = np.empty((planes, 1 << bits), dtype=np.uint16)     # a plane's row is read only if it has values
    counts, gammas = np.empty(planes, dtype=np.int64), np.empty(planes, dtype=np.int64)
    lossless.palette_scans(marks, 1 << bits, values, ranks, counts, gammas, threads)
    picks = [_pick(plane, values[plane, :count], gamma, bits, samples_per_plane, pool)
             for plane, (count, gamma) in enumerate(zip(counts.tolist(), gammas.tolist()))]
    return Palettes([values for values, _ in picks], [stored for _, stored in picks], ranks)


def could_pay(used: np.ndarray) -> np.ndarray:
    """Per plane, whether a palette might pay given the levels ``used`` (planes × 2**bits
    marks) by some of its samples: a plane whose samples already use too many never can
    (all of them use at least as many), so ``choose`` would give it none."""
    bits = (used.shape[1] - 1).bit_length()
    # a count per row: along an axis, numpy took 60 us for 16-bit planes, 8 us this way
    return np.array([_may_pay(plane, np.count_nonzero(row), bits) for plane, row in enumerate(used)], dtype=bool)


def _may_pay(plane: int, count: int, bits: int) -> bool:
    return plane < MAX_PALETTED and bits >= MIN_BITS and 0 < count <= WORTH_IT * (1 << bits)


def _pick(plane: int, values: np.ndarray, gamma: int, bits: int, samples_per_plane: int, pool) -> tuple:
    """(values, Future of the stored form) of the plane's palette, or (None, None) when it
    would not pay; ``gamma`` is the bits of its deltas in Elias gamma code."""
    count = len(values)
    if not _may_pay(plane, count, bits):
        return None, None
    # conservatively, ranks save half a bit per sample for each bit of range they drop
    saving = samples_per_plane * (bits - np.log2(count)) / 16
    if saving >= 2 * min(_packed_bound(count), _likely_size(count, gamma)):
        # it pays whatever its stored size: packed beside pass one, not before it (zstd took
        # 0.1-0.3 ms a plane of a 16-bit frame, serial while the tiles waited)
        return values, pool.submit(_pack, values)
    stored = _pack(values)
    return (values, Inline.submit(lambda: stored)) if saving >= 2 * len(stored) else (None, None)


def _packed_bound(count: int) -> int:
    """At least the length ``_pack`` gives ``count`` values (zstd's compress bound, and a margin)."""
    size = 2 * count
    return size + (size >> 8) + ((128 << 10) - size >> 11 if size < 128 << 10 else 0) + 64


def _likely_size(count: int, gamma: int) -> int:
    """More than ``_pack`` gives, in practice, for ``count`` values whose deltas take
    ``gamma`` bits in Elias gamma code: zstd spends about that on such small numbers,
    and at least a bit on each byte of the deltas it stores as literals.  On random,
    evenly spaced, clustered and jittered levels of 12- and 16-bit planes (0.05-90% of
    the levels used) zstd gave at most 0.8 of it; 0.1-5% on camera frames, whose
    palettes then need not be packed (serially) to be known to pay.  Not a bound:
    where it is not under twice the saving, the stored size decides."""
    return (gamma + 3 * count) // 8 + 64


def _pack(values: np.ndarray) -> bytes:
    deltas = np.diff(values, prepend=np.uint16(0)).astype("<u2").tobytes()
    return compressor(6).compress(deltas)


def serialize(palettes: Palettes) -> bytes:
    flags = sum(1 << plane for plane, values in enumerate(palettes.values) if values is not None)
    parts = [bytes([flags])]
    for values, packed in zip(palettes.values, palettes.packed or [None] * len(palettes.values)):
        if values is not None:
            stored = packed.result()
            parts.append(ENTRY.pack(len(values), len(stored)))
            parts.append(stored)
    return b"".join(parts)


def parse(view: memoryview, position: int, *, planes: int, bits: int) -> tuple[Palettes, int]:
    """The palettes stored at ``position`` and the position after them."""
    if position >= len(view):
        raise CodecError("coded raster is truncated (palette flags)")
    flags = view[position]
    position += 1
    if flags >> min(planes, MAX_PALETTED):
        raise CodecError("coded raster has a palette for a plane it does not have")
    chosen = []
    for plane in range(planes):
        if plane >= MAX_PALETTED or not flags & (1 << plane):
            chosen.append(None)
            continue
        if position + ENTRY.size > len(view):
            raise CodecError("coded raster is truncated (palette)")
        count, length = ENTRY.unpack_from(view, position)
        position += ENTRY.size
        if not 1 <= count <= 1 << bits or position + length > len(view):
            raise CodecError("coded raster has a corrupt palette")
        try:
            deltas = decompressor().decompressobj().decompress(bytes(view[position:position + length]))
        except zstandard.ZstdError as error:
            raise CodecError(f"coded raster has a corrupt palette: {error}") from None
        position += length
        if len(deltas) != 2 * count:
            raise CodecError("coded raster has a corrupt palette")
        values = lossless.palette_values(deltas, bits)
        if values is None:
            raise CodecError("coded raster has a corrupt palette")
        chosen.append(values)
    return Palettes(chosen), position
