"""Samples in and out of their storage layout.

Layouts of whole samples in single words (filled 10-bit DPX, 12-bit DPX), and
of samples running on through words (packed 10- and 12-bit DPX), convert in one C pass each way, the exactness check included, in bands of
rows on the kernels' threads (``lossless.unpack_fields``, ``unpack_bit_runs``):
on big frames a single pass would be the serial part of an otherwise parallel
encode.  The other layouts (``layouts``: numpy, a band of rows at a time so
that its temporaries stay small) convert on the caller's thread.
"""
import math
from dataclasses import replace

import numpy as np

from codec import layouts
from codec.buffers import fresh
from codec.pyx import lossless
from codec.raster import Raster

BAND_BYTES = 1 << 18


def bands(raster: Raster, row: int) -> list[tuple[int, int]]:
    rows = max(1, BAND_BYTES // max(1, row))
    return [(y, min(raster.height, y + rows)) for y in range(0, raster.height, rows)]


def band_raster(raster: Raster, start: int, end: int, row: int) -> Raster:
    """Rows ``start``..``end`` of a raster whose rows lie back to back."""
    return replace(raster, height=end - start, length=(end - start) * row, offset=0, row_stride=0)


def unpack_checked(raster: Raster, rows: bytes, *, row: int, threads: int = 1,
                   lend=fresh) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples of ``rows`` (the raster's rows back to back), and the bits packing
    them again would not give back (bits the layout does not model, such as a writer's
    leftovers in row padding: ``rows`` XOR the repacked rows, uint8), or None when it
    gives every bit back.  Word fields are unpacked into an array from ``lend`` (see
    ``codec.buffers``)."""
    fields = layouts.word_fields(raster)
    run = layouts.bit_run(raster) if fields is None else None
    if fields is not None or run is not None:
        shape = (raster.height, raster.width, raster.channels)
        pixels = lend(2 * math.prod(shape)).view(np.uint16).reshape(shape)
        words = np.frombuffer(rows, dtype=np.uint8)
        if fields is not None:
            exact = lossless.unpack_fields(words, raster.height, raster.width * raster.channels, row, *fields,
                                           raster.bits, pixels.reshape(-1), threads)
        else:
            exact = lossless.unpack_bit_runs(words, raster.height, raster.width * raster.channels, row, *run,
                                             raster.bits, pixels.reshape(-1), threads)
    else:
        parts, exact = [], True
        for start, end in bands(raster, row):
            part = band_raster(raster, start, end, row)
            chunk = memoryview(rows)[start * row:end * row]
            parts.append(layouts.unpack(part, chunk))
            if exact:
                same = layouts.exact(part, chunk)
                exact = same if same is not None else np.array_equal(
                    np.frombuffer(layouts.pack(part, parts[-1]), dtype=np.uint8), np.frombuffer(chunk, dtype=np.uint8))
        pixels = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return pixels, None if exact else stray_bits(raster, rows, pixels, row=row, threads=threads)


def stray_bits(raster: Raster, rows: bytes, pixels: np.ndarray, *, row: int, threads: int = 1) -> np.ndarray:
    """``rows`` XOR ``pixels`` packed again: zero wherever the layout models every bit."""
    repacked = np.empty(row * raster.height, dtype=np.uint8)
    pack_rows(memoryview(repacked), raster, pixels, row=row, threads=threads)
    return np.bitwise_xor(np.frombuffer(rows, dtype=np.uint8), repacked, out=repacked)


def pack_rows(target: memoryview, raster: Raster, pixels: np.ndarray, *, row: int, threads: int = 1,
              running: lossless.Checksum | None = None) -> None:
    """Write ``pixels`` (height, width, channels) into ``target``, which holds the
    raster's rows back to back, feeding ``running`` the rows as they are written;
    raises ValueError when they do not fit."""
    if len(target) != row * raster.height:
        raise ValueError("the raster's rows do not fit their place")
    fields = layouts.word_fields(raster)
    run = layouts.bit_run(raster) if fields is None else None
    if fields is not None or run is not None:
        values = np.ascontiguousarray(pixels, dtype=np.uint16).reshape(-1)
        pack = lossless.pack_fields if fields is not None else lossless.pack_bit_runs
        pack(values, raster.height, raster.width * raster.channels, row, *(fields or run), raster.bits,
             np.frombuffer(target, dtype=np.uint8), threads, running)
        return
    for start, end in bands(raster, row):
        target[start * row:end * row] = layouts.pack(band_raster(raster, start, end, row), pixels[start:end])
        if running is not None:
            running.update(target[start * row:end * row])
